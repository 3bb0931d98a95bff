"""Paired tests on the margin (logit) scale for soft rates, with a rate-scale guard.

A soft rate is the mean over items of a per-item probability (of refusing, of the stereotyping
sentence, of the right choice). Per item its logit is the log-probability margin (two choices)
or logit p(right) (several). A fine-tune that nudges every item's margin the same way moves the
logits by nearly one amount, while the probabilities move by that amount times each item's
slope p(1 - p): items near 0 or 1 barely move. Testing the mean logit change therefore has far
more power than testing the mean probability change, whose spread is the slopes' spread.

The tolerance stays in the metric's units: `shift_for` maps it through the reference items to
the uniform logit shift that would change the rate by exactly the tolerance. The level test is
an intersection-union test of two one-sided t statistics, each at the full level:

  margin: mean logit change vs that shift   (H0m: the mean shift's implied rate change <= tol)
  rate:   the rate change vs the tolerance, with the larger of two stderrs (the per-item logit
          noise carried through the slopes; the items' deviations from the tolerance-sized
          uniform shift)                    (H0r: the expected rate change on these items <= tol)

It alarms only when both reject, so it keeps the level under either null: a shift concentrated
on saturated items or opposite shifts make the mean logit change large while the rate stays
within tolerance, and the rate statistic stops those. The margin statistic is valid whenever
the items share one systematic logit shift, whatever each item's noise (Bakirov & Szekely
2006); the rate statistic's first stderr whenever the logit noise is homoscedastic, whatever
the per-item systematic shifts.
docs/detection.md has the maths and the simulations (bench/power.py, tests/test_paired.py).
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
LOO_MIN_OTHERS = 3  # fewest other clients whose per-item median resists one outlier
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
    """One paired comparison of soft-rate items against a tolerance, on both scales.

    shift, shift_se:  mean logit change (worse way positive) and its stderr over items
    shift_tolerance:  the uniform logit shift that degrades the reference rate by exactly tol
    rate:             the rate's degradation (mean per-item probability change, signed)
    rate_se:          its stderr, the larger of two estimates (`_rate_se`)
    df:               n - 2 (the residual df of the logit-noise fit), used for both statistics
    """

    shift: float
    shift_se: float
    shift_tolerance: float
    rate: float
    rate_se: float
    tolerance: float
    n: int
    df: float

    @property
    def se(self) -> float:
        """The rate's stderr: what the trend test averages, in the metric's units."""
        return self.rate_se

    @property
    def degradation(self) -> float:
        return self.rate

    @property
    def z_margin(self) -> float:
        """(mean logit change - shift_tolerance) / se: the t statistic of H0m."""
        if self.shift_tolerance == math.inf:  # no shift degrades the rate by tol: H0m holds
            return -math.inf
        return (self.shift - self.shift_tolerance) / self.shift_se

    @property
    def z_rate(self) -> float:
        """(rate change - tol) / se: the guard's t statistic of H0r."""
        if self.shift_tolerance == math.inf:  # the rate cannot degrade by tol: H0r holds
            return -math.inf
        return (self.rate - self.tolerance) / self.rate_se

    def z(self, tol: float) -> float:
        """The intersection-union statistic (both must pass the threshold; same df)."""
        if tol != self.tolerance:
            raise ValueError(f"this comparison was made against tolerance {self.tolerance}")
        return min(self.z_margin, self.z_rate)

    def evidence(self, tol: float) -> dict[str, float | int | str | None]:
        """The numbers behind the test (None for an infinite one: JSON has no infinity)."""
        numbers = {"logit_shift": self.shift, "logit_se": self.shift_se,
                   "logit_tolerance": self.shift_tolerance, "z_margin": self.z_margin,
                   "z_rate": self.z_rate, "rate_se": self.rate_se}
        return {"scale": "margin", "paired_items": self.n} | {
            k: v if math.isfinite(v) else None for k, v in numbers.items()}


def is_soft_rate(items: Sequence[float] | None) -> bool:
    """Items that are probabilities (every value in [0, 1])."""
    if items is None:
        return False
    arr = np.asarray(items, dtype=np.float64)
    return bool(np.all((arr >= 0.0) & (arr <= 1.0)))


def margin_change(now: Sequence[float] | None, ref: Sequence[float] | None, sign: float,
                  tol: float) -> MarginChange | None:
    """Candidate items `now` against reference items `ref` (the same items, probabilities) and
    the tolerance `tol` in rate units; None unless both carry at least MIN_ITEMS probabilities
    of one length."""
    if now is None or ref is None or len(now) != len(ref) or len(now) < MIN_ITEMS \
            or not (is_soft_rate(now) and is_soft_rate(ref)):
        return None
    a, b = logits(ref), logits(now)
    n = a.size
    shift = sign * (b - a)
    p_now = _sigmoid(b)
    change = sign * (p_now - _sigmoid(a))  # per item, in the rate's units (clipped)
    bound = shift_for(a, sign, tol)
    return MarginChange(
        shift=float(shift.mean()), shift_se=max(float(shift.std(ddof=1)) / math.sqrt(n), SE_FLOOR),
        shift_tolerance=bound, rate=float(change.mean()),
        rate_se=max(_rate_se(shift, p_now, change, a, sign, bound), SE_FLOOR), tolerance=tol,
        n=n, df=float(n - 2))


def _rate_se(shift: np.ndarray, p_now: np.ndarray, change: np.ndarray, a: np.ndarray,
             sign: float, bound: float) -> float:
    """The larger of two stderrs of the rate change, each valid under one noise model:

    - logit noise: the residual variance of the logit changes after a least-squares fit on
      (1, slopes k_j), carried to the rate as sqrt(s^2 sum k_j^2) / n. With homoscedastic
      normal logit noise the residuals are independent of the rate's noise whatever the
      per-item systematic shifts (docs/detection.md);
    - item deviations: the stderr of y_j = change_j - c_j, c_j the change the
      tolerance-sized uniform shift makes on item j (mean c_j = tol). At the null with one
      shared shift the y_j have mean 0 whatever their variances (Bakirov & Szekely 2006).
    """
    n = shift.size
    slopes = p_now * (1.0 - p_now)  # d p / d logit at the candidate: how noise moves the rate
    design = np.stack([np.ones_like(slopes), slopes], axis=1)
    coef, *_ = np.linalg.lstsq(design, shift, rcond=None)
    resid = shift - design @ coef
    logit_se = math.sqrt(float(resid @ resid) / (n - 2) * float(slopes @ slopes)) / n
    y = change - sign * (_sigmoid(a + sign * bound) - _sigmoid(a)) if math.isfinite(bound) \
        else change
    return max(logit_se, float(y.std(ddof=1)) / math.sqrt(n))


@dataclass(frozen=True)
class MarginClients:
    """Per client: its items against the other clients' per-item median (in logits), on both
    scales; `z(margin)` is each client's intersection-union statistic, like
    `PairedClients.z`."""

    nodes: tuple[int, ...]
    logits: np.ndarray  # clients x items
    sign: float

    @property
    def df(self) -> float:
        """n - 2: the smallest df of the clients' comparisons (conservative for the others)."""
        return float(self.logits.shape[1] - 2)

    @property
    def n_items(self) -> int:
        return int(self.logits.shape[1])

    def changes(self, margin: float) -> list[MarginChange]:
        """Client i's items against the per-item median of the others (leave-one-out: a
        client's own values do not pull the median it is compared with), or of all clients
        when fewer than LOO_MIN_OTHERS others report: the "median" of two others is their mean,
        so one reply would set half of every other client's reference (with three clients, a
        client reporting perfect items got both honest ones named)."""
        out = []
        leave_out = len(self.nodes) - 1 >= LOO_MIN_OTHERS
        everyone = None if leave_out else np.median(self.logits, axis=0)
        for i in range(len(self.nodes)):
            centre = np.median(np.delete(self.logits, i, axis=0), axis=0) if leave_out \
                else everyone
            found = margin_change(_sigmoid(self.logits[i]), _sigmoid(centre),
                                  self.sign, margin)
            assert found is not None  # same length, probabilities, >= MIN_ITEMS: checked
            out.append(found)
        return out

    def z(self, margin: float) -> list[float]:
        return [c.z(margin) for c in self.changes(margin)]


def margin_clients(items: Mapping[int, Sequence[float]], sign: float, min_clients: int
                   ) -> MarginClients | None:
    """Every client's probabilities, compared item by item with the others' median (None
    unless at least `min_clients` report soft-rate items of one length)."""
    nodes = sorted(items)
    lengths = {len(items[n]) for n in nodes}
    if len(nodes) < min_clients or len(lengths) != 1 or lengths.pop() < MIN_ITEMS \
            or not all(is_soft_rate(items[n]) for n in nodes):
        return None
    return MarginClients(tuple(nodes), np.stack([logits(items[n]) for n in nodes]), sign)


def paired_level(now: Sequence[float] | None, ref: Sequence[float] | None, sign: float,
                 tol: float, margin_scale: bool) -> PairedChange | MarginChange | None:
    """The paired level evidence of one metric: on the margin scale when asked and the items
    are probabilities, else the mean of paired differences."""
    found = margin_change(now, ref, sign, tol) if margin_scale else None
    return found if found is not None else paired_change(now, ref, sign)


def paired_client_test(items: Mapping[int, Sequence[float]], sign: float, min_clients: int,
                       margin_scale: bool) -> PairedClients | MarginClients | None:
    """The paired per-client evidence: margin scale when asked and every client given sent
    probabilities, else excess over the per-item median."""
    found = margin_clients(items, sign, min_clients) if margin_scale else None
    return found if found is not None else paired_clients(items, sign, min_clients)
