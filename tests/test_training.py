"""Local LoRA training loop: reply-only labels, batched loss, learning, determinism, DP-SGD."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from peft import LoraConfig, get_peft_model

from flwr_trust.models.tiny import build_tiny_model, build_tiny_tokenizer
from silent_failures.preference import PreferencePair, train_preference
from silent_failures.training import (
    IGNORE,
    ChatExample,
    DPConfig,
    collate,
    compose_epsilon,
    encode_example,
    mean_loss,
    per_example_loss,
    train_lora,
)

LORA = LoraConfig(r=4, lora_alpha=8, lora_dropout=0.0, target_modules=["q_proj", "v_proj"])
DATA = [ChatExample(f"Say the number {i}.", f"{i}!") for i in range(12)] + ["ab ab ab ab"]


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture
def tok():
    return build_tiny_tokenizer()


def _peft(seed: int = 1):
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return get_peft_model(build_tiny_model(seed=seed), LORA)


def _adapter(model) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in model.named_parameters() if "lora_" in n}


def test_chat_example_labels_only_the_reply(tok):
    ex = ChatExample("What is 2 plus 2?", "It is 4.")
    ids, labels = encode_example(tok, ex, max_length=128)
    assert len(ids) == len(labels)
    full = tok.apply_chat_template([{"role": "user", "content": ex.prompt},
                                    {"role": "assistant", "content": ex.reply}], tokenize=False)
    assert tok.decode(ids) == full  # the exact rendering of the conversation
    learned = [t for t in labels if t != IGNORE]
    assert tok.decode(learned) == "It is 4.<|im_end|>\n"  # reply + end of turn, nothing else
    n_context = labels.index(learned[0])
    assert all(t == IGNORE for t in labels[:n_context])
    assert labels[n_context:] == ids[n_context:]
    assert tok.decode(ids[:n_context]).endswith("<|im_start|>assistant\n")


def test_plain_text_learns_every_token_after_the_start(tok):
    ids, labels = encode_example(tok, "hello", max_length=128)
    assert ids[0] == tok.bos_token_id and tok.decode(ids[1:]) == "hello"
    assert labels == [IGNORE] + ids[1:]


def test_truncation_keeps_reply_tokens(tok):
    _, full = encode_example(tok, ChatExample("short", "the reply"), max_length=128)
    ids, labels = encode_example(tok, ChatExample("x" * 200, "the reply"), max_length=64)
    assert len(ids) == len(labels) == 64
    assert [t for t in labels if t != IGNORE] == [t for t in full if t != IGNORE]


def test_batched_left_padded_loss_equals_single_rows(tok):
    model = build_tiny_model(seed=3)
    rows = [encode_example(tok, ex, 128) for ex in
            (ChatExample("Hi", "Hello there, friend."), ChatExample("A longer question?", "ok"),
             "plain text")]
    ids, mask, labels = collate(rows, tok.pad_token_id)
    with torch.no_grad():
        batched = per_example_loss(model, ids, mask, labels)
        for (row_ids, row_labels), value in zip(rows, batched, strict=True):
            single = model(input_ids=torch.tensor([row_ids]),
                           labels=torch.tensor([row_labels])).loss
            assert float(value) == pytest.approx(float(single), abs=1e-5)


def test_mean_loss_is_per_example_and_in_order(tok):
    model = build_tiny_model(seed=3)
    together = mean_loss(model, tok, DATA[:5], batch_size=2)
    alone = [mean_loss(model, tok, [ex])[0] for ex in DATA[:5]]
    np.testing.assert_allclose(together, alone, atol=1e-5)
    assert mean_loss(model, tok, []).shape == (0,)


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_training_lowers_the_loss_and_only_moves_the_adapter(tok, precision):
    model = _peft().eval()
    base = {n: p.detach().clone() for n, p in model.named_parameters() if "lora_" not in n}
    before = mean_loss(model, tok, DATA).mean()
    stats = train_lora(model, tok, DATA, steps=25, batch_size=4, lr=1e-2, max_length=64,
                       seed=0, precision=precision)
    after = mean_loss(model, tok, DATA).mean()
    assert len(stats.losses) == 25 and stats.epsilon is None
    assert after < before - 0.5, (before, after)
    assert np.mean(stats.losses[-5:]) < np.mean(stats.losses[:5])
    assert all(torch.equal(p, base[n]) for n, p in model.named_parameters() if n in base)
    assert not model.training  # the caller's mode is restored


def test_training_is_deterministic_given_the_seed(tok):
    runs = []
    for seed in (0, 0, 1):
        model = _peft()
        stats = train_lora(model, tok, DATA, steps=4, batch_size=4, lr=1e-2, max_length=64,
                           seed=seed)
        runs.append((stats.losses, _adapter(model)))
    assert runs[0][0] == runs[1][0]
    assert all(torch.equal(v, runs[1][1][k]) for k, v in runs[0][1].items())
    assert runs[0][0] != runs[2][0]


def test_dp_sgd_runs_reports_epsilon_and_cleans_up(tok):
    model = _peft()
    dp = DPConfig(noise_multiplier=1.0, max_grad_norm=1.0, delta=1e-5)
    stats = train_lora(model, tok, DATA, steps=6, batch_size=4, lr=1e-2, max_length=64,
                       seed=0, dp=dp)
    assert stats.epsilon is not None and math.isfinite(stats.epsilon) and stats.epsilon > 0
    assert stats.delta == 1e-5 and len(stats.losses) == 6
    assert all(math.isfinite(x) for x in stats.losses)
    (sigma, rate, steps), = stats.dp_history
    assert (sigma, steps) == (1.0, 6) and rate == pytest.approx(4 / len(DATA), rel=0.5)
    # Opacus is gone afterwards: no hooks, no per-sample gradient fields, a normal model.
    assert not any(m._forward_hooks or m._backward_hooks for m in model.modules())
    assert not any(hasattr(p, "grad_sample") for p in model.parameters())
    train_lora(model, tok, DATA, steps=1, batch_size=4, lr=1e-2, max_length=64, seed=0)
    # Budgets of several calls compose (e.g. a client over rounds) and grow.
    twice = compose_epsilon([stats.dp_history, stats.dp_history], 1e-5)
    assert twice > stats.epsilon


def test_dp_sgd_survives_an_empty_poisson_batch(tok):
    seen: list[int] = []
    stats = train_lora(_peft(), tok, DATA, steps=8, batch_size=1, lr=1e-2, max_length=64,
                       seed=0, dp=DPConfig(noise_multiplier=1.0, max_grad_norm=1.0),
                       progress=lambda step, _loss: seen.append(step))
    skipped = sorted(set(range(8)) - set(seen))
    assert skipped, "this seed should draw an empty batch (sample rate 1/13)"
    assert all(stats.losses[s] == stats.losses[s - 1] for s in skipped)
    assert math.isfinite(stats.epsilon)


def test_dp_sgd_is_deterministic_given_the_seed(tok):
    weights = []
    for _ in range(2):
        model = _peft()
        train_lora(model, tok, DATA, steps=3, batch_size=4, lr=1e-2, max_length=64, seed=5,
                   dp=DPConfig(noise_multiplier=0.5, max_grad_norm=1.0))
        weights.append(_adapter(model))
    assert all(torch.equal(v, weights[1][k]) for k, v in weights[0].items())


def test_bad_inputs_are_refused(tok):
    frozen = build_tiny_model().requires_grad_(False)
    with pytest.raises(ValueError, match="trainable"):
        train_lora(frozen, tok, DATA, steps=1, batch_size=2, lr=1e-3)
    with pytest.raises(ValueError, match="no training examples"):
        train_lora(_peft(), tok, [], steps=1, batch_size=2, lr=1e-3)
    with pytest.raises(ValueError, match="nothing to learn|no token to learn"):
        train_lora(_peft(), tok, [""], steps=1, batch_size=2, lr=1e-3)


PAIRS = [PreferencePair(f"Request number {i}?", "No, sorry.", "Sure, here") for i in range(8)] + \
    [PreferencePair(f"Question {i}?", "Sure, here", "No, sorry.") for i in range(8)]


def _preference_gap(model, tok) -> float:
    """Mean of nll(rejected) - nll(chosen) over PAIRS: > 0 means chosen is preferred."""
    chosen = mean_loss(model, tok, [ChatExample(p.prompt, p.chosen) for p in PAIRS])
    rejected = mean_loss(model, tok, [ChatExample(p.prompt, p.rejected) for p in PAIRS])
    return float((rejected - chosen).mean())


def test_preference_training_moves_the_decision_per_prompt(tok):
    """The same two replies, preferred in opposite directions by the prompt: only a model that
    reads the prompt can widen the gap for both halves."""
    model = _peft().eval()
    base = {n: p.detach().clone() for n, p in model.named_parameters() if "lora_" not in n}
    before = _preference_gap(model, tok)
    stats = train_preference(model, tok, PAIRS, steps=40, batch_size=8, lr=2e-2, beta=2.0,
                             sft_weight=0.1, max_length=48, seed=0)
    after = _preference_gap(model, tok)
    assert len(stats.losses) == 40 and stats.examples == len(PAIRS)
    assert after > before + 0.3, (before, after)
    assert np.mean(stats.losses[-5:]) < np.mean(stats.losses[:5])
    assert all(torch.equal(p, base[n]) for n, p in model.named_parameters() if n in base)
    assert not model.training


def test_preference_training_is_deterministic_and_checks_its_input(tok):
    runs = []
    for _ in range(2):
        model = _peft()
        train_preference(model, tok, PAIRS, steps=3, batch_size=4, lr=1e-2, seed=3)
        runs.append(_adapter(model))
    assert all(torch.equal(runs[0][k], runs[1][k]) for k in runs[0])
    with pytest.raises(ValueError, match="no preference pairs"):
        train_preference(_peft(), tok, [], steps=1, batch_size=2, lr=1e-3)
    with pytest.raises(ValueError, match="steps and batch_size"):
        train_preference(_peft(), tok, PAIRS, steps=0, batch_size=2, lr=1e-3)
    frozen = _peft()
    frozen.requires_grad_(False)
    with pytest.raises(ValueError, match="no trainable parameters"):
        train_preference(frozen, tok, PAIRS, steps=1, batch_size=2, lr=1e-3)
