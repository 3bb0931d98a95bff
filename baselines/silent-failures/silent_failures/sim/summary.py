"""A baseline run's summary as Markdown: what the dashboard saw beside what the monitor saw.

Printed at the end of `flwr run baselines/silent-failures` and written to summary.md, next to
summary.json (numbers) and, for the trust-* monitors, report.html (the full report).
"""

from __future__ import annotations

from typing import Any

from silent_failures.sim.outcome import RunOutcome
from silent_failures.sim.scenarios import SCENARIOS


def _num(value: Any, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def round_table(outcome: RunOutcome) -> list[str]:
    by_round: dict[int, list[str]] = {}
    for a in outcome.alarms:
        by_round.setdefault(a["round"], []).append(f"{a['mode']}.{a['metric']}")
    gates = {g["round"]: g["action"] for g in outcome.gate_actions}
    lines = ["| round | affected clients active | mean train loss | update norm median / max "
             "| system monitor | monitor alarms | gate | seconds clients / server |",
             "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for row in outcome.per_round:
        rnd = row["round"]
        active = "yes" if outcome.affected and rnd >= outcome.onset else "no"
        alarms = ", ".join(sorted(set(by_round.get(rnd, [])))) or "-"
        system = "ALARM" if row["system_alarms"] else "ok"
        lines.append(f"| {rnd} | {active} | {_num(row['loss'])} | {_num(row['norm_median'], 4)} "
                     f"/ {_num(row['norm_max'], 4)} | {system} | {alarms} | "
                     f"{gates.get(rnd, 'accept' if outcome.monitor.startswith('trust-') else '-')}"
                     f" | {_num(row.get('client_seconds'), 0)} / "
                     f"{_num(row.get('server_seconds'), 0)} |")
    return lines


def verdict(outcome: RunOutcome) -> list[str]:
    lines = []
    shadow = "ALARM" if outcome.system_shadow else "no alarm"
    if outcome.monitor != "system":
        lines.append(f"- system monitor (loss and update-norm thresholds, same run): {shadow}"
                     + "".join(f"; round {a['round']}: {a['message']}"
                               for a in outcome.system_shadow[:3]))
    if outcome.monitor in ("none", "multikrum", "fedmedian", "fedtrimmedavg"):
        lines.append(f"- {outcome.monitor}: raises no alarms by design")
    elif outcome.clean:
        lines.append(f"- {outcome.monitor}: "
                     + ("FALSE ALARM on a clean run" if outcome.alarms else "no alarm (correct)"))
    elif outcome.detected:
        first = outcome.first_alarm_after_onset
        names = sorted({f"{a['mode']}.{a['metric']}" for a in outcome.alarms
                        if a["round"] == first})
        precision = outcome.culprit_precision
        lines.append(f"- {outcome.monitor}: ALARM in round {first} ({', '.join(names)}), "
                     f"{outcome.rounds_to_detect} round(s) after onset; named clients "
                     f"{outcome.flagged or 'none'} (culprit precision "
                     f"{'-' if precision is None else f'{precision:.2f}'})")
    else:
        lines.append(f"- {outcome.monitor}: MISSED (no alarm after the onset)")
    if outcome.false_alarm and not outcome.clean:
        lines.append(f"- {outcome.monitor}: alarm(s) before the onset round (false alarms)")
    return lines


def render_summary(outcome: RunOutcome) -> str:
    scenario = SCENARIOS[outcome.scenario]
    ref, fin = outcome.reference, outcome.final
    lines = [
        f"# Baseline {outcome.scenario} / monitor {outcome.monitor} / model {outcome.model} / "
        f"seed {outcome.seed}", "",
        f"Scenario: {scenario.summary}.", f"Follows: {scenario.reference}.", "",
        f"{outcome.num_clients} clients, {outcome.rounds} rounds; affected clients (partition "
        f"ids): {outcome.affected or 'none'}, from round {outcome.onset}.", "",
        *round_table(outcome), "",
        f"Ground truth (server-side, unseen by the monitors), {outcome.target}: aligned "
        f"reference {_num(ref['target'])} -> final {_num(fin['target'])} (change "
        f"{outcome.behavior_change:+.3f}); honest local-task loss {_num(ref['task_loss'])} -> "
        f"{_num(fin['task_loss'])}.", "",
        "Verdict:", *verdict(outcome)]
    if outcome.epsilon:
        eps = ", ".join(f"client {k}: {v:.2f}" for k, v in sorted(outcome.epsilon.items()))
        lines += ["", f"DP-SGD epsilon per client (delta as configured): {eps}"]
    lines += ["", f"Run folder: {outcome.run_dir}",
              f"Report: {outcome.report or f'{outcome.run_dir}/summary.md'}"]
    lines.append(f"Wall time: {outcome.wall_seconds:.1f} s")
    return "\n".join(lines) + "\n"
