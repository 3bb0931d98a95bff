"""Turn probe items into token requests, with the model's chat template for conversation probes."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from flwr_trust.probes.suite import ProbeItem, ProbeSuite
from flwr_trust.scoring.requests import Request

_CACHE: dict[tuple[int, str], list[Request]] = {}
_LOCK = threading.Lock()


class Encoder:
    """Tokenizes contexts and continuations the same way for every mode."""

    def __init__(self, tokenizer: Any) -> None:
        self.tokenizer = tokenizer
        start = tokenizer.bos_token_id if tokenizer.bos_token_id is not None \
            else tokenizer.eos_token_id
        if start is None:
            raise ValueError("the tokenizer has neither a BOS nor an EOS token to start a text")
        self.start = (int(start),)
        self.has_chat = bool(getattr(tokenizer, "chat_template", None))

    def ids(self, text: str) -> tuple[int, ...]:
        return tuple(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def context(self, item: ProbeItem) -> tuple[int, ...]:
        """Start token + prompt, or the chat-rendered user turn with the assistant prefix."""
        if item.chat and self.has_chat:
            rendered = self.tokenizer.apply_chat_template(
                [{"role": "user", "content": item.prompt}], add_generation_prompt=True,
                tokenize=False)
            return self.ids(rendered)
        if item.chat:  # no template: a plain dialogue layout keeps the probe meaningful
            return self.start + self.ids(f"User: {item.prompt}\nAssistant:")
        return self.start + self.ids(item.prompt) if item.prompt else self.start

    def choice(self, text: str) -> tuple[int, ...]:
        return self.ids(text)


def choice_requests(suite: ProbeSuite, encoder: Encoder) -> list[Request]:
    """One request per (item, choice), in item order then choice order."""
    out = []
    for item in suite.items:
        if not item.choices:
            continue
        ctx = encoder.context(item)
        out.extend(Request(ctx, encoder.choice(c)) for c in item.choices)
    return out


def summed_choice_requests(suite: ProbeSuite, encoder: Encoder) -> list[Request]:
    """`choice_requests` for modes that compare choices by their *total* log-likelihood (bias,
    fairness, capability, calibration, memorization): the tokens all choices of an item start
    with move into the context. They add the same log-probability to every choice, so every
    comparison, argmax, softmax and rank is unchanged, and each is scored once instead of once
    per choice (minimal pairs share most of their words; canary candidates their first
    digits). Not for per-token means (alignment): there the prefix would change the mean."""
    out = []
    for item in suite.items:
        if not item.choices:
            continue
        conts = [encoder.choice(c) for c in item.choices]
        shared = 0
        limit = min(len(c) for c in conts) - 1  # every continuation keeps a token
        while shared < limit and all(c[shared] == conts[0][shared] for c in conts):
            shared += 1
        ctx = encoder.context(item) + conts[0][:shared]
        out.extend(Request(ctx, c[shared:]) for c in conts)
    return out


def cached_requests(suite: ProbeSuite, tokenizer: Any,
                    build: Callable[[ProbeSuite, Encoder], list[Request]]) -> list[Request]:
    """Tokenize a suite once per tokenizer and process (rounds re-probe the same suites)."""
    key = (id(tokenizer), f"{suite.mode}:{suite.hash}")
    with _LOCK:
        hit = _CACHE.get(key)
    if hit is None:
        hit = build(suite, Encoder(tokenizer))
        with _LOCK:
            _CACHE[key] = hit
    return hit
