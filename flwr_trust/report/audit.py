"""Tamper-evident audit log: an append-only, hash-chained JSON-lines file.

Post-market monitoring (EU AI Act, Art. 72) needs a record of what the monitor saw and did that
can later be shown not to have been altered. Each line of the file is one record

    {"seq": n, "time": ISO-8601 UTC, "kind": str, "payload": {...}, "prev": hex, "hash": hex}

where "hash" is the SHA-256 of the canonical JSON (sorted keys, no spaces, raw UTF-8) of every
other field, and "prev" is the previous record's hash (64 zeros for record 0). Editing, deleting,
inserting or reordering records breaks the chain, and `verify_log` names the first bad record.

A crash mid-append can leave the last line cut short (a "torn tail"): `verify_log` reports it
like any other break, `AuditLog` moves it aside, names it in a record and goes on (torn.py).

The chain alone cannot show records cut off the *end* of the log (or the whole file replaced by
a fresh chain). To catch that, publish `AuditLog.head` somewhere else (a round report, a ticket)
and later check it with `verify_log(path, head=...)`.

Payloads: JSON has no NaN or infinity, so non-finite floats are stored as the strings "NaN",
"Infinity" and "-Infinity" (`float()` reads them back). numpy scalars and arrays become Python
numbers and lists, tuples become lists, integer dict keys become strings. Anything else that is
not JSON (sets, bytes, arbitrary objects, strings with lone surrogates) is refused.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from flwr_trust.errors import AuditLogError
from flwr_trust.report import torn
from flwr_trust.report.jsonvalue import canonical_json, record_hash, to_json_value

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: no advisory lock; one writer is up to the caller
    fcntl = None  # type: ignore[assignment]

GENESIS = "0" * 64
"""The "prev" of record 0, and the head of a log without records."""

FIELDS = frozenset({"seq", "time", "kind", "payload", "prev", "hash"})

PathLike = str | os.PathLike[str]

log = logging.getLogger("flwr.trust")  # under Flower's logger: shown by `flwr run --stream`


@dataclass(frozen=True)
class VerifyResult:
    """Outcome of `verify_log`.

    ok:        every record verifies (and the anchored head, if one was given, is in the log)
    records:   records that verified, counted from the start (all of them when ok)
    first_bad: 0-based number of the first bad record (its line is first_bad + 1); None when ok
               or when the file as a whole is missing or empty
    reason:    one readable sentence
    head:      hash of the last verified record (GENESIS if none); publish it to anchor the end
    """

    ok: bool
    records: int
    first_bad: int | None
    reason: str
    head: str = GENESIS


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _parse_record(line: bytes, n: int, prev: str) -> tuple[dict[str, Any] | None, str]:
    """Parse line n and check it against its own hash and the previous hash.

    Returns (record, "") if it is good, else (None, what is wrong as a sentence predicate).
    """
    if not line.endswith(b"\n"):
        return None, "is truncated: its line does not end with a newline, so a write was cut short"
    text = line[:-1]
    if not text.strip():
        return None, "is a blank line, not a record"
    try:
        record = json.loads(text.decode("utf-8"), parse_constant=_reject_constant)
    except UnicodeDecodeError:
        return None, "is not valid UTF-8"
    except ValueError as exc:
        return None, f"is not valid JSON ({exc})"
    except RecursionError:
        return None, "is not a record: JSON nested too deeply to read"
    if not isinstance(record, dict) or set(record) != FIELDS:
        fields = ", ".join(sorted(FIELDS))
        return None, f"is not an audit record (a JSON object with exactly the fields {fields})"
    try:
        digest = record_hash(record)
    except ValueError:
        return None, "contains a number that JSON cannot represent"
    if record["hash"] != digest:
        return None, "was edited: its content does not match its hash"
    if type(record["seq"]) is not int or record["seq"] != n:
        return None, (
            f"has seq {record['seq']!r} where {n} was expected: a record before it was deleted or "
            "inserted, or records were reordered"
        )
    if record["prev"] != prev:
        if n == 0:
            return None, "does not start the chain (its prev is not 64 zeros)"
        return None, (
            f"does not link to record {n - 1} (its prev is not that record's hash): record "
            f"{n - 1} was rewritten with a fresh hash, or this record was replaced"
        )
    if text != canonical_json(record).encode("utf-8"):
        return None, "is not in canonical form: its line was re-encoded or edited by hand"
    return record, ""


def _check(
    path: PathLike, head: str | None = None, keep: bool = False
) -> tuple[VerifyResult, list[dict[str, Any]]]:
    """Verify the log in one pass; with keep=True also return the records that verified."""
    path = Path(path)
    kept: list[dict[str, Any]] = []
    if not path.is_file():
        what = "is not a regular file" if path.exists() else "does not exist"
        return VerifyResult(False, 0, None, f"Audit log {path} {what}."), kept
    prev, count = GENESIS, 0
    anchored = head is None or head == GENESIS
    with path.open("rb") as file:
        for n, line in enumerate(file):
            record, problem = _parse_record(line, n, prev)
            if record is None:
                reason = f"Record {n} (line {n + 1}) {problem}."
                return VerifyResult(False, n, n, reason, prev), kept
            prev, count = record["hash"], n + 1
            anchored = anchored or prev == head
            if keep:
                kept.append(record)
    if count == 0:
        return VerifyResult(False, 0, None, f"Audit log {path} is an empty log (no records)."), kept
    if not anchored:
        reason = (
            f"No record has the anchored head hash {head}, so records after record {count - 1} "
            "were cut off the end of the log, or the log was replaced."
        )
        return VerifyResult(False, count, count, reason, prev), kept
    return VerifyResult(True, count, None, f"All {count} records verify.", prev), kept


def verify_log(path: PathLike, head: str | None = None) -> VerifyResult:
    """Check the whole hash chain of the log at `path` and report the first bad record.

    head: optionally, a hash published earlier from `AuditLog.head`; the log must still contain
    that record, which catches records cut off the end (the one thing the chain cannot show).
    """
    return _check(path, head)[0]


def read_log(
    path: PathLike, kinds: str | Iterable[str] | None = None, head: str | None = None
) -> list[dict[str, Any]]:
    """Return the records of a log that verifies, optionally only those of the given kind(s).

    Raises AuditLogError (with `first_bad`) otherwise: records from a broken chain are not
    evidence, so they are never handed out silently.
    """
    result, records = _check(path, head, keep=True)
    if not result.ok:
        if result.first_bad is None:
            raise AuditLogError(result.reason, fix="Check the path; AuditLog(path) writes a log.")
        raise AuditLogError(
            f"Audit log {path} does not verify: {result.reason}",
            fix=f"Keep the file unchanged as evidence; the records before record "
            f"{result.first_bad} are intact, the rest cannot be trusted.",
            first_bad=result.first_bad,
        )
    if kinds is None:
        return records
    wanted = {kinds} if isinstance(kinds, str) else set(kinds)
    return [record for record in records if record["kind"] in wanted]


class AuditLog:
    """Append-only writer for one audit log file; safe to share between threads.

    Opening an existing log verifies it and continues its chain. A log that does not verify is
    refused rather than extended, so evidence of tampering is never buried under new records;
    the exception is a torn tail after an intact chain (a crash mid-append), which is moved
    aside, named in a "torn-tail" record and a warning (torn.py; `recovered` lists them). Only
    one AuditLog may write a file at a time (an advisory lock enforces this on POSIX), because
    two writers would fork the chain.
    """

    def __init__(self, path: PathLike) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._broken = False
        self.recovered: list[torn.TornTail] = []
        try:
            # Unbuffered append mode: every write goes straight to the end of the file.
            self._file = open(self.path, "ab", buffering=0)  # noqa: SIM115 - closed in close()
        except OSError as exc:
            raise AuditLogError(
                f"Cannot open audit log {self.path} for appending ({exc.strerror}).",
                fix="Check that its directory exists and is writable.",
            ) from exc
        try:
            self._lock_file()
            self._records, self._head = self._resume()
            self._adopt_late_siblings()
        except BaseException:
            self._file.close()
            raise

    def _lock_file(self) -> None:
        if fcntl is None:
            return
        try:
            fcntl.flock(self._file.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            raise AuditLogError(
                f"Audit log {self.path} is already open for writing by another AuditLog.",
                fix="Share one AuditLog per file (it is thread-safe), or close the other first.",
            ) from exc
        except OSError:  # file system without flock support: the lock is best effort
            pass

    def _resume(self) -> tuple[int, str]:
        """Record count and head hash of the existing file (0 and GENESIS if it is empty),
        after recovering a torn tail, the one break a crash leaves (torn.py)."""
        if os.fstat(self._file.fileno()).st_size == 0:
            return 0, GENESIS
        result = verify_log(self.path)
        cut = None if result.ok else torn.torn_bytes(self.path, result.first_bad, result.records)
        if not result.ok and cut is None:
            raise AuditLogError(
                f"Audit log {self.path} does not verify, so it will not be continued: "
                f"{result.reason}",
                fix="Keep the file unchanged as evidence, move it aside and start a new log.",
                first_bad=result.first_bad,
            )
        self._records, self._head = result.records, result.head
        if cut is not None:
            self._record_torn(torn.move_aside(self.path, self._file.fileno(), self._records, *cut))
        return self._records, self._head

    def _adopt_late_siblings(self) -> None:
        """Name every torn-tail file beside the log that no torn-tail record names (a crash
        during an earlier recovery, after the copy and before the record)."""
        files = torn.siblings(self.path)
        named = {r["payload"].get("moved_to") for r in read_log(self.path, kinds=torn.KIND)
                 if isinstance(r["payload"], dict)} if files and self._records else set()
        for file in (f for f in files if f.name not in named):
            size = os.fstat(self._file.fileno()).st_size
            self._record_torn(torn.late(file, self._records, size))

    def _record_torn(self, tail: torn.TornTail) -> None:
        log.warning("%s", tail.describe(self.path))
        self.append(torn.KIND, tail.to_payload())
        self.recovered.append(tail)

    @property
    def records(self) -> int:
        """Number of records in the log."""
        return self._records

    @property
    def head(self) -> str:
        """Hash of the last record (GENESIS if none): publish it to anchor the end of the log."""
        return self._head

    def append(self, kind: str, payload: Mapping[str, Any]) -> dict[str, Any]:
        """Write one record, fsync it, and return it exactly as written."""
        if not isinstance(kind, str) or not kind:
            raise AuditLogError(
                f"An audit record needs a non-empty string kind, not {kind!r}.",
                fix='Name what happened, e.g. "alarm" or "round".',
            )
        if not isinstance(payload, Mapping):
            raise AuditLogError(
                f"An audit payload must be a dict, not a {type(payload).__name__}.",
                fix='Wrap the value, e.g. {"value": x}.',
            )
        kind, body = to_json_value(kind, "kind"), to_json_value(payload)
        with self._lock:
            if self._file.closed or self._broken:
                raise AuditLogError(
                    f"Audit log {self.path} is "
                    + ("closed." if self._file.closed else "unusable after a failed write."),
                    fix="Open a new AuditLog on the path (it verifies the file first).",
                )
            record: dict[str, Any] = {
                "seq": self._records,
                "time": datetime.now(UTC).isoformat(timespec="microseconds"),
                "kind": kind,
                "payload": body,
                "prev": self._head,
            }
            record["hash"] = record_hash(record)
            try:
                self._write_all((canonical_json(record) + "\n").encode("utf-8"))
                self._file.flush()
                os.fsync(self._file.fileno())
            except OSError as exc:
                self._broken = True
                raise AuditLogError(
                    f"Writing record {record['seq']} to audit log {self.path} failed ({exc}); "
                    "the log may now end in a partial record.",
                    fix="Run verify_log on it, keep it as evidence and start a new log.",
                ) from exc
            self._records += 1
            self._head = record["hash"]
        return record

    def _write_all(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            view = view[self._file.write(view) :]

    def close(self) -> None:
        """Close the file (and release its lock); safe to call twice."""
        with self._lock:
            self._file.close()

    def __enter__(self) -> AuditLog:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
