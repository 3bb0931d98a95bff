"""Gate policies: what the guard does with a round once the detectors have spoken.

- ``off``:        record alarms, change nothing;
- ``quarantine``: leave the flagged clients' replies out of this round's aggregation; a
                  client flagged on its behaviour stays out of later rounds on probation
                  until its reports recover (probation.py);
- ``rollback``:   leave the flagged clients out (as quarantine), then probe the aggregated
                  candidate; if a population alarm fires, keep the previous global model and
                  name culprits by leave-one-out over the aggregated clients (up to 8), who
                  go on probation too; later candidates stay refused while they measure
                  beyond the tolerance on a metric that failed (inspection.py);
- ``halt``:       stop the run with a clear error once any alarm fires.

Under every gate, an aggregate that is no model (NaN/Inf arrays, or a server probe that
scores no finite number) is not passed on: the previous global model is kept (guard/core.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from flwr_trust.detect.alarm import Alarm
from flwr_trust.errors import TrustError

Action = Literal["accept", "quarantine", "rollback", "halt"]


class TrustHalt(TrustError):
    """Raised by the `halt` gate: the run stops, and the report says why."""


@dataclass
class GateDecision:
    """What happened to one round's aggregation."""

    action: Action = "accept"
    excluded: list[int] = field(default_factory=list)
    culprits: list[int] = field(default_factory=list)
    reason: str = ""
    probation: dict[str, list[str]] = field(default_factory=dict)  # node -> "mode.metric"s
    inspection: dict[str, int] = field(default_factory=dict)  # "mode.metric" -> since round

    def to_json(self) -> dict[str, object]:
        out: dict[str, object] = {"action": self.action, "excluded": self.excluded,
                                  "culprits": self.culprits, "reason": self.reason}
        if self.probation:  # after this round: who stays out until their reports recover
            out["probation"] = self.probation
        if self.inspection:  # after this round: what a candidate must show it is back within
            out["inspection"] = self.inspection
        return out


def alarmed(alarms: list[Alarm]) -> bool:
    return any(a.severity == "alarm" for a in alarms)


def unscorable(alarms: list[Alarm]) -> bool:
    """Did the server's probe of the candidate give no finite number (broken outputs)?"""
    return any(a.evidence.get("test") == "unscorable" for a in alarms)


class Gate:
    """Off: alarms are recorded, aggregation is the inner strategy's (unless it is no model)."""

    name = "off"
    quarantines = False  # flagged clients never enter the aggregation
    rolls_back = False  # the candidate is probed and refused when it fails

    def before(self, flagged: list[int]) -> GateDecision:
        """The decision before aggregating: who is left out."""
        if self.quarantines and flagged:
            return GateDecision("quarantine", excluded=list(flagged),
                                reason="flagged clients left out of this round")
        return GateDecision()

    def halts(self, alarms: list[Alarm]) -> bool:
        return False


class Quarantine(Gate):
    name = "quarantine"
    quarantines = True


class Rollback(Gate):
    """Quarantine first: a client flagged by its own report or update never enters the
    candidate (else one attacker in n, diluted below the candidate's tolerance, would be
    averaged in round after round); then the candidate must pass its probe."""

    name = "rollback"
    quarantines = True
    rolls_back = True


class Halt(Gate):
    name = "halt"

    def halts(self, alarms: list[Alarm]) -> bool:
        return alarmed(alarms)


GATES: dict[str, type[Gate]] = {g.name: g for g in (Gate, Quarantine, Rollback, Halt)}


def make_gate(name: str) -> Gate:
    if name not in GATES:
        raise TrustError(f"Unknown gate {name!r}.", f"Use one of {', '.join(GATES)}.")
    return GATES[name]()
