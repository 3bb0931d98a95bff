"""The machine-readable verdict of a run: per failure mode a status, first alarm round, the
gate's action and the clients blamed, plus the run header, system health, refused replies and
privacy spend. The HTML report renders this same summary, so the page and the JSON agree.

Statuses:
- ALARM: at least one alarm (the severity gates act on) was raised for the mode;
- WARNING: no alarm, but warnings (significant at an unadjusted 5 %, below the gating
  threshold), or a metric whose global value went past its tolerance in some round without a
  significant test: often a per-group metric (one social group, one client group), which rests
  on fewer items. `status_note` names the metrics and groups;
- OK: measured in the verified rounds, with none of these;
- NO DATA: never measured in the verified rounds (`no_data_reason` says why, when the log
  shows it). Without data the report cannot call a mode OK.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from flwr_trust.errors import AuditLogError
from flwr_trust.report.coverage import behavior_gap, update_gap
from flwr_trust.report.records import Gate, as_list, not_finite, num
from flwr_trust.report.runlog import PHASES, RunLog, load_run, node_key
from flwr_trust.report.samples import describe_sizes, probe_sizes

FORMAT = "flwr-trust-summary/1"
STATUSES = ("ALARM", "WARNING", "OK", "NO DATA")
SIGNALS = ("update", "integrity")  # server-side checks beside the six behavioral modes
SYSTEM_KEYS = ("loss", "update-norm-median", "update-norm-max")


def summarize(run_dir: str | Path) -> dict[str, Any]:
    """Summary of the run folder (or audit log) `run_dir`; see `build_summary`.

    Raises AuditLogError for a missing or empty log, or an intact log without round records.
    """
    return build_summary(load_run(run_dir))


def build_summary(run: RunLog) -> dict[str, Any]:
    """JSON-ready summary of a loaded run. An intact log needs at least one round record. A
    broken log is summarized as far as it verified, with `verification.ok` false."""
    if run.verification.ok and not run.rounds:
        raise AuditLogError(
            f"Audit log {run.path} verifies but has no round records: the run stopped before "
            "its first aggregation, so there is nothing to report.",
            fix="Report a run that completed at least one round; the server log says why this "
            "one stopped.")
    v = run.verification
    return {
        "format": FORMAT,
        "run_dir": str(run.run_dir),
        "audit_log": str(run.path),
        "verification": {"ok": v.ok, "records": v.records, "first_bad": v.first_bad,
                         "reason": v.reason, "head": v.head},
        "run": run_header(run),
        "modes": {mode: mode_summary(run, mode) for mode in report_modes(run)},
        "system": system_summary(run),
        "timeline": timeline(run),
        "replies": replies(run),
        "privacy": privacy_summary(run),
        "alarms": sum(a.get("severity") == "alarm" for _, a in run.alarms()),
        "warnings": sum(a.get("severity") == "warning" for _, a in run.alarms()),
    }


def run_header(run: RunLog) -> dict[str, Any]:
    """Strategy, gate, model, suites, detection settings, when it ran and how it ended."""
    start, end = run.start, run.end
    if end is not None:
        status = end.status
    elif not run.verification.ok:
        status = "unknown: the log breaks before the run-end record"
    else:
        status = "incomplete: no run-end record (still running, or the server stopped)"
    return {
        "strategy": start.strategy, "gate": start.gate, "model": start.model,
        "modes": run.modes, "suite_hash": start.suite_hash, "server_suites": start.server_suites,
        "alpha": start.alpha, "update_alpha": start.update_alpha, "horizon": start.horizon,
        "update_cosine_margin": start.update_cosine_margin,
        "audit_fraction": start.audit_fraction, "secure_aggregation": start.secure_aggregation,
        "started": run.time_of("run-start"), "ended": run.time_of("run-end"),
        "status": status, "rounds": max(run.round_numbers, default=0),
    }


def report_modes(run: RunLog) -> list[str]:
    """The modes the report covers: the run's behavioral modes, then `update` (when the server
    checked updates, or was set up to: run-start has its alpha), `integrity` (when it audited
    clients), then any other mode that alarmed, so that no alarm is left out of the summary."""
    modes = list(run.modes)
    alarmed = [a["mode"] for _, a in run.alarms()]
    if (any(p.update_stats for p in run.rounds) or "update" in alarmed
            or run.start.update_alpha is not None):
        modes.append("update")
    if run.start.audited or "integrity" in alarmed:
        modes.append("integrity")
    for mode in alarmed:
        if mode not in modes:
            modes.append(mode)
    return modes


def has_data(run: RunLog, mode: str) -> bool:
    """Whether the verified rounds measured `mode` at all."""
    if mode == "update":
        return any(p.update_stats for p in run.rounds)
    if mode == "integrity":
        return run.start.audited and bool(run.phase("train"))
    return bool(run.metrics_of(mode)) or any(a["mode"] == mode for _, a in run.alarms())


def mode_summary(run: RunLog, mode: str) -> dict[str, Any]:
    """Status, first alarm/warning round, counts, the gate's action and culprits of one mode."""
    alarms = [a for _, a in run.alarms() if a["mode"] == mode and a.get("severity") == "alarm"]
    warnings = [a for _, a in run.alarms() if a["mode"] == mode and a.get("severity") != "alarm"]
    metrics = {m: metric_summary(run, mode, m) for m in run.metrics_of(mode)}
    past = past_tolerance(run, mode, metrics)
    if alarms:
        status = "ALARM"
    elif warnings or any(p["group"] for p in past):
        # A group past its tolerance is a warning even when not significant (the issue's
        # complaint); a whole-population estimate past tolerance but not significant keeps
        # OK with the note saying so: with small probes noise alone puts clean runs there.
        status = "WARNING"
    else:
        status = "OK" if has_data(run, mode) else "NO DATA"
    sizes = probe_sizes(run, mode)
    alarm_rounds = sorted({a["round"] for a in alarms})
    gates = run.train_gates()
    actions = [{"round": r, "action": gates.get(r, Gate()).action} for r in alarm_rounds]
    culprits = {str(c) for a in alarms for c in as_list(a.get("clients"))}
    for r in alarm_rounds:
        if gates.get(r, Gate()).action == "rollback":
            culprits.update(str(c) for c in gates[r].culprits)
    return {
        "status": status,
        "first_alarm_round": alarm_rounds[0] if alarm_rounds else None,
        "first_warning_round": min((w["round"] for w in warnings), default=None),
        "alarms": len(alarms), "warnings": len(warnings),
        "alarm_level": alarm_level(alarms),
        "alarm_rounds": alarm_rounds,
        "actions": actions,
        "action": describe_actions(actions, run.start.gate),
        "culprits": sorted(culprits, key=node_key),
        "alarmed_metrics": sorted({str(a.get("metric")) for a in alarms}),
        "past_tolerance": past,
        "groups": flagged_groups(warnings + alarms, past),
        "status_note": status_note(warnings, past),
        "no_data_reason": no_data_reason(run, mode) if status == "NO DATA" else None,
        "probe_n": sizes,
        "probe_n_text": describe_sizes(sizes),
        "metrics": metrics,
    }


def past_tolerance(run: RunLog, mode: str, metrics: dict[str, dict[str, Any]]
                   ) -> list[dict[str, Any]]:
    """Metrics (per-group ones included) whose global value was past their tolerance, in the
    worse direction, in some round: [{metric, group, rounds, worst_degradation, tolerance}]."""
    out = []
    for metric, m in metrics.items():
        if rounds := run.past_tolerance(mode, metric):
            out.append({"metric": metric, "group": group_of(metric), "rounds": rounds,
                        "worst_degradation": m["worst_degradation"],
                        "tolerance": m["tolerance"]})
    return out


def group_of(metric: str) -> str | None:
    """"religion" for "stereotype-pref/religion"; None for a whole-population metric."""
    return metric.split("/", 1)[1] if "/" in metric else None


def flagged_groups(alarms: list[dict[str, Any]], past: list[dict[str, Any]]) -> list[str]:
    """The groups named by alarms and warnings on per-group metrics, or past tolerance."""
    names = {group_of(str(a.get("metric"))) for a in alarms} | {p["group"] for p in past}
    return sorted(g for g in names if g)


def status_note(warnings: list[dict[str, Any]], past: list[dict[str, Any]]) -> str:
    """What a WARNING rests on, naming metrics and groups, e.g. "warning: stereotype-pref
    (round 2); past tolerance, not significant: stereotype-pref for group religion (round 3)";
    "" when there is nothing to say."""
    parts = []
    if warnings:
        by_metric: dict[str, list[int]] = {}
        for w in warnings:
            by_metric.setdefault(str(w.get("metric")), []).append(w["round"])
        parts.append("warning: " + ", ".join(f"{_named(m)} ({round_ranges(r)})"
                                             for m, r in sorted(by_metric.items())))
    if past:
        parts.append("past tolerance, not significant: " + ", ".join(
            f"{_named(p['metric'])} ({round_ranges(p['rounds'])})" for p in past))
    return "; ".join(parts)


def _named(metric: str) -> str:
    group = group_of(metric)
    return f"{metric.split('/', 1)[0]} for group {group}" if group else metric


def no_data_reason(run: RunLog, mode: str) -> str:
    """Why a mode was never measured, as far as the log shows."""
    if mode == "update":
        return update_gap(run)
    if mode == "integrity":
        return "integrity audit off" if not run.start.audited else "no train round"
    return behavior_gap(run, mode)


def alarm_level(alarms: list[dict[str, Any]]) -> str | None:
    """"client" when every alarm names clients, "population" when none does, else "both"."""
    named = {bool(as_list(a.get("clients"))) for a in alarms}
    if not named:
        return None
    return "both" if len(named) == 2 else ("client" if True in named else "population")


def metric_summary(run: RunLog, mode: str, metric: str) -> dict[str, Any]:
    """Reference, tolerance, the latest value and the largest degradation of one metric."""
    points = [p for phase in PHASES for p in run.metric_series(mode, metric, phase)]
    latest = run.metric_series(mode, metric, "train") or points
    last = latest[-1] if latest else None
    degraded = [p for p in points if p.degradation is not None]
    worst = max(degraded, key=lambda p: p.degradation or 0.0) if degraded else None
    return {
        "reference": next((p.reference for p in points if p.reference is not None), None),
        "tolerance": next((p.tolerance for p in points if p.tolerance is not None), None),
        "last_round": last.round if last else None,
        "last_value": last.value if last else None,
        "last_stderr": last.stderr if last else None,
        "source": last.source if last else None,
        "worst_round": worst.round if worst else None,
        "worst_degradation": worst.degradation if worst else None,
    }


def describe_actions(actions: list[dict[str, Any]], gate: str | None) -> str:
    """One phrase for what the gate did in the rounds a mode alarmed, e.g.
    "quarantine in rounds 2-4"."""
    if not actions:
        return "none needed"
    if gate == "off":
        return "none (gate off)"
    by_action: dict[str, list[int]] = {}
    for a in actions:
        by_action.setdefault(a["action"], []).append(a["round"])
    parts = []
    for action, rounds in by_action.items():
        name = "accepted" if action == "accept" else action
        parts.append(f"{name} in {round_ranges(rounds)}")
    return "; ".join(parts)


def round_ranges(rounds: Iterable[int]) -> str:
    """"round 3" or "rounds 2-4, 7" for a set of round numbers."""
    values = sorted(set(rounds))
    spans: list[list[int]] = []
    for r in values:
        if spans and r == spans[-1][1] + 1:
            spans[-1][1] = r
        else:
            spans.append([r, r])
    text = ", ".join(str(a) if a == b else f"{a}-{b}" for a, b in spans)
    return f"round {text}" if len(values) == 1 else f"rounds {text}"


def system_summary(run: RunLog) -> dict[str, Any]:
    """First, last, min and max of each system metric over the train rounds."""
    out: dict[str, Any] = {}
    for key in SYSTEM_KEYS:
        values = [(p.round, num(p.system.get(key))) for p in run.phase("train")]
        series = [(r, v) for r, v in values if v is not None]
        diverged = not_finite_rounds(run, key)
        if series:
            ys = [v for _, v in series]
            out[key] = {"first": ys[0], "last": ys[-1], "min": min(ys), "max": max(ys),
                        "rounds": len(ys)}
        if diverged:  # NaN / inf: a diverged run, not a missing value
            out.setdefault(key, {})["not_finite_rounds"] = diverged
    return out


def not_finite_rounds(run: RunLog, key: str) -> list[int]:
    """Train rounds whose system metric `key` was NaN or infinite."""
    return [p.round for p in run.phase("train") if not_finite(p.system.get(key))]


def timeline(run: RunLog) -> list[dict[str, Any]]:
    """Per round and phase: the gate's decision and its reason, alarm counts, replies and the
    training loss."""
    out = []
    for p in run.rounds:
        gate, clients = p.gate, p.clients
        out.append({
            "round": p.round, "phase": p.phase, "action": gate.action,
            "excluded": [str(c) for c in gate.excluded],
            "culprits": [str(c) for c in gate.culprits], "reason": gate.reason,
            "alarms": sum(a.get("severity") == "alarm" for a in p.alarms),
            "warnings": sum(a.get("severity") == "warning" for a in p.alarms),
            "valid": len(clients.valid), "refused": len(clients.refused),
            "failed": len(clients.failed), "loss": num(p.system.get("loss")),
        })
    return out


def replies(run: RunLog) -> dict[str, list[dict[str, Any]]]:
    """Refused replies (failed validation) and failed ones (error messages), with reasons."""
    out: dict[str, list[dict[str, Any]]] = {"refused": [], "failed": []}
    for p in run.rounds:
        for kind, nodes in (("refused", p.clients.refused), ("failed", p.clients.failed)):
            for node, reason in sorted(nodes.items(), key=lambda kv: node_key(kv[0])):
                out[kind].append({"round": p.round, "phase": p.phase, "node": node,
                                  "reason": reason})
    return out


def privacy_summary(run: RunLog) -> dict[str, dict[str, Any]]:
    """Per client: the latest reported epsilon spent, releases and whether the budget ran out."""
    out: dict[str, dict[str, Any]] = {}
    for p in run.rounds:
        for node, flat in p.privacy.items():
            eps = num(flat.get("trust.privacy.epsilon"))
            if eps is None:
                continue
            entry = out.setdefault(node, {"exhausted": False})
            entry.update({"epsilon": eps, "round": p.round,
                          "delta": num(flat.get("trust.privacy.delta")),
                          "releases": num(flat.get("trust.privacy.releases"))})
            entry["exhausted"] = entry["exhausted"] or bool(
                num(flat.get("trust.privacy.exhausted")))
    return dict(sorted(out.items(), key=lambda kv: node_key(kv[0])))
