"""The key/value cache calls the engine makes, through transformers' public Cache API only.

A cache returned by a forward pass (a `DynamicCache`) is extended in place by the next forward
pass that receives it, so a prefix cache reused for several batches is copied first
(`copy.deepcopy`, as the transformers cache docs do to re-use a prompt cache) and the copy
its rows picked for the batch (`reorder_cache`, an index_select that may repeat rows).
"""

from __future__ import annotations

import copy
import functools
import inspect
from typing import Any

import torch


def returned_cache(out: Any) -> Any:
    """The KV cache of a forward pass: `cache` since transformers 5.2x, `past_key_values`
    before (the old name still works there but warns on every call)."""
    cache = getattr(out, "cache", None)
    return cache if cache is not None else out.past_key_values


def cache_argument(model: Any) -> str:
    """The forward() keyword that takes a KV cache in this transformers version."""
    base = getattr(model, "get_base_model", lambda: model)()
    return _cache_keyword(type(base))


@functools.cache
def _cache_keyword(model_class: type) -> str:
    """Looked up once per model class: this runs for every batch."""
    return "cache" if "cache" in inspect.signature(model_class.forward).parameters \
        else "past_key_values"


def rows_of(cache: Any, rows: list[int], device: torch.device) -> Any:
    """A fresh cache whose row k is row rows[k] of `cache` (rows may repeat); `cache` is left
    unchanged for the next batch."""
    return select_rows(copy.deepcopy(cache), rows, device)


def select_rows(cache: Any, rows: list[int], device: torch.device) -> Any:
    """The cache reduced (or expanded) to the given rows, in place."""
    cache.reorder_cache(torch.tensor(rows, device=device))
    return cache
