"""Private metrics before noise: what to release (statistics with sensitivities) and how each
released coordinate is reported (key, n, public stderr bound), plus why expected ones are absent.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from flwr_trust.privacy.mechanism import Statistic


@dataclass(frozen=True)
class PrivateMetric:
    """One reported private metric: coordinate `index` of the statistic named `stat`."""

    key: str  # reported as trust.<key>
    n: int
    stderr_bound: float  # a public bound on its sampling stderr: range / (2 sqrt(n))
    stat: str
    index: int = 0


@dataclass
class PrivateSet:
    """The private metrics of one message before noise: what to report, what to noise, and why
    some expected metrics are absent (key -> reason)."""

    metrics: list[PrivateMetric] = field(default_factory=list)
    statistics: list[Statistic] = field(default_factory=list)
    absent: dict[str, str] = field(default_factory=dict)

    def add(self, key: str, value: float, sensitivity: float, n: int, span: float) -> None:
        """A scalar statistic reported under `key`, its stderr bound span / (2 sqrt(n))."""
        self.statistics.append(Statistic.scalar(key, value, sensitivity))
        self.metrics.append(PrivateMetric(key, n, span / (2 * math.sqrt(n)), key))

    def add_block(self, name: str, entries: list[tuple[str, float, float, int]],
                  span: float) -> None:
        """Disjoint groups released as one vector statistic: (key, value, sensitivity, n) per
        coordinate; one substitution moves one coordinate only."""
        self.statistics.append(Statistic(name, np.asarray([e[1] for e in entries]),
                                         np.asarray([e[2] for e in entries])))
        self.metrics += [PrivateMetric(key, n, span / (2 * math.sqrt(n)), name, i)
                         for i, (key, _, _, n) in enumerate(entries)]

    def merge(self, other: PrivateSet) -> None:
        self.metrics += other.metrics
        self.statistics += other.statistics
        self.absent |= other.absent
