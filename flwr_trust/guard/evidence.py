"""What the guard core is given each round and what it returns, and the seams it calls.

Flower-free: the adapter (flwr_trust.strategies.TrustGuard) unpacks Flower messages into
`RoundEvidence`, implements `Aggregation` over the inner strategy, and passes a `Prober` that
scores arrays on the server. Tests plug fakes into the same seams.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from flwr_trust.detect.alarm import Alarm
from flwr_trust.detect.update import UpdateChecker, UpdateCheckResult
from flwr_trust.guard.gates import GateDecision
from flwr_trust.probes.suite import ProbeSuite
from flwr_trust.scoring.profile import BehaviorProfile

log = logging.getLogger("flwr.trust")


class Prober(Protocol):
    """Scores a model (opaque arrays the adapter received) on probe suites, exactly."""

    def probe(self, arrays: Any, suites: Mapping[str, ProbeSuite]) -> BehaviorProfile: ...


class Aggregation(Protocol):
    """The inner strategy's aggregation of this round, as the adapter runs it.

    aggregate(nodes) -> (arrays or None, metrics or None): the inner strategy on those nodes'
        replies; this is the real aggregation and may change the inner strategy's state
    checkpoint(nodes) -> an opaque snapshot of the inner strategy and intact copies of those
        nodes' replies (taken before `aggregate`: some strategies consume replies)
    restore(checkpoint): put the inner strategy's state back (a refused candidate)
    trial(checkpoint, nodes) -> arrays or None: aggregate those nodes' copied replies on a copy
        of the checkpointed strategy; changes nothing
    """

    def aggregate(self, nodes: Sequence[int]) -> tuple[Any | None, Mapping[str, Any] | None]: ...

    def checkpoint(self, nodes: Sequence[int]) -> Any: ...

    def restore(self, checkpoint: Any) -> None: ...

    def trial(self, checkpoint: Any, nodes: Sequence[int]) -> Any | None: ...


@dataclass
class Reply:
    """One valid client reply as the core sees it.

    trust:  its ``trust.*`` numbers (already removed from what the inner strategy gets)
    arrays: its decoded arrays (name -> numpy), for the update checks; None on evaluate
    model:  the adapter's handle on its model (what the prober loads to audit it)
    """

    node: int
    trust: dict[str, Any] = field(default_factory=dict)
    arrays: Mapping[str, np.ndarray] | None = None
    model: Any = None


@dataclass
class RoundEvidence:
    """One round and phase: the valid replies, who was refused or failed (and why), and the
    global model the updates are relative to (opaque handle and decoded arrays)."""

    round: int
    phase: str
    replies: list[Reply]
    refused: dict[int, str] = field(default_factory=dict)
    failed: dict[int, str] = field(default_factory=dict)
    n_refused: int = 0  # replies, not nodes: a node that replies twice counts twice
    n_failed: int = 0
    global_model: Any = None
    global_arrays: Mapping[str, np.ndarray] | None = None

    @property
    def nodes(self) -> list[int]:
        return [r.node for r in self.replies]

    def refuse(self, node: int, reason: str) -> None:
        """Refuse a reply that passed the screen (a later check found it untrustworthy)."""
        self.replies = [r for r in self.replies if r.node != node]
        self.refused[node] = reason
        self.n_refused += 1


@dataclass
class RoundOutcome:
    """What the core decided: the arrays to return (None = keep the previous global), the
    inner strategy's metrics, the gate's decision, every alarm, and the server's probe of the
    candidate (if any)."""

    arrays: Any | None
    metrics: Mapping[str, Any] | None
    decision: GateDecision
    alarms: list[Alarm]
    candidate: BehaviorProfile | None = None


def checked_updates(ev: RoundEvidence, checker: UpdateChecker, secure_aggregation: bool
                    ) -> UpdateCheckResult:
    """Update checks on the decoded arrays against the decoded global model (none under secure
    aggregation). A malformed update (NaN/Inf, wrong layout) is refused here, in `ev`, and
    leaves no alarm behind."""
    if secure_aggregation or ev.global_arrays is None:
        return checker.check({}, base=None, round=ev.round)
    clients = {r.node: (r.arrays or {}) for r in ev.replies}
    result = checker.check(clients, base=ev.global_arrays, round=ev.round)
    malformed = {n: s["malformed"] for n, s in result.stats.items() if "malformed" in s}
    if not malformed:
        return result
    for node, problem in malformed.items():
        ev.refuse(node, str(problem))
        log.warning("TrustGuard: refused reply from node %s: %s", node, problem)
    return dataclasses.replace(
        result, flagged=tuple(n for n in result.flagged if n not in malformed),
        stats={n: s for n, s in result.stats.items() if n not in malformed},
        alarms=[a for a in result.alarms if not set(a.clients) & set(malformed)])
