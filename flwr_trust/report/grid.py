"""The overview's status grid (one row per mode, the gate and refused replies; one column per
round) and its legend, drawn from the same cell styles so that the legend names every colour
the grid uses, and each colour means one thing: grey is "no data" and nothing else.
"""

from __future__ import annotations

from dataclasses import replace
from html import escape
from typing import Any

from flwr_trust.report.plots import BLUE, INK, Cell, cell_swatch, status_grid
from flwr_trust.report.runlog import RunLog

GATE_LETTERS = {"quarantine": "Q", "rollback": "R", "halt": "H"}

ALARM = Cell("A", "#B34700", "#fff")
WARNING = Cell("W", "#F5C15C", "#3d2a00")
FINE = Cell("", "#D3EDE1")
NO_DATA = Cell("", "#E4E4E4")
ACCEPTED = Cell("", "#CDE3F6")
ACTED = Cell("Q", BLUE, "#fff")
REFUSED = Cell("2", "#FBE3C4", INK)
NONE_REFUSED = Cell("", "#FFFFFF", stroke="#C8C8C8")

LEGEND: list[tuple[Cell, str]] = [
    (ALARM, "alarm"),
    (WARNING, "warning: significant at 5 %, or past tolerance"),
    (FINE, "measured, nothing significant"),
    (NO_DATA, "no data"),
    (ACCEPTED, "gate: round accepted"),
    (ACTED, "gate acted: Q quarantine, R rollback, H halt"),
    (REFUSED, "replies refused (how many)"),
    (NONE_REFUSED, "no reply refused"),
]
"""Every cell style of the grid with its label, in legend order."""


def grid_legend() -> str:
    """The grid's legend: a sample of each cell style and what it means."""
    spans = "".join(f"<span>{cell_swatch(cell)}{escape(label)}</span>" for cell, label in LEGEND)
    return (f'<div class="legend grid-legend"><span><strong>Status grid:</strong></span>{spans}'
            "<span>Hover a cell for details.</span></div>")


def status_grid_of(run: RunLog, modes: dict[str, dict[str, Any]], rounds: list[int]) -> str:
    """Rows: each mode's worst finding per round (modes: the summary's per-mode entries), the
    gate's action on the round's training update, and the replies refused."""
    alarms: dict[tuple[str, int], list[dict[str, Any]]] = {}
    for phase, a in run.alarms():
        alarms.setdefault((a["mode"], a["round"]), []).append(a | {"phase": phase})
    measured = _measured(run)
    rows = [(mode, [_mode_cell(mode, r, alarms.get((mode, r), []), _past(s, r),
                               (mode, r) in measured) for r in rounds])
            for mode, s in modes.items()]
    gates = run.train_gates()
    gate_cells = []
    for r in rounds:
        g = gates.get(r)
        if g is None:
            gate_cells.append(replace(NO_DATA, tip=f"round {r}: no train record"))
            continue
        tip = f"round {r}: {g.action}" + (f" ({g.reason})" if g.reason else "")
        letter = GATE_LETTERS.get(g.action, g.action[:1].upper())
        gate_cells.append(replace(ACCEPTED, tip=tip) if g.action == "accept"
                          else replace(ACTED, text=letter, tip=tip))
    rows.append(("gate", gate_cells))
    refused: dict[int, int] = {}
    for p in run.rounds:
        refused[p.round] = refused.get(p.round, 0) + len(p.clients.refused)
    rows.append(("refused", [
        replace(REFUSED, text=str(refused[r]), tip=f"round {r}: {refused[r]} replies refused")
        if refused.get(r) else replace(NONE_REFUSED, tip=f"round {r}: no reply refused")
        for r in rounds]))
    return status_grid("Monitor status per round", rounds, rows,
                       description="Rows are failure modes, the gate's action and refused "
                       "replies; columns are rounds.")


def _mode_cell(mode: str, r: int, found: list[dict[str, Any]], past: list[str],
               measured: bool) -> Cell:
    """One mode's cell in one round: alarm, warning (a test, or a metric past tolerance),
    measured and fine, or no data."""
    names = sorted({f"{a.get('metric')} ({a.get('severity')})" for a in found})
    names += [f"{m} past tolerance (not significant)" for m in past]
    tip = f"{mode}, round {r}: " + (", ".join(names) if names else (
        "measured, nothing significant" if measured else "no data"))
    if any(a.get("severity") == "alarm" for a in found):
        return replace(ALARM, tip=tip)
    if names:
        return replace(WARNING, tip=tip)
    return replace(FINE if measured else NO_DATA, tip=tip)


def _past(s: dict[str, Any], r: int) -> list[str]:
    """The metrics of a mode's summary that were past their tolerance in round r."""
    return [p["metric"] for p in s.get("past_tolerance", []) if r in p["rounds"]]


def _measured(run: RunLog) -> set[tuple[str, int]]:
    """(mode, round) pairs with a measurement: a metric value, update stats, an audit."""
    out = set()
    for p in run.rounds:
        out.update((mode, p.round) for mode, metrics in p.behavior.items() if metrics)
        if p.update_stats:
            out.add(("update", p.round))
        if run.start.audited and p.phase == "train":
            out.add(("integrity", p.round))
    return out
