"""The figures of the report: each a list of inline-SVG charts plus its HTML legend.

html.py lays the page out; this module turns a RunLog into charts (plots.py draws them). A
figure is one job: the overview charts (loss, update norms; the status grid is grid.py), one
figure per failure mode, and the privacy spend. A panel left empty says why (coverage.py).
"""

from __future__ import annotations

import statistics
from html import escape
from typing import Any

from flwr_trust import modes as registry
from flwr_trust.report.coverage import behavior_gap, loss_gap, update_gap
from flwr_trust.report.grid import GATE_LETTERS
from flwr_trust.report.plots import (
    BLUE,
    GREEN,
    GREY,
    INK,
    ORANGE,
    PURPLE,
    VERMILION,
    Chart,
    short_number,
    swatch,
)
from flwr_trust.report.records import as_dict, as_list, num
from flwr_trust.report.runlog import ClientPoint, RunLog, node_key
from flwr_trust.report.summary import not_finite_rounds, round_ranges

MAX_POINTS = 2000
"""Above this many client points a panel shows the clients' median +- MAD band instead."""
GATE_LEGEND = ("vline", INK, "", "", "gate acted: Q quarantine, R rollback, H halt")
METRIC_LEGEND = [
    ("line", BLUE, "", "circle", "global value (train round)"),
    ("band", BLUE, "", "", "95 % confidence band"),
    ("line", PURPLE, "5 3", "square", "evaluate round (clients' median)"),
    ("line", INK, "", "", "reference (round 0)"),
    ("band", GREEN, "", "", "tolerance band"),
    ("line", VERMILION, "6 3", "", "tolerance limit"),
    ("points", GREY, "", "circle", "one client's report"),
    ("line", GREY, "2 2", "", "clients' median"),
    ("band", GREY, "", "", "clients' median ± MAD"),
    ("points", VERMILION, "", "cross", "flagged client"),
    ("flag", VERMILION, "", "", "alarm"),
    ("flag", ORANGE, "", "hollow", "warning"),
    GATE_LEGEND,
]
"""Legend entries of a metric panel (kind, colour, dash, marker, label); shown when used."""


def legend(entries: list[tuple[str, str, str, str, str]]) -> str:
    """An HTML legend: a small sample of each mark (kind, colour, dash, marker) and its label."""
    spans = []
    for kind, color, dash, shape, label in entries:
        filled = shape != "hollow" and not (kind == "points" and color == GREY)
        mark = swatch(kind, color, dash=dash, shape=shape if shape != "hollow" else "",
                      filled=filled)
        spans.append(f"<span>{mark}{escape(label)}</span>")
    return f'<div class="legend">{"".join(spans)}</div>' if spans else ""


def _system_series(run: RunLog, key: str) -> tuple[list[int], list[float | None]]:
    """(rounds, values) of one system metric over the train rounds (None where missing)."""
    rows = run.phase("train")
    return [p.round for p in rows], [num(p.system.get(key)) for p in rows]


def gate_marks(run: RunLog, chart: Chart) -> bool:
    """Mark the rounds where the gate acted; True if there was one."""
    acted = False
    for p in run.phase("train"):
        action = p.gate.action
        if action != "accept":
            chart.vline(p.round, GATE_LETTERS.get(action, action[:1].upper()))
            acted = True
    return acted


def loss_chart(run: RunLog, rounds: list[int]) -> str:
    """The aggregated training loss, with alarm rounds and gate actions marked."""
    chart = Chart("Training loss", rounds, subtitle="clients' aggregated train loss")
    xs, ys = _system_series(run, "loss")
    if any(y is not None for y in ys):
        chart.line(xs, ys, BLUE)
        gate_marks(run, chart)
        for r in sorted({a["round"] for _, a in run.alarms() if a.get("severity") == "alarm"}):
            chart.flag(r, "alarm")
    bad = not_finite_rounds(run, "loss")  # a diverged run, not a gap
    diverged = round_ranges(bad) if bad else ""
    if not any(y is not None for y in ys):
        chart.note = f"loss not finite (NaN or infinite) in {diverged}" if diverged \
            else loss_gap()
    elif diverged:
        chart.subtitle = f"NaN or infinite, not drawn: {diverged}"
    return chart.svg("Aggregated training loss per round."
                     + (f" Not finite (NaN or infinite) in {diverged}." if diverged else ""))


def norm_chart(run: RunLog, rounds: list[int]) -> str:
    """The median and maximum client update norm per round."""
    chart = Chart("Update norm", rounds, subtitle="L2 norm of client updates: median and max")
    xs, med = _system_series(run, "update-norm-median")
    _, top = _system_series(run, "update-norm-max")
    if any(y is not None for y in med + top):
        chart.line(xs, med, BLUE)
        chart.line(xs, top, VERMILION, dash="5 3", marker="square")
        gate_marks(run, chart)
    else:
        chart.note = update_gap(run)
    return chart.svg("Median and maximum client update norm per round.")


def mode_panels(run: RunLog, mode: str) -> tuple[list[str], str]:
    """The charts and legend of one mode's figure."""
    if mode == "update":
        return _update_panels(run)
    if registry.find(mode) is not None:
        return _behavior_panels(run, mode)
    return _alarm_panels(run, mode)


def _worse(run: RunLog, mode: str, metric: str) -> str:
    """Which direction of mode.metric is worse: its declaration, else the reference's."""
    declared = registry.metric(mode, metric)
    if declared is not None:
        return declared.worse
    ref = _reference_row(run, mode, metric)
    return "lower" if ref.get("worse") == "lower" else "higher"


def _reference_row(run: RunLog, mode: str, metric: str) -> dict[str, Any]:
    """The round-0 row {value, stderr, n, worse} of mode.metric, or {}."""
    return as_dict(run.reference.metrics.get(mode, {}).get(metric))


def _panel_metrics(run: RunLog, mode: str) -> list[str]:
    """Metrics that get a panel: every base metric, and per-group ones that alarmed, warned
    or went past their tolerance (what a WARNING status names)."""
    flagged = {str(a.get("metric")) for _, a in run.alarms() if a["mode"] == mode}
    return [m for m in run.metrics_of(mode)
            if "/" not in m or m in flagged or run.past_tolerance(mode, m)]


def _behavior_panels(run: RunLog, mode: str) -> tuple[list[str], str]:
    """One panel per metric of a behavioral mode, and the legend of the marks they use."""
    rounds = run.round_numbers
    metrics = _panel_metrics(run, mode)
    if not metrics:
        chart = Chart(mode, rounds)
        why = behavior_gap(run, mode)
        chart.note = f"not measured: {why}"
        return [chart.svg(f"Not measured: {why}.")], ""
    used: set[str] = set()
    return [_metric_chart(run, mode, metric, rounds, used) for metric in metrics], \
        legend([e for e in METRIC_LEGEND if e[4] in used])




def _metric_chart(run: RunLog, mode: str, metric: str, rounds: list[int],
                  used: set[str]) -> str:
    """One metric's panel: global value with its band, reference, tolerance, clients, alarms."""
    worse = _worse(run, mode, metric)
    train = run.metric_series(mode, metric, "train")
    evaluate = run.metric_series(mode, metric, "evaluate")
    points = train + evaluate
    ref = next((p.reference for p in points if p.reference is not None), None)
    if ref is None:
        ref = num(_reference_row(run, mode, metric).get("value"))
    tol = next((p.tolerance for p in points if p.tolerance is not None), None)
    subtitle = f"worse if {worse}" + (f" · tolerance {short_number(tol)}" if tol is not None
                                      else "")
    n = num(_reference_row(run, mode, metric).get("n"))
    if n:  # the server probes the same items every round (report/samples.py)
        subtitle += f" · n = {n:g}"
    chart = Chart(f"{mode} · {metric}", rounds, subtitle=subtitle)
    if ref is not None:
        used.add("reference (round 0)")
        chart.hline(ref, INK, width=1.3)
        if tol is not None:
            limit = ref + tol if worse == "higher" else ref - tol
            chart.hband(ref, limit, GREEN)
            chart.hline(limit, VERMILION, dash="6 3")
            used.update({"tolerance band", "tolerance limit"})
    banded = [p for p in train if p.stderr is not None]
    if banded:
        declared = registry.metric(mode, metric)
        unit = declared is not None and declared.unit_interval  # shares: bands clipped to [0, 1]
        lo, hi = (0.0, 1.0) if unit else (-1e300, 1e300)
        chart.band([p.round for p in banded],
                   [max(lo, p.value - 1.96 * p.stderr) for p in banded],
                   [min(hi, p.value + 1.96 * p.stderr) for p in banded], BLUE)
        used.add("95 % confidence band")
    _client_marks(run, chart, mode, metric, used)
    if train:
        chart.line([p.round for p in train], [p.value for p in train], BLUE)
        used.add("global value (train round)")
    if evaluate:
        chart.line([p.round for p in evaluate], [p.value for p in evaluate], PURPLE,
                   dash="5 3", marker="square")
        used.add("evaluate round (clients' median)")
    for _, a in run.alarms():
        if a["mode"] == mode and a.get("metric") == metric:
            chart.flag(a["round"], str(a.get("severity")))
            used.add("alarm" if a.get("severity") == "alarm" else "warning")
    if gate_marks(run, chart):
        used.add(GATE_LEGEND[4])
    last = train[-1] if train else (evaluate[-1] if evaluate else None)
    desc = (f"Last value {short_number(last.value)} in round {last.round}"
            + (f", reference {short_number(ref)}" if ref is not None else "") + "."
            if last else "No global value.")
    return chart.svg(desc)


def _client_marks(run: RunLog, chart: Chart, mode: str, metric: str, used: set[str]
                  ) -> None:
    """Each client's report as a point, flagged clients as crosses, and the clients' median."""
    key = f"trust.{mode}.{metric}"
    values = run.client_values(key, "train") or run.client_values(key, "evaluate")
    if not values:
        return
    flagged = {(a["round"], str(c)) for _, a in run.alarms()
               if a["mode"] == mode and a.get("metric") == metric
               for c in as_list(a.get("clients"))}
    used.update(_spread(chart, values, flagged, GREY, dash="2 2"))


def _spread(chart: Chart, values: list[ClientPoint], flagged: set[tuple[int, str]],
            median_color: str, dash: str = "") -> set[str]:
    """Clients' values per round: one point each (flagged ones as crosses) and their median,
    or for very many points the median with a median +- MAD band. Returns the legend labels."""
    by_round: dict[int, list[float]] = {}
    for v in values:
        by_round.setdefault(v.round, []).append(v.value)
    xs = sorted(by_round)
    medians = [statistics.median(by_round[r]) for r in xs]
    used = {"clients' median"}
    hit = [v for v in values if (v.round, v.node) in flagged]
    if len(values) > MAX_POINTS:
        mads = [statistics.median(abs(x - m) for x in by_round[r]) for r, m in zip(
            xs, medians, strict=True)]
        chart.band(xs, [m - d for m, d in zip(medians, mads, strict=True)],
                   [m + d for m, d in zip(medians, mads, strict=True)], GREY, opacity=0.22)
        used.add("clients' median ± MAD")
    else:
        plain = [v for v in values if (v.round, v.node) not in flagged]
        chart.points([v.round for v in plain], [v.value for v in plain], GREY)
        used.add("one client's report")
    if hit:
        chart.points([v.round for v in hit], [v.value for v in hit], VERMILION, shape="cross")
        used.add("flagged client")
    chart.line(xs, medians, median_color, dash=dash, width=1.5, marker="")
    return used


def _update_panels(run: RunLog) -> tuple[list[str], str]:
    """Per-client update norm and cosine to the robust mean, flagged clients as crosses."""
    rounds = run.round_numbers
    flagged = {(a["round"], str(c)) for _, a in run.alarms() if a["mode"] == "update"
               and a.get("severity") == "alarm" for c in as_list(a.get("clients"))}
    panels, used = [], set()
    for stat, title, sub in (("norm", "update norm per client", "L2 norm of the update"),
                             ("cosine", "cosine to the robust mean update",
                              "1 = same direction as the others")):
        chart = Chart(title, rounds, subtitle=sub)
        values = run.update_values(stat)
        if values:
            used.update(_spread(chart, values, flagged, BLUE))
        else:
            chart.note = update_gap(run)
        for r in sorted({a["round"] for _, a in run.alarms() if a["mode"] == "update"
                         and a.get("severity") == "alarm"}):
            chart.flag(r, "alarm")
            used.add("alarm")
        if gate_marks(run, chart):
            used.add(GATE_LEGEND[4])
        panels.append(chart.svg(f"Per-client {stat} per round; flagged clients as crosses."))
    names = {"one client's report": "one client's update", "clients' median":
             "median across clients"}
    entries = [("points", GREY, "", "circle", "one client's report"),
               ("band", GREY, "", "", "clients' median ± MAD"),
               ("points", VERMILION, "", "cross", "flagged client"),
               ("line", BLUE, "", "", "clients' median"),
               ("flag", VERMILION, "", "", "alarm"), GATE_LEGEND]
    shown = [(*e[:4], names.get(e[4], e[4])) for e in entries if e[4] in used]
    return panels, legend(shown)


def _alarm_panels(run: RunLog, mode: str) -> tuple[list[str], str]:
    """Modes without a series (integrity, unknown ones): which client alarmed in which round."""
    rounds = run.round_numbers
    alarms = [a for _, a in run.alarms() if a["mode"] == mode]
    nodes = sorted({str(c) for a in alarms for c in as_list(a.get("clients"))}, key=node_key)
    chart = Chart(f"{mode}: flagged clients", rounds, subtitle="one mark per alarm")
    if not alarms:
        chart.note = "no report disagreed" if run.start.audited else "integrity audit off"
        return [chart.svg("No alarms.")], ""
    rows = nodes + (["population"] if any(not as_list(a.get("clients")) for a in alarms) else [])
    chart.set_categories(rows)
    xs, ys = [], []
    for a in alarms:
        for c in as_list(a.get("clients")) or ["population"]:
            xs.append(a["round"])
            ys.append(float(rows.index(str(c))))
    chart.points(xs, ys, VERMILION, shape="cross")
    entries = [("points", VERMILION, "", "cross", "alarm for this client (or the population)")]
    if gate_marks(run, chart):
        entries.append(GATE_LEGEND)
    return [chart.svg("Alarms per client and round.")], legend(entries)


def privacy_chart(run: RunLog) -> tuple[str, str]:
    """(chart, legend) of the epsilon each client reported spending, per round."""
    rounds = run.round_numbers
    chart = Chart("epsilon spent per client", rounds, subtitle="cumulative (ε, δ)-DP spend "
                  "on released private metrics", width=560, height=260, right=70)
    series: dict[str, dict[int, float]] = {}
    exhausted: list[tuple[int, float]] = []
    for p in run.rounds:
        for node, flat in p.privacy.items():
            eps = num(flat.get("trust.privacy.epsilon"))
            if eps is not None:
                series.setdefault(node, {})[p.round] = eps
                if num(flat.get("trust.privacy.exhausted")):
                    exhausted.append((p.round, eps))
    dense = sum(len(v) for v in series.values()) > MAX_POINTS // 4
    for node, values in sorted(series.items(), key=lambda kv: node_key(kv[0])):
        xs = sorted(values)
        chart.line(xs, [values[r] for r in xs], BLUE, width=1.4,
                   marker="" if dense else "circle")
        if len(series) <= 12:
            chart.label(xs[-1], values[xs[-1]], node)
    entries = [("line", BLUE, "", "" if dense else "circle",
                "one client" + ("" if len(series) > 12 else " (labelled with its node id)"))]
    if exhausted:
        chart.points([r for r, _ in exhausted], [e for _, e in exhausted], VERMILION,
                     shape="cross", size=4)
        entries.append(("points", VERMILION, "", "cross", "budget exhausted (releases stop)"))
    return chart.svg("Epsilon per client over rounds."), legend(entries)
