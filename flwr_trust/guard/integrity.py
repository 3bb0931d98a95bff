"""Integrity audit: re-measure a client's model on the server and compare with its report.

The server holds each client's update in the clear (no secure aggregation), so it can score the
client's model on exactly the probes the client scored: the same suites and, under a per-round
probe budget, the same (suite hash, round)-seeded sample. An honest report then differs from the
server's measurement only by numerical noise (bf16 kernels) and any DP noise the client added.
A report is inconsistent when |reported - measured| > z_crit * sqrt(stderr^2 + noise^2): the
stated sampling error is a generous allowance (it bounds how far a different item sample could
move the value), and z_crit is Bonferroni-corrected over the audited clients and metrics.
"""

from __future__ import annotations

import math
from statistics import NormalDist
from typing import Any

from flwr_trust.detect.alarm import Alarm
from flwr_trust.probes.suite import ProbeSuite
from flwr_trust.scoring.profile import PREFIX

# Floor of the allowance: bf16 scoring on different machines can move a rate by one item flip.
NUMERIC_FLOOR = 1e-3


def _client_suites(suites: dict[str, ProbeSuite], server_round: int, budget: int
                   ) -> dict[str, ProbeSuite]:
    if budget <= 0:
        return suites
    from flwr_trust.mods.sampling import round_sample

    return {m: round_sample(s, server_round, budget) for m, s in suites.items()}


def audit_client(bridge: Any, arrays: Any, report: dict[str, float],
                 suites: dict[str, ProbeSuite], *, node: int, server_round: int, budget: int,
                 precision: str, n_audited: int, alpha: float) -> list[Alarm]:
    """Alarms for each public metric where the client's report disagrees with the server's."""
    from flwr_trust.scoring.runner import profile_arrays

    try:
        measured = profile_arrays(bridge, arrays, _client_suites(suites, server_round, budget),
                                  precision=precision)  # type: ignore[arg-type]
    except Exception as exc:  # arrays were screened; still, never crash aggregation
        return [Alarm("integrity", "unprobeable", "alarm", server_round, (node,),
                      {"error": str(exc)[:300]},
                      f"Node {node}'s model could not be probed for the audit: {exc}")]
    checks = []
    for mode, metrics in measured.metrics.items():
        for metric, mv in metrics.items():
            key = f"{PREFIX}{mode}.{metric}"
            if key not in report or not math.isfinite(mv.value):
                continue
            checks.append((mode, metric, mv.value, float(report[key]),
                           float(report.get(f"{key}.stderr", 0.0)),
                           float(report.get(f"{key}.noise", 0.0))))
    if not checks:
        return []
    m = max(1, n_audited) * len(checks)
    z_crit = NormalDist().inv_cdf(1 - alpha / (2 * m))
    alarms = []
    for mode, metric, server_value, reported, stderr, noise in checks:
        allowance = z_crit * math.sqrt(stderr**2 + noise**2) + NUMERIC_FLOOR
        gap = abs(reported - server_value)
        if gap > allowance:
            alarms.append(Alarm(
                "integrity", f"{mode}.{metric}", "alarm", server_round, (node,),
                {"reported": reported, "measured": server_value, "gap": gap,
                 "allowance": allowance, "stderr": stderr, "noise": noise, "z_crit": z_crit},
                f"Node {node} reported {mode}.{metric} = {reported:.4f} but its model scores "
                f"{server_value:.4f} (allowed gap {allowance:.4f}): the report is not credible."))
    return alarms
