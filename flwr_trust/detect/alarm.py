"""The alarm object every detector emits and every gate, callback and log consumes."""

from __future__ import annotations

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
