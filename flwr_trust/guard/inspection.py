"""Tightened inspection: after a rollback, the next candidates must show they are back.

A candidate's population alarm is a test at the run's false-alarm budget of H0: its
degradation is within the tolerance. Once it has fired, the rollback keeps the previous model,
but without memory the next round's candidate only has to escape the same test, now with a
smaller share of the budget (alpha spending). When the cause is shared by the clients (every
one of them over-trains, say), that candidate is trained the same way from the kept model and
is nearly as bad: measured on SmolLM2, calibration drift refused in round 3 and passed in
round 4 in two of three seeds with a degradation of 0.23-0.26 against a tolerance of 0.10
(docs/detection_matrix.md).

So, as in acceptance sampling's tightened inspection, the burden of proof turns after an
alarm: for each (mode, metric) that failed, a later candidate is refused while its measured
degradation (the point estimate, in the metric's own units) is beyond the tolerance, and the
metric is released as soon as a candidate measures within it. That rule is not a new test: it
acts only after an alarm, so the run's chance of a first false alarm stays within alpha; for a
candidate whose true degradation is delta, with standard error se, it refuses with probability
about Phi((delta - tolerance) / se). A candidate with no measurement of a watched metric is
refused too: nothing shows that it is back. The state goes into every round's gate record, so
a resumed guard keeps it (core.py).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from flwr_trust import modes
from flwr_trust.report.records import num

Key = tuple[str, str]  # (mode, metric)


@dataclass
class Inspection:
    """The (mode, metric)s under tightened inspection, each with the round that began it."""

    since: dict[Key, int] = field(default_factory=dict)

    def begin(self, keys: Iterable[Key], rnd: int) -> None:
        """Watch `keys` from round `rnd` on (a key already watched keeps its first round)."""
        for key in keys:
            if modes.metric(*key) is not None:
                self.since.setdefault(key, rnd)

    def review(self, population: Mapping[str, Mapping[str, Mapping[str, Any]]]
               ) -> list[str]:
        """Release the watched metrics the candidate measures within tolerance; return one
        line per metric still beyond it (or unmeasured): the reasons to refuse it."""
        beyond: list[str] = []
        for (mode, metric), rnd in sorted(self.since.items()):
            row = population.get(mode, {}).get(metric, {})
            d, tol = num(row.get("degradation")), num(row.get("tolerance"))
            if d is None or tol is None:
                beyond.append(f"{mode}.{metric} not measured (watched since round {rnd})")
            elif d > tol:
                beyond.append(f"{mode}.{metric} degradation {d:+.3g} beyond tolerance "
                              f"{tol:.3g} (watched since round {rnd})")
            else:
                del self.since[(mode, metric)]
        return beyond

    def to_json(self) -> dict[str, int]:
        """{"mode.metric": round it began}, for the round's gate record."""
        return {f"{mode}.{metric}": rnd for (mode, metric), rnd in sorted(self.since.items())}

    @classmethod
    def from_json(cls, data: Any) -> Inspection:
        """The state `to_json` wrote; entries that name no known metric or round are dropped
        (an audit log is read back, never trusted to be well formed)."""
        inspection = cls()
        if not isinstance(data, Mapping):
            return inspection
        for name, rnd in data.items():
            mode, _, metric = str(name).partition(".")
            if type(rnd) is int and rnd >= 0 and modes.metric(mode, metric) is not None:
                inspection.since[(mode, metric)] = rnd
        return inspection
