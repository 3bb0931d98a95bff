"""The wire protocol: every key constant is documented, and the builders and parsers that both
sides use round-trip."""

from __future__ import annotations

from pathlib import Path

import pytest

from flwr_trust import protocol
from flwr_trust.scoring.profile import MetricValue

DOC = Path(__file__).resolve().parents[1] / "docs" / "protocol.md"


def _key_constants() -> dict[str, str]:
    return {name: value for name, value in vars(protocol).items()
            if name.isupper() and isinstance(value, str) and value.startswith("trust.")}


def test_every_wire_key_is_in_docs_protocol_md():
    text = DOC.read_text(encoding="utf-8")
    keys = _key_constants()
    assert len(keys) > 20
    missing = {n: k for n, k in keys.items() if f"`{k.rstrip('.')}" not in text}
    assert not missing, f"docs/protocol.md does not list {missing}"
    for part in protocol.STATUS_PARTS:
        assert f"`{part}`" in text


def test_server_config_round_trips_and_absent_metrics_are_no_observation():
    sent = protocol.ServerConfig("ab" * 32, 3, 8)
    assert protocol.ServerConfig.parse(sent.to_config()) == sent
    flat = (protocol.entry("trust.alignment.refusal-rate", 0.8, 0.02, 40)
            | protocol.absent("trust.memorization.loss-gap")
            | protocol.profile_entries({"bias": {"stereotype-pref": MetricValue(0.6, 0.03, 90)}}))
    obs = protocol.observations(flat)
    assert obs["alignment"]["refusal-rate"] == protocol.Observation(0.8, 0.02, 40, 0.0)
    assert obs["bias"]["stereotype-pref"].n == 90
    assert "memorization" not in obs
    trust, user = protocol.split_trust(flat | {"num-examples": 4})
    assert user == {"num-examples": 4} and trust == flat


@pytest.mark.parametrize("bad", [{"trust.suite-hash": 5}, {"trust.round": True},
                                 {"trust.probe-budget": -1}])
def test_bad_server_config_is_a_protocol_error(bad):
    with pytest.raises(protocol.ProtocolError):
        protocol.ServerConfig.parse(bad)
