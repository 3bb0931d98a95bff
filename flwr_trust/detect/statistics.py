"""Small robust statistics shared by the detectors: Student t tails, alpha spending, medians,
and the per-metric summary of client reports (`ClientStats`).

Why hand-written t tails: the detectors need P(T > t) for integer df in tight loops, and the
closed forms (Abramowitz & Stegun 26.7.3-4) avoid a SciPy dependency for two functions.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from statistics import NormalDist

MIN_CLIENTS = 3  # robust statistics (median, MAD) need at least this many values
MAD_SCALE = 1.4826  # makes the MAD a consistent estimate of the standard deviation (normal data)
MEDIAN_SE = math.sqrt(math.pi / 2)  # SE of the median of n normal values = 1.2533 sd / sqrt(n)
# A clear report without the per-item values the others sent (`capped_sampling`): its
# declared stderr counts at most this multiple of theirs.
SAMPLING_SE_CAP = 3.0
DF_CAP = 100  # t df above this are capped (t(100) has heavier tails than t(df): the safe side)
_TINY = 1e-12


def t_quantile(p: float, df: int) -> float:
    """The t with P(T > t) = p for Student's t with integer df (0 < p < 1/2), by bisection.

    t quantiles are never below the normal one, which is where the search starts.
    """
    lo = hi = NormalDist().inv_cdf(1.0 - p)
    while t_sf(hi, df) > p:
        lo, hi = hi, 2.0 * hi
    for _ in range(200):  # bisection down to ~1e-9 relative
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if t_sf(mid, df) > p else (lo, mid)
        if hi - lo < 1e-9 * hi:
            break
    return hi


def t_sf(t: float, df: int) -> float:
    """P(T > t) for Student's t with integer df, t >= 0 (Abramowitz & Stegun 26.7.3-4)."""
    theta = math.atan(t / math.sqrt(df))
    s, c2 = math.sin(theta), math.cos(theta) ** 2
    if df % 2 == 0:  # A = sin(th) * (1 + 1/2 c^2 + 1*3/(2*4) c^4 + ...)
        term = total = 1.0
        for k in range(1, df // 2):
            term *= (2 * k - 1) / (2 * k) * c2
            total += term
        inside = s * total
    else:  # A = 2/pi * (th + sin(th) cos(th) * (1 + 2/3 c^2 + 2*4/(3*5) c^4 + ...))
        term = total = 1.0
        for k in range(1, (df - 1) // 2):
            term *= (2 * k) / (2 * k + 1) * c2
            total += term
        series = s * math.sqrt(c2) * total if df > 1 else 0.0
        inside = 2.0 / math.pi * (theta + series)
    return max(0.0, 0.5 * (1.0 - inside))


HORIZON_SHARE = 0.9
"""With a planned horizon of T looks, the share of alpha spent evenly over them; the rest
covers any looks beyond T (a run resumed or extended past its plan)."""


def spend(alpha: float, look: int, horizon: int = 0) -> float:
    """Budget of the look-th test of a sequence (1-based); the sum over all looks is <= alpha.

    horizon = 0 (open-ended): alpha * 6 / (pi^2 t^2), valid for any number of looks but
    stingy late (look 4 gets 1/16 of look 1's share). horizon = T > 0 (the run's planned
    rounds): alpha * HORIZON_SHARE / T at every look t <= T, and the remaining
    alpha * (1 - HORIZON_SHARE) spread as 6 / (pi^2 (t - T)^2) over looks after T."""
    t = max(1, look)
    if horizon <= 0:
        return alpha * 6.0 / (math.pi**2 * t**2)
    if t <= horizon:
        return alpha * HORIZON_SHARE / horizon
    return alpha * (1.0 - HORIZON_SHARE) * 6.0 / (math.pi**2 * (t - horizon) ** 2)


def upper_p(z: float, df: float = math.inf) -> float:
    """One-sided P(Z > z): normal for df = inf, else Student t with floor(min(df, DF_CAP)) df."""
    if math.isinf(df):
        return 0.5 * math.erfc(z / math.sqrt(2.0))
    d = max(1, int(min(df, DF_CAP)))
    return t_sf(z, d) if z >= 0 else 1.0 - t_sf(-z, d)


@lru_cache(maxsize=1024)
def critical_z(p: float, df: float = math.inf) -> float:
    """The z with upper_p(z, df) = p (0 < p < 1/2)."""
    if math.isinf(df):
        return -NormalDist().inv_cdf(p)
    return t_quantile(p, max(1, int(min(df, DF_CAP))))


def capped_sampling(sampling: list[float], vouched: list[bool]) -> list[float]:
    """Each client's sampling stderr for the per-client test, where a clear report without
    per-item values counts at most SAMPLING_SE_CAP x the median of those with them.

    The server asks every clear client for per-item values, and an honest one sends them for
    every item-mean metric; the paired test then reads the items, not the declared stderr.
    A reply that leaves them out and declares a wide stderr (0.3-0.5 on a rate, measured in
    review) would otherwise widen only its own test. `vouched`: items sent, or DP-noised (whose
    noise is part of its privacy, audited separately). No cap when nobody sent items (e.g.
    bootstrap metrics such as ECE: honest stderrs near saturation differ tenfold)."""
    with_items = [s for s, v in zip(sampling, vouched, strict=True) if v]
    if not with_items or len(with_items) == len(sampling):
        return sampling
    limit = SAMPLING_SE_CAP * median(with_items)
    return [s if v else min(s, limit) for s, v in zip(sampling, vouched, strict=True)]


def median(values: list[float]) -> float:
    """Median of a short list (pure Python: faster than numpy for the few clients of a round)."""
    v = sorted(values)
    n = len(v)
    return 0.5 * (v[(n - 1) // 2] + v[n // 2])


@dataclass
class ClientStats:
    """Reports of one metric across clients: values, their known noise SDs and robust summary.

    spread:    1.4826 * MAD of the values (covers heterogeneity and noise), floored
    median_se: stderr of the median as an estimate of the population's value:
               sqrt(1.2533^2 (spread^2 + median noise^2) / n + shared^2). The first term is
               what differs between clients (conservative by up to sqrt(2) when they agree;
               the median of the declared noise variances, not their mean, so that one reply
               declaring a huge noise cannot blind every other client's test); the
               second, `shared_se`, is the median of the clients' reported sampling stderr:
               clients that score the same probe items share those items' sampling error, which
               does not shrink with the number of clients (without it, ten clients scoring the
               same 7 items looked as certain as one client scoring 70)
    df:        2 (n - 1), the Student t reference of (median - truth) / median_se, calibrated by
               simulation (docs/detection.md): the MAD is noisy for few clients
    """

    nodes: tuple[int, ...]
    x: tuple[float, ...]
    noise: tuple[float, ...]  # sqrt(stderr^2 + noise_std^2) per client
    median: float
    spread: float
    median_se: float
    shared_se: float = 0.0

    @classmethod
    def of(cls, nodes: list[int], x: list[float], noise: list[float], floor: float,
           sampling: list[float] | None = None) -> ClientStats:
        """`noise`: each client's total noise SD; `sampling`: its item-sampling stderr alone."""
        med = median(x)
        spread = max(MAD_SCALE * median([abs(v - med) for v in x]), floor, _TINY)
        known = median([k * k for k in noise])  # robust: one reply cannot set it
        shared = median(sampling) if sampling else 0.0
        se = math.sqrt(MEDIAN_SE**2 * (spread**2 + known) / len(x) + shared**2)
        return cls(tuple(nodes), tuple(x), tuple(noise), med, spread, se, shared)

    @property
    def df(self) -> float:
        return 2.0 * (len(self.x) - 1)

    def outlier_z(self, sign: float, margin: float) -> list[float]:
        """Per client: (signed excess over the median - margin) / sqrt(spread^2 + noise^2 +
        median_se^2). The null "at most `margin` worse than the median" makes heterogeneity
        part of the question: only noise is left, which the denominator bounds, so the normal
        reference holds without knowing how much honest clients differ (docs/detection.md)."""
        # The shared item-sampling error cancels in client - median (same items): left out.
        base = self.spread**2 + self.median_se**2 - self.shared_se**2
        return [(sign * (x - self.median) - margin) / math.sqrt(base + k * k)
                for x, k in zip(self.x, self.noise, strict=True)]
