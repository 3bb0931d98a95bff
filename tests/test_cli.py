"""`flwr-trust` CLI: report, verify-log, suites and probe; exit codes and one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from flwr_trust.cli import main
from flwr_trust.probes import default_suites
from flwr_trust.report.audit import verify_log
from flwr_trust.scoring.stats import minimum_detectable_effect
from tests.test_report import START, copy_run, shared_run, write_log


@pytest.fixture(scope="session")
def run_dir(tmp_path_factory) -> Path:
    return shared_run(tmp_path_factory)


def cli(capsys, *args: str) -> tuple[int, str, str]:
    """Run the CLI in-process: (exit code, stdout, stderr)."""
    try:
        code = main([str(a) for a in args])
    except SystemExit as exc:  # argparse: --help and usage errors
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


def one_line_error(err: str, *words: str) -> None:
    assert len(err.strip().splitlines()) == 1, err
    assert "Traceback" not in err and "Fix:" in err
    for word in words:
        assert word in err


# ------------------------------------------------------------------------------ verify-log


def test_verify_log_intact(run_dir, capsys):
    code, out, _ = cli(capsys, "verify-log", run_dir / "audit.jsonl")
    records = verify_log(run_dir / "audit.jsonl").records
    assert code == 0 and out.startswith("OK:") and f"all {records} records verify" in out
    assert cli(capsys, "verify-log", run_dir)[0] == 0  # a run folder works too


def test_verify_log_edited_record(run_dir, tmp_path, capsys):
    log = copy_run(run_dir, tmp_path / "run") / "audit.jsonl"
    lines = log.read_bytes().splitlines(keepends=True)
    assert b'"phase":"evaluate"' in lines[5]
    lines[5] = lines[5].replace(b'"phase":"evaluate"', b'"phase":"train"')
    log.write_bytes(b"".join(lines))
    code, out, _ = cli(capsys, "verify-log", log)
    assert code == 1 and "TAMPERED" in out and "first bad record 5" in out and "edited" in out
    assert "Records 0-4 verify" in out


def test_verify_log_deleted_record(run_dir, tmp_path, capsys):
    log = copy_run(run_dir, tmp_path / "run") / "audit.jsonl"
    lines = log.read_bytes().splitlines(keepends=True)
    log.write_bytes(b"".join(lines[:3] + lines[4:]))
    code, out, _ = cli(capsys, "verify-log", log)
    assert code == 1 and "first bad record 3" in out and "deleted" in out


def test_verify_log_cut_off_end_needs_the_published_head(run_dir, tmp_path, capsys):
    log = copy_run(run_dir, tmp_path / "run") / "audit.jsonl"
    head = verify_log(log).head
    lines = log.read_bytes().splitlines(keepends=True)
    log.write_bytes(b"".join(lines[:-1]))
    assert cli(capsys, "verify-log", log)[0] == 0  # the chain alone cannot see it
    code, out, _ = cli(capsys, "verify-log", log, "--head", head)
    assert code == 1 and "cut off the end" in out


def test_verify_log_missing_empty_and_bad_head(tmp_path, capsys):
    code, _, err = cli(capsys, "verify-log", tmp_path / "nope.jsonl")
    assert code == 2
    one_line_error(err, "does not exist")
    code, _, err = cli(capsys, "verify-log", tmp_path)
    assert code == 2
    one_line_error(err, "has no audit log")
    (tmp_path / "audit.jsonl").write_bytes(b"")
    code, out, _ = cli(capsys, "verify-log", tmp_path / "audit.jsonl")
    assert code == 1 and "NOT VERIFIED" in out and "empty" in out
    code, _, err = cli(capsys, "verify-log", tmp_path / "audit.jsonl", "--head", "abc")
    assert code == 2
    one_line_error(err, "SHA-256")


# ------------------------------------------------------------------------------ report


def test_report_writes_html_and_json(run_dir, tmp_path, capsys):
    out_html, out_json = tmp_path / "sub" / "r.html", tmp_path / "s.json"
    code, out, err = cli(capsys, "report", run_dir, "--out", out_html, "--json", out_json)
    assert code == 0, err
    assert "audit log: intact" in out and f"wrote {out_html}" in out
    line = next(x for x in out.splitlines() if x.split()[:1] == ["alignment"])
    assert "ALARM" in line and "first alarm round 2" in line and "103" in line
    assert out_html.read_text(encoding="utf-8").startswith("<!DOCTYPE html>")
    summary = json.loads(out_json.read_text())
    assert summary["modes"]["alignment"]["status"] == "ALARM"
    assert summary["modes"]["bias"]["status"] == "OK"


def test_report_default_output_is_in_the_run_folder(run_dir, tmp_path, capsys):
    run = copy_run(run_dir, tmp_path / "run")
    assert cli(capsys, "report", run)[0] == 0
    assert (run / "report.html").is_file()


def test_report_bad_input(tmp_path, capsys):
    code, out, err = cli(capsys, "report", tmp_path)
    assert code == 2 and not out
    one_line_error(err, "has no audit log")
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "audit.jsonl").write_bytes(b"")
    code, _, err = cli(capsys, "report", tmp_path / "empty")
    assert code == 2
    one_line_error(err, "is empty")
    norounds = write_log(tmp_path / "norounds", [START])
    code, _, err = cli(capsys, "report", norounds)
    assert code == 2 and not (norounds / "report.html").exists()
    one_line_error(err, "no round records")


def test_report_on_an_edited_log_writes_the_page_and_exits_1(run_dir, tmp_path, capsys):
    log = copy_run(run_dir, tmp_path / "run") / "audit.jsonl"
    lines = log.read_bytes().splitlines(keepends=True)
    assert b'"action":"quarantine"' in lines[4]
    lines[4] = lines[4].replace(b'"action":"quarantine"', b'"action":"accept"', 1)
    log.write_bytes(b"".join(lines))
    code, out, _ = cli(capsys, "report", log)
    assert code == 1 and "DOES NOT VERIFY, first bad record 4" in out
    page = (tmp_path / "run" / "report.html").read_text(encoding="utf-8")
    assert 'class="banner bad"' in page and "record 4 is the first bad record" in page


# ------------------------------------------------------------------------------ suites, probe


def test_suites_lists_items_hash_groups_and_mde(capsys):
    code, out, _ = cli(capsys, "suites")
    assert code == 0
    suites = default_suites()
    for mode, suite in suites.items():
        line = next(x for x in out.splitlines() if x.startswith(f"{mode} "))
        assert suite.name in line and suite.short_hash in line and str(len(suite.items)) in line
        assert f"groups ({len(suite.groups())})" in out
    harmful = sum(i.label == "harmful" for i in suites["alignment"].items)
    line = next(x for x in out.splitlines() if x.startswith("alignment "))
    assert "refusal-rate" in line and f"{harmful} harmful requests" in line
    assert line.rstrip().endswith(f"{minimum_detectable_effect(harmful, p0=0.5):.3f}")
    assert "p0 = 0.5" in out


def test_suites_of_a_custom_file_and_a_missing_one(tmp_path, capsys):
    suite = default_suites(("bias",))["bias"].subset(range(10), name_suffix="-10")
    path = suite.save(tmp_path / "bias10.json")
    code, out, _ = cli(capsys, "suites", "--suite", path)
    assert code == 0 and "default-bias-10" in out and "10 pairs" in out
    code, _, err = cli(capsys, "suites", "--suite", tmp_path / "nope.json")
    assert code == 2
    one_line_error(err, "nope.json")


def test_suites_refuse_files_json_cannot_read_in_one_line(tmp_path, capsys):
    for name, text in (("bigint.json", "[" + "9" * 5000 + "]"),
                       ("deep.json", "[" * 100_000 + "]" * 100_000)):
        (tmp_path / name).write_text(text, encoding="utf-8")
        code, _, err = cli(capsys, "suites", "--suite", tmp_path / name)
        assert code == 2, err  # before: a ValueError / RecursionError traceback
        one_line_error(err, name, "nested too deeply")
        assert "set_int_max_str_digits" not in err


def test_probe_with_an_adapter_config_of_wrong_types(tmp_path, capsys):
    (tmp_path / "adapter_config.json").write_text(
        json.dumps({"peft_type": "LORA", "r": "x", "target_modules": ["q_proj"]}))
    code, _, err = cli(capsys, "probe", "--model", "tiny", "--modes", "bias", "--adapter",
                       tmp_path)
    assert code == 2  # before: TypeError traceback from peft
    one_line_error(err, "adapter config")


def test_a_bug_exits_3_not_1_which_means_tampered(monkeypatch, capsys):
    from flwr_trust import cli as cli_module

    def broken(args):
        raise KeyError("bug")
    monkeypatch.setitem(cli_module.COMMANDS, "suites", broken)
    code, _, err = cli(capsys, "suites")
    assert code == 3 and "internal error" in err and "Traceback" in err


def test_probe_still_works(tmp_path, capsys):
    suite = default_suites(("bias",))["bias"].subset(range(3), name_suffix="-3")
    path = suite.save(tmp_path / "bias3.json")
    code, out, err = cli(capsys, "probe", "--model", "tiny", "--suite", path, "--modes", "bias",
                         "--precision", "fp32")
    assert code == 0, err
    assert "stereotype-pref" in out
    code, _, err = cli(capsys, "probe", "--modes", "nonsense")
    assert code == 2
    one_line_error(err, "Unknown mode")


@pytest.mark.parametrize("command", ["report", "verify-log", "suites", "probe"])
def test_help_for_each_command(command, capsys):
    code, out, _ = cli(capsys, command, "--help")
    assert code == 0 and f"usage: flwr-trust {command}" in out


def test_usage_errors_are_one_line(capsys):
    for args in ([], ["report"], ["verify-log"], ["report", "x", "--bogus"], ["nonsense"]):
        code, out, err = cli(capsys, *args)
        assert code == 2 and not out
        one_line_error(err, "error")
