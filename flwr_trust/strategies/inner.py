"""The guard's inner strategy as the decision core's `Aggregation`, and the error replies
Flower's DP wrappers get for every reply the guard leaves out."""

from __future__ import annotations

import copy
import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
from flwr.app import ArrayRecord, Error, Message, MetricRecord
from flwr.common.constant import ErrorCode
from flwr.serverapp.strategy import (
    DifferentialPrivacyClientSideAdaptiveClipping,
    DifferentialPrivacyClientSideFixedClipping,
    DifferentialPrivacyServerSideAdaptiveClipping,
    DifferentialPrivacyServerSideFixedClipping,
    Strategy,
)

from flwr_trust import protocol
from flwr_trust.detect.alarm import Alarm
from flwr_trust.errors import AggregateNotFinite
from flwr_trust.guard import RoundEvidence
from flwr_trust.scoring.profile import BehaviorProfile
from flwr_trust.strategies.normalization import normalize_round
from flwr_trust.strategies.screening import RoundSpec

if TYPE_CHECKING:
    from flwr_trust.strategies.trust_guard import TrustGuard

DP_WRAPPERS = (DifferentialPrivacyClientSideAdaptiveClipping,
               DifferentialPrivacyClientSideFixedClipping,
               DifferentialPrivacyServerSideAdaptiveClipping,
               DifferentialPrivacyServerSideFixedClipping)
log = logging.getLogger("flwr.trust")  # under Flower's logger: shown by `flwr run --stream`


class InnerAggregation:
    """The core's `Aggregation` over the guard's inner strategy and this round's messages.

    failed: for a Flower DP wrapper as inner strategy, the round's error replies; every reply
    the guard does not aggregate (failed, refused, quarantined) is then handed to the wrapper
    as an error reply, so that its own failure rule and privacy accounting apply exactly as
    they would without the guard.
    """

    def __init__(self, guard: TrustGuard, server_round: int, messages: dict[int, Message],
                 spec: RoundSpec, failed: list[Message] | None = None):
        self.guard, self.round, self.messages = guard, server_round, messages
        self.spec, self.failed = spec, failed

    def aggregate(self, nodes: Sequence[int]) -> tuple[Any, Any]:
        replies = [self.messages[n] for n in nodes]
        for msg in replies:  # the inner's own view of the arrays: some strategies (Bulyan,
            # QFedAvg) empty the records they read, and rollback's culprit search probes the
            # replies' own records afterwards. A new record shares the arrays' bytes.
            for name, record in list(msg.content.array_records.items()):
                msg.content.array_records[name] = ArrayRecord(dict(record.items()))
        log_notes(self.round, normalize_round(replies, self.spec))
        if self.failed is not None:
            left_out = [m for n, m in self.messages.items() if n not in set(nodes)]
            replies += self.failed + [as_error(m) for m in left_out]
        arrays, metrics = self.guard.inner.aggregate_train(self.round, replies)
        _refuse_non_finite(arrays, nodes)
        return arrays, metrics

    def checkpoint(self, nodes: Sequence[int]) -> tuple[Strategy, dict[int, Message]]:
        return (copy.deepcopy(self.guard.inner),
                {n: copy.deepcopy(self.messages[n]) for n in nodes})

    def restore(self, checkpoint: tuple[Strategy, dict[int, Message]]) -> None:
        self.guard.inner = checkpoint[0]

    def trial(self, checkpoint: tuple[Strategy, dict[int, Message]], nodes: Sequence[int]
              ) -> Any:
        strategy, copies = checkpoint
        replies = [copy.deepcopy(copies[n]) for n in nodes]
        normalize_round(replies, self.spec)
        arrays, _ = copy.deepcopy(strategy).aggregate_train(self.round, replies)
        _refuse_non_finite(arrays, nodes)
        return arrays


def _refuse_non_finite(arrays: ArrayRecord | None, nodes: Sequence[int]) -> None:
    """An aggregate with NaN/Inf (finite replies can still sum past float range, or a
    strategy's own weights, e.g. QFedAvg's loss**q, can break) is no model: refuse it here
    rather than hand it on or probe it."""
    if arrays is None:
        return
    bad = [k for k, v in arrays.items() if not np.isfinite(v.numpy()).all()]
    if bad:
        raise AggregateNotFinite(
            f"The inner strategy's aggregate of nodes {sorted(nodes)} has NaN or Inf values in "
            f"{len(bad)} arrays (e.g. {bad[:2]}).",
            "Nothing to do for this round: the previous global model is kept. If it recurs, "
            "read the replies' update statistics in the audit log.")


def log_notes(server_round: int, notes: list[str]) -> None:
    """Log the round's reply normalizations (normalization.normalize_round)."""
    for note in notes:
        log.warning("TrustGuard round %s: %s", server_round, note)


def as_error(reply: Message) -> Message:
    """An error reply standing for a reply the guard left out (for DP wrappers)."""
    error = Error(code=ErrorCode.UNKNOWN, reason="left out by TrustGuard")
    return Message(error, reply_to=reply)


def result_metrics(metrics: Any, ev: RoundEvidence, alarms: list[Alarm],
                   decision: Any, candidate: BehaviorProfile | None) -> MetricRecord:
    """The round's MetricRecord: the inner's metrics plus the guard's counters and the
    candidate's probe values (docs/protocol.md)."""
    out = MetricRecord(dict(metrics.items())) if metrics is not None else MetricRecord()
    out[protocol.REPLIES_VALID] = len(ev.replies)
    out[protocol.REPLIES_REFUSED] = ev.n_refused
    out[protocol.REPLIES_FAILED] = ev.n_failed
    out[protocol.ALARMS] = sum(a.severity == "alarm" for a in alarms)
    out[protocol.WARNINGS] = sum(a.severity == "warning" for a in alarms)
    if decision is not None:
        out[protocol.GATE_ACTION] = protocol.ACTION_CODE[decision.action]
        out[protocol.EXCLUDED] = len(decision.excluded)
    if candidate is not None:
        for key, value in protocol.values_only(candidate.metrics).items():
            out[key] = value
    return out
