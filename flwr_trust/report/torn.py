"""A torn tail: the last write of an audit log cut short by a crash (`kill -9`, power loss).

`AuditLog.append` writes one record and its newline, then fsyncs. A process killed in between
can leave any prefix of that line at the end of the file. Such a *torn tail* is told apart
from tampering by three facts together: every record before it verifies, it is the last line
of the file, and it has no newline (every complete line ends in one). Anything else that breaks
the chain (an edited, deleted, inserted or reordered record, a complete bad line) is not a torn
tail and the log is refused as before.

The writer recovers a torn tail (`AuditLog` on open): the torn bytes are copied to a sibling
file ``<log>.torn-<n>`` (n: the record number the cut write would have had) and fsynced, the log
is truncated to its last complete record, and a ``torn-tail`` record (record number, byte
offset, length, SHA-256 of the torn bytes, sibling name) continues the chain. `verify_log`,
the reader, still calls a torn file not verifying: recovery is the writer's act, recorded in
the chain. Someone who cuts the last record mid-line on purpose gets the same treatment: the
cut bytes are kept and named, and a published head (`verify_log(path, head=...)`) still shows
that a committed record is gone.

A crash *during* recovery leaves a sibling file without its ``torn-tail`` record. The next open
records such a file as well (``late``: true), so a moved-aside tail is never left unnamed.
"""

from __future__ import annotations

import glob
import hashlib
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

KIND = "torn-tail"
"""The record kind AuditLog writes for a recovered torn tail."""

VERSION = 1


@dataclass(frozen=True)
class TornTail:
    """What was cut off, and where it went.

    record:   the record number the torn write would have had (= complete records before it)
    offset:   byte offset of the torn bytes in the log (= the log's length after recovery)
    length:   number of torn bytes
    sha256:   SHA-256 (hex) of the torn bytes
    moved_to: name of the sibling file that holds them (same folder as the log)
    late:     True when the sibling was found on a later open, without its record (a crash
              during an earlier recovery); record and offset are then the log's at that open
    """

    record: int
    offset: int
    length: int
    sha256: str
    moved_to: str
    late: bool = False
    version: int = VERSION

    def to_payload(self) -> dict[str, Any]:
        return asdict(self)

    def describe(self, log: Path) -> str:
        """One sentence for the warning."""
        when = "found beside" if self.late else "cut short at the end of"
        after = f"after record {self.record - 1}" if self.record else "from its start"
        return (f"Audit log {log}: a torn write of {self.length} bytes (record {self.record}, "
                f"byte offset {self.offset}, sha256 {self.sha256[:16]}...) was {when} the log "
                f"after a crash; kept as {self.moved_to}, the chain continues {after}.")


def torn_bytes(path: Path, first_bad: int | None, intact: int) -> tuple[int, bytes] | None:
    """(offset, bytes) of line `first_bad` if it follows `intact` verified records, is the
    file's last line and has no newline: a torn tail; else None."""
    if first_bad is None or first_bad != intact:
        return None
    offset = 0
    with path.open("rb") as file:
        for n, line in enumerate(file):
            if n == first_bad:
                return None if line.endswith(b"\n") else (offset, line)
            offset += len(line)
    return None


def move_aside(path: Path, fd: int, record: int, offset: int, data: bytes) -> TornTail:
    """Copy the torn bytes to a fresh sibling file (fsynced), then truncate the log open on
    `fd` to `offset`. Copy first: a crash in between leaves the bytes in both places, never
    in neither. A sibling that already holds exactly these bytes (an earlier recovery that
    crashed before truncating) is reused."""
    digest = hashlib.sha256(data).hexdigest()
    base = f"{path.name}.torn-{record}"
    name, k = base, 1
    while (path.parent / name).exists():
        if (path.parent / name).read_bytes() == data:
            break
        k += 1
        name = f"{base}.{k}"
    else:
        _write_synced(path.parent / name, data)
    os.ftruncate(fd, offset)
    os.fsync(fd)
    return TornTail(record, offset, len(data), digest, name)


def siblings(path: Path) -> list[Path]:
    """The torn-tail files beside the log, in name order."""
    return sorted(path.parent.glob(glob.escape(path.name) + ".torn-*"))


def late(sibling: Path, record: int, offset: int) -> TornTail:
    """The facts of a sibling file found without its torn-tail record."""
    data = sibling.read_bytes()
    return TornTail(record, offset, len(data), hashlib.sha256(data).hexdigest(), sibling.name,
                    late=True)


def _write_synced(target: Path, data: bytes) -> None:
    with target.open("xb") as file:
        file.write(data)
        file.flush()
        os.fsync(file.fileno())
    try:  # the new directory entry must survive a crash too
        dir_fd = os.open(target.parent, os.O_RDONLY)
    except OSError:  # pragma: no cover - platforms without directory fds
        return
    try:
        os.fsync(dir_fd)
    except OSError:  # pragma: no cover
        pass
    finally:
        os.close(dir_fd)
