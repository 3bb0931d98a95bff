"""The audit log survives a crash in the middle of a write: torn tails, made by hand and by a
real `kill -9` of a process appending large records (flwr_trust.report.audit, report/torn.py)."""

from __future__ import annotations

import hashlib
import logging
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from flwr_trust.errors import AuditLogError
from flwr_trust.report.audit import AuditLog, read_log, verify_log
from flwr_trust.report.torn import KIND

WRITER = Path(__file__).parent / "helpers" / "audit_writer.py"


def write(path: Path, n: int) -> bytes:
    with AuditLog(path) as log:
        for i in range(n):
            log.append("round", {"round": i, "note": "é" * i})
    return path.read_bytes()


def torn_records(path: Path) -> list[dict]:
    return [r["payload"] for r in read_log(path, kinds=KIND)]


def assert_named(path: Path) -> None:
    """Every torn-tail file beside the log is named by exactly one torn-tail record, whose
    length and hash are the file's."""
    named = {p["moved_to"]: p for p in torn_records(path)}
    files = sorted(path.parent.glob("audit.jsonl.torn-*"))
    assert len(named) == len(torn_records(path)) == len(files)
    for file in files:
        data = file.read_bytes()
        assert named[file.name]["length"] == len(data)
        assert named[file.name]["sha256"] == hashlib.sha256(data).hexdigest()


@pytest.mark.parametrize("keep", [1, 37, -1])  # bytes of the last line kept (-1: all but \n)
@pytest.mark.parametrize("n", [1, 4])
def test_torn_tail_is_moved_aside_named_and_the_chain_continues(tmp_path, caplog, keep, n):
    path = tmp_path / "audit.jsonl"
    rows = write(path, n).splitlines(keepends=True)
    intact, torn = b"".join(rows[:-1]), rows[-1][:keep]
    path.write_bytes(intact + torn)
    result = verify_log(path)
    assert not result.ok and result.first_bad == n - 1 and "truncated" in result.reason

    with caplog.at_level(logging.WARNING, "flwr.trust"), AuditLog(path) as log:
        assert log.records == n  # n - 1 intact + the torn-tail record
        (tail,) = log.recovered
        appended = log.append("round", {"after": True})
    assert (tail.record, tail.offset, tail.length) == (n - 1, len(intact), len(torn))
    assert tail.sha256 == hashlib.sha256(torn).hexdigest() and not tail.late
    sibling = tmp_path / f"audit.jsonl.torn-{n - 1}"
    assert tail.moved_to == sibling.name and sibling.read_bytes() == torn
    message = caplog.text
    assert f"record {n - 1}, byte offset {len(intact)}" in message and sibling.name in message

    assert verify_log(path).ok
    records = read_log(path)
    assert path.read_bytes().startswith(intact)
    assert [r["kind"] for r in records][n - 1:] == [KIND, "round"]
    assert records[n - 1]["payload"] == tail.to_payload() and records[-1] == appended
    assert_named(path)


def test_a_torn_tail_after_a_bad_record_is_refused_untouched(tmp_path):
    path = tmp_path / "audit.jsonl"
    data = write(path, 4)
    rows = data.splitlines(keepends=True)
    rows[1] = rows[1].replace(b'"round":1', b'"round":9')
    path.write_bytes(b"".join(rows) + b'{"seq":4')
    with pytest.raises(AuditLogError, match="will not be continued: Record 1"):
        AuditLog(path)
    assert path.read_bytes() == b"".join(rows) + b'{"seq":4'
    assert not list(tmp_path.glob("*.torn-*"))


@pytest.mark.parametrize("tail", [b"garbage\n", b'{"seq":4}\n', b"\n"])
def test_a_complete_bad_last_line_is_not_a_torn_tail(tmp_path, tail):
    path = tmp_path / "audit.jsonl"
    data = write(path, 4)
    path.write_bytes(data + tail)
    with pytest.raises(AuditLogError, match="will not be continued: Record 4"):
        AuditLog(path)
    assert path.read_bytes() == data + tail


def test_crash_after_the_copy_before_the_truncation_reuses_the_copy(tmp_path):
    path = tmp_path / "audit.jsonl"
    data = write(path, 3)
    path.write_bytes(data + b'{"seq":3,"ti')
    (tmp_path / "audit.jsonl.torn-3").write_bytes(b'{"seq":3,"ti')  # the earlier copy
    with AuditLog(path) as log:
        assert [t.moved_to for t in log.recovered] == ["audit.jsonl.torn-3"]
    assert verify_log(path).ok and len(torn_records(path)) == 1
    assert_named(path)


def test_crash_after_the_truncation_before_the_record_names_the_copy_late(tmp_path):
    path = tmp_path / "audit.jsonl"
    data = write(path, 3)
    (tmp_path / "audit.jsonl.torn-3").write_bytes(b'{"seq":3,"ti')  # log already truncated
    with AuditLog(path) as log:
        (tail,) = log.recovered
    assert tail.late and (tail.record, tail.offset, tail.length) == (3, len(data), 12)
    assert verify_log(path).ok
    assert_named(path)
    with AuditLog(path) as log:  # named now: nothing more to do
        assert log.recovered == []


def test_crash_while_writing_the_torn_tail_record(tmp_path):
    """The recovery's own record is cut short: the next open moves that aside too (a second
    file), and names the first copy late."""
    path = tmp_path / "audit.jsonl"
    data = write(path, 3)
    (tmp_path / "audit.jsonl.torn-3").write_bytes(b'{"seq":3,"ti')
    path.write_bytes(data + b'{"hash":"ab')  # the torn-tail record for it, cut short
    with AuditLog(path) as log:
        names = [(t.moved_to, t.late) for t in log.recovered]
    assert names == [("audit.jsonl.torn-3.2", False), ("audit.jsonl.torn-3", True)]
    assert verify_log(path).ok
    assert_named(path)


def test_torn_first_record_of_an_empty_log(tmp_path):
    path = tmp_path / "audit.jsonl"
    path.write_bytes(b'{"hash":"0')
    with AuditLog(path) as log:
        assert log.records == 1 and log.recovered[0].offset == 0
        log.append("run-start", {})
    assert [r["kind"] for r in read_log(path)] == [KIND, "run-start"]


# --- a real kill -9 ----------------------------------------------------------------------------


def _writer(path: Path, size: int, chunk: int) -> subprocess.Popen:
    args = [sys.executable, str(WRITER), str(path), str(size)] + ([str(chunk)] if chunk else [])
    return subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _kill(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGKILL)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == -signal.SIGKILL, f"the writer died on its own:\n{err}"


@pytest.mark.parametrize("chunk", [0, 4096])
def test_kill_9_while_appending_large_records(tmp_path, chunk):
    """A process appends ~256 KB records until SIGKILL lands at a random moment; the next open
    always recovers and the chain verifies. chunk=0 is the writer as shipped (a kill rarely
    lands inside its one write() per record); chunk=4096 splits every write so that most kills
    do, and the test asserts that they did."""
    rng = random.Random(13 + chunk)
    path = tmp_path / "audit.jsonl"
    kills, torn = (3, 0) if not chunk else (8, 0)
    for _ in range(kills):
        proc = _writer(path, 256 * 1024, chunk)
        assert proc.stdout is not None and proc.stdout.readline().startswith("open ")
        time.sleep(rng.uniform(0.02, 0.2))
        _kill(proc)
        result = verify_log(path)
        torn += not result.ok
        if not result.ok:
            assert "truncated" in result.reason, result.reason  # evidence: not verifying
        with AuditLog(path) as log:
            assert len(log.recovered) == (not result.ok)
        assert verify_log(path).ok
    assert_named(path)
    assert len(torn_records(path)) == torn
    if chunk:
        assert torn >= 2, f"only {torn} of {kills} kills landed inside a write"


def test_kill_9_at_any_moment_including_during_recovery(tmp_path):
    """Kills from the writer's start on, with no open in between, so the next writer's open
    is the one that recovers (a kill can land during that recovery too, rarely: its window is
    milliseconds; the hand-made tests above cover each step of it). The writer never fails
    to open, and in the end every torn write is moved aside and named exactly once."""
    rng = random.Random(7)
    path = tmp_path / "audit.jsonl"
    for _ in range(10):
        proc = _writer(path, 256 * 1024, 4096)
        time.sleep(rng.uniform(0.0, 0.35))
        _kill(proc)
    with AuditLog(path):
        pass
    assert verify_log(path).ok
    assert_named(path)
    assert len(torn_records(path)) >= 1
