"""The guard's inner strategy as the decision core's `Aggregation`, and the error replies
Flower's DP wrappers get for every reply the guard leaves out."""

from __future__ import annotations

import copy
import logging
import time
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
from flwr_trust.errors import AggregateLayoutChanged, AggregateNotFinite, TrustError
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
SLOW_SNAPSHOT_S = 1.0  # a snapshot this slow is named once: the inner holds more than its state


class InnerSnapshots:
    """Deep copies of the inner strategy, taken before each aggregation so that a refused
    aggregate leaves the inner's own state (FedOpt's moments) as it was.

    A strategy that holds something deepcopy cannot copy (a lock, a thread, an open file) is a
    clear error under a rolling-back gate, whose culprit search re-aggregates on copies, and a
    warning under the others: a non-finite aggregate is still refused, but the inner's state
    is not put back. Tried once at construction, so the error comes before any training.
    """

    def __init__(self, inner: Strategy, required: bool) -> None:
        self.required, self.enabled, self._named_slow = required, True, False
        self.take(inner)

    def take(self, inner: Strategy) -> Strategy | None:
        """A deep copy of `inner`, or None once it has proved uncopyable (not required)."""
        if not self.enabled:
            return None
        start = time.perf_counter()
        try:
            copied = copy.deepcopy(inner)
        except Exception as err:  # deepcopy raises whatever a member's __reduce__ raises
            name = type(inner).__name__
            problem = (f"TrustGuard cannot copy the inner strategy {name} "
                       f"({type(err).__name__}: {err}).")
            fix = (f"Give {name} a __deepcopy__ that copies its aggregation state and shares "
                   "the rest (the lock, writer or file it holds)")
            if self.required:
                raise TrustError(problem + " Gate 'rollback' needs copies: it puts the inner "
                                 "back when it refuses a candidate and re-aggregates on copies "
                                 "to find culprits.", fix + ", or use gate 'quarantine'.") from err
            log.warning("%s An aggregate that is not finite is still refused, but "
                        "the inner's own state will not be put back. %s.", problem, fix)
            self.enabled = False
            return None
        seconds = time.perf_counter() - start
        if seconds > SLOW_SNAPSHOT_S and not self._named_slow:
            self._named_slow = True
            log.warning("TrustGuard: copying the inner strategy %s took %.1f s (it is copied "
                        "every round, to put its state back if the aggregate is refused). If it "
                        "holds a model or data, give it a __deepcopy__ that copies only its "
                        "aggregation state.", type(inner).__name__, seconds)
        return copied


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
        # Rollback's culprit search probes the replies' own records after this, and some
        # strategies (Bulyan, QFedAvg) empty the records they read: give the inner its own
        # view (a new record shares the arrays' bytes; 0.4 s for 500 LoRA replies, so only
        # where something reads them afterwards).
        for msg in replies if self.guard.core.settings.gate.rolls_back else ():
            for name, record in list(msg.content.array_records.items()):
                msg.content.array_records[name] = ArrayRecord(dict(record.items()))
        log_notes(self.round, normalize_round(replies, self.spec))
        if self.failed is not None:
            left_out = [m for n, m in self.messages.items() if n not in set(nodes)]
            replies += self.failed + [as_error(m) for m in left_out]
        arrays, metrics = self.guard.inner.aggregate_train(self.round, replies)
        _refuse_non_model(arrays, self.guard.global_arrays, nodes)
        return arrays, metrics

    def checkpoint(self, nodes: Sequence[int]) -> tuple[Strategy | None, dict[int, Message]]:
        return (self.guard.snapshots.take(self.guard.inner),
                {n: copy.deepcopy(self.messages[n]) for n in nodes})

    def restore(self, checkpoint: tuple[Strategy | None, dict[int, Message]]) -> None:
        if checkpoint[0] is not None:  # else: uncopyable, warned once by InnerSnapshots
            self.guard.inner = checkpoint[0]

    def trial(self, checkpoint: tuple[Strategy | None, dict[int, Message]],
              nodes: Sequence[int]) -> Any:
        strategy, copies = checkpoint
        assert strategy is not None, "trials run under rollback, which requires snapshots"
        replies = [copy.deepcopy(copies[n]) for n in nodes]
        normalize_round(replies, self.spec)
        arrays, _ = copy.deepcopy(strategy).aggregate_train(self.round, replies)
        _refuse_non_model(arrays, self.guard.global_arrays, nodes)
        return arrays


def _refuse_non_model(arrays: ArrayRecord | None, global_arrays: ArrayRecord | None,
                      nodes: Sequence[int]) -> None:
    """An aggregate that is no model is refused here rather than handed on or probed (Flower
    replaces the global model with whatever is not None):
    - arrays missing, added or reshaped against the global model (MultiKrum selecting 0 nodes
      returned an empty record, which would have wiped the model);
    - NaN/Inf (finite replies can still sum past float range, or a strategy's own weights,
      e.g. QFedAvg's loss**q, can break)."""
    if arrays is None:
        return
    if global_arrays is not None:
        want = {k: tuple(v.shape) for k, v in global_arrays.items()}
        got = {k: tuple(v.shape) for k, v in arrays.items()}
        if got != want:
            missing, extra = sorted(set(want) - set(got)), sorted(set(got) - set(want))
            reshaped = sorted(k for k in set(want) & set(got) if want[k] != got[k])
            raise AggregateLayoutChanged(
                f"The inner strategy's aggregate of nodes {sorted(nodes)} is not the global "
                f"model's layout: {len(missing)} arrays missing {missing[:2]}, {len(extra)} "
                f"added {extra[:2]}, {len(reshaped)} reshaped {reshaped[:2]}.",
                "The previous global model is kept. Check the inner strategy's options "
                "(e.g. MultiKrum's num-nodes-to-select >= 1).")
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
