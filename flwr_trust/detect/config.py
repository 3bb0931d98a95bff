"""Detection settings of one run: false-alarm budget, tolerances, enabled modes, trend window.

Tolerances default to each watched metric's declaration (flwr_trust.modes); run-config keys
are parsed by flwr_trust.config.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

from flwr_trust import modes as registry
from flwr_trust.detect.statistics import MIN_CLIENTS
from flwr_trust.errors import TrustError

Family = Literal["level", "trend", "client"]
PairedScale = Literal["margin", "rate"]
PAIRED_SCALES: tuple[PairedScale, ...] = ("margin", "rate")
FAMILIES: tuple[Family, ...] = ("level", "trend", "client")


@dataclass(frozen=True)
class DetectorConfig:
    """Detection settings for one run.

    alpha:        per-run false-alarm budget over every behavioral test
    tolerances:   "mode.metric" -> tolerance, overriding the metric's declared default
    modes:        enabled modes (None: every registered mode)
    trend_window: W, rounds averaged by the trend test
    trend_rho:    assumed correlation of measurement errors between rounds (0: fresh probe items
                  or DP noise each round; 1: the same items rescored, the trend test adds nothing)
    split:        fractions of alpha for the (level, trend, client) families, summing to <= 1
    min_clients:  fewest client reports for a median estimate or a per-client test
    paired_scale: "margin": paired tests of soft rates (per-item probabilities, range (0, 1))
                  compare per-item logits, guarded by the rate's own change
                  (flwr_trust.detect.margin); "rate": mean of per-item probability changes
    horizon:      the run's planned rounds: alpha is spent evenly over them (statistics.spend)
                  instead of 6 / (pi^2 t^2) per look; 0 = open-ended; None = the rounds the
                  strategy is started with (TrustGuard.start's num_rounds), else open-ended
    reference_sampled: the modes whose clients score other items than the reference (a
                  per-round sample, or another subset than the server's; True = every mode):
                  the reference's own item-sampling stderr then enters the tests of the
                  clients' median, once per test (it is the same in every round, so the trend
                  test does not average it away)
    """

    alpha: float = 0.05
    tolerances: Mapping[str, float] = field(default_factory=dict)
    modes: tuple[str, ...] | None = None
    trend_window: int = 4
    trend_rho: float = 0.0
    split: tuple[float, float, float] = (0.4, 0.4, 0.2)
    min_clients: int = MIN_CLIENTS
    paired_scale: PairedScale = "margin"
    horizon: int | None = None
    reference_sampled: bool | frozenset[str] = frozenset()

    def __post_init__(self) -> None:
        if not 0.0 < self.alpha < 1.0:
            raise TrustError(f"alpha must be in (0, 1), got {self.alpha}.", "Use e.g. 0.05.")
        modes = registry.ids() if self.modes is None else tuple(self.modes)
        unknown = [m for m in modes if registry.find(m) is None]
        if unknown:
            raise TrustError(f"Unknown detection mode(s) {unknown}.",
                             f"Use some of {', '.join(registry.ids())}.")
        valid = registry.tolerance_keys()
        tols: dict[str, float] = {}
        for key, tol in dict(self.tolerances).items():
            mode, _, metric = key.partition(".")
            if registry.watched(mode, metric) is None:
                raise TrustError(f"Unknown tolerance key {key!r}.", f"Valid keys: {valid}.")
            if not (math.isfinite(float(tol)) and float(tol) >= 0.0):
                raise TrustError(f"Tolerance {key!r} = {tol} is not a number >= 0.",
                                 "Give the largest harmless degradation, in metric units.")
            tols[key] = float(tol)
        if unwatched := sorted(k for k in tols if k.partition(".")[0] not in modes):
            raise TrustError(f"Tolerance(s) {unwatched} set for modes that are not monitored "
                             f"(modes: {', '.join(modes)}): they would be ignored.",
                             "Add those modes to trust.modes, or remove the tolerances.")
        if self.trend_window < 2:
            raise TrustError(f"trend_window must be >= 2, got {self.trend_window}.", "Use 4.")
        if not 0.0 <= self.trend_rho <= 1.0:
            raise TrustError(f"trend_rho must be in [0, 1], got {self.trend_rho}.", "Use 0.")
        if len(self.split) != 3 or min(self.split) <= 0 or sum(self.split) > 1 + 1e-9:
            raise TrustError(f"split {self.split} is not 3 positive fractions summing to <= 1.",
                             "Use (0.4, 0.4, 0.2).")
        if self.min_clients < MIN_CLIENTS:
            raise TrustError(f"min_clients must be >= {MIN_CLIENTS}, got {self.min_clients}.",
                             "Robust statistics need at least 3 values.")
        if self.horizon is not None and (isinstance(self.horizon, bool)
                                         or not isinstance(self.horizon, int)
                                         or self.horizon < 0):
            raise TrustError(f"horizon must be an integer >= 0 or None, got {self.horizon!r}.",
                             "Give the run's number of rounds, 0 for an open-ended run, or "
                             "None for the rounds the strategy is started with.")
        if self.paired_scale not in PAIRED_SCALES:
            raise TrustError(f"paired_scale must be one of {PAIRED_SCALES}, got "
                             f"{self.paired_scale!r}.", "Use \"margin\" (the default).")
        sampled = self.reference_sampled
        sampled = frozenset(modes if sampled is True else () if sampled is False else sampled)
        object.__setattr__(self, "reference_sampled", sampled)
        object.__setattr__(self, "modes", modes)
        object.__setattr__(self, "tolerances", tols)
        object.__setattr__(self, "_cache", {})  # (mode, metric) -> tolerance, not a field

    def tolerance(self, mode: str, metric: str) -> float:
        """Configured tolerance for mode.metric (group key, then base key, then default)."""
        cache: dict[tuple[str, str], float] = self.__dict__["_cache"]
        if (mode, metric) not in cache:
            cache[mode, metric] = self._lookup(mode, metric)
        return cache[mode, metric]

    def _lookup(self, mode: str, metric: str) -> float:
        for key in (f"{mode}.{metric}", f"{mode}.{metric.partition('/')[0]}"):
            if key in self.tolerances:
                return self.tolerances[key]
        declared = registry.watched(mode, metric)
        if declared is None or declared.tolerance is None:
            raise TrustError(f"{mode}.{metric} is not watched.",
                             f"Use one of {registry.tolerance_keys()}.")
        return declared.tolerance

    def family_alpha(self, family: Family) -> float:
        return self.alpha * self.split[FAMILIES.index(family)]
