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
an instruction header) go further: the prefixes they share run once per call, in one batch,
and each context starts from a copy of its prefix's cache row (the plan:
flwr_trust.scoring.prefixes); `common_prefix=False` turns that off.

Padding is work too: contexts are batched by the length of their continuations, and a batch's
continuations run in length runs wherever the padding saved outweighs a forward call
(`CALL_TOKENS`). Copies of a cache's rows (`kv.rows_of`) are transient and bounded by the
batch's own cache.

Memory is capped besides the token budget: a batch's logits (`MAX_LOGIT_BYTES`; with a large
vocabulary the logits of a full token budget of continuations dwarf the model's activations)
and the key/value cache of a batch of contexts (`MAX_CACHE_BYTES`). Everything runs on the
model's own device and dtype (`placement`). The index arithmetic that cuts batches and runs
within these budgets is in `batching`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from flwr_trust.scoring import kv
from flwr_trust.scoring.batching import (
    cache_tokens,
    length_chunks,
    logit_parts,
    logit_positions,
    plan_batches,
    plan_by_cost,
)
from flwr_trust.scoring.placement import Placement, pick_placement, weights_cast_once
from flwr_trust.scoring.prefixes import PrefixGroup, Sharing, plan_prefix_groups
from flwr_trust.scoring.requests import PRECISIONS, Precision, Request, Scores

CALL_TOKENS = 64
"""A forward call costs about as much as this many token forwards (module dispatch, kernel
launches; far more on a GPU than on a CPU relative to a token): a continuation batch is split
by length only where the padding saved exceeds this."""


MAX_LOGIT_BYTES = 64 * 2**20
"""The most memory one batch's logits may take, with their log-softmax (fp32, so 8 bytes per
vocabulary entry and position): a batch of 8192 continuation tokens over a 49k vocabulary would
otherwise hold 3 GiB, more than a client's whole training step on a small model. The smaller
batches were not slower on a SmolLM2-shaped model on the CPU (bench/client_memory.py
--model smollm2-shaped:<layers> builds one)."""

MAX_CACHE_BYTES = 64 * 2**20
"""The most memory the key/value cache of one batch of contexts may take (it is kept for every
layer while the continuations run, and rows of it are copied): SmolLM2 holds 46 KiB per token
in fp32, so the 8192-token default budget would keep 377 MiB."""


def score_requests(model: Any, requests: Sequence[Request], *, pad_id: int,
                   max_batch_tokens: int = 8192, max_length: int = 2048,
                   precision: Precision = "fp32", share_prefix: bool = True,
                   common_prefix: bool = True) -> Scores:
    """Score every request with batched forward passes; returns arrays in request order.

    share_prefix: run each distinct context once for all its continuations;
    common_prefix: also run a prefix that several contexts share once (needs share_prefix).
    They run on the model's own device and dtype (`placement.pick_placement`): `precision`
    only adds a bf16 autocast (always for bf16, where native for auto)."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, not {precision!r}")
    for r in requests:
        if not r.context or not r.continuation:
            raise ValueError("every request needs a non-empty context and continuation")
    sharing = sharing_used(requests, max_length=max_length, share_prefix=share_prefix,
                           common_prefix=common_prefix)
    place = pick_placement(model, precision)
    with weights_cast_once(model, place):
        if sharing == "none":
            return _score_flat(model, requests, pad_id=pad_id,
                               max_batch_tokens=max_batch_tokens, max_length=max_length,
                               place=place)
        return _score_shared(model, requests, pad_id=pad_id, max_batch_tokens=max_batch_tokens,
                             place=place, common_prefix=sharing == "prefix")


def sharing_used(requests: Sequence[Request], *, max_length: int = 2048,
                 share_prefix: bool = True, common_prefix: bool = True) -> Sharing:
    """What `score_requests` runs once with these options: requests longer than `max_length`
    are truncated from the left, which only the unshared path does."""
    if not share_prefix or any(len(r.context) + len(r.continuation) > max_length
                               for r in requests):
        return "none"
    return "prefix" if common_prefix else "context"


def _score_flat(model: Any, requests: Sequence[Request], *, pad_id: int,
                max_batch_tokens: int, max_length: int, place: Placement) -> Scores:
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
    for batch in plan_batches([len(s) for s in inputs], max_batch_tokens,
                              keeps=[len(r.continuation) for r in requests],
                              max_logits=logit_positions(model, MAX_LOGIT_BYTES)):
        picked, valid = flat_logprobs(model, [inputs[i] for i in batch],
                                      [requests[i].continuation for i in batch],
                                      pad_id=pad_id, place=place)
        picked = picked.cpu()
        for row, i in enumerate(batch):
            logprob[i] = float(picked[row])
            n_tokens[i] = int(valid[row].sum())
    return Scores(logprob, n_tokens)


def flat_logprobs(model: Any, inputs: Sequence[Sequence[int]],
                  continuations: Sequence[Sequence[int]], *, pad_id: int, place: Placement
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """One forward call over whole sequences (context + continuation minus its last token),
    left-padded with explicit positions: per row the summed log-probability of its
    continuation's last `keep` tokens (on the model's device; differentiable when grad is on)
    and the mask of the target positions scored."""
    device = place.device
    width = max(len(seq) for seq in inputs)
    keep = min(width, max(len(cont) for cont in continuations))
    ids = torch.full((len(inputs), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(inputs), width), dtype=torch.long)
    targets = torch.full((len(inputs), keep), -1, dtype=torch.long)
    for row, (seq, whole) in enumerate(zip(inputs, continuations, strict=True)):
        cont = list(whole)[-keep:]
        ids[row, width - len(seq):] = torch.tensor(list(seq))
        mask[row, width - len(seq):] = 1
        targets[row, keep - len(cont):] = torch.tensor(cont)
    positions = (mask.cumsum(dim=1) - 1).clamp(min=0)
    with place.context():
        out = model(input_ids=ids.to(device), attention_mask=mask.to(device),
                    position_ids=positions.to(device), logits_to_keep=keep, use_cache=False)
    logp = torch.log_softmax(out.logits[:, -keep:].float(), dim=-1)
    valid = targets >= 0
    picked = logp.gather(-1, targets.clamp(min=0).to(device).unsqueeze(-1)).squeeze(-1)
    return (picked * valid.to(device)).sum(dim=1), valid


def _score_shared(model: Any, requests: Sequence[Request], *, pad_id: int,
                  max_batch_tokens: int, place: Placement, common_prefix: bool) -> Scores:
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
    max_batch_tokens = min(max_batch_tokens, cache_tokens(model, MAX_CACHE_BYTES))
    max_logits = logit_positions(model, MAX_LOGIT_BYTES)
    # Passes: the shared prefixes of a chunk of groups run in one batch, then the chunk's
    # contexts in batches that mix groups freely; contexts sharing nothing run in a last pass.
    shared = [g for g in plan if g.shared]
    passes = [[shared[k] for k in chunk]
              for chunk in plan_batches([g.shared for g in shared], max_batch_tokens)]
    passes += [[g] for g in plan if not g.shared]
    for groups in passes:
        prefixes = _prefixes(model, [contexts[g.members[0]][:g.shared] for g in groups],
                             pad_id=pad_id, place=place) \
            if groups[0].shared else None
        members = [_Row(contexts[m], by_context[contexts[m]], k, g.shared)
                   for k, g in enumerate(groups) for m in g.members]
        # Cost of a context ~ its context once plus its continuation rows over the context
        # (the cache rows of a shorter prefix padded to the pass's longest are left out: they
        # cost attention and memory, no MLP; counting them splits batches for little).
        cost = [len(r.context) + len(r.requests) * (len(r.context) + max(
            len(requests[i].continuation) for i in r.requests)) for r in members]
        # Batch contexts whose continuations have about the same length (within 2x) and, among
        # them, own context lengths close together: both are padded to the batch's longest.
        order = [(-max(len(requests[i].continuation) for i in r.requests).bit_length(),
                  -(len(r.context) - r.shared)) for r in members]
        for batch in plan_by_cost(cost, order, max_batch_tokens):
            scored = _score_batch(model, requests, [members[b] for b in batch], prefixes,
                                  pad_id=pad_id, place=place, max_logits=max_logits)
            for i, (lp, k) in scored.items():
                logprob[i], n_tokens[i] = lp, k
    return Scores(logprob, n_tokens)


@dataclass(frozen=True)
class _Row:
    """One context of a batch: its tokens, its requests, its prefix's row and length."""

    context: tuple[int, ...]
    requests: list[int]
    prefix_row: int
    shared: int


@dataclass(frozen=True)
class _Prefixes:
    """The KV cache of a batch of shared prefixes (left-padded rows) and its attention mask."""

    cache: Any
    mask: torch.Tensor


def _prefixes(model: Any, prefixes: list[tuple[int, ...]], *, pad_id: int,
              place: Placement) -> _Prefixes:
    """Run shared prefixes once, in one left-padded batch."""
    device = place.device
    width = max(len(p) for p in prefixes)
    ids = torch.full((len(prefixes), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(prefixes), width), dtype=torch.long)
    for row, p in enumerate(prefixes):
        ids[row, width - len(p):] = torch.tensor(p)
        mask[row, width - len(p):] = 1
    positions = (mask.cumsum(dim=1) - 1).clamp(min=0)
    with place.context():
        out = model(input_ids=ids.to(device), attention_mask=mask.to(device),
                    position_ids=positions.to(device), use_cache=True, logits_to_keep=1)
    return _Prefixes(kv.returned_cache(out), mask)


def _score_batch(model: Any, requests: Sequence[Request], rows: list[_Row],
                 prefixes: _Prefixes | None, *, pad_id: int, place: Placement,
                 max_logits: int = 0) -> dict[int, tuple[float, int]]:
    """Score the requests of a batch of contexts: request index -> (log-prob, tokens).

    Each row starts from a copy of its prefix's cache row (none: from nothing) and runs only its
    context's own tokens after the prefix, left-padded so that the last position is every
    row's last context token; padding inside a row is masked and skipped by the explicit
    position ids. A continuation run whose logits exceed `max_logits` positions runs in parts."""
    device = place.device
    width = max(len(r.context) - r.shared for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    own = torch.zeros((len(rows), width), dtype=torch.long)
    for row, r in enumerate(rows):
        ids[row, width - len(r.context) + r.shared:] = torch.tensor(r.context[r.shared:])
        own[row, width - len(r.context) + r.shared:] = 1
    past: dict[str, Any] = {}
    mask = own
    if prefixes is not None:
        index = [r.prefix_row for r in rows]
        mask = torch.cat([prefixes.mask[index], own], dim=1)
        past[kv.cache_argument(model)] = kv.rows_of(prefixes.cache, index, device)
    positions = (mask.cumsum(dim=1) - 1).clamp(min=0)[:, mask.shape[1] - width:]
    with place.context():
        out = model(input_ids=ids.to(device), attention_mask=mask.to(device),
                    position_ids=positions.to(device), use_cache=True, logits_to_keep=1,
                    **past)
    first_logp = torch.log_softmax(out.logits[:, -1].float(), dim=-1).cpu()
    # One row per (context, continuation): first token from the context's last logits.
    pairs = [(row, i) for row, r in enumerate(rows) for i in r.requests]
    scored = {i: (float(first_logp[row, requests[i].continuation[0]]),
                  len(requests[i].continuation)) for row, i in pairs}
    rest = sorted(((row, i) for row, i in pairs if len(requests[i].continuation) > 1),
                  key=lambda pair: -len(requests[pair[1]].continuation))
    lengths = [len(requests[i].continuation) - 1 for _, i in rest]
    chunks = logit_parts(length_chunks(lengths, CALL_TOKENS), lengths, max_logits)
    cache = kv.returned_cache(out)
    for n, chunk in enumerate(chunks):
        part = [rest[k] for k in chunk]
        index = [row for row, _ in part]
        # The last chunk may consume the batch's cache; earlier ones take copies of their rows.
        rows_cache = kv.select_rows(cache, index, device) if n == len(chunks) - 1 else \
            kv.rows_of(cache, index, device)
        picked = _continue(model, requests, part, rows_cache, mask[index], pad_id=pad_id,
                           place=place)
        for k, (_, i) in enumerate(part):
            first, count = scored[i]
            scored[i] = (first + float(picked[k]), count)
    return scored


def _continue(model: Any, requests: Sequence[Request], part: list[tuple[int, int]], cache: Any,
              ctx_mask: torch.Tensor, *, pad_id: int, place: Placement) -> torch.Tensor:
    """Log-probability of every continuation token after the first, one row per (context row,
    request) on a cache holding those context rows; right-padded to the longest."""
    device = place.device
    cont_width = max(len(requests[i].continuation) - 1 for _, i in part)
    cont_ids = torch.full((len(part), cont_width), pad_id, dtype=torch.long)
    cont_mask = torch.zeros((len(part), cont_width), dtype=torch.long)
    targets = torch.full((len(part), cont_width), -1, dtype=torch.long)
    for k, (_, i) in enumerate(part):
        cont = requests[i].continuation
        cont_ids[k, :len(cont) - 1] = torch.tensor(cont[:-1])
        cont_mask[k, :len(cont) - 1] = 1
        targets[k, :len(cont) - 1] = torch.tensor(cont[1:])
    full_mask = torch.cat([ctx_mask, cont_mask], dim=1)
    cont_pos = ctx_mask.sum(dim=1, keepdim=True) + torch.arange(cont_width)[None, :]
    with place.context():
        out = model(input_ids=cont_ids.to(device), attention_mask=full_mask.to(device),
                    position_ids=cont_pos.to(device), use_cache=True,
                    **{kv.cache_argument(model): cache})
    logp = torch.log_softmax(out.logits.float(), dim=-1).cpu()
    valid = targets >= 0
    picked = logp.gather(-1, targets.clamp(min=0).unsqueeze(-1)).squeeze(-1)
    return (picked * valid).sum(dim=1)
