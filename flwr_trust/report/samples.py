"""Probe sample sizes per mode: how many items the numbers of the report rest on.

- server: the n of each metric in the reference record (the round-0 probe). The server probes
  every candidate on the same seeded subset of its suites, so this is its n in every round.
  Per-group metrics (``<metric>/<group>``) rest on fewer items; their range is given apart.
- clients: the ``trust.<mode>.<metric>.n`` the clients reported with their values, over all
  rounds (untrusted numbers: the integrity audit checks them on audited clients).

Metrics with n = 0 (nothing to measure on that suite) are left out.
"""

from __future__ import annotations

import statistics
from typing import Any

from flwr_trust import protocol
from flwr_trust.report.records import num
from flwr_trust.report.runlog import RunLog


def probe_sizes(run: RunLog, mode: str) -> dict[str, Any]:
    """{"server": {min, max, group_min, group_max} | None,
    "clients": {min, median, max, clients, reports} | None} for one mode."""
    base, groups = [], []
    for metric, row in run.reference.metrics.get(mode, {}).items():
        n = num(row.get("n"))
        if n is not None and n > 0:
            (groups if "/" in metric else base).append(int(n))
    server = None
    if base or groups:
        server = {"min": min(base, default=None), "max": max(base, default=None),
                  "group_min": min(groups, default=None), "group_max": max(groups, default=None)}
    return {"server": server, "clients": _client_sizes(run, mode)}


def _client_sizes(run: RunLog, mode: str) -> dict[str, Any] | None:
    """The n each client reported for mode's metrics (largest per report), over all rounds."""
    start = protocol.metric_key(mode, "")
    sizes, nodes = [], set()
    for p in run.rounds:
        for node, flat in p.client_metrics.items():
            ns = [int(n) for key, value in flat.items()
                  if key.startswith(start) and key.endswith(protocol.N)
                  and "/" not in key and (n := num(value)) is not None and n > 0]
            if ns:
                sizes.append(max(ns))
                nodes.add(node)
    if not sizes:
        return None
    return {"min": min(sizes), "median": statistics.median(sizes), "max": max(sizes),
            "clients": len(nodes), "reports": len(sizes)}


def _span(lo: int | float | None, hi: int | float | None) -> str:
    return f"{lo:g}" if lo == hi else f"{lo:g}-{hi:g}"


def describe_sizes(sizes: dict[str, Any]) -> str:
    """One line, e.g. "server n = 20 (groups 3-6) · clients n = 300 (median of 12 reports
    from 6 clients, 280-300)"; "—" when nothing was probed."""
    parts = []
    server, clients = sizes.get("server"), sizes.get("clients")
    if server is not None:
        text = ("server n = " + _span(server["min"], server["max"])
                if server["min"] is not None else "server")
        if server["group_min"] is not None:
            text += f" (groups {_span(server['group_min'], server['group_max'])})"
        parts.append(text)
    if clients is not None:
        text = f"clients n = {clients['median']:g}"
        if clients["reports"] > 1:
            text += (f" (median of {clients['reports']} reports from {clients['clients']} "
                     f"client{'s' if clients['clients'] != 1 else ''}")
            text += (f", {_span(clients['min'], clients['max'])})"
                     if clients["min"] != clients["max"] else ")")
        parts.append(text)
    return " · ".join(parts) or "—"
