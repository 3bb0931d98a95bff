"""The linearized screen (flwr_trust.scoring.linear) on the tiny model: its prediction of a
headline metric's change is the first-order term of the exact change, and rank metrics are
reported blind rather than predicted unchanged."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from peft import LoraConfig

from flwr_trust.models import get_bridge
from flwr_trust.probes.defaults import default_suites
from flwr_trust.probes.sampling import sample_suites
from flwr_trust.scoring.linear import linear_screen, metric_weights
from flwr_trust.scoring.runner import profile_arrays

LORA = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], init_lora_weights=False)


@pytest.fixture(scope="module")
def setup():
    bridge = get_bridge("tiny", LORA)
    suites = sample_suites(default_suites(), round=0, budget=6)
    rng = torch.Generator().manual_seed(0)
    point = {k: torch.randn(v.shape, generator=rng) * 0.2 for k, v in bridge.state_dict().items()}
    direction = {k: torch.randn(v.shape, generator=rng) * v.std() for k, v in point.items()}
    return bridge, suites, point, direction


def _exact(bridge, suites, arrays, mode, metric):
    return profile_arrays(bridge, arrays, {mode: suites[mode]}).metrics[mode][metric].value


def test_the_prediction_is_the_first_order_change(setup):
    bridge, suites, point, direction = setup
    screen = linear_screen(bridge, point, suites)
    assert "memorization.canary-exposure" in screen.blind  # a rank: piecewise constant
    checked = 0
    for key, metric in screen.metrics.items():
        mode = key.split(".")[0]
        if key in screen.blind:
            continue
        base = _exact(bridge, suites, point, mode, metric)
        assert base == pytest.approx(screen.values[key], abs=1e-6)
        errors = []
        for eps in (1e-1, 1e-2):
            moved = {k: point[k] + eps * direction[k] for k in point}
            exact = _exact(bridge, suites, moved, mode, metric) - base
            predicted = screen.predict(moved)[key]
            assert exact != 0.0 and np.sign(predicted) == np.sign(exact), mode
            errors.append(abs(predicted - exact) / abs(exact))
        # first order: the relative error shrinks with the step (the remainder is second
        # order, so about ten-fold here)
        assert errors[1] < 0.05 or errors[1] < errors[0] / 4, (mode, errors)
        checked += 1
    assert checked >= 4


@pytest.mark.parametrize("mode", ["alignment", "bias", "capability", "calibration"])
def test_metric_weights_are_the_metrics_derivative(mode):
    """w · δ predicts compute(log p + δ) - compute(log p) for a small random δ."""
    from flwr_trust import modes as registry
    from flwr_trust.scoring.encoding import cached_requests
    from flwr_trust.scoring.requests import Scores

    suite = sample_suites(default_suites([mode]), round=0, budget=6)[mode]
    declared = registry.get(mode)
    requests = cached_requests(suite, get_bridge("tiny", LORA).tokenizer, declared.requests)
    rng = np.random.default_rng(1)
    n_tokens = np.array([len(r.continuation) for r in requests])
    scores = Scores(-rng.uniform(0.5, 3.0, len(requests)) * n_tokens, n_tokens)
    name = declared.headline.name
    w = metric_weights(mode, suite, scores, name)
    assert w is not None and np.any(w)
    delta = rng.uniform(0, 1e-3, len(requests))  # one sign: no first-order cancellation
    change = declared.compute(suite, Scores(scores.logprob + delta, n_tokens))[name].value \
        - declared.compute(suite, scores)[name].value
    assert float(w @ delta) == pytest.approx(change, rel=0.02, abs=1e-9)


def test_predict_names_missing_arrays(setup):
    bridge, suites, point, _ = setup
    screen = linear_screen(bridge, point, {"alignment": suites["alignment"]})
    with pytest.raises(ValueError, match="lack"):
        screen.predict({})
    with pytest.raises(ValueError, match="no metric"):
        linear_screen(bridge, point, suites, metrics={"alignment": ["refusal-rat"]})
    flags = [p.requires_grad for p in bridge.model.parameters()]
    linear_screen(bridge, point, {"alignment": suites["alignment"]})
    assert [p.requires_grad for p in bridge.model.parameters()] == flags


def test_the_server_prober_screens_its_own_bridge(setup):
    """BridgeProber.screen (what the guard calls) screens the arrays it is given, on request
    metrics only, and predicts a client's update from its numpy arrays."""
    from flwr_trust.models.prober import BridgeProber

    bridge, suites, point, direction = setup
    prober = BridgeProber("tiny", LORA)
    screen = prober.screen(point, {"alignment": suites["alignment"]},
                           {"alignment": ["refusal-rate"]})
    assert list(screen.gradients) == ["alignment.refusal-rate"]
    update = {k: (point[k] + 0.01 * direction[k]).numpy() for k in point}
    assert screen.predict(update)["alignment.refusal-rate"] != 0.0
