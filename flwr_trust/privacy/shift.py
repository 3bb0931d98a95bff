"""Private local dataset-shift sketch: a noised token-distribution summary per round.

Each local sample becomes a histogram of its token ids hashed into K buckets, normalized to sum
1; the round's sketch is the mean over samples. Substituting one sample moves the mean by at
most sqrt(2)/n in L2 (two probability vectors differ by at most sqrt(2)), so the sketch is
released with the Gaussian mechanism at that sensitivity (see `sketch_statistic`).

Only distances leave the client, and they are computed from noised sketches (post-processing):

- from-earlier: this round's sketch vs the mean of the client's earlier rounds' sketches;
- from-reference: this round's sketch vs the public reference (the probe suites' own text).

`squared_distance` is the squared Euclidean distance with the known noise bias removed,
||a - b||^2 - K (v_a + v_b): unbiased, so it can be slightly negative when nothing moved.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from flwr_trust.privacy.mechanism import Statistic
from flwr_trust.privacy.state import StateStore

STATE_KEY = "trust.shift"
SKETCH_NAME = "shift.sketch"
_GOLDEN = np.uint64(0x9E3779B1)


def bucket_ids(token_ids: Sequence[int] | np.ndarray, buckets: int) -> np.ndarray:
    """Spread token ids over `buckets` with a multiplicative hash (neighbouring ids scatter)."""
    hashed = (np.asarray(token_ids, dtype=np.uint64) * _GOLDEN) % np.uint64(2**32)
    return ((hashed * np.uint64(buckets)) >> np.uint64(32)).astype(np.int64)  # high bits


def token_histograms(samples: Iterable[Sequence[int]], buckets: int) -> np.ndarray:
    """One row per non-empty sample: its hashed token histogram, normalized to sum 1."""
    rows = []
    for ids in samples:
        if len(ids) == 0:
            continue
        counts = np.bincount(bucket_ids(ids, buckets), minlength=buckets).astype(np.float64)
        rows.append(counts / counts.sum())
    return np.asarray(rows, dtype=np.float64).reshape(-1, buckets)


def sketch(samples: Iterable[Sequence[int]], buckets: int) -> tuple[np.ndarray, int]:
    """The mean histogram of the samples and how many samples it averages."""
    hist = token_histograms(samples, buckets)
    if hist.shape[0] == 0:
        raise ValueError("a sketch needs at least one non-empty sample")
    return hist.mean(axis=0), int(hist.shape[0])


def sketch_statistic(samples: Iterable[Sequence[int]], buckets: int) -> tuple[Statistic, int]:
    """The sketch as a private statistic with L2 sensitivity sqrt(2)/n, and n."""
    mean, n = sketch(samples, buckets)
    return Statistic(SKETCH_NAME, mean, math.sqrt(2.0) / n), n


def squared_distance(a: np.ndarray, var_a: float, b: np.ndarray, var_b: float
                     ) -> tuple[float, float]:
    """Unbiased squared distance between two noised sketches, and its noise std.

    var_a, var_b: per-coordinate noise variances. For Gaussian noise of total per-coordinate
    variance v = var_a + var_b the estimate's variance is 4 d^2 v + 2 K v^2 (d^2 evaluated at
    the estimate, floored at 0, to keep the std itself post-processing of released values).
    """
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"sketches differ in size: {a.shape} vs {b.shape}")
    v = float(var_a) + float(var_b)
    k = a.size
    est = float(np.sum((a - b) ** 2) - k * v)
    std = math.sqrt(4.0 * max(est, 0.0) * v + 2.0 * k * v * v)
    return est, std


@dataclass
class ShiftHistory:
    """Running sum of a client's earlier noised sketches (kept in the node state, never sent)."""

    total: np.ndarray
    variance_total: float
    count: int

    @classmethod
    def empty(cls, buckets: int) -> ShiftHistory:
        return cls(np.zeros(buckets), 0.0, 0)

    def mean(self) -> tuple[np.ndarray, float]:
        """Mean of the earlier sketches and the per-coordinate noise variance of that mean."""
        if self.count == 0:
            raise ValueError("no earlier sketch")
        return self.total / self.count, self.variance_total / self.count ** 2

    def add(self, noised: np.ndarray, variance: float) -> None:
        self.total = self.total + noised
        self.variance_total += variance
        self.count += 1

    def to_values(self) -> dict[str, object]:
        return {"total": [float(x) for x in self.total],
                "variance-total": float(self.variance_total), "count": int(self.count)}

    @classmethod
    def from_state(cls, state: StateStore, buckets: int) -> ShiftHistory:
        record = state.get(STATE_KEY)
        if record is None or len(record.get("total", [])) != buckets:
            return cls.empty(buckets)  # a changed bucket count starts a new history
        return cls(np.asarray(record["total"], dtype=np.float64),
                   float(record["variance-total"]), int(record["count"]))

    def save(self, state: StateStore) -> None:
        state.put(STATE_KEY, self.to_values())
