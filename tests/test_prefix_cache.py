"""Cross-item prefix reuse: the plan (flwr_trust.scoring.prefixes) and the engine's exactness.

Scores with a shared prefix's KV cache reused must equal scores without reuse (to float
rounding) for every mode's requests, with a chat template that has a system block, under any
batching; the token count the report prints must be what the engine really forwards.
"""

from __future__ import annotations

import numpy as np
import pytest

from flwr_trust import modes as registry
from flwr_trust.models.loader import LoadedModel
from flwr_trust.models.tiny import build_tiny_model, build_tiny_tokenizer
from flwr_trust.probes import default_suites
from flwr_trust.probes.sampling import sample_suites
from flwr_trust.scoring.encoding import Encoder
from flwr_trust.scoring.engine import score_requests
from flwr_trust.scoring.prefixes import (
    PREFIX_OVERHEAD,
    forwarded_tokens,
    plan_prefix_groups,
)
from flwr_trust.scoring.requests import Request, Scores
from flwr_trust.scoring.runner import profile_model

SYSTEM = "You are a careful assistant. Answer briefly and refuse harmful requests."
PAD = 257


@pytest.fixture
def chat_tiny(one_thread):
    """The tiny model with a chat template that opens every conversation with a system block."""
    return LoadedModel(build_tiny_model(seed=1), build_tiny_tokenizer(SYSTEM), "tiny-system")


def _check_plan(contexts, groups):
    """Every context in exactly one group; members longer than, and sharing, the prefix."""
    seen = sorted(i for g in groups for i in g.members)
    assert seen == list(range(len(contexts)))
    for g in groups:
        assert all(len(contexts[i]) > g.shared for i in g.members)
        if g.shared:
            assert len(g.members) >= 2
            head = contexts[g.members[0]][:g.shared]
            assert all(contexts[i][:g.shared] == head for i in g.members)
    assert sum(1 for g in groups if not g.shared) <= 1


def test_plan_shares_a_system_block_and_respects_the_overhead():
    system = tuple(range(100, 140))
    contexts = [system + (i, i + 1) for i in range(10)] + [(1, 2, 3), (1, 2, 4), (7,)]
    groups = plan_prefix_groups(contexts)
    _check_plan(contexts, groups)
    shared = [g for g in groups if g.shared]
    assert [(g.shared, sorted(g.members)) for g in shared] == [(40, list(range(10)))]
    # (1, 2, 3) and (1, 2, 4) share 2 tokens: saving 2 forwards does not pay an extra call.
    assert sorted(next(g for g in groups if not g.shared).members) == [10, 11, 12]
    assert plan_prefix_groups([(1, 2, 3), (1, 2, 4)], overhead=0)[0].shared == 2
    assert plan_prefix_groups([]) == []
    assert plan_prefix_groups([(5, 6)]) == [plan_prefix_groups([(5, 6)])[0]]
    with pytest.raises(ValueError, match="at least one token"):
        plan_prefix_groups([(1,), ()])


def test_plan_leaves_a_token_to_a_context_that_is_the_shared_prefix():
    head = tuple(range(50))
    contexts = [head, head + (60,), head + (61, 62)]
    groups = plan_prefix_groups(contexts)
    _check_plan(contexts, groups)
    assert groups[0].shared == 49 and sorted(groups[0].members) == [0, 1, 2]


def test_plan_on_random_prefix_trees_never_costs_more_than_no_reuse():
    rng = np.random.default_rng(3)
    for _ in range(200):
        stems = [tuple(rng.integers(0, 5, rng.integers(0, 60)).tolist()) for _ in range(4)]
        contexts = list(dict.fromkeys(
            stems[rng.integers(0, 4)] + tuple(rng.integers(0, 5, rng.integers(1, 20)).tolist())
            for _ in range(rng.integers(1, 30))))
        overhead = int(rng.choice([0, 8, PREFIX_OVERHEAD]))
        groups = plan_prefix_groups(contexts, overhead=overhead)
        _check_plan(contexts, groups)
        reqs = [Request(c, (1,)) for c in contexts]
        planned = sum(g.shared + overhead for g in groups if g.shared) + sum(
            len(contexts[i]) - g.shared for g in groups for i in g.members)
        assert planned <= forwarded_tokens(reqs, "context")
        assert forwarded_tokens(reqs, "prefix", overhead=overhead) <= \
            forwarded_tokens(reqs, "context")


def _assert_same(a: Scores, b: Scores, tol: float = 1e-4) -> None:
    np.testing.assert_allclose(a.logprob, b.logprob, rtol=tol, atol=tol)
    assert a.n_tokens.tolist() == b.n_tokens.tolist()


def _edge_requests() -> list[Request]:
    """Contexts of many lengths under two shared heads of different lengths (their prefixes
    run in one padded batch, their contexts mix in batches), one context equal to a head,
    contexts sharing nothing, and continuations of 1 to 7 tokens (left, middle and right
    padding)."""
    head = tuple(range(3, 43))
    other = tuple(range(100, 170))
    return [
        Request(other + (1, 2), (3, 4)),
        Request(other + (5,), (6,)),
        Request(other + (7, 8, 9, 10, 11, 12), (13, 14, 15)),
        Request(head, (50, 51, 52)),
        Request(head + (60,), (70,)),
        Request(head + (60,), (71, 72, 73, 74, 75, 76, 77)),
        Request(head + (61, 62, 63, 64, 65, 66, 67, 68, 69, 70, 71), (80, 81)),
        Request(head + (61, 62), (90,)),
        Request(head[:10] + (99, 98), (5, 6, 7)),
        Request((200,), (201, 202)),
        Request((200, 201, 202, 203), (204,)),
    ]


def test_edge_cases_score_the_same_under_any_batching(chat_tiny):
    reqs = _edge_requests()
    contexts = list(dict.fromkeys(r.context for r in reqs))
    shared = sorted(g.shared for g in plan_prefix_groups(contexts) if g.shared)
    assert shared == [39, 70]  # the first head minus one token (a context equals it), the other
    model = chat_tiny.model
    flat = score_requests(model, reqs, pad_id=PAD, share_prefix=False)
    unshared = score_requests(model, reqs, pad_id=PAD, common_prefix=False)
    _assert_same(unshared, flat)
    for budget in (1, 60, 300, 100_000):  # 1: every context is a batch of one
        _assert_same(score_requests(model, reqs, pad_id=PAD, max_batch_tokens=budget), flat)
    _assert_same(score_requests(model, reqs[:1], pad_id=PAD), flat.__class__(
        flat.logprob[:1], flat.n_tokens[:1]))
    bf16 = score_requests(model, reqs, pad_id=PAD, precision="bf16")
    np.testing.assert_allclose(bf16.logprob, flat.logprob, rtol=0.05, atol=0.5)


def test_length_chunks_trade_padding_against_calls():
    from flwr_trust.scoring.batching import length_chunks

    lengths = [16, 16, 15, 10, 9] + [1] * 35
    assert length_chunks(lengths, call=64) == [list(range(5)), list(range(5, 40))]
    assert length_chunks(lengths, call=1000) == [list(range(40))]
    assert length_chunks(lengths, call=0) == [[0, 1], [2], [3], [4], list(range(5, 40))]
    assert length_chunks([3], call=0) == [[0]]


def test_continuations_split_by_length_score_the_same(chat_tiny, monkeypatch):
    """With free forward calls every continuation length gets its own call (copies of the
    context cache's rows); the scores do not change."""
    from flwr_trust.scoring import engine

    reqs = _edge_requests()
    flat = score_requests(chat_tiny.model, reqs, pad_id=PAD, share_prefix=False)
    calls = [0]
    handle = chat_tiny.model.register_forward_pre_hook(
        lambda *_: calls.__setitem__(0, calls[0] + 1))
    try:
        default = score_requests(chat_tiny.model, reqs, pad_id=PAD)
        few = calls[0]
        monkeypatch.setattr(engine, "CALL_TOKENS", 0)
        calls[0] = 0
        split = score_requests(chat_tiny.model, reqs, pad_id=PAD)
    finally:
        handle.remove()
    assert calls[0] > few
    _assert_same(default, flat)
    _assert_same(split, flat)


def test_peft_wrapped_model_scores_the_same(chat_tiny):
    from peft import LoraConfig, get_peft_model

    model = get_peft_model(chat_tiny.model, LoraConfig(r=4, target_modules=["q_proj", "v_proj"],
                                                       init_lora_weights=False))
    model.eval()
    reqs = _edge_requests()
    _assert_same(score_requests(model, reqs, pad_id=PAD),
                 score_requests(model, reqs, pad_id=PAD, share_prefix=False))


@pytest.fixture(scope="module")
def sampled():
    return sample_suites(default_suites(), 1, 6)


@pytest.mark.parametrize("mode", registry.ids())
def test_every_mode_scores_the_same_with_and_without_reuse(chat_tiny, sampled, mode):
    suite = sampled[mode]
    reqs = registry.get(mode).requests(suite, Encoder(chat_tiny.tokenizer))
    model = chat_tiny.model
    flat = score_requests(model, reqs, pad_id=PAD, share_prefix=False)
    for budget in (200, 100_000):
        got = score_requests(model, reqs, pad_id=PAD, max_batch_tokens=budget)
        _assert_same(got, flat)
        declared = registry.get(mode)
        with_reuse, without = declared.compute(suite, got), declared.compute(suite, flat)
        for name, mv in without.items():
            assert with_reuse[name].value == pytest.approx(mv.value, abs=1e-4, nan_ok=True)
    if mode == "alignment":  # chat probes: the system block is shared
        assert forwarded_tokens(reqs, "prefix") < forwarded_tokens(reqs, "context") - 5 * len(
            SYSTEM)


def test_profile_is_the_same_whatever_the_tokenizer_padding_side(chat_tiny, sampled):
    """The engine pads by itself: the tokenizer's padding side changes nothing."""
    profiles = []
    for side in ("left", "right"):
        chat_tiny.tokenizer.padding_side = side
        profiles.append(profile_model(chat_tiny.model, chat_tiny.tokenizer, sampled))
    assert 0 < profiles[0].extra["forwarded_tokens"] < profiles[0].extra["tokens"]
    for mode, metrics in profiles[0].metrics.items():
        for name, mv in metrics.items():
            assert profiles[1].metrics[mode][name].value == pytest.approx(mv.value, nan_ok=True)


def test_forwarded_tokens_count_what_the_engine_runs(chat_tiny, sampled):
    reqs = [r for mode in ("alignment", "capability", "fairness")
            for r in registry.get(mode).requests(sampled[mode], Encoder(chat_tiny.tokenizer))]
    reqs += _edge_requests()
    seen = [0]

    def count(_module, _args, kwargs):
        ids, mask = kwargs["input_ids"], kwargs["attention_mask"]
        seen[0] += int(mask[:, -ids.shape[1]:].sum())

    handle = chat_tiny.model.register_forward_pre_hook(count, with_kwargs=True)
    try:
        for sharing, kw in (("none", {"share_prefix": False}),
                            ("context", {"common_prefix": False}), ("prefix", {})):
            seen[0] = 0
            score_requests(chat_tiny.model, reqs, pad_id=PAD, max_batch_tokens=500, **kw)
            assert seen[0] == forwarded_tokens(reqs, sharing), sharing
    finally:
        handle.remove()
    assert forwarded_tokens(reqs, "prefix") < forwarded_tokens(reqs, "context") < \
        forwarded_tokens(reqs, "none")
    with pytest.raises(ValueError, match="sharing must be"):
        forwarded_tokens(reqs, "all")  # type: ignore[arg-type]
