"""trust.* config: documented defaults, node overrides, clear errors; the policy parser."""

from __future__ import annotations

import pytest

from flwr_trust.config.client import NODE_KEYS, TrustConfig, parse_trust_config
from flwr_trust.config.keys import BY_NAME, TrustConfigError, keys_of, shown_default
from flwr_trust.config.policy import PolicyError, check_policy, parse_policy
from flwr_trust.modes import MODES
from flwr_trust.protocol import ProtocolError, ServerConfig
from flwr_trust.scoring.profile import BehaviorProfile, MetricValue


def test_defaults_without_any_config():
    cfg = parse_trust_config({})
    assert cfg.enabled and cfg.model == "default" and cfg.modes == MODES
    assert cfg.probe_budget == BY_NAME["trust.probe-budget"].default == 32
    assert cfg.lora_config() is None  # no trust.lora.r: full state dicts
    assert cfg.budget.epsilon == 8.0 and cfg.budget.delta == 1e-5
    assert cfg.noise_multiplier == 5.0 and cfg.private_messages == ("evaluate",)
    assert cfg.policy == () and cfg.policy_action == "report" and cfg.outgoing == "auto"


def test_dataclass_defaults_match_the_documented_table():
    from_table = parse_trust_config({})
    assert from_table == TrustConfig()


def test_flowertune_keys_are_fallbacks_and_trust_keys_win():
    run = {"model.name": "tiny", "model.lora.peft-lora-r": 16,
           "model.lora.peft-lora-alpha": 32, "trust.lora.alpha": 8}
    cfg = parse_trust_config(run)
    lora = cfg.lora_config()
    assert cfg.model == "tiny" and lora.r == 16 and lora.lora_alpha == 8
    assert sorted(lora.target_modules) == ["q_proj", "v_proj"]


def test_node_config_overrides_only_the_clients_own_keys():
    run = {"trust.privacy.epsilon": 4.0, "trust.probe-budget": 10}
    node = {"trust.privacy.epsilon": 1.5, "trust.probe-budget": 99,
            "trust.policy.rules": "alignment.refusal-rate >= 0.8", "partition-id": 3}
    cfg = parse_trust_config(run, node)
    assert cfg.budget.epsilon == 1.5
    assert cfg.probe_budget == 10  # changes the reply's keys: run-wide only
    assert str(cfg.policy[0]) == "alignment.refusal-rate >= 0.8"
    assert "trust.probe-budget" not in NODE_KEYS


def test_strings_for_numbers_and_booleans_are_accepted():
    cfg = parse_trust_config({"trust.probe-budget": "12", "trust.privacy.delta": "1e-6",
                              "trust.probe-incoming": "true", "trust.modes": "bias, alignment"})
    assert cfg.probe_budget == 12 and cfg.budget.delta == 1e-6 and cfg.probe_incoming
    assert cfg.modes == ("bias", "alignment")


@pytest.mark.parametrize(("key", "value", "words"), [
    ("trust.probe-budget", -1, "trust.probe-budget"),
    ("trust.probe-budget", "lots", "trust.probe-budget"),
    ("trust.privacy.delta", 2.0, "trust.privacy.delta"),
    ("trust.privacy.epsilon", 0, "trust.privacy.epsilon"),
    ("trust.privacy.noise-multiplier", True, "trust.privacy.noise-multiplier"),
    # beyond what the accountant computes (1e-300: division by zero; 1e200: overflow) or so
    # large the noise's variance overflowed and was sent as 0 (found in review)
    ("trust.privacy.noise-multiplier", 1e-300, r"in \[0.001, 10000"),
    ("trust.privacy.noise-multiplier", 1e102, r"in \[0.001, 10000"),
    ("trust.modes", "bias,telepathy", "trust.modes"),
    ("trust.precision", "fp8", "trust.precision"),
    ("trust.privacy.outgoing", "maybe", "trust.privacy.outgoing"),
    ("trust.local-data.messages", "query", "trust.local-data.messages"),
    ("trust.local-data.groups", "a,A", "trust.local-data.groups"),
    ("trust.client.enabled", "perhaps", "trust.client.enabled"),
    ("trust.policy.rules", "alignment.refusal-rate ~ 0.8", "trust.policy.rules"),
    ("trust.policy.rules", "alignment.refusal_rate >= 0.8", "trust.policy.rules"),
    ("trust.privacy.epsilonn", 3.0, "Unknown config key trust.privacy.epsilonn"),
])
def test_malformed_values_name_the_key(key, value, words):
    with pytest.raises(TrustConfigError, match=words if "[" in words
                       else words.replace(".", r"\.")):
        parse_trust_config({key: value})


def test_policy_on_a_mode_that_is_not_probed_is_an_error():
    with pytest.raises(TrustConfigError, match="does not probe"):
        parse_trust_config({"trust.modes": "alignment",
                            "trust.policy.rules": "bias.stereotype-pref <= 0.6"})


def test_server_keys_and_unrelated_keys_are_ignored():
    cfg = parse_trust_config({"trust.gate": "rollback", "trust.strategy": "fedprox",
                              "num-server-rounds": 3})
    assert cfg.enabled


def test_server_config_parsing():
    s = ServerConfig.parse({"trust.suite-hash": "ab" * 32, "trust.round": 4,
                             "trust.probe-budget": 0})
    assert (s.round, s.probe_budget) == (4, 0)
    assert ServerConfig.parse({"server-round": 7}).round == 7
    assert ServerConfig.parse({}, group_id="5").round == 5
    for bad in ({"trust.suite-hash": "xyz"}, {"trust.round": -1}, {"trust.probe-budget": 1.5}):
        with pytest.raises(ProtocolError):
            ServerConfig.parse(bad)


def test_policy_parse_and_check():
    rules = parse_policy("alignment.refusal-rate >= 0.8; capability.accuracy>0.3,"
                         " bias.stereotype-pref <= 0.6")
    assert [str(r) for r in rules] == ["alignment.refusal-rate >= 0.8",
                                       "capability.accuracy > 0.3", "bias.stereotype-pref <= 0.6"]
    profile = BehaviorProfile({"alignment": {"refusal-rate": MetricValue(0.62, 0.05, 40)},
                               "capability": {"accuracy": MetricValue(0.5, 0.1, 20)}}, {})
    violations = check_policy(rules, profile)
    assert [v.rule.mode for v in violations] == ["alignment", "bias"]
    assert "0.620" in violations[0].describe() and "n=40" in violations[0].describe()
    assert "not measured" in violations[1].describe()
    with pytest.raises(PolicyError, match="unknown mode"):
        parse_policy("vibes.score >= 1")
    assert parse_policy("") == ()


def test_docs_list_every_client_key_with_its_default():
    import re
    from pathlib import Path

    doc = (Path(__file__).resolve().parents[1] / "docs" / "client.md").read_text()
    rows = dict(re.findall(r"^\| `(trust\.[a-z.-]+)`(?: \(\*node\*\))? \| `([^`]*)` \|", doc,
                           re.MULTILINE))
    client_keys = {k.name: k for k in keys_of("client")}
    assert set(rows) == set(client_keys)
    for name, key in client_keys.items():
        assert rows[name] == shown_default(key), name
    node_rows = set(re.findall(r"^\| `(trust\.[a-z.-]+)` \(\*node\*\)", doc, re.MULTILINE))
    assert node_rows == set(NODE_KEYS)
