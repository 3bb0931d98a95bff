"""Read a run folder's audit log for reporting: verify the chain and keep only what verified.

`read_log` refuses a log that does not verify. A report should still show a tampered log,
with the break called out, so `load_run` keeps the records before the first bad one. It reads
their payloads defensively, because a hand-made chain can verify and still hold odd data.
Nothing here raises on odd data. Accessors return None or empty containers instead.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

from flwr_trust.errors import AuditLogError
from flwr_trust.report.audit import GENESIS, VerifyResult, record_hash, verify_log
from flwr_trust.report.recorder import AUDIT_FILE

PHASES = ("train", "evaluate")


def num(value: Any) -> float | None:
    """A finite float from a payload number, else None (non-finite, missing, bool, text)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    out = float(value)
    return out if math.isfinite(out) else None


def as_dict(value: Any) -> dict[str, Any]:
    """`value` if it is a JSON object, else an empty dict."""
    return value if isinstance(value, dict) else {}


def as_list(value: Any) -> list[Any]:
    """`value` if it is a JSON array, else an empty list."""
    return value if isinstance(value, list) else []


def node_key(node: Any) -> tuple[int, str]:
    """Sort key for node ids, which the log keeps as strings: numerically when they are numbers."""
    text = str(node)
    return (0, text.rjust(24)) if text.isdigit() else (1, text)


class MetricPoint(NamedTuple):
    """One round's global value of a metric, as the detector recorded it."""

    round: int
    value: float
    stderr: float | None
    reference: float | None
    degradation: float | None
    tolerance: float | None
    source: str
    client_median: float | None
    client_spread: float | None


class ClientPoint(NamedTuple):
    """One client's value of a number in one round."""

    round: int
    node: str
    value: float


@dataclass(frozen=True)
class RunLog:
    """The verified records of one run, with accessors for the report."""

    run_dir: Path
    path: Path
    verification: VerifyResult
    records: tuple[dict[str, Any], ...]

    def _first(self, kind: str) -> dict[str, Any] | None:
        return next((r for r in self.records if r.get("kind") == kind), None)

    @property
    def start(self) -> dict[str, Any]:
        """The run-start payload (strategy, gate, model, suite hash, alpha, ...), or {}."""
        record = self._first("run-start")
        return as_dict(record.get("payload")) if record else {}

    @property
    def end(self) -> dict[str, Any] | None:
        """The run-end payload ({status, rounds, alarms}), or None if the run did not close."""
        record = self._first("run-end")
        return as_dict(record.get("payload")) if record else None

    def time_of(self, kind: str) -> str | None:
        """When the first record of `kind` was written (ISO-8601 UTC), or None."""
        record = self._first(kind)
        return str(record.get("time")) if record else None

    @property
    def reference(self) -> dict[str, dict[str, Any]]:
        """mode -> metric -> {value, stderr, n, worse} of the round-0 model, or {}."""
        record = self._first("reference")
        profile = as_dict(as_dict(record.get("payload")).get("profile")) if record else {}
        return {m: as_dict(ms) for m, ms in as_dict(profile.get("metrics")).items()}

    @property
    def rounds(self) -> list[dict[str, Any]]:
        """Every round payload (both phases) that has an integer round number, in log order."""
        out = []
        for record in self.records:
            payload = as_dict(record.get("payload"))
            if record.get("kind") == "round" and _is_round(payload.get("round")):
                out.append(payload)
        return out

    def phase(self, phase: str) -> list[dict[str, Any]]:
        """Round payloads of one phase ("train" or "evaluate")."""
        return [p for p in self.rounds if p.get("phase") == phase]

    @property
    def round_numbers(self) -> list[int]:
        return sorted({p["round"] for p in self.rounds})

    @property
    def modes(self) -> list[str]:
        """The behavioral modes the run watched (run-start), else those seen in the rounds."""
        listed = [m for m in as_list(self.start.get("modes")) if isinstance(m, str)]
        if listed:
            return listed
        seen: dict[str, None] = {}
        for payload in self.rounds:
            seen.update(dict.fromkeys(as_dict(payload.get("behavior"))))
        return list(seen)

    def alarms(self) -> Iterator[tuple[str, dict[str, Any]]]:
        """(phase, alarm dict) for every alarm and warning, in log order."""
        for payload in self.rounds:
            for alarm in as_list(payload.get("alarms")):
                alarm = as_dict(alarm)
                if isinstance(alarm.get("mode"), str):
                    if not _is_round(alarm.get("round")):
                        alarm = alarm | {"round": payload["round"]}
                    yield str(payload.get("phase")), alarm

    def metrics_of(self, mode: str) -> list[str]:
        """Metric names of `mode` that have a global value in some round, in first-seen order."""
        seen: dict[str, None] = {}
        for payload in self.rounds:
            seen.update(dict.fromkeys(as_dict(as_dict(payload.get("behavior")).get(mode))))
        return list(seen)

    def metric_series(self, mode: str, metric: str, phase: str) -> list[MetricPoint]:
        """The global value of mode.metric per round of one phase (rounds without it skipped)."""
        out = []
        for payload in self.phase(phase):
            row = as_dict(as_dict(as_dict(payload.get("behavior")).get(mode)).get(metric))
            value = num(row.get("value"))
            if value is None:
                continue
            stderr = num(row.get("stderr"))
            out.append(MetricPoint(payload["round"], value, stderr, num(row.get("reference")),
                                   num(row.get("degradation")), num(row.get("tolerance")),
                                   str(row.get("source", "")),
                                   num(row.get("client_median")), num(row.get("client_spread"))))
        return out

    def client_values(self, key: str, phase: str, section: str = "client_metrics"
                      ) -> list[ClientPoint]:
        """Per-client values of a flat key (e.g. "trust.alignment.refusal-rate") per round."""
        out = []
        for payload in self.phase(phase):
            for node, flat in as_dict(payload.get(section)).items():
                value = num(as_dict(flat).get(key))
                if value is not None:
                    out.append(ClientPoint(payload["round"], str(node), value))
        return out

    def update_values(self, stat: str) -> list[ClientPoint]:
        """Per-client update statistic ("norm", "cosine", ...) per train round."""
        return self.client_values(stat, "train", section="update_stats")


def _is_round(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def find_log(path: str | Path) -> tuple[Path, Path]:
    """(run folder, audit log) for a run folder or an audit log file; AuditLogError if absent."""
    path = Path(path)
    if path.is_dir():
        log = path / AUDIT_FILE
        if not log.is_file():
            raise AuditLogError(
                f"Run folder {path} has no audit log ({AUDIT_FILE}).",
                fix="Pass the run_dir that TrustGuard wrote, i.e. the folder that holds "
                f"{AUDIT_FILE} and tensorboard/ (default runs/trust-guard).")
        return path, log
    if path.is_file():
        return path.parent, path
    raise AuditLogError(f"{path} does not exist.",
                        fix="Pass a run folder written by TrustGuard (its run_dir) or its "
                        f"{AUDIT_FILE}.")


def load_run(path: str | Path) -> RunLog:
    """Verify the audit log of a run folder and read the records that verified.

    Raises AuditLogError if there is no log or it has no records. A log that does not verify
    is not an error here. Its VerifyResult names the first bad record, and the records before
    it are returned.
    """
    run_dir, log = find_log(path)
    result = verify_log(log)
    if not result.ok and result.first_bad is None:
        raise AuditLogError(
            f"Audit log {log} is empty (no records), so there is nothing to report.",
            fix="Report a run that started: TrustGuard writes its first record when round 1 "
            "is configured. If it did start, the log was emptied; keep it as evidence.")
    records, result = _read_verified(log, result)
    return RunLog(run_dir, log, result, tuple(records))


def _read_verified(log: Path, result: VerifyResult) -> tuple[list[dict[str, Any]], VerifyResult]:
    """The first `result.records` records, re-checked while reading (the file could change)."""
    records: list[dict[str, Any]] = []
    prev = GENESIS
    with log.open("rb") as file:
        for n, line in enumerate(file):
            if n >= result.records:
                break
            try:
                record = json.loads(line.decode("utf-8"))
                good = (isinstance(record, dict) and record.get("prev") == prev
                        and record.get("hash") == record_hash(record))
            except ValueError:
                good = False
            if not good:
                reason = f"Record {n} (line {n + 1}) changed while the report was reading it."
                return records, VerifyResult(False, n, n, reason, prev)
            records.append(record)
            prev = record["hash"]
    if len(records) < result.records:
        n = len(records)
        return records, VerifyResult(False, n, n, f"The log lost records from record {n} on "
                                     "while the report was reading it.", prev)
    return records, result
