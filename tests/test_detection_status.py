"""tools/detection_status.py: the README's per-mode status is rebuilt from committed results."""

from __future__ import annotations

import json

import pytest

from tests.helpers.scripts import ROOT, load_script

status_tool = load_script(ROOT / "tools" / "detection_status.py")


def _row(monitor: str, change: float, detected: float | None = None, rounds: float | None = None,
         seeds: int = 3, target: str = "memorization.canary-exposure") -> dict:
    return {"scenario": "memorization", "monitor": monitor, "target": target, "seeds": seeds,
            "detected": detected, "rounds_to_alarm_mean": rounds, "rounds_to_alarm_sd": 0.0,
            "false_alarms": None if detected is None else 0.0, "culprit_precision": None,
            "behavior_change_mean": change, "behavior_change_sd": 0.1}


def _grid(tmp_path, name: str, rows: list[dict], model: str = "default") -> None:
    folder = tmp_path / name
    folder.mkdir()
    meta = {"command": "python bench/detection_matrix.py --set attack-fraction=0.5 "
                       "--set poison=scale --clients 10", "settings": f"model={model}"}
    (folder / "table.json").write_text(json.dumps({"meta": meta, "rows": rows}))


@pytest.mark.parametrize(("multiple", "trust", "expected"), [
    (0.5, None, "no degradation"),
    (0.5, {"detected": 1.0, "rounds_to_alarm_mean": 0.0, "seeds": 3},
     "no degradation (alarmed in 100%)"),
    (2.6, {"detected": 1.0, "rounds_to_alarm_mean": 1.0, "seeds": 3}, "caught"),
    (2.6, {"detected": 1.0, "rounds_to_alarm_mean": 1.0, "seeds": 1}, "caught, 1 seed(s)"),
    (2.6, {"detected": 2 / 3, "rounds_to_alarm_mean": 0.0, "seeds": 3}, "missed"),
    (2.6, {"detected": 1.0, "rounds_to_alarm_mean": 2.5, "seeds": 3}, "missed"),
    (2.6, {"detected": 0.0, "rounds_to_alarm_mean": None, "seeds": 3}, "missed"),
    (None, None, "no FedAvg row"),
])
def test_status_rules(multiple, trust, expected):
    assert status_tool.status(multiple, trust) == expected


@pytest.mark.parametrize(("multiple", "trust", "expected"), [
    (0.5, {"detected": 2 / 3, "rounds_to_alarm_mean": 0.0, "seeds": 3,
           "alarm_modes": ["update"]}, "no degradation (alarmed in 67%, by update)"),
    (2.6, {"detected": 1.0, "rounds_to_alarm_mean": 0.0, "seeds": 3,
           "alarm_modes": ["update"]}, "caught (by update)"),
    (2.6, {"detected": 1.0, "rounds_to_alarm_mean": 0.0, "seeds": 1,
           "alarm_modes": ["alignment", "update"]}, "caught, 1 seed(s)"),
    (2.6, {"detected": 0.0, "rounds_to_alarm_mean": None, "seeds": 3,
           "alarm_modes": []}, "missed"),
])
def test_status_names_other_modes_that_caught_it(multiple, trust, expected):
    """A catch by another mode (e.g. the update checks flagging a client that trained 5x the
    steps) is not evidence for the scenario's own mode: the status says who alarmed."""
    assert status_tool.status(multiple, trust, "alignment") == expected


def test_rows_use_the_fedavg_trajectory_tolerance_and_scenario_settings(tmp_path):
    _grid(tmp_path, "mem", [_row("none", 2.5), _row("trust-rollback", 0.2, 1.0, 1.0)])
    _grid(tmp_path, "tiny", [_row("none", 2.5)], model="tiny")
    table = status_tool.build(tmp_path)
    assert "tiny" not in table  # a random model has no behaviour to degrade: skipped
    row = next(line for line in table.splitlines() if "`mem`" in line)
    # canary-exposure's tolerance is 1 bit: +2.5 bits is 2.5x; poison= is not a memorization knob
    assert "| memorization | memorization | attack-fraction=0.5, clients=10 (`mem`) |" in row
    assert "+2.500 ± 0.100 (2.5x) | 100% | 1.0 | 0% | - | +0.200 ± 0.100 | 3 | caught |" in row


def test_lower_is_worse_targets_change_sign(tmp_path):
    # refusal rate: lower is worse, tolerance 0.05: -0.15 is a 3x degradation
    _grid(tmp_path, "refusal", [_row("trust-off", -0.15, 0.0, None,
                                     target="alignment.refusal-rate")])
    assert "(3.0x) | 0% | - | 0% | - | - | 3 | missed |" in status_tool.build(tmp_path)


def test_readme_matches_the_committed_results():
    """Fails when a grid was added under bench/results without `--write`."""
    assert status_tool.main(["--check"]) == 0


def test_missing_markers_are_a_clear_error():
    with pytest.raises(SystemExit, match="markers"):
        status_tool.replaced("no markers here", "| table |")


def test_alarm_modes_of_older_tables_are_read_from_the_run_summaries(tmp_path):
    _grid(tmp_path, "old", [_row("none", 2.5), _row("trust-off", 2.5, 1.0, 0.0)])
    run = tmp_path / "old" / "memorization" / "trust-off-seed0"
    run.mkdir(parents=True)
    alarms = [{"round": 1, "mode": "bias"}, {"round": 2, "mode": "update"}]
    (run / "summary.json").write_text(json.dumps({"onset": 2, "alarms": alarms}))
    row = next(line for line in status_tool.build(tmp_path).splitlines() if "`old`" in line)
    assert row.endswith("| caught (by update) |")  # the round-1 bias alarm is before onset
