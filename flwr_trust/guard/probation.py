"""Probation: a named client stays out until its own reports (or updates) recover.

A client is named once, by a test at the run's false-alarm budget: a per-client alarm on its
report, leave-one-out (or the screen) after a rollback, or the update checks. Without memory
it would be averaged in again the next round, where that test gets a smaller share of the
budget (alpha spending, docs/detection.md), so an attacker that keeps going can slip back in:
measured on SmolLM2 with a late onset (docs/detection_matrix.md). On probation a client is
left out of every later round until its own report on each metric it was named for is no
worse than the median of the other reporting clients (those not on probation for it) by more
than the metric's tolerance.

That release check is a point estimate, not a new test: it spends no false-alarm budget, and a
client flagged by chance is back as soon as its report is ordinary again. With fewer than
three other reporting clients (the median of two is their mean, which one of them would set)
the comparison is the server's own probe of the run's reference model, when there is one. A
client on probation that sends no usable report for the metric, that has nothing to be
compared with, or whose report this round's integrity audit contradicted stays out: nothing
shows that it recovered. Where the server can probe client models (no secure aggregation), a
client on probation is audited every round whatever `trust.audit-fraction`, and only an
audited, consistent report can release it: else a client could simply report recovery. A
client the update checks named is released by its own update: one that is not flagged and
whose norm and cosine z-scores are ordinary (`ordinary_update`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from flwr_trust import modes
from flwr_trust.detect.statistics import MIN_CLIENTS, median, t_quantile
from flwr_trust.detect.update_thresholds import mad_z_df

PEERS_FOR_MEDIAN = 3  # the median of two peers is their mean: one of them would decide
Key = tuple[str, str]  # (mode, metric), e.g. ("alignment", "refusal-rate")
# Named by the update checks: released by its own later update, not by a report. An attacker's
# first poisoned update is flagged, its next ones need not be (on SmolLM2 a 1-of-4 poisoner's
# norm z fell from 43-58 to 12-16, under the threshold of 40, and it was averaged in again).
UPDATE_KEY: Key = ("update", "checks")
Reports = Mapping[int, Mapping[str, Mapping[str, Any]]]  # node -> mode -> metric -> Observation


@dataclass
class Probation:
    """Who is on probation, and for which metrics."""

    named: dict[int, set[Key]] = field(default_factory=dict)

    def add(self, nodes: Iterable[int], keys: Iterable[Key]) -> None:
        """Put `nodes` on probation for `keys`: report metrics, or UPDATE_KEY for a client the
        update checks flagged (integrity flags recur by themselves and are not tracked)."""
        watched = {k for k in keys if k == UPDATE_KEY or modes.metric(*k) is not None}
        if not watched:
            return
        for node in nodes:
            self.named.setdefault(node, set()).update(watched)

    def review(self, reports: Reports, tolerance: Callable[[str, str], float], *,
               reference: Callable[[str, str], float | None] | None = None,
               distrusted: Collection[int] = (),
               verified: Collection[int] | None = None,
               update_ordinary: Callable[[int], bool] | None = None
               ) -> tuple[list[int], list[int]]:
        """(still out, released) after this round's reports; released clients leave the list.

        `reference(mode, metric)`: the server's own value of the metric on the run's reference
        model, the comparison when fewer than three other clients are off probation (else one
        remaining client would decide alone whether the others come back). `distrusted`:
        clients whose reports this round's audit contradicted; they are not released.
        `verified`: when the server can audit, the clients it audited this round and found
        consistent; only they can be released (None: no audit possible, reports decide).
        `update_ordinary(node)`: whether the node's update this round is unremarkable (for
        UPDATE_KEY; None: nobody named by the update checks is released).
        """
        kept, released = [], []
        for node, keys in sorted(self.named.items()):
            report_keys = keys - {UPDATE_KEY}
            update_ok = UPDATE_KEY not in keys or (
                update_ordinary is not None and update_ordinary(node))
            if update_ok and (not report_keys or (
                    node not in distrusted and (verified is None or node in verified)
                    and all(self._recovered(node, key, reports, tolerance, reference)
                            for key in report_keys))):
                released.append(node)
            else:
                kept.append(node)
        for node in released:
            del self.named[node]
        return kept, released

    def _recovered(self, node: int, key: Key, reports: Reports,
                   tolerance: Callable[[str, str], float],
                   reference: Callable[[str, str], float | None] | None) -> bool:
        mode, metric = key
        spec = modes.metric(mode, metric)
        own = _value(reports.get(node), mode, metric)
        others = [v for n, r in reports.items()
                  if n != node and key not in self.named.get(n, ())
                  and (v := _value(r, mode, metric)) is not None]
        if spec is None or own is None:
            return False
        if len(others) >= PEERS_FOR_MEDIAN:
            centre: float | None = median(others)
        else:
            centre = reference(mode, metric) if reference is not None else None
        if centre is None or not math.isfinite(centre):
            return False
        return spec.sign * (own - centre) <= tolerance(mode, metric)

    def to_json(self) -> dict[str, list[str]]:
        return {str(n): sorted(f"{m}.{x}" for m, x in keys) for n, keys in self.named.items()}

    @classmethod
    def from_json(cls, data: Any) -> Probation:
        """The probation a round record saved (malformed entries are skipped)."""
        out = cls()
        if not isinstance(data, Mapping):
            return out
        for node, keys in data.items():
            try:
                parsed = {tuple(k.split(".", 1)) for k in keys if isinstance(k, str) and "." in k}
                out.add([int(node)], parsed)  # type: ignore[arg-type]
            except (TypeError, ValueError):
                continue
        return out


def _value(report: Mapping[str, Mapping[str, Any]] | None, mode: str, metric: str
           ) -> float | None:
    obs = (report or {}).get(mode, {}).get(metric)
    value = getattr(obs, "value", None)
    return float(value) if isinstance(value, (int, float)) else None


def values_of(profile: Any) -> Callable[[str, str], float | None]:
    """(mode, metric) -> the value a server profile (e.g. the run's reference) holds, or None."""
    def value(mode: str, metric: str) -> float | None:
        mv = profile.get(mode, metric) if profile is not None else None
        return mv.value if mv is not None and mv.n > 0 else None
    return value


def ordinary_update(result: Any) -> Callable[[int], bool]:
    """node -> whether its update in this round's `UpdateCheckResult` is unremarkable: not
    flagged, and its norm and direction z-scores (the cosine against the reference the
    cosine test uses, `z_direction`) within the two-sided 1% t quantile of one test
    (no multiplicity correction: staying out costs an honest client a round, coming back
    costs the federation a poisoned one). Like the report rule, a point check, not a test."""
    scored = {n: s for n, s in result.stats.items() if "z_norm" in s and "z_cosine" in s}
    if len(scored) < MIN_CLIENTS:
        return lambda node: False
    limit = t_quantile(0.005, mad_z_df(len(scored)))

    def ordinary(node: int) -> bool:
        s = scored.get(node)
        return (s is not None and node not in result.flagged
                and float(s["z_norm"]) <= limit
                and float(s.get("z_direction", s["z_cosine"])) >= -limit)
    return ordinary
