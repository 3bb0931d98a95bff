"""Paired per-item evidence: the same probe items scored on two models, or on every client's.

The server scores the candidate on the same items as the round-0 reference, and every client
of a round scores the same round sample. A fine-tune nudges every item the same way, so the
per-item *changes* vary far less than the items themselves: a mean of paired differences has
a much smaller standard error than two independent means (docs/detection.md, "Paired tests").

Items are treated as a random sample from the population of such items (the question the
tolerance is about), so the t reference with n - 1 df is exact for normal differences and
conservative-ish otherwise; docs/detection.md checks the false-alarm rate by simulation.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

MIN_ITEMS = 3  # fewer paired items carry no usable variance estimate
SE_FLOOR = 1e-9  # identical differences: the change is certain, up to rounding


def items_of(o: Any) -> tuple[float, ...] | None:
    """The per-item values an Observation / MetricValue carries, if finite and enough."""
    items = getattr(o, "items", None)
    if items is None or callable(items) or len(items) < MIN_ITEMS:
        return None
    try:
        arr = np.asarray(items, dtype=np.float64)
    except (TypeError, ValueError):
        return None
    return tuple(arr.tolist()) if arr.ndim == 1 and np.isfinite(arr).all() else None


@dataclass(frozen=True)
class PairedChange:
    """Mean of sign x (candidate - reference) over paired items, its stderr and df."""

    degradation: float
    se: float
    df: float
    n: int

    def z(self, tol: float) -> float:
        """(degradation - tol) / se: H0 "the mean change is at most `tol`"."""
        return (self.degradation - tol) / self.se

    def evidence(self, tol: float) -> dict[str, int | str]:
        return {"scale": "rate", "paired_items": self.n}


def paired_change(now: Sequence[float] | None, ref: Sequence[float] | None, sign: float
                  ) -> PairedChange | None:
    """The paired degradation of `now` against `ref` on the same items (None unless both
    carry items of one length)."""
    if now is None or ref is None or len(now) != len(ref) or len(now) < MIN_ITEMS:
        return None
    diff = sign * (np.asarray(now, dtype=np.float64) - np.asarray(ref, dtype=np.float64))
    n = diff.size
    se = max(float(diff.std(ddof=1)) / math.sqrt(n), SE_FLOOR)
    return PairedChange(float(diff.mean()), se, float(n - 1), n)


@dataclass(frozen=True)
class PairedClients:
    """Per client: its mean excess over the per-item median of all clients' values (signed:
    positive = worse), that mean's stderr over items, and the t df (items - 1)."""

    nodes: tuple[int, ...]
    excess: tuple[float, ...]
    se: tuple[float, ...]
    df: float

    @property
    def n_items(self) -> int:
        return int(self.df) + 1

    def z(self, margin: float) -> list[float]:
        """Per client: (excess - margin) / se: H0 "at most `margin` worse than the clients'
        per-item median" (heterogeneity within the margin is allowed)."""
        return [(e - margin) / s for e, s in zip(self.excess, self.se, strict=True)]


def paired_clients(items: Mapping[int, Sequence[float]], sign: float, min_clients: int
                   ) -> PairedClients | None:
    """Clients compared item by item with the per-item median of all of them (None unless at
    least `min_clients` report items of one length). The median of the others per item is a
    robust stand-in for "an honest client's model on this item"."""
    nodes = sorted(items)
    lengths = {len(items[n]) for n in nodes}
    if len(nodes) < min_clients or len(lengths) != 1 or lengths.pop() < MIN_ITEMS:
        return None
    x = np.asarray([items[n] for n in nodes], dtype=np.float64)
    excess = sign * (x - np.median(x, axis=0))
    n_items = x.shape[1]
    se = np.maximum(excess.std(axis=1, ddof=1) / math.sqrt(n_items), SE_FLOOR)
    return PairedClients(tuple(nodes), tuple(excess.mean(axis=1).tolist()),
                         tuple(se.tolist()), float(n_items - 1))


def same_length(items: Mapping[int, Sequence[float]]) -> dict[int, Sequence[float]]:
    """The clients whose item lists have the most common length (all clients of a round score
    one sample, so one reply with another length must not stop the paired test for the rest;
    ties go to the longer lists)."""
    counts = Counter(len(v) for v in items.values())
    if len(counts) <= 1:
        return dict(items)
    keep = max(counts, key=lambda n: (counts[n], n))
    return {node: v for node, v in items.items() if len(v) == keep}
