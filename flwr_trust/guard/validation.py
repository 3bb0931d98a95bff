"""Refuse untrusted replies before they reach detectors or the inner strategy.

A reply is kept only if it has no error, comes from a node that replied once this round, carries
exactly the records aggregation needs, its arrays have the global model's names, shapes and
dtypes and are finite, its weight is a finite positive number, its `trust.*` numbers are finite
and plausible, and (when it states one) its suite hash is the server's. Everything else is
refused with a logged reason; nothing in a refused reply is ever aggregated.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from flwr.app import ArrayRecord, Message, MetricRecord

from flwr_trust.scoring.profile import PREFIX, SUITE_HASH_KEY

# Behavior metrics are rates, log-likelihoods, bits or losses; anything beyond this is absurd.
MAX_ABS_TRUST_VALUE = 1e6


@dataclass
class Screened:
    """Replies split into those aggregation may use and those refused (node id -> reason)."""

    valid: list[Message] = field(default_factory=list)
    refused: dict[int, str] = field(default_factory=dict)
    errors: dict[int, str] = field(default_factory=dict)

    @property
    def valid_nodes(self) -> list[int]:
        return [m.metadata.src_node_id for m in self.valid]


def _node(msg: Message) -> int:
    try:
        return int(msg.metadata.src_node_id)
    except Exception:  # a reply without metadata still must not crash the server
        return -1


def screen_replies(replies: Iterable[Message], *, global_arrays: ArrayRecord | None,
                   weighted_by_key: str | None, suite_hash_int: int | None,
                   expect_arrays: bool) -> Screened:
    """Split replies into valid ones and refused ones (with one-line reasons)."""
    out = Screened()
    replies = list(replies)
    counts = Counter(_node(m) for m in replies)
    expected = _array_layout(global_arrays) if global_arrays is not None else None
    for msg in replies:
        node = _node(msg)
        try:
            if msg.has_error():
                out.errors[node] = f"client error: {msg.error.reason}"
                continue
        except Exception as exc:
            out.refused[node] = f"unreadable reply ({exc})"
            continue
        if counts[node] > 1:
            out.refused[node] = f"node {node} replied {counts[node]} times this round"
            continue
        reason = _problem(msg, expected, weighted_by_key, suite_hash_int, expect_arrays)
        if reason:
            out.refused[node] = reason
        else:
            out.valid.append(msg)
    _refuse_odd_layouts(out)
    return out


def _user_metric_keys(msg: Message) -> frozenset[str]:
    metrics = next(iter(msg.content.metric_records.values()))
    return frozenset(k for k in metrics if not k.startswith(PREFIX))


def _refuse_odd_layouts(out: Screened) -> None:
    """Flower's strategies raise when replies' metric keys differ; a single odd client must
    not be able to crash the round, so replies off the majority key set are refused."""
    if len(out.valid) < 2:
        return
    layouts = Counter(_user_metric_keys(m) for m in out.valid)
    majority = layouts.most_common(1)[0][0]
    kept = []
    for msg in out.valid:
        keys = _user_metric_keys(msg)
        if keys == majority:
            kept.append(msg)
        else:
            odd = sorted(keys ^ majority)[:3]
            out.refused[_node(msg)] = f"metric keys differ from the other replies ({odd})"
    out.valid = kept


def _array_layout(arrays: ArrayRecord) -> dict[str, tuple[tuple[int, ...], str]]:
    return {k: (tuple(v.shape), str(v.dtype)) for k, v in arrays.items()}


def _problem(msg: Message, expected: dict[str, tuple[tuple[int, ...], str]] | None,
             weighted_by_key: str | None, suite_hash_int: int | None,
             expect_arrays: bool) -> str:
    content = msg.content
    n_arrays, n_metrics = len(content.array_records), len(content.metric_records)
    if expect_arrays and n_arrays != 1:
        return f"expected exactly one ArrayRecord, got {n_arrays}"
    if n_metrics != 1:
        return f"expected exactly one MetricRecord, got {n_metrics}"
    metrics = next(iter(content.metric_records.values()))
    reason = _metric_problem(metrics, weighted_by_key, suite_hash_int)
    if reason or not expect_arrays:
        return reason
    arrays = next(iter(content.array_records.values()))
    return _arrays_problem(arrays, expected)


def _metric_problem(metrics: MetricRecord, weighted_by_key: str | None,
                    suite_hash_int: int | None) -> str:
    if weighted_by_key is not None:
        weight = metrics.get(weighted_by_key)
        if isinstance(weight, list) or weight is None:
            return f"missing or non-scalar weight '{weighted_by_key}'"
        if not (isinstance(weight, int | float) and math.isfinite(weight) and weight > 0):
            return f"weight '{weighted_by_key}' = {weight!r} is not a finite positive number"
    for key, value in metrics.items():
        if not key.startswith(PREFIX) or key == SUITE_HASH_KEY:
            continue
        values = value if isinstance(value, list) else [value]
        if not all(isinstance(v, int | float) and math.isfinite(v)
                   and abs(v) <= MAX_ABS_TRUST_VALUE for v in values):
            return f"metric {key} = {value!r} is not a finite plausible number"
        if key.endswith((".stderr", ".n", ".noise")) and any(v < 0 for v in values):
            return f"metric {key} = {value!r} is negative"
    if suite_hash_int is not None and SUITE_HASH_KEY in metrics \
            and metrics[SUITE_HASH_KEY] != suite_hash_int:
        return "probe suite hash differs from the server's (client probed other suites)"
    return ""


def _arrays_problem(arrays: ArrayRecord, expected: dict[str, tuple[tuple[int, ...], str]] | None
                    ) -> str:
    if expected is not None:
        keys = list(arrays.keys())
        if set(keys) != set(expected):
            missing = sorted(set(expected) - set(keys))[:2]
            extra = sorted(set(keys) - set(expected))[:2]
            return f"array names differ from the global model (missing {missing}, extra {extra})"
    for key, arr in arrays.items():
        try:
            shape, dtype = tuple(arr.shape), str(arr.dtype)
            if expected is not None and not _fits(shape, dtype, *expected[key]):
                return (f"array {key} has shape {shape} dtype {dtype}, expected "
                        f"{expected[key][0]} {expected[key][1]}")
            values = arr.numpy()
        except Exception as exc:
            return f"array {key} cannot be decoded ({type(exc).__name__})"
        if tuple(values.shape) != shape:
            return f"array {key} data does not match its declared shape"
        if values.dtype.kind == "f" and not np.isfinite(values).all():
            return f"array {key} contains NaN or Inf"
    return ""


def _fits(shape: tuple[int, ...], dtype: str, want_shape: tuple[int, ...], want_dtype: str
          ) -> bool:
    """Same shape, and the same dtype or float for float: server optimizers (FedAdam) keep
    float64 globals while clients send float32, which Flower's own aggregation accepts."""
    if shape != want_shape:
        return False
    if dtype == want_dtype:
        return True
    try:
        return np.dtype(dtype).kind == "f" and np.dtype(want_dtype).kind == "f"
    except TypeError:
        return False


def weighted_key_of(strategy: Any) -> str | None:
    """The weight key an inner strategy aggregates by (looks through DP wrappers)."""
    seen = 0
    while strategy is not None and seen < 5:
        key = getattr(strategy, "weighted_by_key", None)
        if key is not None:
            return str(key)
        strategy = getattr(strategy, "strategy", None)
        seen += 1
    return None
