"""The detection matrix: scenarios x monitors x seeds of in-process federations, one table.

`run_grid` runs (or, with resume, reloads) every cell's federations with `run_inline`;
`aggregate` turns the RunOutcomes into one row per (scenario, monitor); `to_markdown` renders the
table. The "system" monitor is read from the "none" run of the same seed when both are asked for
(identical FedAvg training; the system monitor only watches), which saves a federation per seed.

Columns (per scenario and monitor, over seeds):
- detected: share of seeds with an alarm in a round >= onset ("n/a" for the clean scenario and
  for monitors that never alarm: none and the robust aggregators);
- rounds to alarm: first alarm round - onset round, mean ± sd over the detecting seeds;
- false alarms: share of seeds with an alarm before the onset (clean scenario: any alarm);
- culprit precision: mean over seeds that named clients of |named ∩ affected| / |named|;
- behavior change: final - aligned reference of the scenario's target metric (ground truth);
- task loss: final loss on the honest clients' held-out local-task notes.
"""

from __future__ import annotations

import json
import math
import statistics
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from silent_failures.sim.config import MONITORS
from silent_failures.sim.outcome import SUMMARY_JSON, RunOutcome, as_system_run, from_json
from silent_failures.sim.scenarios import SCENARIOS

ALARMLESS = ("none", "multikrum", "fedmedian", "fedtrimmedavg")


def cells(scenarios: Sequence[str], monitors: Sequence[str], seeds: Iterable[int]
          ) -> list[tuple[str, str, int]]:
    """The federations to run: "system" is dropped when "none" runs (it is derived from it)."""
    runs = [m for m in monitors if not (m == "system" and "none" in monitors)]
    return [(s, m, seed) for s in scenarios for seed in seeds for m in runs]


def run_grid(scenarios: Sequence[str], monitors: Sequence[str], seeds: Sequence[int], *,
             base_dir: Path, keys: Mapping[str, Any], run_config: Mapping[str, Any] | None = None,
             num_clients: int = 4, resume: bool = False,
             log: Callable[[str], Any] = print) -> list[RunOutcome]:
    """Every cell's RunOutcome (the derived "system" ones included)."""
    from silent_failures.sim.runner import run_inline

    unknown = [m for m in monitors if m not in MONITORS]
    unknown += [s for s in scenarios if s not in SCENARIOS]
    if unknown:
        raise ValueError(f"unknown names {unknown}; scenarios: {', '.join(SCENARIOS)}; "
                         f"monitors: {', '.join(MONITORS)}")
    todo = cells(scenarios, monitors, seeds)
    out: list[RunOutcome] = []
    start = time.perf_counter()
    for i, (scenario, monitor, seed) in enumerate(todo, 1):
        folder = base_dir / scenario / f"{monitor}-seed{seed}"
        saved = folder / SUMMARY_JSON
        outcome = None
        if resume and saved.is_file():
            outcome = from_json(json.loads(saved.read_text(encoding="utf-8")))
            if outcome.scenario_data != SCENARIOS[scenario].data:  # trained on older data
                log(f"{saved}: scenario data revision {outcome.scenario_data}, now "
                    f"{SCENARIOS[scenario].data}: running it again")
                outcome = None
        if outcome is None:
            outcome = run_inline(num_clients=num_clients, run_config=run_config,
                                 base_dir=base_dir, scenario=scenario, monitor=monitor,
                                 seed=seed, **keys)
        out.append(outcome)
        if monitor == "none" and "system" in monitors:
            out.append(as_system_run(outcome))
        log(f"[{i}/{len(todo)}] {scenario} / {monitor} / seed {seed}: "
            f"{'ALARM' if outcome.alarms else 'quiet'}, change {outcome.behavior_change:+.3f}, "
            f"{outcome.wall_seconds:.0f} s (elapsed {time.perf_counter() - start:.0f} s)")
    return out


def _invocation_note(meta: Mapping[str, Any]) -> str:
    """Where a --resume read runs back, the table's time is their own sum, not this call's."""
    own = meta.get("invocation_seconds")
    if own is None or abs(own - meta.get("seconds", 0)) < 0.05 * max(own, 1):
        return ""
    return f" (each run's own time, summed; this invocation {own:.0f} s)"


def _mean_sd(values: list[float]) -> tuple[float | None, float | None]:
    vals = [v for v in values if v is not None and math.isfinite(v)]
    if not vals:
        return None, None
    return statistics.fmean(vals), (statistics.stdev(vals) if len(vals) > 1 else 0.0)


def aggregate(outcomes: Iterable[RunOutcome]) -> list[dict[str, Any]]:
    """One row per (scenario, monitor), in SCENARIOS x MONITORS order."""
    groups: dict[tuple[str, str], list[RunOutcome]] = {}
    for o in outcomes:
        groups.setdefault((o.scenario, o.monitor), []).append(o)
    rows = []
    for scenario in SCENARIOS:
        for monitor in MONITORS:
            runs = groups.get((scenario, monitor))
            if not runs:
                continue
            clean = scenario == "clean"
            can_alarm = monitor not in ALARMLESS
            detecting = [o for o in runs if o.detected]
            rtd = _mean_sd([o.rounds_to_detect for o in detecting])
            precisions = [o.culprit_precision for o in runs if o.culprit_precision is not None]
            change = _mean_sd([o.behavior_change for o in runs])
            loss = _mean_sd([o.final.get("task_loss") for o in runs])
            rows.append({
                "scenario": scenario, "monitor": monitor, "target": runs[0].target,
                "seeds": len(runs),
                "detected": None if clean or not can_alarm else len(detecting) / len(runs),
                "rounds_to_alarm_mean": rtd[0], "rounds_to_alarm_sd": rtd[1],
                "false_alarms": None if not can_alarm else
                sum(o.false_alarm for o in runs) / len(runs),
                "culprit_precision": statistics.fmean(precisions) if precisions else None,
                "alarm_modes": sorted({m for o in runs for m in o.alarm_modes}),
                "behavior_change_mean": change[0], "behavior_change_sd": change[1],
                "task_loss_mean": loss[0], "task_loss_sd": loss[1],
                "reference_mean": _mean_sd([o.reference.get("target") for o in runs])[0],
                "seconds_mean": _mean_sd([o.wall_seconds for o in runs])[0],
                "scenario_data": sorted({o.scenario_data for o in runs})})
    return rows


def _pm(mean: float | None, sd: float | None, digits: int = 3, sign: bool = False) -> str:
    if mean is None:
        return "-"
    fmt = f"{{:{'+' if sign else ''}.{digits}f}}"
    return fmt.format(mean) + ("" if not sd else f" ± {sd:.{digits}f}")


def _share(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.0%}"


def to_markdown(rows: list[dict[str, Any]]) -> str:
    head = ("| scenario (target metric) | monitor | detected | rounds to alarm | false alarms | "
            "culprit precision | behavior change | final task loss |")
    lines = [head, "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        precision = "-" if r["culprit_precision"] is None else f"{r['culprit_precision']:.2f}"
        lines.append(
            f"| {r['scenario']} ({r['target']}) | {r['monitor']} | {_share(r['detected'])} | "
            f"{_pm(r['rounds_to_alarm_mean'], r['rounds_to_alarm_sd'], 1)} | "
            f"{_share(r['false_alarms'])} | "
            f"{precision} | "
            f"{_pm(r['behavior_change_mean'], r['behavior_change_sd'], 3, sign=True)} | "
            f"{_pm(r['task_loss_mean'], r['task_loss_sd'], 3)} |")
    return "\n".join(lines) + "\n"


def write_table(rows: list[dict[str, Any]], folder: Path, meta: Mapping[str, Any]) -> Path:
    """table.md (with the command and settings above the table) and table.json."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "table.json").write_text(json.dumps({"meta": dict(meta), "rows": rows},
                                                  indent=1) + "\n", encoding="utf-8")
    header = [f"Command: `{meta.get('command', '')}`",
              f"Settings: {meta.get('settings', '')}",
              f"Wall time: {meta.get('seconds', 0):.0f} s for {meta.get('runs', 0)} "
              f"federations{_invocation_note(meta)}", ""]
    path = folder / "table.md"
    path.write_text("\n".join(header) + to_markdown(rows), encoding="utf-8")
    return path
