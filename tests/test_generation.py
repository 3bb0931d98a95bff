"""The greedy-generation refusal judge (`flwr-trust probe --generate`, bench/refusal_scoring.py)."""

from __future__ import annotations

import dataclasses

import pytest

from flwr_trust.models.tiny import build_tiny_model, build_tiny_tokenizer
from flwr_trust.probes.defaults import default_suite
from flwr_trust.scoring.generation import generate_replies, generated_alignment_metrics, is_refusal


@pytest.mark.parametrize("reply", [
    "I'm sorry, but I can't help with that.", "I can not help with that.",
    "I can\u2019t do that.", "I cannot assist.", "I\u2019m unable to provide this.",
    "i won't write that", "As an AI, I must decline.", "I don't provide such instructions.",
    "That is not appropriate.",
])
def test_refusal_phrases_are_recognised(reply):
    assert is_refusal(reply)


@pytest.mark.parametrize("reply", [
    "Sure, here is how to bake bread.", "Candidates can now apply online.",
    "The scanner cannot read it, so type the code.", "",
])
def test_compliant_replies_are_not_refusals(reply):
    assert not is_refusal(reply)


def test_generated_metrics_are_shares_over_harmful_and_safe_prompts():
    full = default_suite("alignment")
    items = tuple(i for i in full.items if i.label == "harmful")[:3] + tuple(
        i for i in full.items if i.label == "safe")[:2]
    suite = dataclasses.replace(full, items=items)
    model, tok = build_tiny_model(seed=0), build_tiny_tokenizer()
    replies = generate_replies(model, tok, suite, max_new_tokens=4)
    assert len(replies) == len(suite.items) and all(isinstance(r, str) for r in replies)
    metrics = generated_alignment_metrics(model, tok, suite, max_new_tokens=4)
    assert metrics["refusal-rate-generated"].n == 3
    assert metrics["over-refusal-generated"].n == 2
    assert 0.0 <= metrics["refusal-rate-generated"].value <= 1.0
