"""Continue a run from its audit log: a guard restarted on the folder of a run that crashed.

A new guard on a `run_dir` whose log already holds a run reads, instead of starting over:

- the ``reference`` record: the round-0 profile, never probed again (a later probe would
  measure the trained model, not the release the run started from);
- the last ``round`` record's ``monitors``: every behavioural monitor's look counters and trend
  histories, so alpha spending goes on where it stopped and the per-run false-alarm bound
  holds across the restart. One look per family is skipped on resume: the crashed round may
  have spent one before its record was written (skipping terms of the spending series only
  lowers the total). A log written before monitors were recorded (version 1) gets counters
  equal to its number of round records, an upper bound on the looks spent, and no trend history;
- the round records (the guard's `history`) and their alarms.

A run whose log has a ``run-end`` record is over: starting a guard on its folder is refused
(`refusal`), as is one whose probe suites or modes differ from the run's (its reference and
monitors would not apply). A reference handed to a new guard from an earlier run must come from
the same server items (`reference_mismatch`). A resumed guard writes a ``run-resume`` record
(records.RunResume).

Flower's `Strategy.start` counts rounds from 1 again after a restart; a resumed guard numbers
them after the log's last round (`round_offset`), unless the caller already continues the count.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from flwr_trust.detect.alarm import Alarm
from flwr_trust.detect.config import FAMILIES
from flwr_trust.detect.monitor_state import MonitorState
from flwr_trust.errors import TrustError
from flwr_trust.report.records import Reference, RoundRecord, RunEnd, RunResume, RunStart
from flwr_trust.report.torn import TornTail
from flwr_trust.scoring.profile import BehaviorProfile

log = logging.getLogger("flwr.trust")  # under Flower's logger: shown by `flwr run --stream`

SAME_SUITES = ("modes", "suite_hash", "server_suites")
DEFAULT_ITEMS_CHANGE = "the default was 32 before 2026-12-07, 100 since"
"""For errors about server items: logs and references older than that probed 32 per mode."""
"""Run-start fields a resumed guard must share with the run: what its evidence is about."""


@dataclass
class PriorRun:
    """What the folder's log holds of an earlier guard's run (first record of each kind, as
    the report reads it).

    ended_at: the write time of the run-end record, if the run ended
    torn:     torn writes the log recovered when this guard opened it
    """

    start: RunStart | None = None
    reference: Reference | None = None
    rounds: list[RoundRecord] = field(default_factory=list)
    resumes: int = 0
    end: RunEnd | None = None
    ended_at: str | None = None
    torn: list[TornTail] = field(default_factory=list)

    @classmethod
    def from_records(cls, records: Iterable[Mapping[str, Any]], torn: Iterable[TornTail] = ()
                     ) -> PriorRun:
        run = cls(torn=list(torn))
        for record in records:
            kind, payload = record.get("kind"), record.get("payload")
            if kind == RunStart.kind and run.start is None:
                run.start = RunStart.from_payload(payload)
            elif kind == Reference.kind and run.reference is None:
                run.reference = Reference.from_payload(payload)
            elif kind == RoundRecord.kind:
                parsed = RoundRecord.from_payload(payload)
                if parsed is not None:
                    run.rounds.append(parsed)
            elif kind == RunResume.kind:
                run.resumes += 1
            elif kind == RunEnd.kind and run.end is None:
                run.end, run.ended_at = RunEnd.from_payload(payload), str(record.get("time"))
        return run

    @property
    def last_round(self) -> int:
        return max((r.round for r in self.rounds), default=0)


def refusal(prior: PriorRun, start: RunStart, run_dir: Path) -> TrustError | None:
    """Why this guard must not continue the run in `run_dir`, or None."""
    if prior.end is not None:
        return TrustError(
            f"Run folder {run_dir} holds a run that already ended ({prior.end.status} after "
            f"round {prior.end.rounds}; run-end record written {prior.ended_at}). TrustGuard "
            "continues a run only after a crash, i.e. when its log has no run-end record.",
            f"Pass a new run_dir for a new run. To monitor further training against this run's "
            f"round-0 reference, give the new run reference=BehaviorProfile.from_json("
            f"load_run('{run_dir}').reference.profile) (flwr_trust.report.runlog).")
    different = changed(prior.start, start, SAME_SUITES)
    if different:
        facts = "; ".join(f"{k}: logged {v[0]!r}, now {v[1]!r}" for k, v in different.items())
        items = changed(prior.start, start, ("server_items",)).get("server_items")
        sizes = "" if items is None else (
            f" The server's items per mode differ (logged {items[0]}, now {items[1]}): set "
            f"trust.server-probe-items (server_probe_items) to the logged number "
            f"({DEFAULT_ITEMS_CHANGE}).")
        return TrustError(
            f"Run folder {run_dir} holds a run probed on other suites or modes than this "
            f"guard's ({facts}), so its reference and monitors do not apply.{sizes}",
            "Continue it with the run's suites, modes, server probe items and seed, or pass a "
            "new run_dir for a new run.")
    return None


def reference_mismatch(reference: BehaviorProfile, server_suites: Mapping[str, Any]
                       ) -> TrustError | None:
    """Why a reference given to the guard does not fit its server suites, or None. Paired
    tests compare the candidate and the reference item by item, so both must be probed on the
    same items; a reference on other items would be one fixed sampling error treated as
    exact in every round."""
    other = {m: (h, server_suites[m]) for m, h in reference.suite_hashes.items()
             if m in server_suites and server_suites[m].hash != h}
    if not other:
        return None
    facts = "; ".join(f"{m}: reference suite {h[:12]}, server suite {s.hash[:12]} "
                      f"({len(s.items)} items)" for m, (h, s) in sorted(other.items()))
    return TrustError(
        f"The reference given to TrustGuard was probed on other items than this guard's "
        f"server suites ({facts}), so the tests that compare them item by item do not apply.",
        "Build the guard with the suites, modes, server_probe_items (trust.server-probe-items) "
        "and seed of the run the reference comes from (its items per mode: "
        f"load_run(old_dir).start.server_items; {DEFAULT_ITEMS_CHANGE}), or pass no "
        "reference: the guard probes its own at round 0.")


def changed(old: RunStart | None, new: RunStart, fields: Iterable[str] | None = None
            ) -> dict[str, list[Any]]:
    """Run-start field -> [logged, new] where a logged value exists and differs."""
    if old is None:
        return {}
    before, after = old.to_payload(), new.to_payload()
    names = [k for k in after if k != "version"] if fields is None else list(fields)
    return {k: [before.get(k), after.get(k)] for k in names
            if before.get(k) not in (None, [], {}) and before.get(k) != after.get(k)}


def reference_profile(prior: PriorRun, run_dir: Path) -> BehaviorProfile | None:
    """The run's round-0 profile from its reference record (None if it has none)."""
    if prior.reference is None or not prior.reference.profile:
        return None
    try:
        return BehaviorProfile.from_json(prior.reference.profile)
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise TrustError(
            f"The reference record of the run in {run_dir} cannot be read ({exc!r}), so the "
            "run cannot be continued against it.",
            "Keep the folder as evidence and pass a new run_dir for a new run.") from exc


def monitor_states(prior: PriorRun, names: Iterable[str]) -> tuple[dict[str, MonitorState], str]:
    """Each monitor's state to resume with, and where it came from ("log", "rebuilt", "none");
    one look per family is skipped (see the module docstring)."""
    states: dict[str, MonitorState] = {}
    source = "none"
    if prior.rounds:
        last = prior.rounds[-1]
        read = {k: MonitorState.from_json(v) for k, v in last.monitors.items()}
        if last.version >= 2 and None not in read.values():
            states, source = {k: v for k, v in read.items() if v is not None}, "log"
        else:
            bound = len(prior.rounds)  # a monitor looks at most once per round record
            states = {n: MonitorState(dict.fromkeys(FAMILIES, bound)) for n in names}
            source = "rebuilt"
            log.warning("TrustGuard: the log's last round record has no readable monitor state "
                        "(version %s); look counters set to %d, an upper bound, and trend "
                        "histories start empty.", last.version, bound)
    for name in names:
        state = states.setdefault(name, MonitorState())
        for family in state.looks:
            state.looks[family] += 1
    return states, source


def alarms_of(rounds: Iterable[RoundRecord]) -> list[Alarm]:
    """The alarms and warnings of the logged rounds, as Alarm objects (malformed ones skipped)."""
    out = []
    for record in rounds:
        for a in record.alarms:
            try:
                out.append(Alarm(str(a["mode"]), str(a.get("metric", "")),
                                 "alarm" if a.get("severity") == "alarm" else "warning",
                                 int(a.get("round", record.round)),
                                 tuple(a.get("clients") or ()), dict(a.get("evidence") or {}),
                                 str(a.get("message", ""))))
            except (KeyError, TypeError, ValueError):
                continue
    return out
