"""strategy_from_config: inner strategy, its options, DP wrappers and guard keys from config."""

from __future__ import annotations

import logging

import pytest
from flwr.serverapp.strategy import (
    DifferentialPrivacyServerSideFixedClipping,
    FedAvg,
    FedProx,
    FedTrimmedAvg,
)

from flwr_trust.errors import TrustError
from flwr_trust.strategies import TrustGuard, strategy_from_config
from flwr_trust.strategies.from_config import STRATEGIES


def _cfg(tmp_path, **kv):
    return {"trust.model": "none", "trust.tensorboard": False,
            "trust.run-dir": str(tmp_path / "run"), **kv}


def test_default_is_fedavg_gate_off(tmp_path):
    guard = strategy_from_config(_cfg(tmp_path))
    assert isinstance(guard, TrustGuard) and type(guard.inner) is FedAvg
    assert guard.gate == "off" and guard.model_spec is None


def test_inner_options_and_guard_keys(tmp_path):
    guard = strategy_from_config(_cfg(
        tmp_path, **{"trust.strategy": "fedprox", "trust.fedprox.proximal-mu": 0.3,
                     "trust.fedprox.fraction-train": 0.5, "trust.gate": "quarantine",
                     "trust.alpha": 0.01, "trust.audit-fraction": 0.25,
                     "trust.tolerance.alignment.refusal-rate": 0.1}))
    assert isinstance(guard.inner, FedProx)
    assert guard.inner.proximal_mu == 0.3 and guard.inner.fraction_train == 0.5
    assert guard.gate == "quarantine" and guard.audit_fraction == 0.25
    assert guard.detector.alpha == 0.01
    assert guard.detector.tolerance("alignment", "refusal-rate") == 0.1


def test_horizon_key_takes_auto_or_a_number_of_rounds(tmp_path):
    assert strategy_from_config(_cfg(tmp_path)).detector.horizon is None  # auto: planned
    auto = strategy_from_config(_cfg(tmp_path, **{"trust.horizon": "Auto"}))
    assert auto.detector.horizon is None
    assert strategy_from_config(_cfg(tmp_path, **{"trust.horizon": 5})).detector.horizon == 5
    assert strategy_from_config(_cfg(tmp_path, **{"trust.horizon": "0"})).detector.horizon == 0
    with pytest.raises(TrustError, match=r"trust.horizon = -2 is not an integer in "
                                         r"\[0, \d+\] or 'auto'"):
        strategy_from_config(_cfg(tmp_path, **{"trust.horizon": -2}))
    with pytest.raises(TrustError, match="trust.horizon = 'soon'"):
        strategy_from_config(_cfg(tmp_path, **{"trust.horizon": "soon"}))


def test_update_centre_keys_choose_the_sampled_or_exact_centre(tmp_path):
    exact = strategy_from_config(_cfg(tmp_path, **{"trust.update-centre-clients": 0,
                                                   "trust.update-centre-coords": 0}))
    assert exact.update_centre == (2**62, 2**62)
    sampled = strategy_from_config(_cfg(tmp_path, **{"trust.update-centre-clients": 16}))
    assert sampled.update_centre == (16, 131072)
    with pytest.raises(TrustError, match="update_centre_clients must be an integer >= 0"):
        strategy_from_config(_cfg(tmp_path, **{"trust.update-centre-clients": -1}))


def test_every_named_strategy_builds(tmp_path):
    required = {"qfedavg": {"trust.qfedavg.client-learning-rate": 0.1}}
    for name in STRATEGIES:
        guard = strategy_from_config(_cfg(tmp_path, **{"trust.strategy": name,
                                                       **required.get(name, {})}))
        assert type(guard.inner) is STRATEGIES[name]
    with pytest.raises(TrustError, match="could not be built.*client_learning_rate"):
        strategy_from_config(_cfg(tmp_path, **{"trust.strategy": "qfedavg"}))
    beta = strategy_from_config(_cfg(tmp_path, **{"trust.strategy": "fedtrimmedavg",
                                                  "trust.fedtrimmedavg.beta": 0.1}))
    assert isinstance(beta.inner, FedTrimmedAvg) and beta.inner.beta == 0.1


def test_dp_wrapper(tmp_path):
    guard = strategy_from_config(_cfg(
        tmp_path, **{"trust.dp": "server-fixed", "trust.dp.noise-multiplier": 1.0,
                     "trust.dp.clipping-norm": 0.5, "trust.dp.num-sampled-clients": 4}))
    assert isinstance(guard.inner, DifferentialPrivacyServerSideFixedClipping)
    with pytest.raises(TrustError, match="missing options"):
        strategy_from_config(_cfg(tmp_path, **{"trust.dp": "server-fixed"}))


def test_flowertune_fractions_set_the_inner_strategy(tmp_path, caplog):
    """FlowerTune's strategy.fraction-train / -evaluate (or the older -fit) reach the inner
    strategy; its own trust.<strategy>.fraction-* keys win; both are logged."""
    caplog.set_level(logging.INFO, logger="flwr")
    guard = strategy_from_config(_cfg(tmp_path, **{"strategy.fraction-train": 0.1,
                                                   "strategy.fraction-evaluate": 0.0}))
    assert (guard.inner.fraction_train, guard.inner.fraction_evaluate) == (0.1, 0.0)
    assert "fraction_train=0.1 from strategy.fraction-train" in caplog.text
    legacy = strategy_from_config(_cfg(tmp_path, **{"strategy.fraction-fit": 0.2}))
    assert legacy.inner.fraction_train == 0.2
    ours = strategy_from_config(_cfg(tmp_path, **{"strategy.fraction-train": 0.1,
                                                  "trust.fedavg.fraction-train": 0.5}))
    assert ours.inner.fraction_train == 0.5
    prox = strategy_from_config(_cfg(tmp_path, **{"trust.strategy": "fedprox",
                                                  "strategy.fraction-evaluate": 0.25}))
    assert isinstance(prox.inner, FedProx) and prox.inner.fraction_evaluate == 0.25
    with pytest.raises(TrustError, match=r"strategy.fraction-train = 2 is not a float in "
                                         r"\[0, 1\]"):
        strategy_from_config(_cfg(tmp_path, **{"strategy.fraction-train": 2}))


@pytest.mark.parametrize("cfg, match", [
    ({"trust.strategy": "fedsgd"}, "Unknown trust.strategy 'fedsgd'.*fedavg"),
    ({"trust.fedavg.proximal-mu": 0.1}, "Unknown option 'trust.fedavg.proximal-mu'.*fraction"),
    ({"trust.fedprox.proximal-mu": 0.1}, "configures 'fedprox' but trust.strategy is 'fedavg'; "
                                         "remove it"),
    ({"trust.gaet": "halt"}, "Unknown config key trust.gaet.*Rename it to trust.gate, or remove"),
    # client keys are checked here too (one config serves both sides): names and values
    ({"trust.privacy.epsilom": 3.0}, r"trust.privacy.epsilom \(did you mean "
                                     r"'trust.privacy.epsilon'\?\).*Rename it to "
                                     r"trust.privacy.epsilon"),
    ({"trust.privacy.epsilon": "lots"}, "trust.privacy.epsilon = 'lots' is not a float"),
    ({"trust.policy.rules": "alignment.refusal >= 0.8"}, "names metrics no scorer reports"),
    ({"trust.local-data.messages": "fit"}, "trust.local-data.messages"),
    ({"trust.dp.noise-multiplier": 1.0}, "trust.dp is not set; remove it, or set trust.dp"),
    ({"trust.fedavg.fraction-trian": 0.5}, "did you mean 'trust.fedavg.fraction-train'"),
    ({"trust.wholly-unknown": 1}, "Remove it, or use one of: trust.alpha"),
    ({"trust.gate": "block"}, "Unknown gate 'block'"),
    ({"trust.dp": "local"}, "Unknown trust.dp 'local'"),
    ({"trust.fedtrimmedavg.beta": 0.9, "trust.strategy": "fedtrimmedavg"}, "could not be built"),
    ({"trust.audit-fraction": "lots"}, "not a float"),
    ({"trust.tensorboard": "maybe"}, "not a boolean"),
    ({"trust.seed": -1}, "trust.seed = -1 is not an integer in"),
    ({"trust.tolerance.alignment.refusal": 0.1}, "Unknown tolerance key"),
    ({"trust.modes": "bias,vibes"}, "Unknown detection mode"),
    # the inner strategy's and the DP wrapper's own options are read as their declared types
    ({"trust.fedavg.fraction-train": "half"}, r"trust.fedavg.fraction-train = 'half' is not a "
                                              r"float in \[0, 1\]"),
    ({"trust.fedavg.fraction-train": 2.0}, r"fraction-train = 2.0 is not a float in \[0, 1\]"),
    ({"trust.fedavg.min-train-nodes": -1}, "min-train-nodes = -1 is not an integer"),
    ({"trust.strategy": "fedadam", "trust.fedadam.eta": "fast"}, "fedadam.eta = 'fast' is not "
                                                                 "a float"),
    ({"trust.strategy": "multikrum", "trust.multikrum.num-nodes-to-select": 2.5},
     "num-nodes-to-select = 2.5 is not an integer"),
    ({"trust.dp": "server-fixed", "trust.dp.noise-multiplier": 1.0,
      "trust.dp.clipping-norm": 1.0, "trust.dp.num-sampled-clients": 0},
     r"num-sampled-clients = 0 is not an integer in \[1, inf\)"),
    ({"trust.dp": "server-fixed", "trust.dp.clipping-norm": 1.0, "trust.dp.clipped-count-stddev":
      "lots"}, "Unknown option 'trust.dp.clipped-count-stddev'"),
    ({"trust.dp": "server-adaptive", "trust.dp.noise-multiplier": 1.0,
      "trust.dp.num-sampled-clients": 2, "trust.dp.clipped-count-stddev": "lots"},
     "clipped-count-stddev = 'lots' is not a float"),  # float | None: was 'missing options'
    # found in review: options that take Python objects crashed or failed every round later
    ({"trust.dp": "server-fixed", "trust.dp.noise-multiplier": 1.0,
      "trust.dp.clipping-norm": 1.0, "trust.dp.num-sampled-clients": 2,
      "trust.dp.accountant": "rdp"}, "'trust.dp.accountant' .* takes a Python object"),
    ({"trust.fedavg.train-metrics-aggr-fn": "mean"}, "takes a Python object"),
    ({"trust.fedavg.weighted-by-key": ""}, "'trust.fedavg.weighted-by-key' is empty"),
    # ... and numbers that move the model away from the clients, make it NaN or select nobody
    ({"trust.strategy": "fedavgm", "trust.fedavgm.server-learning-rate": -1},
     r"server-learning-rate = -1 is not a float in \(0, inf\)"),
    ({"trust.strategy": "fedadam", "trust.fedadam.beta-1": 1}, r"beta-1 = 1 is not a float in "
                                                              r"\[0, 1\)"),
    ({"trust.strategy": "fedadam", "trust.fedadam.eta": -1}, "eta = -1 is not a float"),
    ({"trust.strategy": "fedprox", "trust.fedprox.proximal-mu": -5}, "proximal-mu = -5"),
    ({"trust.strategy": "qfedavg", "trust.qfedavg.client-learning-rate": 0},
     "client-learning-rate = 0 is not a float"),
    ({"trust.strategy": "multikrum", "trust.multikrum.num-nodes-to-select": 0},
     "num-nodes-to-select = 0 is not an integer"),
    ({"trust.alpha": 1}, r"trust.alpha = 1 is not a float in \(0, 1\)"),  # the table said ]
    ({"trust.update-alpha": 1}, r"trust.update-alpha = 1 is not a float in \(0, 1\)"),
    ({"trust.tolerance.alignment.refusal-rate": True}, "refusal-rate = True is not a number"),
    ({"trust.run-dir": "/proc/trust-run"}, "trust.run-dir '/proc/trust-run' cannot be made"),
    ({"trust.dp": "server-fixed", "trust.dp.noise-multiplier": "lots",
      "trust.dp.clipping-norm": 1.0, "trust.dp.num-sampled-clients": 4},
     "trust.dp.noise-multiplier = 'lots' is not a float"),
])
def test_bad_config_names_the_valid_choices(tmp_path, cfg, match):
    with pytest.raises(TrustError, match=match):
        strategy_from_config(_cfg(tmp_path, **cfg))


def test_option_values_are_converted_to_their_declared_types(tmp_path):
    """A quoted number is read as the number its keyword takes (Flower would have sliced with
    the string "3" and failed in every round)."""
    guard = strategy_from_config(_cfg(tmp_path, **{
        "trust.strategy": "multikrum", "trust.multikrum.num-nodes-to-select": "3",
        "trust.multikrum.fraction-train": 1}))
    assert guard.inner.num_nodes_to_select == 3 and guard.inner.fraction_train == 1.0


def test_update_cosine_margin_key_reaches_the_checks_and_the_log(tmp_path):
    assert strategy_from_config(_cfg(tmp_path)).core.settings.checker.cosine_margin == 0.5
    guard = strategy_from_config(_cfg(tmp_path / "b", **{"trust.update-cosine-margin": 0.0}))
    assert guard.core.settings.checker.cosine_margin == 0.0
    with pytest.raises(TrustError, match="trust.update-cosine-margin"):
        strategy_from_config(_cfg(tmp_path / "c", **{"trust.update-cosine-margin": 2}))
