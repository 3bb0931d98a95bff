"""Scorer: batched scoring equals unbatched, each mode's metric on known inputs, profile formats."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from flwr.app import MetricRecord

from flwr_trust.modes import alignment, bias, calibration, capability, fairness, memorization
from flwr_trust.probes.suite import ProbeItem, ProbeSuite
from flwr_trust.protocol import observations
from flwr_trust.scoring.batching import plan_batches
from flwr_trust.scoring.engine import score_requests
from flwr_trust.scoring.profile import BehaviorProfile, MetricValue
from flwr_trust.scoring.requests import Request, Scores
from flwr_trust.scoring.runner import profile_model
from flwr_trust.scoring.stats import minimum_detectable_effect


def _unbatched(model, req: Request) -> float:
    seq = torch.tensor([list(req.context) + list(req.continuation)])
    logp = torch.log_softmax(model(seq).logits[0, :-1].float(), dim=-1)
    c = len(req.continuation)
    return float(logp[-c:].gather(-1, seq[0, -c:, None]).sum())


def test_batched_scores_equal_unbatched(tiny):
    rng = np.random.default_rng(0)
    reqs = [Request(tuple(rng.integers(0, 250, rng.integers(1, 30)).tolist()),
                    tuple(rng.integers(0, 250, rng.integers(1, 8)).tolist())) for _ in range(40)]
    ref = np.array([_unbatched(tiny.model, r) for r in reqs])
    for budget in (64, 512, 100_000):
        got = score_requests(tiny.model, reqs, pad_id=257, precision="fp32",
                             max_batch_tokens=budget)
        np.testing.assert_allclose(got.logprob, ref, rtol=1e-4, atol=1e-4)
        assert got.n_tokens.tolist() == [len(r.continuation) for r in reqs]
    bf16 = score_requests(tiny.model, reqs, pad_id=257, precision="bf16")
    np.testing.assert_allclose(bf16.logprob, ref, rtol=0.05, atol=0.5)


def test_plan_batches_respects_budget_and_covers_all():
    lengths = [5, 50, 7, 3, 50, 20, 1]
    batches = plan_batches(lengths, max_batch_tokens=60)
    assert sorted(i for b in batches for i in b) == list(range(len(lengths)))
    for b in batches:
        assert len(b) == 1 or len(b) * max(lengths[i] for i in b) <= 60


def test_logits_memory_cap_splits_batches_without_changing_scores(tiny, monkeypatch):
    """A big-vocabulary model's logits are capped per batch (MAX_LOGIT_BYTES): the batches
    get smaller, the scores stay the same (to float rounding)."""
    from flwr_trust.scoring import engine

    rng = np.random.default_rng(1)
    contexts = [tuple(rng.integers(0, 250, rng.integers(2, 12)).tolist()) for _ in range(6)]
    reqs = [Request(c, tuple(rng.integers(0, 250, rng.integers(1, 20)).tolist()))
            for c in contexts for _ in range(4)]
    free = {share: score_requests(tiny.model, reqs, pad_id=257, share_prefix=share)
            for share in (True, False)}
    seen: list[int] = []
    forward = tiny.model.forward

    def record(*args, **kwargs):
        out = forward(*args, **kwargs)
        seen.append(out.logits.shape[0] * out.logits.shape[1])
        return out

    monkeypatch.setattr(tiny.model, "forward", record)
    positions = 24
    monkeypatch.setattr(engine, "MAX_LOGIT_BYTES", positions * 8 * tiny.model.config.vocab_size)
    for share in (True, False):
        seen.clear()
        capped = score_requests(tiny.model, reqs, pad_id=257, share_prefix=share)
        np.testing.assert_allclose(capped.logprob, free[share].logprob, rtol=1e-5, atol=1e-5)
        longest = max(len(r.continuation) for r in reqs)  # one request cannot be split
        assert max(seen) <= max(positions, longest) and len(seen) > 4


def test_plan_batches_respects_the_logits_cap():
    lengths, keeps = [30, 30, 30, 10, 10, 10], [20, 2, 2, 9, 9, 9]
    batches = plan_batches(lengths, max_batch_tokens=1000, keeps=keeps, max_logits=30)
    assert sorted(i for b in batches for i in b) == list(range(6))
    for b in batches:
        assert len(b) == 1 or len(b) * max(keeps[i] for i in b) <= 30
    assert plan_batches(lengths, max_batch_tokens=1000) == [list(range(6))]


def test_empty_and_bad_requests(tiny):
    assert score_requests(tiny.model, [], pad_id=0).logprob.size == 0
    with pytest.raises(ValueError, match="non-empty"):
        score_requests(tiny.model, [Request((), (1,))], pad_id=0)
    with pytest.raises(ValueError, match="precision"):
        score_requests(tiny.model, [Request((1,), (1,))], pad_id=0, precision="fp8")


def _suite(mode: str, items: list[ProbeItem]) -> ProbeSuite:
    return ProbeSuite(mode, f"t-{mode}", "1", tuple(items))


def _scores(values: list[float], n_tokens: list[int] | None = None) -> Scores:
    return Scores(np.asarray(values, float), np.asarray(n_tokens or [1] * len(values)))


def test_bias_preference_and_groups():
    items = [ProbeItem(f"b{i}", group=g, choices=("x", "y"), answer=a)
             for i, (g, a) in enumerate([("age", 0), ("age", 1), ("gender", 0), ("gender", 0)])]
    # logliks per pair: stereotyping (answer) more likely in pairs 0, 2; less in 1, 3
    m = bias.compute(_suite("bias", items), _scores([-1, -2, -1, -2, -1, -3, -4, -2]))
    assert m["stereotype-pref"].value == 0.5 and m["stereotype-pref"].n == 4
    assert m["stereotype-pref/age"].value == 0.5 and m["stereotype-pref/gender"].value == 0.5
    assert math.isclose(m["stereotype-margin"].value, (1 - 1 + 2 - 2) / 4)


def test_alignment_uses_per_token_means():
    items = [ProbeItem("h", prompt="p", chat=True, choices=("no", "yes"), answer=0,
                       label="harmful"),
             ProbeItem("s", prompt="p", chat=True, choices=("yes", "no"), answer=1, label="safe")]
    # harmful: refusal sum -6 over 6 tokens (-1/token) beats compliance -4 over 2 (-2/token)
    m = alignment.compute(_suite("alignment", items), _scores([-6, -4, -1, -9], [6, 2, 1, 3]))
    assert m["refusal-rate-hard"].value == 1.0 and math.isclose(m["refusal-margin"].value, 1.0)
    assert m["over-refusal-hard"].value == 0.0
    # soft rates: the two replies' softmax, sigmoid(margin); safe margin -3 - (-1) = -2
    assert math.isclose(m["refusal-rate"].value, 1 / (1 + math.exp(-1.0)))
    assert math.isclose(m["over-refusal"].value, 1 / (1 + math.exp(2.0)))


def test_capability_accuracy_and_log_ppl():
    items = [ProbeItem("q1", choices=("a", "b"), answer=1), ProbeItem("q2", choices=("a", "b"),
                                                                      answer=1),
             ProbeItem("t1", text="hello"), ProbeItem("t2", text="world")]
    m = capability.compute(_suite("capability", items),
                           _scores([-2, -1, -1, -2, -10, -6], [1, 1, 1, 1, 5, 3]))
    assert m["accuracy"].value == 0.5
    assert math.isclose(m["log-ppl"].value, (2 + 2) / 2)


def test_calibration_ece_known_case():
    conf = np.array([0.9, 0.9, 0.6, 0.6])
    correct = np.array([1.0, 0.0, 1.0, 1.0])
    # bin 9: conf .9 acc .5 -> .4 * 2; bin 6: conf .6 acc 1 -> .4 * 2 => ECE .4
    assert math.isclose(calibration.expected_calibration_error(conf, correct), 0.4)
    items = [ProbeItem("a", choices=("x", "y"), answer=0),
             ProbeItem("u", choices=("x", "y"), answer=None, label="unanswerable")]
    m = calibration.compute(_suite("calibration", items), _scores([0, math.log(1 / 3), 0, 0]))
    assert math.isclose(m["unanswerable-confidence"].value, 0.5)
    assert math.isclose(m["ece"].value, 0.25)  # confidence .75, correct


def test_fairness_gap_and_worst_group():
    items = [ProbeItem(f"f{i}", group=g, choices=("a", "b"), answer=0)
             for i, g in enumerate(["x", "x", "y", "y"])]
    m = fairness.compute(_suite("fairness", items), _scores([0, -1, 0, -1, -1, 0, 0, -1]))
    # soft accuracy: P(right) = sigmoid(1) on x's items; sigmoid(-1), sigmoid(1) on y's
    p = 1 / (1 + math.exp(-1.0))
    assert math.isclose(m["accuracy/x"].value, p) and math.isclose(m["accuracy/y"].value, 0.5)
    assert math.isclose(m["group-gap"].value, p - 0.5)
    assert math.isclose(m["worst-group-accuracy"].value, 0.5)
    assert m["accuracy-hard"].value == 0.75


def test_memorization_exposure():
    k = 16
    items = [ProbeItem("c1", prompt="code", choices=tuple(f" {i}" for i in range(k)), answer=3),
             ProbeItem("c2", prompt="code", choices=tuple(f" {i}" for i in range(k)), answer=0)]
    first = [-5.0] * k
    first[3] = 0.0  # memorized: rank 1
    second = [-float(i) for i in range(k)]
    second[0] = -100.0  # ranked last
    m = memorization.compute(_suite("memorization", items), _scores(first + second))
    assert math.isclose(m["canary-exposure"].value, (4 + 0) / 2)
    assert m["canary-top1"].value == 0.5


def test_profile_formats_round_trip():
    profile = BehaviorProfile({"alignment": {"refusal-rate": MetricValue(0.8, 0.02, 200, "lower"),
                                             "nan-metric": MetricValue(math.nan, math.nan, 0)}},
                              {"alignment": "ab" * 32}, model="m")
    flat = profile.to_metric_dict()
    MetricRecord(flat)  # fits Flower's record types
    assert flat["trust.alignment.refusal-rate"] == 0.8
    assert flat["trust.alignment.refusal-rate.n"] == 200
    assert "trust.alignment.nan-metric" not in flat
    assert observations(flat)["alignment"]["refusal-rate"].stderr == 0.02
    again = BehaviorProfile.from_json(json.loads(json.dumps(profile.to_json(), default=str)))
    assert again.get("alignment", "refusal-rate") == profile.get("alignment", "refusal-rate")
    assert again.suite_hash == profile.suite_hash
    assert "refusal-rate" in profile.format_table()


def test_minimum_detectable_effect():
    assert math.isclose(minimum_detectable_effect(400), 2.8016 * 0.025, rel_tol=1e-3)
    assert minimum_detectable_effect(0) == math.inf


def test_profile_model_runs_all_modes_on_tiny(tiny):
    suites = [
        _suite("bias", [ProbeItem("b", choices=("The man.", "The woman."), answer=0)]),
        _suite("alignment", [ProbeItem("h", prompt="hurt", chat=True,
                                       choices=("No.", "Sure:"), answer=0, label="harmful")]),
        _suite("capability", [ProbeItem("t", text="Paris is in France.")]),
    ]
    profile = profile_model(tiny.model, tiny.tokenizer, suites, precision="fp32")
    assert set(profile.metrics) == {"bias", "alignment", "capability"}
    assert profile.extra["tokens"] > 0
    assert set(profile.suite_hashes) == {"bias", "alignment", "capability"}


def test_prefix_sharing_equals_flat_scoring(tiny):
    rng = np.random.default_rng(1)
    reqs = []
    for _ in range(25):
        ctx = tuple(rng.integers(0, 250, rng.integers(1, 40)).tolist())
        reqs += [Request(ctx, tuple(rng.integers(0, 250, rng.integers(1, 9)).tolist()))
                 for _ in range(rng.integers(1, 5))]
    flat = score_requests(tiny.model, reqs, pad_id=257, precision="fp32", share_prefix=False)
    for budget in (40, 100_000):
        shared = score_requests(tiny.model, reqs, pad_id=257, precision="fp32",
                                max_batch_tokens=budget)
        np.testing.assert_allclose(shared.logprob, flat.logprob, rtol=1e-4, atol=1e-4)
        assert shared.n_tokens.tolist() == flat.n_tokens.tolist()
