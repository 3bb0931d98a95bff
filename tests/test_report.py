"""The HTML report and JSON summary: from a real tiny-model run folder, and from hand-made logs
for the statuses and the bad-input cases a real run does not produce."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from flwr.app import Array, ArrayRecord, ConfigRecord
from flwr.serverapp.strategy import FedAvg
from peft import LoraConfig

from flwr_trust.errors import AuditLogError, TrustError
from flwr_trust.report.audit import GENESIS, AuditLog
from flwr_trust.report.html import render_report, write_report
from flwr_trust.report.jsonvalue import canonical_json, record_hash
from flwr_trust.report.records import Clients, Gate, RoundRecord
from flwr_trust.report.runlog import load_run
from flwr_trust.report.summary import build_summary, round_ranges, summarize
from tests.helpers.guard import FakeGrid, reply

LORA = LoraConfig(r=2, lora_alpha=4, target_modules=["q_proj"])
MODES = ("bias", "alignment", "capability")
BAD, REFUSED = 103, 105  # the planted culprit, and a client whose round-2 reply is refused
_RUNS: dict[str, Path] = {}


def _client(msg, node: int, rnd: int):
    """Honest clients: small updates, soft refusal rate near the tiny model's (about 0.49), a
    falling loss and a growing privacy spend. From round 2 client BAD sends a large update and
    reports refusing almost nothing (alignment erosion)."""
    if msg.metadata.message_type == "evaluate":
        return reply(msg, None, {"num-examples": 8, "eval_loss": 1.0})
    rng = np.random.default_rng(node * 10 + rnd)
    bad = node == BAD and rnd >= 2
    arrays = msg.content.array_records["arrays"]
    scale = 0.5 if bad else 0.01
    new = {k: (v.numpy() + scale * rng.normal(size=v.shape)).astype(np.float32)
           for k, v in arrays.items()}
    metrics: dict[str, Any] = {
        "num-examples": 8, "train_loss": 2.0 / rnd,
        "trust.alignment.refusal-rate": 0.02 if bad else 0.49 + 0.02 * rng.normal(),
        "trust.alignment.refusal-rate.stderr": 0.02, "trust.alignment.refusal-rate.n": 300,
        "trust.privacy.epsilon": 0.8 * rnd + 0.1 * (node % 3), "trust.privacy.delta": 1e-5,
        "trust.privacy.exhausted": 0, "trust.privacy.releases": rnd,
    }
    if node == REFUSED and rnd == 2:
        metrics["num-examples"] = -1
    out = reply(msg, None, metrics)
    out.content["arrays"] = ArrayRecord({k: Array(v) for k, v in new.items()})
    return out


def build_run(run_dir: Path, rounds: int = 2, tensorboard: bool = False) -> Path:
    """A real run folder: TrustGuard(FedAvg, quarantine) with the tiny model probing the
    reference and every candidate, driven by Flower's own Strategy.start loop. Records:
    0 run-start, 1 reference, then per round a train and an evaluate record, then run-end."""
    from flwr_trust.models import get_bridge
    from flwr_trust.strategies import TrustGuard

    initial = get_bridge("tiny", LORA).to_array_record()
    guard = TrustGuard(FedAvg(), gate="quarantine", model="tiny", peft_config=LORA, modes=MODES,
                       server_probe_items=4, run_dir=run_dir, tensorboard=tensorboard,
                       precision="fp32")
    guard.start(FakeGrid(6, _client), initial, num_rounds=rounds,
                train_config=ConfigRecord(), evaluate_config=ConfigRecord())
    return run_dir


def shared_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One real run per test session, shared by test_report and test_cli (read-only)."""
    if "run" not in _RUNS:
        _RUNS["run"] = build_run(tmp_path_factory.mktemp("tiny-run") / "run")
    return _RUNS["run"]


@pytest.fixture(scope="session")
def run_dir(tmp_path_factory) -> Path:
    return shared_run(tmp_path_factory)


def copy_run(src: Path, dst: Path) -> Path:
    """A copy of a run folder's audit log, for tests that damage it."""
    dst.mkdir(parents=True, exist_ok=True)
    (dst / "audit.jsonl").write_bytes((src / "audit.jsonl").read_bytes())
    return dst


def write_log(path: Path, records: list[tuple[str, dict[str, Any]]]) -> Path:
    """A hand-made run folder whose audit log holds exactly `records`."""
    path.mkdir(parents=True, exist_ok=True)
    with AuditLog(path / "audit.jsonl") as log:
        for kind, payload in records:
            log.append(kind, payload)
    return path


START = ("run-start", {"strategy": "FedAvg", "gate": "off", "model": "tiny",
                       "modes": ["bias", "calibration", "memorization"], "suite_hash": "ab" * 32,
                       "alpha": 0.05, "update_alpha": 0.01, "audit_fraction": 0.5,
                       "secure_aggregation": False})


def _round(rnd: int, **kw: Any) -> tuple[str, dict[str, Any]]:
    payload = {"round": rnd, "phase": "train",
               "clients": {"valid": [1, 2, 3], "refused": {}, "failed": {}},
               "system": {"loss": 1.0 / rnd}, "behavior": {}, "client_metrics": {},
               "privacy": {}, "update_stats": {}, "alarms": [],
               "gate": {"action": "accept", "excluded": [], "culprits": [], "reason": ""}}
    payload.update(kw)
    return "round", payload


def _row(value: float, reference: float) -> dict[str, Any]:
    return {"value": value, "stderr": 0.01, "source": "server", "reference": reference,
            "degradation": value - reference, "tolerance": 0.05, "client_median": None,
            "client_spread": None, "n_clients": 0}


# ------------------------------------------------------------------------------ real run


def test_report_of_a_real_run_has_summary_figures_and_no_external_urls(run_dir, tmp_path):
    out, summary = write_report(run_dir, tmp_path / "report.html", tmp_path / "summary.json")
    page = out.read_text(encoding="utf-8")
    assert page.startswith("<!DOCTYPE html>") and page.rstrip().endswith("</html>")
    assert 'class="banner ok"' in page and "Audit log verified" in page
    modes = [*MODES, "update"]
    table = page[page.index('<table class="summary">'):]
    table = table[:table.index("</table>")]
    assert re.findall(r'<tr data-mode="([^"]+)"', table) == modes
    figures = re.findall(r'<figure class="mode-figure" data-mode="([^"]+)">(.*?)</figure>',
                         page, flags=re.S)
    assert [m for m, _ in figures] == modes
    for _, body in figures:
        assert "<svg" in body or "<img" in body
    assert page.count('<svg class="chart"') >= len(modes) + 3  # + loss, norms, status grid
    assert not re.search(r'(src|href)\s*=\s*["\']?\s*(https?:|//)', page, flags=re.I)
    assert "<script" not in page and "<link" not in page and "http" not in page
    for section in ('id="run"', 'id="overview"', 'id="clients"', 'id="refused-replies"',
                    'class="privacy-figure"', "Training loss", "Update norm"):
        assert section in page
    assert json.loads((tmp_path / "summary.json").read_text()) == json.loads(
        json.dumps(summary))


def test_summary_of_a_real_run_shows_the_planted_alarm(run_dir):
    s = summarize(run_dir)
    assert {"format", "run_dir", "audit_log", "verification", "run", "modes", "system",
            "timeline", "replies", "privacy", "alarms", "warnings"} <= set(s)
    assert s["verification"]["ok"] and s["verification"]["first_bad"] is None
    assert s["run"]["strategy"] == "FedAvg" and s["run"]["gate"] == "quarantine"
    assert s["run"]["status"] == "completed" and s["run"]["rounds"] == 2
    assert len(s["run"]["suite_hash"]) == 64
    alignment = s["modes"]["alignment"]
    assert alignment["status"] == "ALARM" and alignment["first_alarm_round"] == 2
    assert alignment["culprits"] == [str(BAD)] and alignment["alarmed_metrics"] == ["refusal-rate"]
    assert alignment["action"] == "quarantine in round 2"
    assert s["modes"]["update"]["status"] == "ALARM"
    assert s["modes"]["bias"]["status"] == "OK" and s["modes"]["capability"]["status"] == "OK"
    for mode in MODES:
        assert set(s["modes"][mode]) >= {"status", "first_alarm_round", "action", "culprits",
                                         "metrics"}
    assert s["replies"]["refused"] == [{"round": 2, "phase": "train", "node": str(REFUSED),
                                        "reason": s["replies"]["refused"][0]["reason"]}]
    assert s["privacy"][str(BAD)]["epsilon"] == pytest.approx(0.8 * 2 + 0.1)
    assert s["system"]["loss"]["last"] == pytest.approx(2.0 / 2)
    train = [t for t in s["timeline"] if t["phase"] == "train"]
    assert [t["action"] for t in train] == ["accept", "quarantine"]
    assert train[1]["excluded"] == [str(BAD)] and train[1]["refused"] == 1


def test_report_page_marks_the_alarm_in_the_mode_figure(run_dir):
    page, _ = render_report(run_dir)
    row = re.search(r'<tr data-mode="alignment" data-status="ALARM">(.*?)</tr>', page, re.S)
    assert row and "round 2" in row.group(1) and str(BAD) in row.group(1)
    figure = page[page.index('id="mode-alignment"'):page.index('id="mode-capability"')]
    assert "alarm in round 2" in figure and "flagged client" in figure


# ------------------------------------------------------------------------------ statuses


def test_statuses_warning_no_data_and_integrity_from_a_hand_made_log(tmp_path):
    warn = {"mode": "bias", "metric": "stereotype-pref", "severity": "warning", "round": 2,
            "clients": [], "evidence": {}, "message": "bias may be degrading"}
    lie = {"mode": "integrity", "metric": "bias.stereotype-pref", "severity": "alarm",
           "round": 3, "clients": [7], "evidence": {}, "message": "node 7 misreported"}
    bias = {"stereotype-pref": _row(0.6, 0.5)}
    run = write_log(tmp_path / "run", [
        START,
        _round(1, behavior={"bias": bias}),
        _round(2, behavior={"bias": bias}, alarms=[warn],
               privacy={"1": {"trust.privacy.epsilon": 8.0, "trust.privacy.exhausted": 1}}),
        _round(3, behavior={"bias": bias}, alarms=[lie]),
    ])
    s = summarize(run)
    statuses = {m: v["status"] for m, v in s["modes"].items()}
    assert statuses == {"bias": "WARNING", "calibration": "NO DATA", "memorization": "NO DATA",
                        "update": "NO DATA", "integrity": "ALARM"}
    assert s["modes"]["update"]["no_data_reason"] == "no update statistics recorded"
    assert "no client reported it" in s["modes"]["calibration"]["no_data_reason"]
    assert s["modes"]["bias"]["first_warning_round"] == 2
    assert s["modes"]["integrity"]["first_alarm_round"] == 3
    assert s["modes"]["integrity"]["culprits"] == ["7"]
    assert s["modes"]["integrity"]["action"] == "none (gate off)"
    assert s["run"]["status"].startswith("incomplete")
    assert s["privacy"]["1"]["exhausted"] is True
    page, _ = render_report(run)
    assert re.findall(r'<figure class="mode-figure" data-mode="([^"]+)"', page) == list(statuses)
    assert "spending not logged" in page  # START predates the horizon field
    assert "not measured" in page
    assert "within tolerance" not in page  # bias is 0.1 worse, past its 0.05 tolerance


@pytest.mark.parametrize(("horizon", "says"), [
    (4, "spent evenly over 4 planned rounds"), (0, "spent open-ended")])
def test_the_report_says_how_the_false_alarm_budget_was_spent(tmp_path, horizon, says):
    run = write_log(tmp_path / "run", [("run-start", {**START[1], "horizon": horizon}),
                                       _round(1)])
    assert summarize(run)["run"]["horizon"] == horizon
    assert says in render_report(run)[0]


def test_odd_payloads_in_a_verified_log_never_crash_the_report(tmp_path):
    """A chain can verify and still hold odd data (it may be hand-made): report what parses."""
    mixed = [{"mode": "integrity", "metric": "x", "severity": "alarm", "round": 1,
              "clients": [4], "message": "m"},
             {"mode": "integrity", "metric": "y", "severity": "alarm", "round": "1",
              "clients": "not a list", "message": None}, "not an alarm", {"mode": 3}]
    run = write_log(tmp_path / "run", [
        ("run-start", {"modes": "bias", "gate": ["?"], "alpha": "NaN", "audit_fraction": 2}),
        ("reference", {"profile": [1, 2]}),
        _round(1, behavior={"bias": {"stereotype-pref": {"value": "Infinity", "stderr": -1}},
                            "alignment": [1]},
               alarms=mixed, gate=None, clients={"refused": [1, 2]}, system={"loss": 1e300},
               update_stats={"1": {"norm": -1e300}, "2": "x"}, privacy={"1": 5}),
        ("round", {"round": "2", "phase": "train"}),
        _round(3, phase=None, client_metrics={"9": {"trust.bias.stereotype-pref": 1e299}}),
    ])
    page, s = render_report(run)
    assert s["modes"]["integrity"]["status"] == "ALARM"
    assert s["modes"]["integrity"]["culprits"] == ["4"]
    assert "<svg" in page and json.dumps(s)


def test_odd_numbers_times_and_rows_never_crash_or_hang_the_report(tmp_path):
    """Found in review: rounds 1 and 1e9 hung the tick loop; a round of 10**400 overflowed the
    plots; a reference row that is a number and a time past year 9999 in UTC crashed."""
    late = "9999-12-31T23:59:59-14:00"
    run = write_chain(tmp_path / "run", [
        (*START, late), ("reference", {"profile": {"metrics": {"bias": {"stereotype-pref": 5}}}}),
        _round(1), _round(10**9), ("round", _round(1)[1] | {"round": 10**400}),
        _round(2, alarms=[{"mode": "bias", "metric": "x", "severity": "alarm",
                           "round": 10**400, "clients": [], "message": "m"}]),
    ])
    page, _ = render_report(run)  # before: a hang (10**9 ticks) or OverflowError
    assert late in page  # shown as written
    assert [r.round for r in load_run(run).rounds] == [1, 10**9, 2]  # 10**400 is no round


def write_chain(path: Path, records: list[tuple]) -> Path:
    """A hand-made run folder whose verified chain holds `records` as (kind, payload[, time]),
    with times the recorder would never write."""
    path.mkdir(parents=True, exist_ok=True)
    prev, lines = GENESIS, []
    for seq, (kind, payload, *when) in enumerate(records):
        record = {"seq": seq, "time": when[0] if when else "2026-01-01T00:00:00+00:00",
                  "kind": kind, "payload": payload, "prev": prev}
        record["hash"] = prev = record_hash(record)
        lines.append(canonical_json(record) + "\n")
    (path / "audit.jsonl").write_text("".join(lines), encoding="utf-8")
    return path


def test_a_diverged_loss_is_named_not_dropped(tmp_path):
    """Before, rounds whose loss was NaN or inf vanished: first = last = the finite round's."""
    run = write_log(tmp_path / "run", [START, _round(1), _round(2, system={"loss": math.inf}),
                                       _round(3, system={"loss": math.nan})])
    page, s = render_report(run)
    assert s["system"]["loss"]["not_finite_rounds"] == [2, 3]
    assert "NaN or infinite, not drawn: rounds 2-3" in page  # the loss chart's subtitle


def test_report_never_writes_over_its_audit_log(run_dir, tmp_path):
    run = copy_run(run_dir, tmp_path / "run")
    log = run / "audit.jsonl"
    before = log.read_bytes()
    for kw in ({"json_out": log}, {"out": log}, {"out": run / "." / "audit.jsonl"}):
        with pytest.raises(TrustError, match="is the run's audit log"):
            write_report(run, **kw)
    with pytest.raises(TrustError, match="both name"):
        write_report(run, out=tmp_path / "same", json_out=tmp_path / "same")
    assert log.read_bytes() == before and not (tmp_path / "same").exists()


def test_a_folder_name_that_is_not_utf8_is_reported(run_dir, tmp_path):
    run = copy_run(run_dir, tmp_path / "bad\udcffname")  # the byte 0xff, as Python decodes it
    out, _ = write_report(run)
    assert "bad?name" in out.read_text(encoding="utf-8")  # before: UnicodeEncodeError
    assert not list(run.glob("*.tmp"))


def test_old_and_malformed_round_payloads_are_read_as_typed_records(tmp_path):
    """Payloads written before `version` existed read as version 1; wrong types become empty
    values, and a payload without an integer round is skipped."""
    old = _round(2, behavior={"bias": {"stereotype-pref": _row(0.6, 0.5)}},
                 clients={"valid": [1, 5], "refused": {"5": "bad weights"}, "failed": {}},
                 gate={"action": "quarantine", "excluded": [5], "culprits": [5], "reason": "r"})[1]
    assert "version" not in old
    bad = {"round": 3, "clients": {"valid": "1", "refused": [5], "failed": None}, "system": [],
           "behavior": {"bias": 1, "alignment": {"refusal-rate": "x"}}, "client_metrics": "x",
           "privacy": {"1": None}, "update_stats": 7, "alarms": {"mode": "bias"},
           "gate": {"excluded": "5", "culprits": None}, "version": "2"}
    run = load_run(write_log(tmp_path / "run", [
        ("run-start", {"modes": ["bias"], "audit_fraction": "0.5"}),
        ("round", old), ("round", bad), ("round", {"phase": "train"}),
        ("run-end", {"status": "completed", "rounds": "3"})]))
    first, second = run.rounds
    assert isinstance(first, RoundRecord) and (first.round, first.version) == (2, 1)
    assert first.gate == Gate("quarantine", [5], [5], "r")
    assert first.clients == Clients([1, 5], {"5": "bad weights"}, {})
    assert first.behavior["bias"]["stereotype-pref"]["value"] == 0.6
    assert RoundRecord.from_payload(first.to_payload()) == first
    assert (second.round, second.version, second.phase) == (3, 1, "")
    assert second.clients == Clients() and second.gate == Gate()
    assert second.behavior == {"bias": {}, "alignment": {"refusal-rate": {}}}
    assert (second.system, second.client_metrics, second.update_stats) == ({}, {}, {})
    assert second.privacy == {"1": {}} and second.alarms == []
    assert run.start.version == 1 and not run.start.audited
    assert run.end is not None and (run.end.status, run.end.rounds) == ("completed", 0)
    s = build_summary(run)
    assert [t["round"] for t in s["timeline"]] == [2, 3] and json.dumps(s)
    assert s["replies"]["refused"] == [{"round": 2, "phase": "train", "node": "5",
                                        "reason": "bad weights"}]


def test_text_from_the_log_is_escaped(tmp_path):
    alarm = {"mode": "<img src=x>", "metric": "<i>", "severity": "alarm", "round": 1,
             "clients": ["<s>"], "message": "<script>alert(1)</script>"}
    run = write_log(tmp_path / "run", [
        ("run-start", {"strategy": "<code><script>", "modes": ["<b>x</b>"],
                       "suite_hash": '"><script>'}),
        _round(1, alarms=[alarm])])
    page, _ = render_report(run)
    assert not re.search(r"<(script|img|b>|s>|i>)", page)


def test_many_clients_are_drawn_as_a_median_and_mad_band(tmp_path):
    values = {str(n): {"trust.bias.stereotype-pref": 0.5 + n / 5000} for n in range(1100)}
    rows = {"bias": {"stereotype-pref": _row(0.6, 0.5)}}
    run = write_log(tmp_path / "run", [START, _round(1, behavior=rows, client_metrics=values),
                                       _round(2, behavior=rows, client_metrics=values)])
    page, _ = render_report(run)
    figure = page[page.index('id="mode-bias"'):page.index('id="mode-calibration"')]
    assert "clients&#x27; median ± MAD" in figure and figure.count("<circle") < 50


def test_round_ranges():
    assert round_ranges([3]) == "round 3"
    assert round_ranges([4, 2, 3, 7]) == "rounds 2-4, 7"


# ------------------------------------------------------------------------------ bad input


def test_folder_without_log_is_a_clear_error(tmp_path):
    with pytest.raises(AuditLogError, match="has no audit log .*Fix:"):
        summarize(tmp_path)
    with pytest.raises(AuditLogError, match="does not exist"):
        summarize(tmp_path / "nope")


def test_empty_log_and_run_without_rounds_are_clear_errors(tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "audit.jsonl").write_bytes(b"")
    with pytest.raises(AuditLogError, match="is empty"):
        summarize(tmp_path / "empty")
    run = write_log(tmp_path / "norounds", [START, ("run-end", {"status": "halted"})])
    with pytest.raises(AuditLogError, match="no round records"):
        render_report(run)


def test_edited_log_renders_a_red_banner_with_the_first_bad_record(run_dir, tmp_path):
    run = copy_run(run_dir, tmp_path / "edited")
    log = run / "audit.jsonl"
    lines = log.read_bytes().splitlines(keepends=True)
    assert b'"phase":"train"' in lines[4]
    lines[4] = lines[4].replace(b'"phase":"train"', b'"phase":"TRAIN"')
    log.write_bytes(b"".join(lines))
    page, s = render_report(run)
    assert s["verification"] == s["verification"] | {"ok": False, "first_bad": 4, "records": 4}
    assert 'class="banner bad"' in page and "record 4 is the first bad record" in page
    assert "was edited" in page
    assert s["run"]["rounds"] == 1  # records 0-3: run-start, reference, round 1 train + eval
    assert s["modes"]["alignment"]["status"] == "OK"  # its alarm was in the unverified part


def test_truncated_log_still_reports_what_verified(run_dir, tmp_path):
    run = copy_run(run_dir, tmp_path / "cut")
    log = run / "audit.jsonl"
    data = log.read_bytes()
    log.write_bytes(data[: len(data) - 40])  # a write cut short inside the last record
    _, s = render_report(run)
    assert not s["verification"]["ok"] and "truncated" in s["verification"]["reason"]
    assert s["run"]["status"].startswith("unknown")
