"""Tests for the tamper-evident audit log (flwr_trust.report.audit)."""

from __future__ import annotations

import hashlib
import json
import math
import tempfile
import threading
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flwr_trust.errors import AuditLogError, TrustError
from flwr_trust.report.audit import (
    GENESIS,
    AuditLog,
    canonical_json,
    read_log,
    record_hash,
    verify_log,
)

# --- helpers -----------------------------------------------------------------------------------


def write_log(path: Path, payloads: list[dict[str, Any]]) -> list[dict[str, Any]]:
    with AuditLog(path) as log:
        return [log.append("round" if i % 2 else "alarm", p) for i, p in enumerate(payloads)]


def lines(path: Path) -> list[bytes]:
    return path.read_bytes().splitlines(keepends=True)


def put_lines(path: Path, new: list[bytes]) -> None:
    path.write_bytes(b"".join(new))


def encode(record: dict[str, Any]) -> bytes:
    return (canonical_json(record) + "\n").encode("utf-8")


def edited(line: bytes, rehash: bool = False, **changes: Any) -> bytes:
    """The record on `line` with fields changed; keeps its old hash unless rehash."""
    record = json.loads(line) | changes
    if rehash:
        record["hash"] = record_hash(record)
    return encode(record)


PAYLOADS = [{"round": r, "score": 0.5 + r / 10, "clients": [1, 2, r]} for r in range(5)]


@pytest.fixture
def log5(tmp_path: Path) -> Path:
    path = tmp_path / "audit.jsonl"
    write_log(path, PAYLOADS)
    return path


def assert_bad(path: Path, first_bad: int, *words: str) -> None:
    result = verify_log(path)
    assert not result.ok
    assert result.first_bad == first_bad
    assert result.records == first_bad
    assert f"Record {first_bad} (line {first_bad + 1})" in result.reason
    for word in words:
        assert word in result.reason
    with pytest.raises(AuditLogError) as info:
        read_log(path)
    assert info.value.first_bad == first_bad


# --- writing and reading -----------------------------------------------------------------------


def test_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    written = write_log(path, PAYLOADS)

    result = verify_log(path)
    assert (result.ok, result.records, result.first_bad) == (True, 5, None)
    assert result.reason == "All 5 records verify."
    assert result.head == written[-1]["hash"]
    assert read_log(path) == written

    prev = GENESIS
    for n, (record, payload) in enumerate(zip(written, PAYLOADS, strict=True)):
        assert set(record) == {"seq", "time", "kind", "payload", "prev", "hash"}
        assert (record["seq"], record["payload"], record["prev"]) == (n, payload, prev)
        assert datetime.fromisoformat(record["time"]).utcoffset() == timedelta(0)
        body = {k: v for k, v in record.items() if k != "hash"}
        text = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        assert record["hash"] == hashlib.sha256(text.encode()).hexdigest()
        prev = record["hash"]
    assert lines(path) == [encode(r) for r in written]


def test_unicode_is_written_raw(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    write_log(path, [{"note": "Zürich \u2028 日本 \n"}])
    assert "Zürich".encode() in path.read_bytes()
    assert len(lines(path)) == 1
    assert read_log(path)[0]["payload"] == {"note": "Zürich \u2028 日本 \n"}


def test_reopen_continues_the_chain(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    first = write_log(path, PAYLOADS[:2])
    with AuditLog(path) as log:
        assert (log.records, log.head) == (2, first[-1]["hash"])
        third = log.append("round", {"round": 2})
    assert (third["seq"], third["prev"]) == (2, first[-1]["hash"])
    assert verify_log(path).records == 3
    assert read_log(path) == [*first, third]


def test_reopen_refuses_a_log_that_does_not_verify(log5: Path) -> None:
    rows = lines(log5)
    put_lines(log5, rows[:2] + rows[3:])
    with pytest.raises(AuditLogError, match="will not be continued: Record 2") as info:
        AuditLog(log5)
    assert info.value.first_bad == 2
    assert lines(log5) == rows[:2] + rows[3:]  # left untouched


def test_reopen_an_empty_file_starts_a_new_chain(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    path.touch()
    with AuditLog(path) as log:
        assert log.append("start", {})["prev"] == GENESIS
    assert verify_log(path).ok


def test_second_writer_is_refused(tmp_path: Path) -> None:
    pytest.importorskip("fcntl")
    path = tmp_path / "audit.jsonl"
    with AuditLog(path), pytest.raises(AuditLogError, match="already open"):
        AuditLog(path)
    AuditLog(path).close()  # free again once the first one is closed


def test_closed_log_refuses_appends(tmp_path: Path) -> None:
    with AuditLog(tmp_path / "audit.jsonl") as log:
        log.append("start", {})
    log.close()  # twice is fine
    with pytest.raises(AuditLogError, match="is closed"):
        log.append("late", {})


def test_missing_directory(tmp_path: Path) -> None:
    with pytest.raises(AuditLogError, match="Cannot open audit log"):
        AuditLog(tmp_path / "nowhere" / "audit.jsonl")


def test_threads_share_one_log(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    with AuditLog(path) as log:

        def work(t: int) -> None:
            for i in range(20):
                log.append("tick", {"thread": t, "i": i})

        threads = [threading.Thread(target=work, args=(t,)) for t in range(6)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    result = verify_log(path)
    assert (result.ok, result.records) == (True, 120)


def test_read_log_filters_kinds(log5: Path) -> None:
    assert [r["seq"] for r in read_log(log5, kinds="alarm")] == [0, 2, 4]
    assert [r["seq"] for r in read_log(log5, kinds=["round", "other"])] == [1, 3]
    assert len(read_log(log5, kinds=("alarm", "round"))) == 5


# --- payload conversion ------------------------------------------------------------------------


def test_numpy_tuples_and_int_keys_become_json(tmp_path: Path) -> None:
    payload = {
        "f": np.float32(0.5),
        "i": np.int64(7),
        "b": np.bool_(True),
        "arr": np.arange(4).reshape(2, 2),
        "t": (1, (2, 3)),
        "per_client": {3: 0.1, np.int64(4): 0.2},
    }
    record = write_log(tmp_path / "a.jsonl", [payload])[0]
    expected = {
        "f": 0.5,
        "i": 7,
        "b": True,
        "arr": [[0, 1], [2, 3]],
        "t": [1, [2, 3]],
        "per_client": {"3": 0.1, "4": 0.2},
    }
    assert record["payload"] == expected
    assert read_log(tmp_path / "a.jsonl")[0]["payload"] == expected
    assert type(record["payload"]["i"]) is int


def test_non_finite_floats_are_stored_as_strings(tmp_path: Path) -> None:
    payload = {"nan": math.nan, "inf": np.inf, "ninf": [-math.inf], "arr": np.array([np.nan, 1.0])}
    record = write_log(tmp_path / "a.jsonl", [payload])[0]
    assert record["payload"] == {
        "nan": "NaN",
        "inf": "Infinity",
        "ninf": ["-Infinity"],
        "arr": ["NaN", 1.0],
    }
    assert b"NaN" in (tmp_path / "a.jsonl").read_bytes()
    assert verify_log(tmp_path / "a.jsonl").ok
    assert math.isinf(float(record["payload"]["inf"]))


@pytest.mark.parametrize(
    ("payload", "match"),
    [
        ({"s": {1, 2}}, r"payload\['s'\] is a set"),
        ({"b": b"x"}, "is a bytes"),
        ({"o": object()}, "is a object"),
        ({"k": {(1, 2): 3}}, "JSON keys must be strings"),
        ({"k": {1: "a", "1": "b"}}, "two keys"),
        ({"s": "\ud800"}, "lone surrogate"),
        ([1, 2], "must be a dict"),
    ],
)
def test_bad_payloads_are_refused(tmp_path: Path, payload: Any, match: str) -> None:
    with AuditLog(tmp_path / "a.jsonl") as log:
        with pytest.raises(AuditLogError, match=match):
            log.append("x", payload)
        assert log.records == 0


@pytest.mark.parametrize("kind", ["", None, 3])
def test_bad_kinds_are_refused(tmp_path: Path, kind: Any) -> None:
    with AuditLog(tmp_path / "a.jsonl") as log, pytest.raises(TrustError, match="kind"):
        log.append(kind, {})


# --- tampering ---------------------------------------------------------------------------------


def test_edited_payload_value(log5: Path) -> None:
    rows = lines(log5)
    assert b'"score":0.7' in rows[2]
    rows[2] = rows[2].replace(b'"score":0.7', b'"score":0.1')
    put_lines(log5, rows)
    assert_bad(log5, 2, "was edited")


@pytest.mark.parametrize("field", ["seq", "time", "kind", "prev"])
def test_edited_other_fields(log5: Path, field: str) -> None:
    rows = lines(log5)
    value = {"seq": 9, "time": "2020-01-01T00:00:00+00:00", "kind": "x", "prev": "f" * 64}[field]
    rows[3] = edited(rows[3], **{field: value})
    put_lines(log5, rows)
    assert_bad(log5, 3, "was edited")


def test_deleted_middle_record(log5: Path) -> None:
    rows = lines(log5)
    put_lines(log5, rows[:2] + rows[3:])
    assert_bad(log5, 2, "has seq 3 where 2 was expected")


def test_deleted_first_record(log5: Path) -> None:
    put_lines(log5, lines(log5)[1:])
    assert_bad(log5, 0, "has seq 1 where 0 was expected")


def test_swapped_records(log5: Path) -> None:
    rows = lines(log5)
    rows[1], rows[3] = rows[3], rows[1]
    put_lines(log5, rows)
    assert_bad(log5, 1, "reordered")


def test_truncated_last_line(log5: Path) -> None:
    data = log5.read_bytes()
    log5.write_bytes(data[:-10])
    assert_bad(log5, 4, "truncated")


def test_last_line_without_newline_is_truncated(log5: Path) -> None:
    log5.write_bytes(log5.read_bytes()[:-1])
    assert_bad(log5, 4, "truncated")


def test_appended_garbage(log5: Path) -> None:
    with log5.open("ab") as file:
        file.write(b"hello world\n")
    assert_bad(log5, 5, "not valid JSON")


def test_appended_blank_line(log5: Path) -> None:
    with log5.open("ab") as file:
        file.write(b"\n")
    assert_bad(log5, 5, "blank line")


def test_non_json_line_in_the_middle(log5: Path) -> None:
    rows = lines(log5)
    rows[1] = b"\xff\xfe not json\n"
    put_lines(log5, rows)
    assert_bad(log5, 1, "not valid UTF-8")


def test_json_nested_too_deeply_is_a_bad_record(log5: Path) -> None:
    rows = lines(log5)
    rows[1] = b"[" * 100_000 + b"]" * 100_000 + b"\n"  # json's RecursionError, before
    put_lines(log5, rows)
    assert_bad(log5, 1, "nested too deeply")


def test_json_but_not_a_record(log5: Path) -> None:
    rows = lines(log5)
    rows[1] = b'{"seq": 1}\n'
    put_lines(log5, rows)
    assert_bad(log5, 1, "not an audit record")


def test_rehashed_record_breaks_the_next_link(log5: Path) -> None:
    rows = lines(log5)
    rows[2] = edited(rows[2], rehash=True, payload={"round": 2, "score": 0.0})
    put_lines(log5, rows)
    assert_bad(log5, 3, "does not link to record 2", "record 2 was rewritten")


def test_non_canonical_line(log5: Path) -> None:
    rows = lines(log5)
    rows[1] = (json.dumps(json.loads(rows[1]), indent=None) + "\n").encode()
    put_lines(log5, rows)
    assert_bad(log5, 1, "canonical form")


def test_duplicate_key_is_not_canonical(log5: Path) -> None:
    rows = lines(log5)
    rows[1] = rows[1].replace(b'{"hash"', b'{"kind":"forged","hash"', 1)
    put_lines(log5, rows)
    assert_bad(log5, 1, "canonical form")


def test_missing_file(tmp_path: Path) -> None:
    result = verify_log(tmp_path / "nope.jsonl")
    assert (result.ok, result.records, result.first_bad) == (False, 0, None)
    assert result.reason == f"Audit log {tmp_path / 'nope.jsonl'} does not exist."
    with pytest.raises(AuditLogError, match="does not exist") as info:
        read_log(tmp_path / "nope.jsonl")
    assert info.value.first_bad is None


def test_a_fifo_is_named_as_not_a_regular_file(tmp_path: Path) -> None:
    """A named pipe exists but is no log: it was reported as missing (and is never opened,
    which would block until a writer came)."""
    import os

    from flwr_trust.report.runlog import find_log

    fifo = tmp_path / "audit.jsonl"
    os.mkfifo(fifo)
    assert verify_log(fifo).reason == f"Audit log {fifo} is not a regular file."
    with pytest.raises(AuditLogError, match="neither a folder nor a regular file"):
        find_log(fifo)


def test_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.jsonl"
    path.touch()
    result = verify_log(path)
    assert (result.ok, result.records, result.first_bad) == (False, 0, None)
    assert "empty log" in result.reason
    with pytest.raises(AuditLogError, match="empty log"):
        read_log(path)


def test_head_anchor_catches_records_cut_off_the_end(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    with AuditLog(path) as log:
        for payload in PAYLOADS[:3]:
            log.append("round", payload)
        anchor = log.head
        log.append("round", PAYLOADS[3])
    assert verify_log(path, head=anchor).ok  # an older anchor still holds as the log grows
    put_lines(path, lines(path)[:2])  # cut the anchored record and the one after it
    assert verify_log(path).ok  # the chain alone cannot see this
    result = verify_log(path, head=anchor)
    assert (result.ok, result.first_bad, result.records) == (False, 2, 2)
    assert anchor in result.reason and "cut off" in result.reason
    with pytest.raises(AuditLogError, match="cut off"):
        read_log(path, head=anchor)


# --- property: any single mutation is found at the right record --------------------------------

json_leaf = (
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=12)
)
json_value = st.recursive(
    json_leaf,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=8,
)
payloads = st.lists(
    st.dictionaries(st.text(max_size=6), json_value, max_size=4), min_size=1, max_size=6
)


@st.composite
def log_and_mutation(draw: st.DrawFn) -> tuple[list[dict[str, Any]], str, tuple[int, ...]]:
    """Payloads, a mutation name and its indices; each mutation needs enough records."""
    items = draw(payloads)
    n = len(items)
    choices = ["edit", "edit_kind", "truncate", "garbage", "duplicate"]
    if n >= 2:
        choices += ["delete", "swap", "rehash"]
    kind = draw(st.sampled_from(choices))
    if kind in ("delete", "rehash"):  # not the last record: the chain cannot see that one
        return items, kind, (draw(st.integers(0, n - 2)),)
    if kind == "swap":
        i = draw(st.integers(0, n - 2))
        return items, kind, (i, draw(st.integers(i + 1, n - 1)))
    if kind == "truncate":
        return items, kind, (draw(st.integers(1, 10**6)),)
    if kind == "garbage":
        return items, kind, ()
    return items, kind, (draw(st.integers(0, n - 1)),)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=log_and_mutation(), garbage=st.binary(min_size=1, max_size=40))
def test_any_single_mutation_is_found(
    case: tuple[list[dict[str, Any]], str, tuple[int, ...]], garbage: bytes
) -> None:
    items, kind, idx = case
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "audit.jsonl"
        written = write_log(path, items)
        assert verify_log(path).ok
        assert read_log(path) == written
        rows, n = lines(path), len(items)

        if kind == "edit":
            (i,) = idx
            rows[i] = edited(rows[i], payload={"tampered": written[i]["payload"]})
            expected = i
        elif kind == "edit_kind":
            (i,) = idx
            rows[i] = edited(rows[i], kind=written[i]["kind"] + "!")
            expected = i
        elif kind == "rehash":
            (i,) = idx
            rows[i] = edited(rows[i], rehash=True, payload={"tampered": True})
            expected = i + 1
        elif kind == "delete":
            (i,) = idx
            del rows[i]
            expected = i
        elif kind == "swap":
            i, j = idx
            rows[i], rows[j] = rows[j], rows[i]
            expected = i
        elif kind == "duplicate":
            (i,) = idx
            rows.insert(i + 1, rows[i])
            expected = i + 1
        elif kind == "truncate":
            cut = 1 + idx[0] % (len(rows[-1]) - 1)  # keep 1 .. len-1 bytes of the last line
            rows[-1] = rows[-1][:cut]
            expected = n - 1
        else:  # garbage
            rows.append(garbage)
            expected = n
        put_lines(path, rows)

        result = verify_log(path)
        assert not result.ok
        assert result.first_bad == expected, result.reason
        assert result.records == expected
        assert f"Record {expected} " in result.reason
        # Only a torn tail (the bad line is the last one and has no newline: a cut write) is
        # recovered by the writer; any other break is refused and the file left as it is.
        torn = expected == len(rows) - 1 and b"\n" not in rows[-1]
        before = path.read_bytes()
        if torn:
            with AuditLog(path) as log:
                assert [t.record for t in log.recovered] == [expected]
            assert verify_log(path).ok
            assert (path.parent / f"audit.jsonl.torn-{expected}").read_bytes() == rows[-1]
        else:
            with pytest.raises(AuditLogError):
                AuditLog(path)
            assert path.read_bytes() == before
