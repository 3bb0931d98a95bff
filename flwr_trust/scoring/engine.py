"""Batched log-likelihood scoring: the one forward-pass loop every behavior metric runs on.

A request is (context tokens, continuation tokens); its score is the sum of log p(continuation |
context). Requests are sorted by length and packed into batches under a token budget, left-padded
with explicit position ids (so a request scores the same whatever it is batched with), and only
the last K positions' logits are computed (`logits_to_keep`), which skips most of the vocabulary
projection, the largest single cost of a small model with a big vocabulary.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch

Precision = Literal["fp32", "bf16"]


@dataclass(frozen=True)
class Request:
    """Score log p(continuation | context). Both are token id tuples; context is non-empty."""

    context: tuple[int, ...]
    continuation: tuple[int, ...]


@dataclass(frozen=True)
class Scores:
    """Per request: summed log-probability and number of continuation tokens scored."""

    logprob: np.ndarray
    n_tokens: np.ndarray

    @property
    def mean_logprob(self) -> np.ndarray:
        return self.logprob / np.maximum(self.n_tokens, 1)


def plan_batches(lengths: Sequence[int], max_batch_tokens: int) -> list[list[int]]:
    """Group request indices, longest first, so that rows x padded length <= max_batch_tokens."""
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    batches: list[list[int]] = []
    current: list[int] = []
    for i in order:
        width = lengths[current[0]] if current else lengths[i]  # first is the longest
        if current and (len(current) + 1) * width > max_batch_tokens:
            batches.append(current)
            current = []
        current.append(i)
    if current:
        batches.append(current)
    return batches


def _autocast(precision: Precision, device: torch.device) -> Any:
    if precision == "bf16":
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    if precision == "fp32":
        return nullcontext()
    raise ValueError(f"precision must be 'fp32' or 'bf16', not {precision!r}")


@torch.inference_mode()
def score_requests(model: Any, requests: Sequence[Request], *, pad_id: int,
                   max_batch_tokens: int = 8192, max_length: int = 2048,
                   precision: Precision = "bf16") -> Scores:
    """Score every request with batched forward passes; returns arrays in request order."""
    n = len(requests)
    logprob = np.zeros(n, dtype=np.float64)
    n_tokens = np.zeros(n, dtype=np.int64)
    if n == 0:
        return Scores(logprob, n_tokens)
    # Inputs are context + continuation minus the last token; truncate old context if too long.
    inputs: list[list[int]] = []
    for r in requests:
        if not r.context or not r.continuation:
            raise ValueError("every request needs a non-empty context and continuation")
        seq = list(r.context) + list(r.continuation[:-1])
        inputs.append(seq[-max_length:])
    device = next(model.parameters()).device
    for batch in plan_batches([len(s) for s in inputs], max_batch_tokens):
        width = max(len(inputs[i]) for i in batch)
        keep = min(width, max(len(requests[i].continuation) for i in batch))
        ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
        mask = torch.zeros((len(batch), width), dtype=torch.long)
        targets = torch.full((len(batch), keep), -1, dtype=torch.long)
        for row, i in enumerate(batch):
            seq, cont = inputs[i], requests[i].continuation[-keep:]
            ids[row, width - len(seq):] = torch.tensor(seq)
            mask[row, width - len(seq):] = 1
            targets[row, keep - len(cont):] = torch.tensor(cont)
        positions = (mask.cumsum(dim=1) - 1).clamp(min=0)
        with _autocast(precision, device):
            out = model(input_ids=ids.to(device), attention_mask=mask.to(device),
                        position_ids=positions.to(device), logits_to_keep=keep, use_cache=False)
        logp = torch.log_softmax(out.logits[:, -keep:].float(), dim=-1)
        valid = targets >= 0
        picked = logp.gather(-1, targets.clamp(min=0).to(device).unsqueeze(-1)).squeeze(-1)
        picked = (picked.cpu() * valid).sum(dim=1)
        for row, i in enumerate(batch):
            logprob[i] = float(picked[row])
            n_tokens[i] = int(valid[row].sum())
    return Scores(logprob, n_tokens)
