"""What a failure mode is: its metrics, stated once, with how to score and privatize them.

A `FailureMode` is the single declaration every other part reads: the scorer (`requests` and
`compute`), probe-suite validation (`check_item`), the detectors (each watched `Metric`'s
direction, tolerance, reference and per-group / victim rules), the client mod (which metric is
the headline released for a hidden model, and with which range; which metrics are private), the
report (titles, units) and the CLI (`sample`: what a suite's n counts). Adding a mode is one
module with a `FailureMode` plus one probe-suite data file (see `flwr_trust.modes.register`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal, Protocol

if TYPE_CHECKING:
    import numpy as np

    from flwr_trust.privacy.private_set import PrivateSet
    from flwr_trust.probes.suite import ProbeItem, ProbeSuite
    from flwr_trust.scoring.encoding import Encoder
    from flwr_trust.scoring.engine import Request, Scores
    from flwr_trust.scoring.profile import BehaviorProfile, MetricValue

Direction = Literal["higher", "lower"]
Source = Literal["public", "private"]
Range = tuple[float, float] | Callable[["ProbeSuite"], tuple[float, float]]


@dataclass(frozen=True)
class Metric:
    """One metric of a mode.

    name:        kebab-case, unique within its mode (reported as ``trust.<mode>.<name>``)
    worse:       the direction of a degradation
    description: what it measures, in its units
    range:       (low, high) of its values, or a function of the probe suite (e.g. bits over
                 the suite's candidates); a hidden model's headline is clipped to it and its
                 whole span is the release's sensitivity; (0, 1) marks a share or probability
    tolerance:   default practical-significance margin in the metric's units; None: reported,
                 not watched by the detectors
    headline:    the mode's main metric: the one released (noised) for a model the server does
                 not see, and the one the CLI's suite table is about
    source:      "public" (scored on probes) or "private" (computed on a client's local data)
    per_group:   also reported per group as ``<name>/<group>``
    watch_groups: the per-group variants are watched too (with the same tolerance)
    victim:      a client far worse than the median is a victim of the federation, not a
                 culprit: tested against median x (1 + tolerance), raised as a population alarm
    reference:   fixed reference of a private metric the server cannot measure at round 0
    """

    name: str
    worse: Direction
    description: str
    range: Range | None = (0.0, 1.0)
    tolerance: float | None = None
    headline: bool = False
    source: Source = "public"
    per_group: bool = False
    watch_groups: bool = False
    victim: bool = False
    reference: float | None = None

    @property
    def watched(self) -> bool:
        return self.tolerance is not None

    @property
    def sign(self) -> float:
        """+1 if higher is worse, -1 if lower is worse: degradation = sign x (now - reference)."""
        return 1.0 if self.worse == "higher" else -1.0

    @property
    def unit_interval(self) -> bool:
        return self.range == (0.0, 1.0)

    def span(self, suite: ProbeSuite | None = None) -> tuple[float, float]:
        """The metric's (low, high); needs the suite when the range depends on it."""
        if callable(self.range):
            if suite is None:
                raise ValueError(f"the range of {self.name} depends on the probe suite")
            return self.range(suite)
        return self.range if self.range is not None else (-math.inf, math.inf)


class LocalEvidence(Protocol):
    """What a mode's private statistic may read of a client's local data (see
    `flwr_trust.reporter.local.LocalEvidence`): losses are per-sample mean token NLLs of
    the model being reported, computed once and shared by every mode."""

    loss_bound: float
    groups: tuple[str, ...]

    def heldout(self) -> tuple[np.ndarray, np.ndarray]: ...
    def train(self) -> np.ndarray: ...
    def canaries(self) -> tuple[str, ...]: ...
    def profile(self, suites: Mapping[str, ProbeSuite]) -> BehaviorProfile: ...
    def suite(self, mode: str) -> ProbeSuite | None: ...


@dataclass(frozen=True)
class SampleCount:
    """What n counts in a suite for the mode's headline metric (the CLI's detectable effect)."""

    unit: str
    count: Callable[[ProbeSuite], int]
    metric: str = ""  # the metric it is about; "" = the headline


@dataclass(frozen=True)
class FailureMode:
    """One silent-failure mode: metrics, scorer, item rules and private statistic.

    requests(suite, encoder) -> the token requests to score, in a fixed order
    compute(suite, scores) -> metric name -> MetricValue (direction is stamped by the registry)
    check_item(item) -> "" if the item fits this mode, else what is wrong
    private(evidence) -> the mode's statistics on a client's local data (None: no private part)
    planted_only: clients probe the mode's public suite only when they declared items of it
                  planted in their training data (canaries): on a model that never saw them the
                  public metric is chance, and the server's probe of the aggregate covers
                  undeclared planting
    """

    id: str
    title: str
    summary: str
    metrics: tuple[Metric, ...]
    requests: Callable[[ProbeSuite, Encoder], list[Request]]
    compute: Callable[[ProbeSuite, Scores], dict[str, MetricValue]]
    check_item: Callable[[ProbeItem], str]
    sample: SampleCount
    private: Callable[[LocalEvidence], PrivateSet] | None = None
    planted_only: bool = False
    suite_file: str = ""  # default suite, relative to flwr_trust/probes/data/ ("" = none)
    _by_name: dict[str, Metric] = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        names = [m.name for m in self.metrics]
        if len(set(names)) != len(names):
            raise ValueError(f"mode {self.id!r} declares a metric twice")
        headlines = [m.name for m in self.metrics if m.headline]
        if len(headlines) != 1:
            raise ValueError(f"mode {self.id!r} needs exactly one headline metric, "
                             f"has {headlines}")
        if self.headline_metric().range is None:
            raise ValueError(f"the headline of mode {self.id!r} needs a range: its span is the "
                             "sensitivity of a hidden model's release")
        self._by_name.update({m.name: m for m in self.metrics})

    def headline_metric(self) -> Metric:
        return next(m for m in self.metrics if m.headline)

    def metric(self, name: str) -> Metric | None:
        """The declared metric of `name`, also for a per-group variant ``<metric>/<group>``."""
        base, sep, _ = name.partition("/")
        found = self._by_name.get(base)
        return found if found is not None and (not sep or found.per_group) else None

    def watch(self, name: str) -> Metric | None:
        """The metric if the detectors watch `name` (group variants only with watch_groups)."""
        found = self.metric(name)
        if found is None or not found.watched or ("/" in name and not found.watch_groups):
            return None
        return found

    @property
    def headline(self) -> Metric:
        return self.headline_metric()

    def public_keys(self) -> list[str]:
        """The "<metric>" names a client reports for this mode's public probe (no groups)."""
        return [m.name for m in self.metrics if m.source == "public"]

    def private_metrics(self) -> tuple[Metric, ...]:
        return tuple(m for m in self.metrics if m.source == "private")

    def stamp(self, values: Mapping[str, MetricValue]) -> dict[str, MetricValue]:
        """The scorer's values with each metric's declared direction (`worse`)."""
        import dataclasses

        out = {}
        for name, mv in values.items():
            declared = self.metric(name)
            if declared is None:
                raise ValueError(f"mode {self.id!r} scored undeclared metric {name!r}")
            out[name] = dataclasses.replace(mv, worse=declared.worse)
        return out


def choice_problem(item: ProbeItem) -> str:
    """The rule every choice mode shares: at least two choices to compare."""
    return "" if len(item.choices) >= 2 else "needs at least two 'choices'"
