"""The detection matrix on a small grid: tiny model, 2 scenarios x 2 monitors x 1 seed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from silent_failures.sim.matrix import aggregate, cells, to_markdown
from silent_failures.sim.outcome import RunOutcome, as_system_run
from tests.helpers.scripts import load_script

BENCH = Path(__file__).resolve().parents[1] / "bench" / "detection_matrix.py"
COLUMNS = ["scenario (target metric)", "monitor", "detected", "rounds to alarm",
           "false alarms", "culprit precision", "behavior change", "final task loss"]


def _bench():
    return load_script(BENCH)


def _outcome(monitor: str, alarms: list[dict], scenario: str = "poisoned-update") -> RunOutcome:
    return RunOutcome(scenario=scenario, monitor=monitor, seed=0, model="tiny", num_clients=4,
                      rounds=3, onset=2, affected=[1], target="capability.log-ppl",
                      reference={"target": 5.0, "task_loss": 5.0},
                      final={"target": 5.5, "task_loss": 4.0}, alarms=alarms)


def test_outcome_rules_and_system_derivation():
    early = {"round": 1, "mode": "update", "metric": "norm", "message": "", "clients": [3]}
    late = {"round": 3, "mode": "update", "metric": "norm", "message": "", "clients": [1, 2]}
    o = _outcome("trust-quarantine", [early, late])
    assert o.detected and o.rounds_to_detect == 1 and o.false_alarm
    assert o.flagged == [1, 2] and o.culprit_precision == 0.5
    assert o.behavior_change == pytest.approx(0.5)
    none = _outcome("none", [])
    none.system_shadow = [{"round": 2, "kind": "update-norm", "message": "", "clients": [1]}]
    system = as_system_run(none)
    assert system.monitor == "system" and system.detected and system.culprit_precision == 1.0
    assert cells(["clean"], ["none", "system"], [0]) == [("clean", "none", 0)]
    rows = aggregate([o, none, system])
    assert [r["monitor"] for r in rows] == ["none", "system", "trust-quarantine"]
    assert rows[0]["detected"] is None and rows[1]["detected"] == 1.0
    assert o.alarm_modes == ["update"] and rows[2]["alarm_modes"] == ["update"]
    assert _outcome("trust-off", [early]).alarm_modes == []  # before onset: not who caught it


def test_small_grid_writes_table_and_trust_guard_is_quiet_on_clean(tmp_path, capsys):
    out = tmp_path / "matrix"
    code = _bench().main(["--model", "tiny", "--seeds", "1", "--scenarios",
                          "clean,poisoned-update", "--monitors", "system,trust-quarantine",
                          "--clients", "4", "--rounds", "2", "--probe-items", "8",
                          "--set", "local-steps=2", "--set", "batch-size=2",
                          "--set", "eval-items=40", "--set", "poison=scale",
                          "--set", "poison-factor=20", "--out", str(out), "--quiet"])
    assert code == 0
    printed = capsys.readouterr().out
    table = (out / "table.md").read_text()
    assert "Command: `python bench/detection_matrix.py --model tiny" in table
    # The cells run with the baseline app's own trust.* settings, as `flwr run` would.
    assert "trust.local-data.messages=train" in table
    header = next(line for line in table.splitlines() if line.startswith("| scenario"))
    assert [c.strip() for c in header.strip("|").split("|")] == COLUMNS
    assert to_markdown(json.loads((out / "table.json").read_text())["rows"]) in printed
    rows = {(r["scenario"], r["monitor"]): r
            for r in json.loads((out / "table.json").read_text())["rows"]}
    assert set(rows) == {(s, m) for s in ("clean", "poisoned-update")
                         for m in ("system", "trust-quarantine")}
    assert rows["clean", "trust-quarantine"]["false_alarms"] == 0.0
    assert rows["clean", "trust-quarantine"]["detected"] is None
    assert rows["poisoned-update", "system"]["detected"] == 1.0  # a 20x update norm
    for (scenario, monitor), row in rows.items():
        assert row["seeds"] == 1 and row["behavior_change_mean"] is not None
        assert (out / scenario / f"{monitor}-seed0" / "summary.json").is_file()


def test_resume_runs_again_a_run_on_an_earlier_revision_of_its_data(tmp_path, monkeypatch):
    """A resumed grid must not mix runs trained on a scenario's older data with new ones."""
    from silent_failures.sim import matrix
    from silent_failures.sim.scenarios import SCENARIOS

    rerun = []

    def fake(**kw):
        rerun.append(kw["scenario"])
        o = _outcome(kw["monitor"], [], kw["scenario"])
        o.scenario_data = SCENARIOS[kw["scenario"]].data
        return o

    monkeypatch.setattr("silent_failures.sim.runner.run_inline", fake)
    for scenario, data in (("calibration-drift", 1), ("poisoned-update", 1)):
        folder = tmp_path / scenario / "none-seed0"
        folder.mkdir(parents=True)
        saved = _outcome("none", [], scenario)
        saved.scenario_data = data
        saved.save(folder)
    logged = []
    out = matrix.run_grid(["calibration-drift", "poisoned-update"], ["none"], [0],
                          base_dir=tmp_path, keys={}, resume=True, log=logged.append)
    assert SCENARIOS["calibration-drift"].data == 2 and rerun == ["calibration-drift"]
    assert [o.scenario_data for o in out] == [2, 1]
    assert "revision 1, now 2: running it again" in logged[0]
    assert matrix.aggregate(out)[0]["scenario_data"] == [2]


def test_resumed_table_reports_each_runs_own_time(tmp_path, monkeypatch, capsys):
    """A --resume that reads every run back must not print its own few seconds as the grid's
    wall time: the table sums each federation's own time and names this invocation's apart."""
    from silent_failures.sim.scenarios import SCENARIOS

    def never(**kw):
        raise AssertionError(f"{kw['scenario']} should have been read back")

    monkeypatch.setattr("silent_failures.sim.runner.run_inline", never)
    out = tmp_path / "matrix"
    for seed, seconds in ((0, 100.0), (1, 200.0)):
        folder = out / "poisoned-update" / f"none-seed{seed}"
        folder.mkdir(parents=True)
        saved = _outcome("none", [])
        saved.seed, saved.wall_seconds, saved.run_dir = seed, seconds, str(folder)
        saved.scenario_data = SCENARIOS["poisoned-update"].data
        saved.save(folder)
    code = _bench().main(["--model", "tiny", "--seeds", "2", "--scenarios", "poisoned-update",
                          "--monitors", "none,system", "--out", str(out), "--resume", "--quiet"])
    assert code == 0
    wall = next(line for line in (out / "table.md").read_text().splitlines()
                if line.startswith("Wall time:"))
    assert wall.startswith("Wall time: 300 s for 2 federations (each run's own time, summed; "
                           "this invocation ")
    assert "300 s of federation time" in capsys.readouterr().out


def test_a_rolled_back_round_is_not_reported_accepted():
    from silent_failures.sim.outcome import mark_refused

    rounds = [{"round": r, "accepted": True} for r in (1, 2, 3, 4)]
    actions = [{"round": 2, "action": "quarantine"}, {"round": 3, "action": "rollback"},
               {"round": 4, "action": "halt"}]
    assert [r["accepted"] for r in mark_refused(rounds, actions)] == [True, True, False, False]
    assert mark_refused([{"round": 1, "accepted": False}], []) == [{"round": 1, "accepted": False}]
