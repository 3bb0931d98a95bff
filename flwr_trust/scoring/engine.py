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

Batches are also capped by the memory of their logits (`MAX_LOGIT_BYTES`): with a large
vocabulary, the logits of a full token budget of continuations dwarf the model's activations
(a context with more continuations than fit is run once per part), and batches of shared
contexts by the memory of their key/value cache (`MAX_CACHE_BYTES`).
Everything runs on the model's own device and dtype (`placement`).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from flwr_trust.scoring.placement import Placement, pick_placement
from flwr_trust.scoring.requests import PRECISIONS, Precision, Request, Scores

MAX_LOGIT_BYTES = 64 * 2**20
"""The most memory one batch's logits may take, with their log-softmax (fp32, so 8 bytes per
vocabulary entry and position): a batch of 8192 continuation tokens over a 49k vocabulary would
otherwise hold 3 GiB, more than a client's whole training step on a small model. Smaller
batches cost no time here: on a SmolLM2-shaped model (2 layers, 49k vocabulary, 1 CPU thread)
the default probe took 60 s uncapped, 28-39 s with caps of 32-256 MiB."""


def logit_positions(model: Any, max_logit_bytes: int = MAX_LOGIT_BYTES) -> int:
    """How many token positions' logits (and log-softmax) fit in `max_logit_bytes`."""
    vocab = getattr(getattr(model, "config", None), "vocab_size", None)
    if not isinstance(vocab, int) or vocab <= 0:
        head = getattr(model, "get_output_embeddings", lambda: None)()
        vocab = int(head.weight.shape[0]) if head is not None else 0
    return max(1, max_logit_bytes // (8 * vocab)) if vocab > 0 else 1 << 62


MAX_CACHE_BYTES = 64 * 2**20
"""The most memory the key/value cache of one batch of shared contexts may take (it is kept
for every layer while the continuations run, and copied once per continuation row): SmolLM2
holds 46 KiB per token in fp32, so the 8192-token default budget would keep 377 MiB."""


def cache_tokens(model: Any, max_cache_bytes: int = MAX_CACHE_BYTES) -> int:
    """How many tokens' key/value cache fit in `max_cache_bytes` (no limit when the model's
    config does not say its layer, head and width sizes)."""
    config = getattr(model, "config", None)
    layers = getattr(config, "num_hidden_layers", None)
    heads = getattr(config, "num_attention_heads", None)
    hidden = getattr(config, "hidden_size", None)
    if not all(isinstance(x, int) and x > 0 for x in (layers, heads, hidden)):
        return 1 << 62
    kv_heads = getattr(config, "num_key_value_heads", None) or heads
    head_dim = getattr(config, "head_dim", None) or hidden // heads
    per_token = 2 * layers * kv_heads * head_dim * 4  # keys and values, fp32 at most
    return max(1, max_cache_bytes // per_token)


def plan_batches(lengths: Sequence[int], max_batch_tokens: int, *,
                 keeps: Sequence[int] | None = None, max_logits: int = 0) -> list[list[int]]:
    """Group request indices, longest first, so that rows x padded length <= max_batch_tokens
    and, given each request's scored positions `keeps`, rows x the batch's largest keep <=
    max_logits (0: no logits limit)."""
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    batches: list[list[int]] = []
    current: list[int] = []
    keep = 0
    for i in order:
        width = lengths[current[0]] if current else lengths[i]  # first is the longest
        wider = max(keep, keeps[i]) if keeps is not None else 0
        if current and ((len(current) + 1) * width > max_batch_tokens
                        or (max_logits and (len(current) + 1) * wider > max_logits)):
            batches.append(current)
            current, wider = [], keeps[i] if keeps is not None else 0
        current.append(i)
        keep = wider
    if current:
        batches.append(current)
    return batches


def score_requests(model: Any, requests: Sequence[Request], *, pad_id: int,
                   max_batch_tokens: int = 8192, max_length: int = 2048,
                   precision: Precision = "fp32", share_prefix: bool = True) -> Scores:
    """Score every request with batched forward passes; returns arrays in request order.

    They run on the model's own device and dtype (`placement.pick_placement`): `precision`
    only adds a bf16 autocast (always for bf16, where native for auto)."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, not {precision!r}")
    for r in requests:
        if not r.context or not r.continuation:
            raise ValueError("every request needs a non-empty context and continuation")
    place = pick_placement(model, precision)
    if not share_prefix or any(len(r.context) + len(r.continuation) > max_length
                               for r in requests):
        return _score_flat(model, requests, pad_id=pad_id, max_batch_tokens=max_batch_tokens,
                           max_length=max_length, place=place)
    return _score_shared(model, requests, pad_id=pad_id, max_batch_tokens=max_batch_tokens,
                         place=place)


@torch.inference_mode()
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
    device = place.device
    for batch in plan_batches([len(s) for s in inputs], max_batch_tokens,
                              keeps=[len(r.continuation) for r in requests],
                              max_logits=logit_positions(model, MAX_LOGIT_BYTES)):
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
        with place.context():
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
                  max_batch_tokens: int, place: Placement) -> Scores:
    """Run each distinct context once, then all its continuations on a copy of its cache."""
    n = len(requests)
    logprob = np.zeros(n, dtype=np.float64)
    n_tokens = np.zeros(n, dtype=np.int64)
    max_logits = logit_positions(model, MAX_LOGIT_BYTES)
    max_batch_tokens = min(max_batch_tokens, cache_tokens(model, MAX_CACHE_BYTES))
    groups = _context_groups(requests, max_logits)
    contexts = [c for c, _ in groups]
    members = [m for _, m in groups]
    # Cost of a context group ~ its context once plus its continuation rows over the context.
    cost = [len(c) + len(m) * (len(c) + max(len(requests[i].continuation) for i in m))
            for c, m in groups]
    rows = [sum(len(requests[i].continuation) > 1 for i in m) for m in members]
    widths = [max(len(requests[i].continuation) - 1 for i in m) for m in members]
    device = place.device
    for batch in _plan_by_cost(cost, [len(c) for c in contexts], max_batch_tokens, rows=rows,
                               widths=widths, max_logits=max_logits):
        ctxs = [contexts[b] for b in batch]
        width = max(len(c) for c in ctxs)
        ids = torch.full((len(ctxs), width), pad_id, dtype=torch.long)
        mask = torch.zeros((len(ctxs), width), dtype=torch.long)
        for row, c in enumerate(ctxs):
            ids[row, width - len(c):] = torch.tensor(c)
            mask[row, width - len(c):] = 1
        positions = (mask.cumsum(dim=1) - 1).clamp(min=0)
        with place.context():
            out = model(input_ids=ids.to(device), attention_mask=mask.to(device),
                        position_ids=positions.to(device), use_cache=True, logits_to_keep=1)
        first_logp = torch.log_softmax(out.logits[:, -1].float(), dim=-1).cpu()
        # One row per (context, continuation): first token from the context's last logits.
        rows = [(row, i) for row, b in enumerate(batch) for i in members[b]]
        for row, i in rows:
            logprob[i] = float(first_logp[row, requests[i].continuation[0]])
            n_tokens[i] = len(requests[i].continuation)
        rest = [(row, i) for row, i in rows if len(requests[i].continuation) > 1]
        if not rest:
            continue
        cache = _returned_cache(out)
        cache.reorder_cache(torch.tensor([row for row, _ in rest], device=device))
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
        with place.context():
            out2 = model(input_ids=cont_ids.to(device), attention_mask=full_mask.to(device),
                         position_ids=cont_pos.to(device), use_cache=True,
                         **{_cache_argument(model): cache})
        logp = torch.log_softmax(out2.logits.float(), dim=-1).cpu()
        valid = targets >= 0
        picked = logp.gather(-1, targets.clamp(min=0).unsqueeze(-1)).squeeze(-1)
        picked = (picked * valid).sum(dim=1)
        for k, (_, i) in enumerate(rest):
            logprob[i] += float(picked[k])
    return Scores(logprob, n_tokens)


def _context_groups(requests: Sequence[Request], max_logits: int
                    ) -> list[tuple[tuple[int, ...], list[int]]]:
    """Requests grouped by context, each group split (in order) so that its continuation pass's
    logits, rows x the widest continuation, stay within max_logits positions: a context shared
    by very many continuations (e.g. every bias sentence after BOS) is then run once per part."""
    by_context: dict[tuple[int, ...], list[int]] = {}
    for i, r in enumerate(requests):
        by_context.setdefault(r.context, []).append(i)
    out: list[tuple[tuple[int, ...], list[int]]] = []
    for context, indices in by_context.items():
        part: list[int] = []
        widest = 0
        for i in indices:
            wider = max(widest, len(requests[i].continuation) - 1)
            if part and (len(part) + 1) * wider > max_logits:
                out.append((context, part))
                part, wider = [], len(requests[i].continuation) - 1
            part.append(i)
            widest = wider
        out.append((context, part))
    return out


def _returned_cache(out: Any) -> Any:
    """The KV cache of a forward pass: `cache` since transformers 5.2x, `past_key_values`
    before (the old name still works there but warns on every call)."""
    cache = getattr(out, "cache", None)
    return cache if cache is not None else out.past_key_values


def _cache_argument(model: Any) -> str:
    """The forward() keyword that takes a KV cache in this transformers version."""
    base = getattr(model, "get_base_model", lambda: model)()
    return _cache_keyword(type(base))


@functools.cache
def _cache_keyword(model_class: type) -> str:
    """Looked up once per model class: this runs for every continuation batch."""
    import inspect

    return "cache" if "cache" in inspect.signature(model_class.forward).parameters \
        else "past_key_values"


def _plan_by_cost(cost: Sequence[int], lengths: Sequence[int], budget: int, *,
                  rows: Sequence[int] | None = None, widths: Sequence[int] | None = None,
                  max_logits: int = 0) -> list[list[int]]:
    """Group items, longest first, so that the summed cost of a batch stays within budget and,
    given each item's continuation `rows` and `widths`, the continuation pass's logits (all rows
    x the widest) stay within max_logits positions (0: no logits limit)."""
    order = sorted(range(len(cost)), key=lambda i: -lengths[i])
    batches: list[list[int]] = []
    current: list[int] = []
    total = n_rows = widest = 0
    for i in order:
        more_rows = n_rows + (rows[i] if rows is not None else 0)
        wider = max(widest, widths[i] if widths is not None else 0)
        if current and (total + cost[i] > budget
                        or (max_logits and more_rows * wider > max_logits)):
            batches.append(current)
            current, total = [], 0
            more_rows = rows[i] if rows is not None else 0
            wider = widths[i] if widths is not None else 0
        current.append(i)
        total += cost[i]
        n_rows, widest = more_rows, wider
    if current:
        batches.append(current)
    return batches
