"""The Gaussian mechanism: clip, scale noise to each statistic's sensitivity, add it.

A private release is a set of statistics computed on data the server must not learn about
(local samples, or a model the server does not see). Each statistic carries its own L2
sensitivity: how far its value can move when one local sample is substituted (or, for a hidden
model, the whole range of the metric). Every statistic gets Gaussian noise with standard
deviation ``noise_multiplier * sensitivity``.

One substitution may move all m statistics of a release at once, so the release, seen as one
vector scaled to unit sensitivity per statistic, has L2 sensitivity sqrt(m). It is therefore one
Gaussian mechanism with noise multiplier ``noise_multiplier / sqrt(m)``: that is what the
accountant is charged (`effective_noise_multiplier`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Statistic:
    """A value (scalar or vector) computed on private inputs, before noise.

    sensitivity: a scalar, or one scale per coordinate, such that substituting one local sample
    moves the value by a vector d with sum_i (d_i / sensitivity_i)^2 <= 1. A scalar s on a
    vector means an L2 sensitivity of s; per-coordinate scales fit blocks of disjoint groups,
    where one substitution moves one coordinate only.
    """

    name: str
    value: np.ndarray
    sensitivity: float | np.ndarray

    def __post_init__(self) -> None:
        value = np.atleast_1d(np.asarray(self.value, dtype=np.float64))
        if value.ndim != 1 or value.size == 0:
            raise ValueError(f"statistic {self.name!r} must be a scalar or a 1-D vector")
        if not np.isfinite(value).all():
            raise ValueError(f"statistic {self.name!r} is not finite: clip it before release")
        scale = np.broadcast_to(np.asarray(self.sensitivity, dtype=np.float64), value.shape)
        if not (np.isfinite(scale).all() and (scale > 0).all()):
            raise ValueError(f"statistic {self.name!r} needs positive finite sensitivities")
        object.__setattr__(self, "value", value)
        object.__setattr__(self, "sensitivity", scale.copy())

    @classmethod
    def scalar(cls, name: str, value: float, sensitivity: float) -> Statistic:
        return cls(name, np.asarray([value], dtype=np.float64), sensitivity)


@dataclass(frozen=True)
class Noised:
    """A released statistic: its noised value and the std of the noise of each coordinate."""

    name: str
    value: np.ndarray
    noise_std: np.ndarray

    @property
    def scalar(self) -> float:
        return float(self.value[0])


def clipped_mean(values: Sequence[float] | np.ndarray, bound: float) -> tuple[float, float]:
    """Mean of values clipped to [0, bound] and its sensitivity bound / n under substitution."""
    arr = np.clip(np.asarray(values, dtype=np.float64), 0.0, bound)
    if arr.size == 0:
        raise ValueError("clipped_mean needs at least one value")
    # The mean of values in [0, bound] can exceed bound by a rounding ulp: clamp it back.
    return min(max(float(arr.mean()), 0.0), bound), bound / arr.size


def noise_std(sensitivity: float, noise_multiplier: float) -> float:
    """Standard deviation of the Gaussian noise for one statistic."""
    return float(noise_multiplier * sensitivity)


def effective_noise_multiplier(noise_multiplier: float, n_statistics: int) -> float:
    """Noise multiplier of the joint release of n statistics (what the accountant is charged)."""
    if n_statistics < 1:
        raise ValueError("a release needs at least one statistic")
    return noise_multiplier / math.sqrt(n_statistics)


def gaussian_release(stats: Sequence[Statistic], noise_multiplier: float,
                     rng: np.random.Generator) -> Mapping[str, Noised]:
    """Add N(0, (noise_multiplier * sensitivity_i)^2) to coordinate i of every statistic."""
    if not (math.isfinite(noise_multiplier) and noise_multiplier > 0):
        raise ValueError("noise_multiplier must be positive and finite")
    names = [s.name for s in stats]
    if len(set(names)) != len(names):
        raise ValueError("statistic names in one release must be unique")
    out: dict[str, Noised] = {}
    for stat in stats:
        std = noise_multiplier * np.asarray(stat.sensitivity)
        out[stat.name] = Noised(stat.name, stat.value + rng.normal(0.0, 1.0, stat.value.shape)
                                * std, std)
    return out
