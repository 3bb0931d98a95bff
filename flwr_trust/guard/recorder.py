"""What the guard writes about a run: typed audit records (report/records.py) in the
hash-chained log, and TensorBoard scalars, one set per round and phase. Opening a folder whose
log already holds a run hands that run to the core to resume (guard/resume.py)."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from flwr_trust import protocol
from flwr_trust.detect.alarm import Alarm
from flwr_trust.guard.evidence import RoundEvidence
from flwr_trust.guard.gates import GateDecision
from flwr_trust.guard.resume import PriorRun
from flwr_trust.report.audit import read_log
from flwr_trust.report.recorder import RunRecorder
from flwr_trust.report.records import (
    SYSTEM_LOSS_KEYS,
    Clients,
    Gate,
    Reference,
    RoundRecord,
    RunEnd,
    RunResume,
    RunStart,
)
from flwr_trust.scoring.profile import BehaviorProfile

log = logging.getLogger("flwr.trust")  # under Flower's logger: shown by `flwr run --stream`


class GuardRecorder:
    """Audit log + TensorBoard of one guarded run; keeps every round record in `history`."""

    def __init__(self, run_dir: Path, start: RunStart, *, tensorboard: bool = True) -> None:
        self.run_dir = run_dir
        self.start = start
        self.tensorboard = tensorboard
        self.history: list[RoundRecord] = []
        self._recorder: RunRecorder | None = None

    @property
    def audit_path(self) -> Path:
        return self.run_dir / "audit.jsonl"

    def open(self) -> PriorRun | None:
        """Open (or verify, recover a torn tail and continue) the log. A log that holds no
        run yet gets the run-start record and None is returned; one that holds a run (it has
        a run-start record) is returned as a PriorRun for the core to resume or refuse, and
        gets no second run-start."""
        if self._recorder is not None:
            return None
        self._recorder = RunRecorder(self.run_dir, tensorboard=self.tensorboard)
        audit = self._recorder.audit
        if audit.records:
            prior = PriorRun.from_records(read_log(audit.path), audit.recovered)
            if prior.start is not None:
                self.history = list(prior.rounds)
                return prior
        self._recorder.record(self.start.kind, self.start.to_payload())
        return None

    def resumed(self, record: RunResume) -> None:
        """Write the run-resume record (the core decided to continue the run)."""
        assert self._recorder is not None, "open() first"
        self._recorder.record(record.kind, record.to_payload())

    def release(self) -> None:
        """Close the files without a run-end record (a run this guard will not continue)."""
        if self._recorder is not None:
            self._recorder.close()
            self._recorder = None

    def reference(self, profile: BehaviorProfile | None) -> None:
        if profile is None or self._recorder is None:
            return
        record = Reference(profile.to_json())
        self._recorder.record(record.kind, record.to_payload())
        self._recorder.scalars(0, {f"reference/{mode}/{metric}": mv.value
                                   for mode, ms in profile.metrics.items()
                                   for metric, mv in ms.items()})

    def round(self, ev: RoundEvidence, reports: Mapping[int, Mapping[str, Any]],
              update_stats: Mapping[int, Any], population: dict[str, Any],
              alarms: list[Alarm], decision: GateDecision,
              metrics: Mapping[str, Any] | None,
              monitors: Mapping[str, dict[str, Any]] | None = None) -> RoundRecord:
        """Record one round and phase, with the monitors' state after it (MonitorState
        .to_json() by monitor, what a restarted guard resumes from); returns the record."""
        system = system_metrics(metrics, update_stats)
        record = RoundRecord(
            ev.round, ev.phase,
            Clients(sorted(ev.nodes), {str(k): v for k, v in ev.refused.items()},
                    {str(k): v for k, v in ev.failed.items()}),
            system, population,
            {str(n): dict(r) for n, r in reports.items()},
            {str(n): protocol.privacy_fields(r) for n, r in reports.items()},
            {str(n): s for n, s in update_stats.items()},
            [a.to_json() for a in alarms],
            Gate(decision.action, list(decision.excluded), list(decision.culprits),
                 decision.reason, dict(decision.probation), dict(decision.inspection)),
            monitors=dict(monitors or {}))
        self.history.append(record)
        assert self._recorder is not None, "the core opens the records before a round"
        self._recorder.record(record.kind, record.to_payload())
        self._recorder.scalars(ev.round, _scalars(record, alarms, decision, self.start.modes))
        return record

    def close(self, status: str, n_alarms: int) -> None:
        """Write the run-end record and close the files (safe to call twice)."""
        if self._recorder is None:
            return
        end = RunEnd(status, max((h.round for h in self.history), default=0), n_alarms)
        self._recorder.record(end.kind, end.to_payload())
        self._recorder.close()
        self._recorder = None


def _scalars(record: RoundRecord, alarms: list[Alarm], decision: GateDecision,
             modes: list[str]) -> dict[str, Any]:
    phase = record.phase
    scalars: dict[str, Any] = {f"system/{k}": v for k, v in record.system.items()}
    for mode, ms in record.behavior.items():
        for metric, row in ms.items():
            tag = f"{phase}/{mode}/{metric}"
            scalars[f"{tag}/value"] = row.get("value")
            scalars[f"{tag}/client-spread"] = row.get("client_spread")
    for mode in modes:
        scalars[f"{phase}/alarms/{mode}"] = sum(a.mode == mode and a.severity == "alarm"
                                                for a in alarms)
    scalars[f"{phase}/alarms/update"] = sum(a.mode == "update" for a in alarms)
    scalars[f"{phase}/gate-action"] = protocol.ACTION_CODE[decision.action]
    return scalars


def system_metrics(metrics: Mapping[str, Any] | None, update_stats: Mapping[int, Any]
                   ) -> dict[str, float]:
    """The loss the inner strategy aggregated and the median / max update norm."""
    out: dict[str, float] = {}
    if metrics is not None:
        for key in SYSTEM_LOSS_KEYS:
            value = metrics.get(key)
            if isinstance(value, int | float):
                out["loss"] = float(value)
                break
    norms = [s["norm"] for s in update_stats.values() if isinstance(s.get("norm"), float)]
    if norms:
        out["update-norm-median"] = float(np.median(norms))
        out["update-norm-max"] = float(np.max(norms))
    return out


def merge_population(from_reports: dict[str, Any], from_server: dict[str, Any]
                     ) -> dict[str, Any]:
    """Server-probe rows win where both exist; client-median rows fill the rest."""
    out = {mode: {m: dict(row) for m, row in rows.items()} for mode, rows in from_reports.items()}
    for mode, rows in from_server.items():
        for metric, row in rows.items():
            merged = out.setdefault(mode, {}).setdefault(metric, {})
            # Keep the clients' median and spread when the server row has none of its own.
            merged.update({k: v for k, v in row.items() if v is not None or k not in merged})
    return out
