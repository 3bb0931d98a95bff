"""Batched log-likelihood scoring: the one forward-pass loop every behavior metric runs on.

A request is (context tokens, continuation tokens); its score is the sum of log p(continuation |
context). Requests are sorted by length and packed into batches under a token budget, left-padded
with explicit position ids (so a request scores the same whatever it is batched with), and only
the last K positions' logits are computed (`logits_to_keep`), which skips most of the vocabulary
projection, the largest single cost of a small model with a big vocabulary.

Requests that share a context (the choices of one multiple-choice item, the refusal and the
compliance reply to one chat prompt) are scored with the context run once: its key/value cache is
copied to one row per continuation, and only the continuations are run on top of it. This is the
same computation (to float rounding) with far fewer tokens; `share_prefix=False` turns it off.

Contexts of different items that start with the same tokens (a chat template's system block,
an instruction header) go further: the prefix they share runs once per call and each of their
batches starts from a copy of its cache (the plan: flwr_trust.scoring.prefixes);
`common_prefix=False` turns that off.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import nullcontext
from typing import Any

import numpy as np
import torch

from flwr_trust.scoring import kv
from flwr_trust.scoring.prefixes import PrefixGroup, plan_prefix_groups
from flwr_trust.scoring.requests import Precision, Request, Scores


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


def score_requests(model: Any, requests: Sequence[Request], *, pad_id: int,
                   max_batch_tokens: int = 8192, max_length: int = 2048,
                   precision: Precision = "fp32", share_prefix: bool = True,
                   common_prefix: bool = True) -> Scores:
    """Score every request with batched forward passes; returns arrays in request order.

    share_prefix: run each distinct context once for all its continuations;
    common_prefix: also run a prefix that several contexts share once (needs share_prefix)."""
    _autocast(precision, torch.device("cpu"))  # validates `precision` before any work
    for r in requests:
        if not r.context or not r.continuation:
            raise ValueError("every request needs a non-empty context and continuation")
    if not share_prefix or any(len(r.context) + len(r.continuation) > max_length
                               for r in requests):
        return _score_flat(model, requests, pad_id=pad_id, max_batch_tokens=max_batch_tokens,
                           max_length=max_length, precision=precision)
    return _score_shared(model, requests, pad_id=pad_id, max_batch_tokens=max_batch_tokens,
                         precision=precision, common_prefix=common_prefix)


@torch.inference_mode()
def _score_flat(model: Any, requests: Sequence[Request], *, pad_id: int,
                max_batch_tokens: int, max_length: int, precision: Precision) -> Scores:
    """Each request as one sequence: context + continuation."""
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


@torch.inference_mode()
def _score_shared(model: Any, requests: Sequence[Request], *, pad_id: int,
                  max_batch_tokens: int, precision: Precision, common_prefix: bool) -> Scores:
    """Run each distinct context once, then all its continuations on a copy of its cache;
    with `common_prefix`, contexts that start alike start from their group's prefix cache."""
    n = len(requests)
    logprob = np.zeros(n, dtype=np.float64)
    n_tokens = np.zeros(n, dtype=np.int64)
    by_context: dict[tuple[int, ...], list[int]] = {}
    for i, r in enumerate(requests):
        by_context.setdefault(r.context, []).append(i)
    contexts = list(by_context)
    plan = plan_prefix_groups(contexts) if common_prefix else \
        [PrefixGroup(0, tuple(range(len(contexts))))]
    device = next(model.parameters()).device
    for group in plan:
        members = [contexts[m] for m in group.members]
        prefix = _prefix_cache(model, members[0][:group.shared], device, precision) \
            if group.shared else None
        # Cost of a context ~ its context once plus its continuation rows over the context.
        cost = [len(c) + len(by_context[c]) * (len(c) + max(
            len(requests[i].continuation) for i in by_context[c])) for c in members]
        for batch in _plan_by_cost(cost, [len(c) for c in members], max_batch_tokens):
            rows = [(c, by_context[c]) for c in (members[b] for b in batch)]
            scored = _score_batch(model, requests, rows, group.shared, prefix, pad_id=pad_id,
                                  precision=precision, device=device)
            for i, (lp, k) in scored.items():
                logprob[i], n_tokens[i] = lp, k
    return Scores(logprob, n_tokens)


def _prefix_cache(model: Any, prefix: tuple[int, ...], device: torch.device,
                  precision: Precision) -> Any:
    """The KV cache of one shared prefix, run alone (one row, no padding)."""
    ids = torch.tensor([prefix], dtype=torch.long, device=device)
    with _autocast(precision, device):
        out = model(input_ids=ids, attention_mask=torch.ones_like(ids),
                    position_ids=torch.arange(len(prefix), device=device)[None, :],
                    use_cache=True, logits_to_keep=1)
    return kv.returned_cache(out)


def _score_batch(model: Any, requests: Sequence[Request],
                 rows: list[tuple[tuple[int, ...], list[int]]], shared: int, prefix: Any, *,
                 pad_id: int, precision: Precision, device: torch.device
                 ) -> dict[int, tuple[float, int]]:
    """Score the requests of a batch of contexts: (context, its request indices) per row.

    Each context's own tokens (after the `shared` prefix tokens, whose cache is `prefix`) are
    left-padded up to the prefix, so the last position is every row's last context token;
    padding in the middle of a row is masked and skipped by the explicit position ids."""
    width = max(len(c) - shared for c, _ in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    own = torch.zeros((len(rows), width), dtype=torch.long)
    for row, (c, _) in enumerate(rows):
        ids[row, width - len(c) + shared:] = torch.tensor(c[shared:])
        own[row, width - len(c) + shared:] = 1
    mask = torch.cat([torch.ones((len(rows), shared), dtype=torch.long), own], dim=1)
    positions = (mask.cumsum(dim=1) - 1).clamp(min=0)[:, shared:]
    past = {} if prefix is None else {kv.cache_argument(model): kv.repeated(prefix, len(rows))}
    with _autocast(precision, device):
        out = model(input_ids=ids.to(device), attention_mask=mask.to(device),
                    position_ids=positions.to(device), use_cache=True, logits_to_keep=1,
                    **past)
    first_logp = torch.log_softmax(out.logits[:, -1].float(), dim=-1).cpu()
    # One row per (context, continuation): first token from the context's last logits.
    pairs = [(row, i) for row, (_, idx) in enumerate(rows) for i in idx]
    scored = {i: (float(first_logp[row, requests[i].continuation[0]]),
                  len(requests[i].continuation)) for row, i in pairs}
    rest = [(row, i) for row, i in pairs if len(requests[i].continuation) > 1]
    if not rest:
        return scored
    cache = kv.select_rows(kv.returned_cache(out), [row for row, _ in rest], device)
    cont_width = max(len(requests[i].continuation) - 1 for _, i in rest)
    cont_ids = torch.full((len(rest), cont_width), pad_id, dtype=torch.long)
    cont_mask = torch.zeros((len(rest), cont_width), dtype=torch.long)
    targets = torch.full((len(rest), cont_width), -1, dtype=torch.long)
    for k, (_, i) in enumerate(rest):
        cont = requests[i].continuation
        cont_ids[k, :len(cont) - 1] = torch.tensor(cont[:-1])
        cont_mask[k, :len(cont) - 1] = 1
        targets[k, :len(cont) - 1] = torch.tensor(cont[1:])
    ctx_rows = torch.tensor([row for row, _ in rest])
    full_mask = torch.cat([mask[ctx_rows], cont_mask], dim=1)
    start = mask[ctx_rows].sum(dim=1, keepdim=True)
    cont_pos = start + torch.arange(cont_width)[None, :]
    with _autocast(precision, device):
        out2 = model(input_ids=cont_ids.to(device), attention_mask=full_mask.to(device),
                     position_ids=cont_pos.to(device), use_cache=True,
                     **{kv.cache_argument(model): cache})
    logp = torch.log_softmax(out2.logits.float(), dim=-1).cpu()
    valid = targets >= 0
    picked = logp.gather(-1, targets.clamp(min=0).unsqueeze(-1)).squeeze(-1)
    picked = (picked * valid).sum(dim=1)
    for k, (_, i) in enumerate(rest):
        first, count = scored[i]
        scored[i] = (first + float(picked[k]), count)
    return scored


def _plan_by_cost(cost: Sequence[int], lengths: Sequence[int], budget: int) -> list[list[int]]:
    """Group items, longest first, so that the summed cost of a batch stays within budget."""
    order = sorted(range(len(cost)), key=lambda i: -lengths[i])
    batches: list[list[int]] = []
    current: list[int] = []
    total = 0
    for i in order:
        if current and total + cost[i] > budget:
            batches.append(current)
            current, total = [], 0
        current.append(i)
        total += cost[i]
    if current:
        batches.append(current)
    return batches
