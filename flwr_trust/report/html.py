"""The post-market monitoring report: one self-contained HTML page per run.

`write_report(run_dir)` verifies the audit log and writes `report.html`. Charts are inline SVG
and the CSS is inline, with no script, font, image or URL from outside, so the page opens
offline and can be archived as one file. The page shows the verdict first: chain verification,
then the summary table. It then shows system health beside behavior, one figure per failure
mode, the replies the guard refused and the privacy budget clients spent. A log that does not
verify gets a red banner naming the first bad record, and the page shows the records before it.
"""

from __future__ import annotations

import contextlib
import json
from datetime import UTC, datetime
from html import escape
from pathlib import Path
from typing import Any

from flwr_trust import modes as registry
from flwr_trust.errors import TrustError
from flwr_trust.report.figures import (
    GATE_LEGEND,
    legend,
    loss_chart,
    mode_panels,
    norm_chart,
    privacy_chart,
)
from flwr_trust.report.grid import grid_legend, status_grid_of
from flwr_trust.report.plots import BLUE, VERMILION, short_number
from flwr_trust.report.records import as_list
from flwr_trust.report.runlog import RunLog, load_run, node_key
from flwr_trust.report.summary import build_summary, round_ranges

REPORT_FILE = "report.html"

SIGNAL_TITLES = {
    "update": ("Poisoned or outlying updates", "server-side robust checks of each update"),
    "integrity": ("False client reports", "client-reported vs server-measured metrics"),
}


def mode_title(mode: str) -> tuple[str, str]:
    """(title, what it measures) of a failure mode (its declaration) or a server signal."""
    declared = registry.find(mode)
    if declared is not None:
        return declared.title, declared.summary
    return SIGNAL_TITLES.get(mode, (mode, ""))

CSS = """
body{font-family:system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;color:#222;margin:0;
  background:#fff;line-height:1.45}
main{max-width:1200px;margin:0 auto;padding:18px 28px 40px}
h1{font-size:24px;margin:0 0 2px}h2{font-size:19px;border-bottom:1px solid #ddd;
  padding-bottom:4px;margin:30px 0 10px}h3{font-size:16px;margin:22px 0 4px}
p{margin:6px 0}.muted{color:#555;font-size:13.5px}
table{border-collapse:collapse;font-size:14px;margin:6px 0}
th,td{border-bottom:1px solid #e2e2e2;padding:5px 10px;text-align:left;vertical-align:top}
th{background:#f4f4f4;font-weight:600}table.kv th{background:none;color:#555;font-weight:500}
table.kv td{padding-right:36px}td.action{white-space:nowrap}
.badge{display:inline-block;padding:1px 8px;border-radius:3px;font-weight:700;
  font-size:12.5px;letter-spacing:.03em;white-space:nowrap}
.s-ALARM{background:#B34700;color:#fff}.s-WARNING{background:#F5C15C;color:#3d2a00}
.s-OK{background:#D3EDE1;color:#0B5D44}.s-NO-DATA{background:#e6e6e6;color:#444}
.banner{padding:12px 16px;border-radius:4px;margin:14px 0;font-size:15px}
.banner.ok{background:#E3F2EA;border:1px solid #7BB79A}
.banner.bad{background:#A61B00;color:#fff;border:2px solid #6d1200}
.banner code{font-size:13px}.banner.bad code{color:#fff}
.panels{display:flex;flex-wrap:wrap;gap:8px 22px;align-items:flex-start}
figure{margin:8px 0 4px}figcaption{font-size:13px;color:#333;margin-top:4px}
.legend{display:flex;flex-wrap:wrap;gap:3px 16px;font-size:12.5px;color:#333;margin:4px 0}
.legend span{display:inline-flex;align-items:center;gap:5px}
code{font-family:ui-monospace,SFMono-Regular,Menlo,monospace;font-size:12.5px}
details{margin:4px 0 8px;font-size:13.5px}summary{cursor:pointer;color:#333}
details li{margin:2px 0}section.mode{border-top:1px solid #eee;padding-top:4px}
a{color:#0057a0}
"""


# ------------------------------------------------------------------------------- entry points


def render_report(run_dir: str | Path) -> tuple[str, dict[str, Any]]:
    """(HTML page, JSON summary) of a run folder; raises TrustError for unusable input."""
    run = load_run(run_dir)
    summary = build_summary(run)
    return render_html(run, summary), summary


def write_report(run_dir: str | Path, out: str | Path | None = None,
                 json_out: str | Path | None = None) -> tuple[Path, dict[str, Any]]:
    """Write the page (default RUN_DIR/report.html) and, if asked, the JSON summary. Refuses
    a target that is the audit log (the evidence) or the same file for both."""
    run = load_run(run_dir)
    summary = build_summary(run)
    target = Path(out) if out else Path(summary["run_dir"]) / REPORT_FILE
    json_path = Path(json_out) if json_out else None
    for path, option in ((target, "--out"), (json_path, "--json")):
        if path is not None and _same_file(path, run.path):
            raise TrustError(f"{option} {path} is the run's audit log: writing there would "
                             "destroy the evidence.", f"Choose another {option} path.")
    if json_path is not None and _same_file(target, json_path):
        raise TrustError(f"--out and --json both name {target}: one would replace the other.",
                         "Give them different paths.")
    _write(target, render_html(run, summary))
    if json_path is not None:
        _write(json_path, json.dumps(summary, indent=1, ensure_ascii=False) + "\n")
    return target, summary


def _same_file(a: Path, b: Path) -> bool:
    try:
        return a.resolve() == b.resolve() or (a.exists() and b.exists() and a.samefile(b))
    except OSError:
        return False


def _write(path: Path, text: str) -> None:
    """Write through a temporary file and rename, so that a failed write leaves the earlier
    file whole; characters a file name smuggled in that UTF-8 cannot hold become '?'."""
    temporary = path.with_name(path.name + ".tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary.write_bytes(text.encode("utf-8", errors="replace"))
        temporary.replace(path)
    except OSError as exc:
        with contextlib.suppress(OSError):
            temporary.unlink(missing_ok=True)
        raise TrustError(f"Cannot write {path} ({exc.strerror or exc}).",
                         "Choose a writable path with --out / --json.") from exc


def render_html(run: RunLog, summary: dict[str, Any]) -> str:
    """The whole page."""
    title = f"flwr-trust report: {run.run_dir.name or run.run_dir}"
    body = [
        "<header><h1>Federated fine-tuning monitoring report</h1>",
        f'<p class="muted">Run folder <code>{escape(str(run.run_dir))}</code> · generated '
        f"{datetime.now(UTC).strftime('%Y-%m-%d %H:%M UTC')} by <code>flwr-trust report</code>"
        "</p></header>",
        _banner(summary),
        _run_section(summary),
        _summary_section(summary),
        _overview_section(run, summary),
        _modes_section(run, summary),
        _clients_section(run, summary),
        _footer(summary),
    ]
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>{escape(title)}</title><style>{CSS}</style></head>\n"
            f"<body><main>{''.join(body)}</main></body></html>\n")


# ------------------------------------------------------------------------------- sections


def _badge(status: str) -> str:
    return f'<span class="badge s-{status.replace(" ", "-")}">{escape(status)}</span>'


def _banner(summary: dict[str, Any]) -> str:
    v = summary["verification"]
    if v["ok"]:
        return (f'<div class="banner ok" role="status"><strong>&#10003; Audit log verified.'
                f"</strong> All {v['records']} records are intact (hash chain checked). Head "
                f"hash <code>{escape(v['head'][:16])}…</code>: publish it to detect records "
                "cut off the end later.</div>")
    shown = v["records"]
    return (f'<div class="banner bad" role="alert" id="verification-failed"><strong>&#10007; '
            f"Audit log does NOT verify: record {v['first_bad']} is the first bad record."
            f"</strong> {escape(v['reason'])} This page shows only the {shown} record"
            f"{'s' if shown != 1 else ''} before it; nothing after it can be trusted. Keep the "
            "file unchanged as evidence.</div>")


def _run_section(summary: dict[str, Any]) -> str:
    run = summary["run"]
    suite = str(run["suite_hash"] or "")
    rows = [
        ("Strategy", run["strategy"]), ("Gate", run["gate"]), ("Model", run["model"]),
        ("Modes", ", ".join(run["modes"])),
        ("Probe suites", _Html(f'<code title="{escape(suite)}">{escape(suite[:12])}</code>')
         if suite else None),
        ("False-alarm budget", f"alpha = {run['alpha']} per run (behavior, "
         f"{_spending(run.get('horizon'))}), {run['update_alpha']} per round (updates"
         f"{_margin(run.get('update_cosine_margin'))})"
         if run["alpha"] is not None else None),
        ("Integrity audit", f"{run['audit_fraction']:.0%} of clients per round"
         if run["audit_fraction"] else "off"),
        ("Secure aggregation", "yes: population-level only" if run["secure_aggregation"]
         else "no"),
        ("Status", run["status"]), ("Rounds", run["rounds"]),
        ("Started", _when(run["started"])), ("Ended", _when(run["ended"])),
    ]
    cells = ["".join(f"<th>{name}</th><td>{_cell(value)}</td>" for name, value in rows[i:i + 2])
             for i in range(0, len(rows), 2)]
    body = "".join(f"<tr>{row}</tr>" for row in cells)
    return f'<section id="run"><h2>Run</h2><table class="kv">{body}</table></section>'


def _spending(horizon: int | None) -> str:
    if horizon is None:
        return "spending not logged"
    if horizon == 0:
        return "spent open-ended: 6/(pi^2 t^2) in round t"
    return f"spent evenly over {horizon} planned rounds"


def _margin(margin: float | None) -> str:
    """The update checks' direction margin, when the log has it (older logs: none, i.e. 0)."""
    return "" if margin is None else f", cosine margin {margin:g} of the median"


def _when(stamp: str | None) -> str | None:
    """An ISO-8601 record time as "2025-01-31 14:02:07 UTC" (as it is, if it does not parse)."""
    if not stamp:
        return None
    try:
        return datetime.fromisoformat(stamp).astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    except (ValueError, OverflowError):  # not ISO-8601, or beyond year 1..9999 once in UTC
        return stamp


class _Html(str):
    """Markup built here from escaped parts; every other value is escaped when shown."""


def _cell(value: Any) -> str:
    if value is None or value == "":
        return "—"
    return value if isinstance(value, _Html) else escape(str(value))


def _summary_section(summary: dict[str, Any]) -> str:
    head = ("<tr><th>Mode</th><th>Status</th><th>First alarm</th><th>Alarms / warnings</th>"
            "<th>Action taken</th><th>Culprits</th><th>Global value vs reference</th>"
            "<th>Probe n per round</th></tr>")
    rows = []
    for mode, s in summary["modes"].items():
        first = f"round {s['first_alarm_round']}" if s["first_alarm_round"] is not None else (
            f"— (first warning: round {s['first_warning_round']})"
            if s["first_warning_round"] is not None else "—")
        culprits = ", ".join(s["culprits"]) or "—"
        rows.append(
            f'<tr data-mode="{escape(mode)}" data-status="{escape(s["status"])}">'
            f'<td><a href="#mode-{escape(mode)}">{escape(mode)}</a></td>'
            f"<td>{_badge(s['status'])}{_status_detail(s)}</td><td>{escape(first)}</td>"
            f"<td>{s['alarms']} / {s['warnings']}{_level(s['alarm_level'])}</td>"
            f'<td class="action">{escape(s["action"])}</td>'
            f"<td>{escape(culprits)}</td><td>{escape(_largest(s))}</td>"
            f'<td class="probe-n">{escape(s["probe_n_text"])}</td></tr>')
    note = ("<p class=\"muted\">ALARM: a test at the run's false-alarm budget fired. WARNING: "
            "significant at an unadjusted 5 %, below the gating threshold, or a metric (often "
            "one group's) past its tolerance without a significant test; the metrics and groups "
            "are named under it. OK: measured, nothing significant, nothing past tolerance. "
            "NO DATA: not measured in the verified rounds (the reason under it). Probe n: "
            "items the server probes per round (the reference record; per-group metrics rest "
            "on fewer) and the n clients report with their values. Client-level "
            "alarms name clients that differ from the others (culprits); population-level "
            "alarms mean the global model degraded. The last column compares the global model "
            "with the round-0 reference, in the worse direction.</p>")
    return (f'<section id="summary"><h2>Summary</h2><table class="summary">{head}'
            f"{''.join(rows)}</table>{note}</section>")


def _status_detail(s: dict[str, Any]) -> str:
    """What a status rests on, under its badge: the metrics and groups of a warning, or why
    there is no data."""
    text = s["status_note"] or s["no_data_reason"]
    return f'<br><span class="muted status-note">{escape(text)}</span>' if text else ""


def _level(level: str | None) -> str:
    names = {"client": "client-level", "population": "population-level",
             "both": "client- and population-level"}
    return f'<br><span class="muted">{names[level]}</span>' if level in names else ""


def _largest(s: dict[str, Any]) -> str:
    """The metric that came closest to (or went furthest past) its tolerance."""
    best: tuple[float, str, dict[str, Any]] | None = None
    for metric, m in s["metrics"].items():
        d, tol = m["worst_degradation"], m["tolerance"]
        if d is None or tol is None:
            continue
        ratio = d / tol if tol > 0 else (float("inf") if d > 0 else 0.0)
        if best is None or ratio > best[0]:
            best = (ratio, metric, m)
    if best is None:
        return "—"
    ratio, metric, m = best
    if ratio <= 0:
        return "not worse than the reference"
    d, tol = short_number(m["worst_degradation"]), short_number(m["tolerance"])
    if ratio <= 1:
        share = "<1 %" if ratio < 0.01 else f"{ratio:.0%}".replace("%", " %")
        return f"within tolerance (closest: {metric}, {share} of it)"
    return f"{metric}: {d} worse in round {m['worst_round']} (tolerance {tol})"


def _overview_section(run: RunLog, summary: dict[str, Any]) -> str:
    rounds = run.round_numbers
    return (
        '<section id="overview"><h2>System health beside behavior</h2>'
        '<p class="muted">The loss and update norms are what an ordinary training dashboard '
        "shows. The status grid next to them is what the behavioral monitor saw in the same "
        "rounds. A healthy loss beside alarm cells is the silent failure this report exists "
        "to show.</p>"
        f'<div class="panels">{loss_chart(run, rounds)}{norm_chart(run, rounds)}'
        f"{status_grid_of(run, summary['modes'], rounds)}</div>"
        + legend([("line", BLUE, "", "circle", "loss / median norm"),
                   ("line", VERMILION, "5 3", "square", "max norm"),
                   ("flag", VERMILION, "", "", "an alarm in this round (any mode)"),
                   GATE_LEGEND])
        + grid_legend() + _gate_decisions(summary["timeline"]) + "</section>")


def _gate_decisions(timeline: list[dict[str, Any]]) -> str:
    """The rounds the gate acted in, with its reason (a rollback under tightened inspection
    fires no alarm: the reason is the only place that says why)."""
    items = "".join(f"<li>round {t['round']} · {escape(t['action'])}: "
                    f"{escape(t.get('reason') or '—')}</li>"
                    for t in timeline if t["action"] != "accept")
    return f"<h3>Gate decisions</h3><ul>{items}</ul>" if items else ""



# ------------------------------------------------------------------------------- modes


def _modes_section(run: RunLog, summary: dict[str, Any]) -> str:
    parts = ['<section id="modes"><h2>Failure modes</h2><p class="muted">One figure per mode. '
             "Each panel plots the global value per round with its 95 % confidence band "
             "(value ± 1.96 stderr), the round-0 reference, and the tolerance band: the shaded "
             "strip between the reference and the tolerance limit in the worse direction. "
             "Values beyond the limit are a practically significant degradation. Points are "
             "single clients' reports. Per-group metrics are drawn only when they alarmed or "
             "warned, or went past their tolerance; all values are in the JSON summary.</p>"]
    for mode, s in summary["modes"].items():
        parts.append(_mode_block(run, mode, s))
    parts.append("</section>")
    return "".join(parts)


def _mode_block(run: RunLog, mode: str, s: dict[str, Any]) -> str:
    name, what = mode_title(mode)
    panels, key = mode_panels(run, mode)
    alarms = [(phase, a) for phase, a in run.alarms() if a["mode"] == mode]
    items = "".join(
        f"<li>round {a['round']} ({escape(phase)}) · {escape(str(a.get('severity')))} · "
        f"{escape(str(a.get('metric')))}"
        + (f" · clients {escape(', '.join(str(c) for c in as_list(a.get('clients'))))}"
           if as_list(a.get("clients")) else "")
        + f": {escape(str(a.get('message', '')))}</li>" for phase, a in alarms[:200])
    more = f"<li>… and {len(alarms) - 200} more in the audit log</li>" if len(alarms) > 200 else ""
    details = (f"<details><summary>{s['alarms']} alarm(s), {s['warnings']} warning(s): "
               f"messages</summary><ul>{items}{more}</ul></details>" if alarms else "")
    facts = [what.capitalize()] if what else []
    if s["first_alarm_round"] is not None:
        facts += [f"first alarm in round {s['first_alarm_round']}", f"gate: {s['action']}"]
    if s["culprits"]:
        facts.append(f"culprits: {', '.join(s['culprits'])}")
    if s["status_note"]:
        facts.append(s["status_note"])
    if s["no_data_reason"]:
        facts.append(f"no data: {s['no_data_reason']}")
    if s["probe_n_text"] != "—":
        facts.append(f"probe {s['probe_n_text']}")
    return (f'<section class="mode" id="mode-{escape(mode)}"><h3>{escape(mode)}: '
            f"{escape(name)} {_badge(s['status'])}</h3>"
            f'<p class="muted">{escape("; ".join(facts))}.</p>'
            f'<figure class="mode-figure" data-mode="{escape(mode)}"><div class="panels">'
            f"{''.join(panels)}</div><figcaption>{key}</figcaption></figure>{details}"
            "</section>")



# ------------------------------------------------------------------------------- clients


def _clients_section(run: RunLog, summary: dict[str, Any]) -> str:
    rep = summary["replies"]
    rows = [("refused", r) for r in rep["refused"]] + [("failed", r) for r in rep["failed"]]
    rows.sort(key=lambda kr: (kr[1]["round"], str(kr[1]["phase"]), node_key(kr[1]["node"])))
    if rows:
        body = "".join(
            f"<tr><td>{r['round']}</td><td>{escape(str(r['phase']))}</td>"
            f"<td>{escape(r['node'])}</td><td>{kind}</td><td>{escape(r['reason'])}</td></tr>"
            for kind, r in rows)
        table = ('<table id="refused-replies"><tr><th>Round</th><th>Phase</th><th>Client</th>'
                 f"<th>Outcome</th><th>Reason</th></tr>{body}</table>")
    else:
        table = "<p>All replies passed validation: none refused, none failed.</p>"
    refused_rounds = sorted({r["round"] for _, r in rows})
    intro = (f"<p class=\"muted\">{len(rows)} repl{'y' if len(rows) == 1 else 'ies'} left out of "
             f"aggregation in {round_ranges(refused_rounds)}. Refused: the reply failed "
             "validation (malformed arrays, bad weights, wrong suite hash, ...). Failed: the "
             "client returned an error.</p>" if rows else "")
    return ('<section id="clients"><h2>Clients</h2><h3>Refused and failed replies</h3>'
            f"{intro}{table}<h3>Privacy budget spent</h3>{_privacy(run, summary)}</section>")


def _privacy(run: RunLog, summary: dict[str, Any]) -> str:
    spent = summary["privacy"]
    if not spent:
        return ("<p>No client reported <code>trust.privacy.*</code> numbers: private metrics "
                "are off, or the clients do not run <code>trust_mod</code>.</p>")
    chart, key = privacy_chart(run)
    rows = "".join(_privacy_row(node, e) for node, e in spent.items())
    table = ('<table id="privacy-table"><tr><th>Client</th><th>ε spent</th><th>δ</th>'
             f"<th>Releases</th><th>Budget exhausted</th><th>Last round</th></tr>{rows}</table>")
    return (f'<figure class="privacy-figure">{chart}<figcaption>{key}</figcaption></figure>'
            f"{table}")

def _privacy_row(node: str, e: dict[str, Any]) -> str:
    delta = "—" if e["delta"] is None else f"{e['delta']:.0e}"
    releases = "—" if e["releases"] is None else str(int(e["releases"]))
    return (f"<tr><td>{escape(node)}</td><td>{short_number(e['epsilon'])}</td><td>{delta}</td>"
            f"<td>{releases}</td><td>{'yes' if e['exhausted'] else 'no'}</td>"
            f"<td>{e['round']}</td></tr>")


# ------------------------------------------------------------------------------- pieces



def _footer(summary: dict[str, Any]) -> str:
    v = summary["verification"]
    return (f'<footer><h2>About this report</h2><p class="muted">Built from the audit log '
            f"<code>{escape(summary['audit_log'])}</code> ({v['records']} verified records, head "
            f"<code>{escape(v['head'])}</code>). Check it again any time with "
            f"<code>flwr-trust verify-log {escape(summary['audit_log'])}</code>. The same "
            "numbers are available as JSON with <code>flwr-trust report RUN_DIR --json "
            "summary.json</code> and as TensorBoard scalars under <code>RUN_DIR/tensorboard"
            "</code>. How to read this page: docs/report.md.</p></footer>")
