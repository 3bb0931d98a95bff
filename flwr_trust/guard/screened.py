"""Culprits of a failed candidate in a round too large for leave-one-out: screen, then probe.

Leave-one-out costs one aggregation and one server probe per client, so the core runs it only
up to LOO_MAX_CLIENTS clients. Above that, a prober that can screen (`BridgeProber.screen`,
flwr_trust/scoring/linear.py) predicts each client's change of the failing metrics from its
update with one gradient and a dot product per client; the `top` clients it ranks worst are
then probed exactly, each client's own model on the failing modes, and named a culprit when its
own model fails the candidate's test. The screen only decides whom to probe: every culprit is
confirmed by an exact probe. Its accuracy on SmolLM2 (bench/linear_screen.py,
docs/benchmarks.md): at the packaged step size it ranks the same client worst as the exact
probe in 8 of 8 scenarios while its magnitudes are about 2x off; with 30 local steps or from
an adapter whose B is 0 the ranking degrades.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

from flwr_trust import modes as registry
from flwr_trust.detect.alarm import Alarm
from flwr_trust.guard.evidence import Prober, RoundEvidence
from flwr_trust.probes.suite import ProbeSuite
from flwr_trust.scoring.profile import BehaviorProfile

log = logging.getLogger("flwr.trust")

SCREEN_TOP = 3  # clients probed exactly after the screen (their own models)


class Screen(Protocol):
    """What `Screener.screen` returns: predicted change per "<mode>.<metric>" of an update."""

    def predict(self, arrays: Mapping[str, Any]) -> dict[str, float]: ...


def rank_by_screen(screen: Screen, ev: RoundEvidence, nodes: Sequence[int],
                   failing: Sequence[Alarm]) -> list[tuple[int, float]]:
    """(node, predicted degradation in tolerances) for the nodes the screen could predict,
    worst first: per node the largest sign x predicted change / tolerance over the failing
    metrics."""
    arrays = {r.node: r.arrays for r in ev.replies if r.node in nodes and r.arrays is not None}
    scored = []
    for node, mine in arrays.items():
        try:
            predicted = screen.predict(mine)
        except (ValueError, KeyError):  # arrays the screen cannot read: no prediction
            continue
        worst = None
        for alarm in failing:
            key = f"{alarm.mode}.{alarm.metric}"
            declared = registry.get(alarm.mode).metric(alarm.metric) \
                if registry.find(alarm.mode) is not None else None
            if key not in predicted or declared is None:
                continue
            value = declared.sign * predicted[key] / (declared.tolerance or 1.0)
            worst = value if worst is None else max(worst, value)
        if worst is not None:
            scored.append((node, worst))
    return sorted(scored, key=lambda pair: (-pair[1], pair[0]))


def screened_culprits(prober: Prober | None, ev: RoundEvidence, nodes: Sequence[int],
                      failing: Sequence[Alarm], suites: Mapping[str, ProbeSuite],
                      fails: Callable[[BehaviorProfile], bool], top: int = SCREEN_TOP
                      ) -> tuple[list[int], str]:
    """(culprits, what was done) for a failed candidate of `nodes`: screen at the global model,
    probe the `top` worst-predicted clients' own models on the failing modes, keep those whose
    model `fails` (the candidate's test on their numbers). The prober screens through an
    optional `screen(arrays, suites, metrics) -> Screen` method (BridgeProber has one); a
    prober without it names no one."""
    screen_of = getattr(prober, "screen", None)
    alarms = [a for a in failing if a.severity == "alarm" and a.mode in suites]
    if screen_of is None or not alarms or ev.global_model is None:
        return [], "no screen available"
    metrics: dict[str, list[str]] = {}
    for a in alarms:
        if a.metric not in metrics.setdefault(a.mode, []):
            metrics[a.mode].append(a.metric)
    wanted = {m: suites[m] for m in metrics}
    try:
        screen = screen_of(ev.global_model, wanted, metrics)
    except Exception as exc:  # a screen that cannot run names no one; the rollback stands
        log.warning("TrustGuard round %s: linear screen failed: %s", ev.round, exc)
        return [], f"linear screen failed ({type(exc).__name__})"
    ranked = [(n, v) for n, v in rank_by_screen(screen, ev, nodes, alarms) if v > 0][:top]
    models = {r.node: r.model for r in ev.replies}
    culprits = []
    for node, _ in ranked:
        profile = prober.probe(models.get(node), wanted) if models.get(node) is not None \
            else None
        if profile is not None and fails(profile):
            culprits.append(node)
    return sorted(culprits), (f"screened {len(nodes)} clients, probed the {len(ranked)} "
                              "predicted worst exactly")
