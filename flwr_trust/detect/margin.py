"""Paired tests on the margin (logit) scale for soft rates, with a rate-scale guard.

A soft rate is the mean over items of a per-item probability (of refusing, of the stereotyping
sentence, of the right choice). Per item its logit is the log-probability margin (two choices)
or logit p(right) (several). A fine-tune that nudges every item's margin the same way moves the
logits by nearly one amount, while the probabilities move by that amount times each item's
slope p(1 - p): items near 0 or 1 barely move. Testing the mean logit change therefore has far
more power than testing the mean probability change, whose spread is the slopes' spread.

The tolerance stays in the metric's units: `shift_for` maps it through the reference items to
the uniform logit shift that would change the rate by exactly the tolerance. The level test is
an intersection-union test of two one-sided t statistics with n - 1 df, each at the full level:

  margin: mean logit change vs that shift   (H0m: the mean shift's implied rate change <= tol)
  rate:   the rate change vs the tolerance, with the stderr of the residuals around the best
          uniform-shift fit (H0r: the expected rate change on these items <= tol)

It alarms only when both reject, so it keeps the level under either null: a shift concentrated
on saturated items or opposite shifts can make the mean logit change large while the rate stays
within tolerance, and the rate statistic stops them. docs/detection.md has the maths and the
simulations (bench/power.py, tests/test_paired.py).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from flwr_trust.detect.paired import (
    MIN_ITEMS,
    SE_FLOOR,
    PairedChange,
    PairedClients,
    paired_change,
    paired_clients,
)

P_CLIP = 1e-6  # probabilities are clipped to [P_CLIP, 1 - P_CLIP] before the logit
LOGIT_BOUND = math.log((1.0 - P_CLIP) / P_CLIP)  # |logit| <= 13.8 after the clip
_BISECT = 60  # halvings of a [-2L, 2L] bracket: far below float resolution of a shift


def logits(p: Sequence[float] | np.ndarray) -> np.ndarray:
    """logit(p) of probabilities clipped to [P_CLIP, 1 - P_CLIP] (bounded by LOGIT_BOUND)."""
    q = np.clip(np.asarray(p, dtype=np.float64), P_CLIP, 1.0 - P_CLIP)
    return np.log(q) - np.log1p(-q)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * x))


def rate_change(ref_logits: np.ndarray, sign: float, shift: float) -> float:
    """Degradation of the mean probability when every item's logit moves `shift` the worse
    way: sign * (mean sigmoid(a + sign * shift) - mean sigmoid(a)). Increasing in shift."""
    return float(sign * (_sigmoid(ref_logits + sign * shift).mean() - _sigmoid(ref_logits).mean()))


def shift_for(ref_logits: np.ndarray, sign: float, change: float) -> float:
    """The uniform logit shift (worse way positive) whose rate change is `change`, by bisection
    on [-2L, 2L]; +inf / -inf when even the largest shift cannot reach it."""
    lo, hi = -2.0 * LOGIT_BOUND, 2.0 * LOGIT_BOUND
    if rate_change(ref_logits, sign, hi) < change:
        return math.inf
    if rate_change(ref_logits, sign, lo) > change:
        return -math.inf
    for _ in range(_BISECT):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if rate_change(ref_logits, sign, mid) < change else (lo, mid)
    return 0.5 * (lo + hi)


@dataclass(frozen=True)
class MarginChange:
    """One paired comparison of soft-rate items, on both scales.

    shift, shift_se: mean logit change (worse way positive) and its stderr over items
    rate, rate_se:   the rate's degradation (mean probability change, signed) and the stderr of
                     the residuals around the uniform-shift fit that reproduces it
    """

    shift: float
    shift_se: float
    rate: float
    rate_se: float
    ref_logits: np.ndarray
    sign: float
    n: int

    @property
    def df(self) -> float:
        return float(self.n - 1)

    @property
    def se(self) -> float:
        """The rate's stderr: what the trend test averages, in the metric's units."""
        return self.rate_se

    @property
    def degradation(self) -> float:
        return self.rate

    def shift_tolerance(self, tol: float) -> float:
        """The uniform logit shift that degrades the reference rate by exactly `tol`."""
        return shift_for(self.ref_logits, self.sign, tol)

    def z_margin(self, tol: float) -> float:
        """(mean logit change - shift_tolerance(tol)) / se: the test of H0m."""
        bound = self.shift_tolerance(tol)
        if bound == math.inf:  # no shift degrades the rate by tol: H0m holds
            return -math.inf
        return (self.shift - bound) / self.shift_se

    def z_rate(self, tol: float) -> float:
        """(rate change - tol) / se: the guard's test of H0r."""
        return (self.rate - tol) / self.rate_se

    def z(self, tol: float) -> float:
        """The intersection-union statistic: both must exceed the threshold (same df)."""
        return min(self.z_margin(tol), self.z_rate(tol))

    def evidence(self, tol: float) -> dict[str, float]:
        return {"scale": "margin", "logit_shift": self.shift, "logit_se": self.shift_se,
                "logit_tolerance": self.shift_tolerance(tol), "z_margin": self.z_margin(tol),
                "z_rate": self.z_rate(tol), "rate_se": self.rate_se}


def is_soft_rate(items: Sequence[float] | None) -> bool:
    """Items that are probabilities (every value in [0, 1])."""
    return items is not None and bool(np.all((np.asarray(items) >= 0) & (np.asarray(items) <= 1)))


def margin_change(now: Sequence[float] | None, ref: Sequence[float] | None, sign: float
                  ) -> MarginChange | None:
    """Candidate items `now` against reference items `ref` (same items, probabilities); None
    unless both carry at least MIN_ITEMS probabilities of one length."""
    if now is None or ref is None or len(now) != len(ref) or len(now) < MIN_ITEMS \
            or not (is_soft_rate(now) and is_soft_rate(ref)):
        return None
    a, b = logits(ref), logits(now)
    p_now = _sigmoid(b)  # the clipped probabilities: the same values the logits describe
    n = a.size
    shift = sign * (b - a)
    rate = float(sign * (p_now.mean() - _sigmoid(a).mean()))
    fit = shift_for(a, sign, rate)  # finite: the clipped rate is always reachable
    resid = p_now - _sigmoid(a + sign * fit)
    resid -= resid.mean()
    rate_se = math.sqrt(float((resid**2).sum()) / (n * (n - 1)))
    return MarginChange(float(shift.mean()), max(float(shift.std(ddof=1)) / math.sqrt(n),
                                                 SE_FLOOR),
                        rate, max(rate_se, SE_FLOOR), a, sign, n)


@dataclass(frozen=True)
class MarginClients:
    """Per client: its items against the clients' per-item median (in logits), on both scales;
    `z(margin)` is the intersection-union statistic of each, like `PairedClients.z`."""

    nodes: tuple[int, ...]
    changes: tuple[MarginChange, ...]
    df: float

    @property
    def excess(self) -> tuple[float, ...]:
        return tuple(c.rate for c in self.changes)

    def z(self, margin: float) -> list[float]:
        return [c.z(margin) for c in self.changes]


def margin_clients(items: Mapping[int, Sequence[float]], sign: float, min_clients: int
                   ) -> MarginClients | None:
    """Every client's probabilities against the per-item median of all clients' logits (None
    unless at least `min_clients` report soft-rate items of one length)."""
    nodes = sorted(items)
    lengths = {len(items[n]) for n in nodes}
    if len(nodes) < min_clients or len(lengths) != 1 or lengths.pop() < MIN_ITEMS \
            or not all(is_soft_rate(items[n]) for n in nodes):
        return None
    x = np.stack([logits(items[n]) for n in nodes])
    median = _sigmoid(np.median(x, axis=0))
    changes = [margin_change(_sigmoid(row), median, sign) for row in x]
    return MarginClients(tuple(nodes), tuple(c for c in changes if c is not None),
                         float(x.shape[1] - 1))


def paired_level(now: Sequence[float] | None, ref: Sequence[float] | None, sign: float,
                 margin_scale: bool) -> PairedChange | MarginChange | None:
    """The paired level evidence of one metric: on the margin scale when asked and the items
    are probabilities, else the mean of paired differences."""
    found = margin_change(now, ref, sign) if margin_scale else None
    return found if found is not None else paired_change(now, ref, sign)


def paired_client_test(items: Mapping[int, Sequence[float]], sign: float, min_clients: int,
                       margin_scale: bool) -> PairedClients | MarginClients | None:
    """The paired per-client evidence: margin scale when asked and every client sent
    probabilities, else excess over the per-item median."""
    found = margin_clients(items, sign, min_clients) if margin_scale else None
    return found if found is not None else paired_clients(items, sign, min_clients)
