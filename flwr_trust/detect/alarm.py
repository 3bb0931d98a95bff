"""The alarm object every detector emits and every gate, callback and log consumes."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

Severity = Literal["warning", "alarm"]


@dataclass(frozen=True)
class Alarm:
    """One significant finding.

    mode:     failure mode id ("bias", ..., "update", "integrity")
    metric:   the metric that crossed its threshold (e.g. "refusal-rate", "update-norm")
    severity: "warning" (suspicious, below the gating threshold) or "alarm" (gates act on it)
    round:    server round in which it was raised
    clients:  node ids the finding is attributed to; empty for population-level findings
    evidence: JSON-serializable numbers: values, reference, thresholds, p-values, z-scores
    message:  one readable sentence
    """

    mode: str
    metric: str
    severity: Severity
    round: int
    clients: tuple[int, ...] = ()
    evidence: dict[str, Any] = field(default_factory=dict)
    message: str = ""

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["clients"] = list(self.clients)
        return out


def behavior_message(mode: str, metric: str, ev: dict[str, Any], severity: str) -> str:
    """The one readable sentence of a behavioral finding, from its evidence."""
    name, test = f"{mode}.{metric}", ev["test"]
    if test == "level":
        verb = "degraded beyond" if severity == "alarm" else "may be degrading towards"
        return (f"{name} {verb} its tolerance: {ev['value']:.4g} vs reference "
                f"{ev['reference']:.4g} (degradation {ev['degradation']:.3g}, tolerance "
                f"{ev['tolerance']:.3g}, z = {ev['z']:.2f}, threshold {ev['z_crit']:.2f}).")
    if test == "trend":
        r0, r1 = ev["window"]
        return (f"{name} drifted: mean degradation {ev['mean_degradation']:.3g} over rounds "
                f"{r0}-{r1} exceeds the tolerance {ev['tolerance']:.3g} (z = {ev['z']:.2f}, "
                f"threshold {ev['z_crit']:.2f}).")
    if test == "victim":
        ratio = ev["value"] / ev["client_median"] if ev["client_median"] else math.inf
        return (f"The model serves client {ev['client']} much worse than the others: {name} = "
                f"{ev['value']:.4g} is {ratio:.2f}x the median {ev['client_median']:.4g} "
                f"(tolerance {1 + ev['tolerance']:.2f}x, z = {ev['z']:.2f}).")
    return (f"Client {ev['client']} reports {name} = {ev['value']:.4g}, worse than the clients' "
            f"median {ev['client_median']:.4g} by more than the tolerance {ev['tolerance']:.3g} "
            f"(z = {ev['z']:.2f}, threshold {ev['z_crit']:.2f}).")
