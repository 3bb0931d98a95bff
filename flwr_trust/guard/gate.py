"""Gate policies: what the guard does with a round once the detectors have spoken.

- ``off``:        record alarms, change nothing;
- ``quarantine``: leave the flagged clients' replies out of this round's aggregation;
- ``rollback``:   leave the flagged clients out (as quarantine), then probe the aggregated
                  candidate; if a population alarm fires, keep the previous global model and
                  name culprits by leave-one-out over the aggregated clients (up to 8);
- ``halt``:       stop the run with a clear error once any alarm fires.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from flwr_trust.errors import TrustError

GateMode = Literal["off", "quarantine", "rollback", "halt"]
GATES: tuple[str, ...] = ("off", "quarantine", "rollback", "halt")


def check_gate(gate: str) -> GateMode:
    if gate not in GATES:
        raise TrustError(f"Unknown gate {gate!r}.", f"Use one of {', '.join(GATES)}.")
    return gate  # type: ignore[return-value]


class TrustHalt(TrustError):
    """Raised by the `halt` gate: the run stops, and the report says why."""


@dataclass
class GateDecision:
    """What happened to one round's aggregation."""

    action: Literal["accept", "quarantine", "rollback", "halt"] = "accept"
    excluded: list[int] = field(default_factory=list)
    culprits: list[int] = field(default_factory=list)
    reason: str = ""

    def to_json(self) -> dict[str, object]:
        return {"action": self.action, "excluded": self.excluded, "culprits": self.culprits,
                "reason": self.reason}


ACTION_CODE = {"accept": 0, "quarantine": 1, "rollback": 2, "halt": 3}
