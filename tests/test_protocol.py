"""The wire protocol: every key constant is documented, and the builders and parsers that both
sides use round-trip."""

from __future__ import annotations

import math
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


def _clear(key: str = "trust.alignment.refusal-rate", items=(0.7, 0.8, 0.9)) -> dict:
    return protocol.entry(key, sum(items) / len(items), 0.05, len(items), items=list(items))


def test_the_reporters_own_numbers_have_the_right_shape():
    flat = (_clear() | protocol.absent("trust.bias.stereotype-pref")
            | {"trust.delta.alignment.refusal-rate": 0.1, "trust.status.private": 1})
    assert protocol.report_shape_problem(flat) == ""
    assert protocol.report_shape_problem({"num-examples": 3, "loss": [1.0, 2.0]}) == ""


@pytest.mark.parametrize(("change", "why"), [
    ({"trust.alignment.refusal-rate.items": [0.7, 0.8]}, "has 2 items but"),
    ({"trust.alignment.refusal-rate": 0.2}, "is not the mean of its items"),
    ({"trust.alignment.refusal-rate.n": 3.5}, "not a whole number"),
    ({"trust.junk.x.items": [0.5] * (protocol.MAX_ITEMS + 1)}, "items (at most"),
    ({"trust.style.lengths": [0.5] * (protocol.MAX_ITEMS + 1)}, "items (at most"),
    ({"trust.alignment.refusal-rate.items": [1.01, 0.79, 0.9]}, "outside [0, 1]"),
    ({"trust.alignment.refusal-rate.n": [3]}, "is a list; only"),
    ({"trust.alignment.refusal-rate": [0.8]}, "is a list; only"),
    ({"trust.alignment.refusal-rate.items": 0.8}, "not a list of per-item values"),
    ({f"trust.junk.k{i}": 0.0 for i in range(protocol.MAX_TRUST_KEYS)}, "trust.* metrics (at"),
])
def test_malformed_shapes_are_named(change, why):
    assert why in protocol.report_shape_problem(_clear() | change)


def test_lists_are_bounded_by_the_servers_largest_suite():
    assert protocol.report_shape_problem(_clear(), max_items=3) == ""
    assert "(at most 2)" in protocol.report_shape_problem(_clear(), max_items=2)


def test_a_watched_metric_without_its_n_is_refused():
    """The integrity audit reads a missing `.n` as absent while the detectors used the value:
    one lie skipped the audit. A watched metric must state its n (0 = absent)."""
    flat = _clear()
    del flat["trust.alignment.refusal-rate.n"], flat["trust.alignment.refusal-rate.items"]
    assert "without trust.alignment.refusal-rate.n" in protocol.report_shape_problem(flat)
    assert protocol.report_shape_problem({"trust.personal.alignment.refusal-rate": 0.5}) == ""


@pytest.mark.parametrize("stderr,noise", [(math.inf, 0.0), (math.nan, 0.0), (0.01, math.inf)])
def test_a_metric_whose_stderr_or_noise_is_not_finite_is_sent_absent(stderr, noise):
    """Before, a non-finite stderr (or a noise std that overflowed, from a huge noise
    multiplier) went out as 0: a value claiming to be exact."""
    out = protocol.entry("trust.shift.from-reference", -1.4e203, stderr, 12, noise)
    assert out == protocol.absent("trust.shift.from-reference")
