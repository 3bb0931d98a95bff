"""Batch planning for the scorer: which requests share a forward call, within memory budgets.

Pure index arithmetic (no torch): the engine (`engine.py`) decides the budgets, these functions
cut the work. Requests are grouped longest first so that rows x padded length stays within a
token budget and, given how many positions each keeps, rows x kept positions within a logits
budget; continuations are cut into length runs where the padding saved outweighs a call.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def logit_positions(model: Any, max_logit_bytes: int) -> int:
    """How many token positions' logits (and log-softmax) fit in `max_logit_bytes`."""
    vocab = getattr(getattr(model, "config", None), "vocab_size", None)
    if not isinstance(vocab, int) or vocab <= 0:
        head = getattr(model, "get_output_embeddings", lambda: None)()
        vocab = int(head.weight.shape[0]) if head is not None else 0
    return max(1, max_logit_bytes // (8 * vocab)) if vocab > 0 else 1 << 62


def cache_tokens(model: Any, max_cache_bytes: int) -> int:
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


def length_chunks(lengths: Sequence[int], call: int) -> list[list[int]]:
    """Cut lengths sorted longest first into runs, one forward call each: a run is
    right-padded to its first (longest) row, and a call costs about `call` token forwards, so
    the cuts minimize padded tokens + `call` per run (dynamic programming over the distinct
    lengths)."""
    values = sorted(set(lengths), reverse=True)
    counts = [sum(1 for n in lengths if n == v) for v in values]
    best = [0] + [0] * len(values)  # best[j]: cost of the first j distinct lengths
    cut = [0] * (len(values) + 1)
    for j in range(1, len(values) + 1):
        options = [(best[a] + values[a] * sum(counts[a:j]) + call, a) for a in range(j)]
        best[j], cut[j] = min(options)
    starts, j = [], len(values)
    while j > 0:
        starts.append(values[cut[j]])
        j = cut[j]
    firsts = set(starts)
    chunks: list[list[int]] = []
    for k, n in enumerate(lengths):
        if n in firsts and (not chunks or lengths[chunks[-1][0]] != n):
            chunks.append([])
        chunks[-1].append(k)
    return chunks


def logit_parts(chunks: list[list[int]], lengths: Sequence[int],
                 max_logits: int) -> list[list[int]]:
    """`chunks` (runs of rows, longest first) cut so that rows x the run's longest length stay
    within max_logits positions (a single row is never cut; 0: no limit)."""
    if not max_logits:
        return chunks
    out: list[list[int]] = []
    for chunk in chunks:
        size = max(1, max_logits // max(1, lengths[chunk[0]]))
        out += [chunk[k:k + size] for k in range(0, len(chunk), size)]
    return out


def plan_by_cost(cost: Sequence[int], keys: Sequence[Any], budget: int) -> list[list[int]]:
    """Group items in the order of their sort keys so that the summed cost of a batch stays
    within budget."""
    order = sorted(range(len(cost)), key=lambda i: keys[i])
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
