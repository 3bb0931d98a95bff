"""The README's per-mode detection status, rebuilt from the committed detection-matrix results.

    python tools/detection_status.py            # print the table
    python tools/detection_status.py --write    # replace it in README.md between its markers
    python tools/detection_status.py --check    # exit 1 if README.md is out of date

Every grid that `bench/detection_matrix.py` ran on SmolLM2 leaves its `table.json` under
`bench/results/<grid>/` (with each run's summary.json). Per grid and scenario this prints one
row: the degradation of the target metric under FedAvg (the `none` or `trust-off` row: the same
trajectory) in the metric's units and as a multiple of its tolerance, then TrustGuard's detected
share, rounds from onset to the first alarm, false alarms before onset, the gated run's culprit
precision and final change (trust-rollback or trust-quarantine, where the grid ran one), seeds
and a status:

- caught: degrades beyond tolerance, detected in >= 95% of >= 3 seeds within <= 2 rounds;
- caught, 1-2 seeds: the same on fewer seeds (not yet evidence);
- missed: degrades beyond tolerance, not detected (or too late, or too rarely);
- no degradation: the scenario does not move its target beyond its tolerance at that setting.

Tiny-model grids are skipped (a random model has no behaviour to degrade).
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
README = ROOT / "README.md"
START, END = "<!-- detection-status:start -->", "<!-- detection-status:end -->"
FEDAVG_ROWS = ("none", "trust-off")  # the unguarded trajectory (trust-off only watches)
TRUST_ROWS = ("trust-off", "trust-rollback", "trust-quarantine")
GATED_ROWS = ("trust-rollback", "trust-quarantine")  # the guard acting: the final change
ONLY_FOR = {"canaries-planted": "memorization", "canary-repeats": "memorization",
            "overtrain-factor": "capability-forgetting", "poison": "poisoned-update",
            "poison-factor": "poisoned-update"}  # --set keys that act on one scenario only


def target_rule(target: str) -> tuple[float, float]:
    """(sign, tolerance) of a scenario's target: degradation = sign x change. The fairness
    target (minority / majority held-out loss ratio) is the baseline's own ground truth; its
    tolerance is that of flwr-trust's fairness victim test (loss ratio to the median client)."""
    from flwr_trust import modes

    mode, _, name = target.partition(".")
    if target == "fairness.minority-loss-ratio":
        spec = modes.metric("fairness", "local-loss")
        return 1.0, float(spec.tolerance) if spec and spec.tolerance else 0.25
    spec = modes.metric(mode, name)
    if spec is None or spec.tolerance is None:
        raise SystemExit(f"detection_status: no tolerance for target {target!r}")
    return spec.sign, float(spec.tolerance)


def changed_settings(command: str, scenario: str) -> str:
    """The non-default settings of a grid that act on `scenario`, read from its command."""
    args = shlex.split(command)
    shown = []
    for i, a in enumerate(args):
        if a == "--set" and i + 1 < len(args):
            key = args[i + 1].partition("=")[0]
            if ONLY_FOR.get(key, scenario) == scenario:
                shown.append(args[i + 1])
        elif a in ("--clients", "--rounds", "--onset", "--probe-items") and i + 1 < len(args):
            shown.append(f"{a.removeprefix('--')}={args[i + 1]}")
    return ", ".join(shown) or "defaults"


def status(multiple: float | None, trust: dict[str, Any] | None, mode: str = "") -> str:
    """The status column; names the alarming modes when the scenario's own mode was not one."""
    verdict = _verdict(multiple, trust)
    modes = (trust or {}).get("alarm_modes") or []
    if modes and mode not in modes and (trust or {}).get("detected"):
        by = "by " + ", ".join(modes)
        return f"{verdict[:-1]}, {by})" if verdict.endswith(")") else f"{verdict} ({by})"
    return verdict


def _verdict(multiple: float | None, trust: dict[str, Any] | None) -> str:
    if multiple is None:
        return "no FedAvg row"
    if multiple < 1:
        alarmed = (trust or {}).get("detected")
        return "no degradation" + (f" (alarmed in {alarmed:.0%})" if alarmed else "")
    if trust is None or trust.get("detected") is None:
        return "not monitored"
    rounds = trust.get("rounds_to_alarm_mean")
    ok = trust["detected"] >= 0.95 and rounds is not None and rounds <= 2
    if ok:
        return "caught" if trust["seeds"] >= 3 else f"caught, {trust['seeds']} seed(s)"
    return "missed"


def alarm_modes(folder: Path, monitor: str) -> list[str]:
    """Modes that alarmed in rounds >= onset, over the runs' summary.json files in `folder`."""
    modes: set[str] = set()
    for path in folder.glob(f"{monitor}-seed*/summary.json"):
        run = json.loads(path.read_text(encoding="utf-8"))
        modes |= {a.get("mode", "?") for a in run.get("alarms", [])
                  if a.get("round", 0) >= run.get("onset", 0)}
    return sorted(modes)


def rows_of(grid: Path) -> list[dict[str, Any]]:
    from silent_failures.sim.scenarios import SCENARIOS

    table = json.loads((grid / "table.json").read_text(encoding="utf-8"))
    meta = table.get("meta", {})
    if "model=default" not in meta.get("settings", ""):
        return []
    by_scenario: dict[str, list[dict[str, Any]]] = {}
    for row in table["rows"]:
        by_scenario.setdefault(row["scenario"], []).append(row)
    out = []
    for scenario, rows in by_scenario.items():
        if scenario == "clean":
            continue
        fedavg = next((r for m in FEDAVG_ROWS for r in rows if r["monitor"] == m), None)
        trust = next((r for m in TRUST_ROWS for r in rows if r["monitor"] == m
                      and r.get("detected") is not None), None)
        gated = next((r for m in GATED_ROWS for r in rows if r["monitor"] == m), None)
        if trust is not None and "alarm_modes" not in trust:  # tables written before the field
            trust = trust | {"alarm_modes": alarm_modes(grid / scenario, trust["monitor"])}
        sign, tol = target_rule(rows[0]["target"])
        change = None if fedavg is None else fedavg["behavior_change_mean"]
        multiple = None if change is None else sign * change / tol
        out.append({"mode": SCENARIOS[scenario].mode, "scenario": scenario, "grid": grid.name,
                    "target": rows[0]["target"],
                    "settings": changed_settings(meta.get("command", ""), scenario),
                    "change": change, "change_sd": fedavg and fedavg.get("behavior_change_sd"),
                    "tolerance": tol, "multiple": multiple, "trust": trust, "gated": gated,
                    "status": status(multiple, trust, SCENARIOS[scenario].mode)})
    return out


def _f(x: float | None, spec: str) -> str:
    return "-" if x is None else format(x, spec)


def _pm(mean: float | None, sd: float | None) -> str:
    return _f(mean, "+.3f") + (f" ± {sd:.3f}" if sd else "")


def markdown(rows: list[dict[str, Any]]) -> str:
    from flwr_trust.modes import MODES  # the documented order; "update" checks come last

    order = {m: i for i, m in enumerate((*MODES, "update"))}
    rows = sorted(rows, key=lambda r: (order.get(r["mode"], 99), r["scenario"], r["grid"]))
    lines = ["| mode | scenario | settings (`bench/results/`) | FedAvg change (x tolerance) | "
             "detected | rounds to alarm | false alarms | culprit precision | change, gate on | "
             "seeds | status |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        t, g = r["trust"] or {}, r["gated"] or {}
        lines.append(
            f"| {r['mode']} | {r['scenario']} | {r['settings']} (`{r['grid']}`) | "
            f"{_pm(r['change'], r['change_sd'])} ({_f(r['multiple'], '.1f')}x) | "
            f"{_f(t.get('detected'), '.0%')} | {_f(t.get('rounds_to_alarm_mean'), '.1f')} | "
            f"{_f(t.get('false_alarms'), '.0%')} | {_f(g.get('culprit_precision'), '.2f')} | "
            f"{_pm(g.get('behavior_change_mean'), g.get('behavior_change_sd'))} | "
            f"{t.get('seeds', '-')} | {r['status']} |")
    return "\n".join(lines)


def build(results: Path = RESULTS) -> str:
    grids = sorted(p.parent for p in results.glob("*/table.json"))
    return markdown([r for g in grids for r in rows_of(g)])


def replaced(readme: str, table: str) -> str:
    if START not in readme or END not in readme:
        raise SystemExit(f"detection_status: README.md lacks the markers {START} ... {END}")
    head, rest = readme.split(START, 1)
    _, tail = rest.split(END, 1)
    return f"{head}{START}\n{table}\n{END}{tail}"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    group = ap.add_mutually_exclusive_group()
    group.add_argument("--write", action="store_true", help="update README.md")
    group.add_argument("--check", action="store_true", help="fail if README.md is stale")
    args = ap.parse_args(argv)
    table = build()
    if not (args.write or args.check):
        print(table)
        return 0
    readme = README.read_text(encoding="utf-8")
    new = replaced(readme, table)
    if args.check:
        if new != readme:
            print("detection_status: README.md's detection status is stale; run "
                  "python tools/detection_status.py --write", file=sys.stderr)
            return 1
        return 0
    README.write_text(new, encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
