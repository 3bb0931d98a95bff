"""Integrity audit: compare a client's report with the server's own measurement of its model.

The server holds each client's update in the clear (no secure aggregation), so it can score the
client's model on exactly the probes the client scored: the same suites and, under a per-round
probe budget, the same (suite hash, round)-seeded sample (`client_suites`). An honest report
then differs from the server's measurement only by numerical noise (bf16 kernels) and any DP
noise the client added. A report is inconsistent when |reported - measured| > z_crit *
sqrt(stderr^2 + noise^2): the stated sampling error is a generous allowance (it bounds how far
a different item sample could move the value), and z_crit is Bonferroni-corrected over the
audited clients and metrics.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from statistics import NormalDist

from flwr_trust import protocol
from flwr_trust.detect.alarm import Alarm
from flwr_trust.probes.sampling import round_sample
from flwr_trust.probes.suite import ProbeSuite
from flwr_trust.scoring.profile import BehaviorProfile

# Floor of the allowance: bf16 scoring on different machines can move a rate by one item flip.
NUMERIC_FLOOR = 1e-3


def client_suites(suites: Mapping[str, ProbeSuite], server_round: int, budget: int
                  ) -> dict[str, ProbeSuite]:
    """The suites a client probed in `server_round` under `budget` items per mode."""
    if budget <= 0:
        return dict(suites)
    return {m: round_sample(s, server_round, budget) for m, s in suites.items()}


def unprobeable(node: int, server_round: int, error: Exception) -> Alarm:
    return Alarm("integrity", "unprobeable", "alarm", server_round, (node,),
                 {"error": str(error)[:300]},
                 f"Node {node}'s model could not be probed for the audit: {error}")


def audit_report(measured: BehaviorProfile, report: Mapping[str, float], *, node: int,
                 server_round: int, n_audited: int, alpha: float) -> list[Alarm]:
    """Alarms for each public metric where the client's report disagrees with the server's."""
    checks = []
    for mode, metrics in measured.metrics.items():
        for metric, mv in metrics.items():
            key = protocol.metric_key(mode, metric)
            if key not in report or not math.isfinite(mv.value):
                continue
            checks.append((mode, metric, mv.value, float(report[key]),
                           float(report.get(key + protocol.STDERR, 0.0)),
                           float(report.get(key + protocol.NOISE, 0.0))))
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
