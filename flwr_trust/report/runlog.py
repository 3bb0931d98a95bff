"""Read a run folder's audit log for reporting: verify the chain and keep only what verified.

`read_log` refuses a log that does not verify. A report should still show a tampered log,
with the break called out, so `load_run` keeps the records before the first bad one. It parses
their payloads once into the typed records of records.py, whose `from_payload` reads
defensively, because a hand-made chain can verify and still hold odd data. Nothing here raises
on odd data. Accessors return None or empty containers instead.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

from flwr_trust.errors import AuditLogError
from flwr_trust.report.audit import GENESIS, VerifyResult, record_hash, verify_log
from flwr_trust.report.recorder import AUDIT_FILE
from flwr_trust.report.records import Gate, Reference, RoundRecord, RunEnd, RunStart, as_dict, num

PHASES = ("train", "evaluate")


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
    """The verified records of one run, parsed once into typed records (see `parse`).

    start:     the run-start record (an empty RunStart if the log has none)
    end:       the run-end record, or None if the run did not close
    reference: the round-0 profile (an empty Reference if none)
    rounds:    every round record (both phases) with an integer round number, in log order
    records:   the raw verified records, for their write times
    """

    run_dir: Path
    path: Path
    verification: VerifyResult
    records: tuple[dict[str, Any], ...]
    start: RunStart
    end: RunEnd | None
    reference: Reference
    rounds: tuple[RoundRecord, ...]

    @classmethod
    def parse(cls, run_dir: Path, path: Path, verification: VerifyResult,
              records: tuple[dict[str, Any], ...]) -> RunLog:
        """Read the verified raw records into typed ones; the first record of each kind counts
        for run-start, reference and run-end, as a reader cannot tell which of two is right."""
        def payload(kind: str) -> dict[str, Any] | None:
            return next((as_dict(r.get("payload")) for r in records if r.get("kind") == kind),
                        None)

        start, end, reference = payload(RunStart.kind), payload(RunEnd.kind), payload(
            Reference.kind)
        rounds = (RoundRecord.from_payload(r.get("payload")) for r in records
                  if r.get("kind") == RoundRecord.kind)
        return cls(run_dir, path, verification, records, RunStart.from_payload(start),
                   None if end is None else RunEnd.from_payload(end),
                   Reference.from_payload(reference),
                   tuple(r for r in rounds if r is not None))

    def time_of(self, kind: str) -> str | None:
        """When the first record of `kind` was written (ISO-8601 UTC), or None."""
        record = next((r for r in self.records if r.get("kind") == kind), None)
        return str(record.get("time")) if record else None

    def phase(self, phase: str) -> list[RoundRecord]:
        """Round records of one phase ("train" or "evaluate")."""
        return [p for p in self.rounds if p.phase == phase]

    def train_gates(self) -> dict[int, Gate]:
        """round -> the gate's decision on that round's training update (the decision that
        shapes the model); rounds without a train record are absent."""
        return {p.round: p.gate for p in self.phase("train")}

    @property
    def round_numbers(self) -> list[int]:
        return sorted({p.round for p in self.rounds})

    @property
    def modes(self) -> list[str]:
        """The behavioral modes the run watched (run-start), else those seen in the rounds."""
        if self.start.modes:
            return list(self.start.modes)
        seen: dict[str, None] = {}
        for p in self.rounds:
            seen.update(dict.fromkeys(p.behavior))
        return list(seen)

    def alarms(self) -> Iterator[tuple[str, dict[str, Any]]]:
        """(phase, alarm dict) for every alarm and warning, in log order. Each alarm has a str
        "mode" and an int "round" (RoundRecord.from_payload keeps only those, filling in the
        round)."""
        for p in self.rounds:
            for alarm in p.alarms:
                yield p.phase, alarm

    def metrics_of(self, mode: str) -> list[str]:
        """Metric names of `mode` that have a global value in some round, in first-seen order."""
        seen: dict[str, None] = {}
        for p in self.rounds:
            seen.update(dict.fromkeys(p.behavior.get(mode, {})))
        return list(seen)

    def metric_series(self, mode: str, metric: str, phase: str) -> list[MetricPoint]:
        """The global value of mode.metric per round of one phase (rounds without it skipped)."""
        out = []
        for p in self.phase(phase):
            row = p.behavior.get(mode, {}).get(metric, {})
            value = num(row.get("value"))
            if value is None:
                continue
            out.append(MetricPoint(p.round, value, num(row.get("stderr")),
                                   num(row.get("reference")), num(row.get("degradation")),
                                   num(row.get("tolerance")), str(row.get("source", "")),
                                   num(row.get("client_median")), num(row.get("client_spread"))))
        return out

    def past_tolerance(self, mode: str, metric: str) -> list[int]:
        """Rounds (either phase) where mode.metric's global value was past its tolerance in
        the worse direction, whether or not a test found it significant."""
        return sorted({p.round for phase in PHASES for p in self.metric_series(mode, metric, phase)
                       if p.degradation is not None and p.tolerance is not None
                       and p.degradation > p.tolerance})

    def client_values(self, key: str, phase: str) -> list[ClientPoint]:
        """Per-client values of a flat key (e.g. "trust.alignment.refusal-rate") per round."""
        return self._per_client(lambda p: p.client_metrics, key, phase)

    def update_values(self, stat: str) -> list[ClientPoint]:
        """Per-client update statistic ("norm", "cosine", ...) per train round."""
        return self._per_client(lambda p: p.update_stats, stat, "train")

    def _per_client(self, rows: Callable[[RoundRecord], dict[str, dict[str, Any]]], key: str,
                    phase: str) -> list[ClientPoint]:
        """The finite numbers under `key` in each client's row of `rows(record)` per round."""
        out = []
        for p in self.phase(phase):
            for node, row in rows(p).items():
                value = num(row.get(key))
                if value is not None:
                    out.append(ClientPoint(p.round, node, value))
        return out


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
    what = "is neither a folder nor a regular file" if path.exists() else "does not exist"
    raise AuditLogError(f"{path} {what}.",
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
    return RunLog.parse(run_dir, log, result, tuple(records))


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
            except (ValueError, RecursionError):
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
