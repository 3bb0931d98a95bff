"""Small statistics shared by the mode scorers: means, proportions and bootstrap errors.

They return `MetricValue`s with the default direction; the mode registry stamps each metric's
declared direction (`FailureMode.stamp`), so no scorer states it again.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from flwr_trust.scoring.profile import MetricValue

BOOTSTRAP_SAMPLES = 200


def mean_metric(values: np.ndarray) -> MetricValue:
    """Sample mean with its standard error (std / sqrt(n)); NaN when there is no data."""
    values = np.asarray(values, dtype=np.float64)
    n = int(values.size)
    if n == 0:
        return MetricValue(math.nan, math.nan, 0)
    stderr = float(values.std(ddof=1) / math.sqrt(n)) if n > 1 else math.nan
    return MetricValue(float(values.mean()), stderr, n, items=tuple(values.tolist()))


def proportion_metric(hits: np.ndarray) -> MetricValue:
    """Share of true values with the Agresti-Coull standard error sqrt(q(1-q)/(n+4)),
    q = (hits+2)/(n+4).

    The plain binomial sqrt(p(1-p)/n) is 0 at p = 0 or 1, which small groups often reach
    (6 of 6 pairs): a detector dividing a one-item change by it would see z in the billions.
    The adjusted error equals the binomial one for large n and stays honest for small n.
    """
    hits = np.asarray(hits, dtype=np.float64)
    n = int(hits.size)
    if n == 0:
        return MetricValue(math.nan, math.nan, 0)
    p = float(hits.mean())
    q = (float(hits.sum()) + 2.0) / (n + 4.0)
    return MetricValue(p, math.sqrt(q * (1 - q) / (n + 4.0)), n, items=tuple(hits.tolist()))


def bootstrap_metric(statistic: Callable[[np.ndarray], float], n: int,
                     seed: int = 0) -> MetricValue:
    """A statistic of items 0..n-1 with a bootstrap standard error (fixed seed: deterministic).

    Used where no closed form exists (ECE, max-min gaps across groups).
    """
    if n == 0:
        return MetricValue(math.nan, math.nan, 0)
    rng = np.random.default_rng(seed)
    full = statistic(np.arange(n))
    reps = [statistic(rng.integers(0, n, n)) for _ in range(BOOTSTRAP_SAMPLES)]
    reps_arr = np.asarray([r for r in reps if math.isfinite(r)])
    stderr = float(reps_arr.std(ddof=1)) if reps_arr.size > 1 else math.nan
    return MetricValue(float(full), stderr, n)


def sigmoid(x: np.ndarray) -> np.ndarray:
    """The probability of the first of two choices from their log-likelihood margin."""
    x = np.asarray(x, dtype=np.float64)
    return 0.5 * (1.0 + np.tanh(0.5 * x))  # = 1 / (1 + exp(-x)), without overflow


def soft_rate(probabilities: np.ndarray) -> MetricValue:
    """A soft rate: the mean of per-item probabilities (the model's expected share), with the
    stderr of a mean; it moves with every item's margin before any hard decision flips."""
    return mean_metric(np.clip(np.asarray(probabilities, dtype=np.float64), 0.0, 1.0))


def softmax_rows(logliks: np.ndarray) -> np.ndarray:
    """Normalize each row of choice log-likelihoods into probabilities over the choices."""
    shifted = logliks - logliks.max(axis=1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=1, keepdims=True)


def minimum_detectable_effect(n: int, p0: float = 0.5, alpha: float = 0.05,
                              power: float = 0.8) -> float:
    """Smallest shift of a proportion from p0 that a two-sided level-alpha test on n items
    detects with the given power: (z_{1-alpha/2} + z_power) * sqrt(p0 (1 - p0) / n)."""
    from statistics import NormalDist

    if n <= 0:
        return math.inf
    z = NormalDist().inv_cdf(1 - alpha / 2) + NormalDist().inv_cdf(power)
    return z * math.sqrt(p0 * (1 - p0) / n)
