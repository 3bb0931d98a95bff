"""What one reply can do through the inner strategy and its own declared numbers (found in
review, 2026-12-07): a loss the inner weights by (QFedAvg), an aggregate that is not finite, a
candidate whose probe is no number, strategies that empty the replies' records before
rollback's culprit search, and a declared stderr that widened a client's own test."""

from __future__ import annotations

import logging
import math
import threading
from pathlib import Path

import numpy as np
import pytest
from flwr.app import Array, ArrayRecord, ConfigRecord
from flwr.serverapp.strategy import Bulyan, FedAvg, MultiKrum, QFedAvg

from flwr_trust.errors import TrustError
from flwr_trust.scoring.profile import BehaviorProfile, MetricValue
from flwr_trust.strategies import TrustGuard
from tests.helpers.guard import (
    FakeGrid,
    ensure_task_identity,
    honest_update,
    initial_arrays,
    reply,
)

ensure_task_identity()
INIT = initial_arrays()
INIT_NP = {k: v.numpy() for k, v in INIT.items()}


def _guard(tmp_path: Path, inner=None, **kw) -> TrustGuard:
    return TrustGuard(inner or FedAvg(), model=None, tensorboard=False,
                      run_dir=tmp_path / "run", **kw)


def _round(guard: TrustGuard, n: int, bad: dict | None = None, bad_metrics: dict | None = None,
           loss: float = 1.0) -> tuple[ArrayRecord | None, dict, list]:
    """One train round of n honest replies, the first one replaced by `bad` arrays/metrics
    (a metric set to None is left out)."""
    msgs = sorted(guard.configure_train(1, INIT, ConfigRecord(), FakeGrid(n)),
                  key=lambda m: m.metadata.dst_node_id)
    replies = [reply(m, honest_update(INIT, m.metadata.dst_node_id, 1),
                     {"num-examples": 10, "train_loss": loss}) for m in msgs]
    if bad is not None or bad_metrics is not None:
        metrics = {"num-examples": 10, "train_loss": loss} | (bad_metrics or {})
        metrics = {k: v for k, v in metrics.items() if v is not None}
        replies[0] = reply(msgs[0], bad if bad is not None else
                           honest_update(INIT, msgs[0].metadata.dst_node_id, 1), metrics)
    arrays, metrics = guard.aggregate_train(1, replies)
    return arrays, dict(metrics or {}), replies


def _shift(delta: float) -> dict[str, np.ndarray]:
    return {k: (v + delta).astype(np.float32) for k, v in INIT_NP.items()}


@pytest.mark.parametrize("loss", [-1.0, None, [1.0, 2.0], math.inf])
def test_qfedavg_refuses_a_loss_it_cannot_weigh_by(tmp_path, loss):
    # before: a negative loss made the global model NaN (float_power of a negative), a missing
    # one was dropped from every reply and failed the round for all of them
    guard = _guard(tmp_path, QFedAvg(client_learning_rate=0.1))
    arrays, metrics, _ = _round(guard, 4, bad_metrics={"train_loss": loss})
    assert metrics["trust.replies-refused"] == 1 and metrics["trust.replies-valid"] == 3
    assert arrays is not None and all(np.isfinite(a.numpy()).all() for a in arrays.values())
    reason = next(iter(guard.history[-1].clients.refused.values()))
    assert "loss 'train_loss'" in reason


def test_qfedavg_caps_a_self_declared_loss_like_a_weight(tmp_path, caplog):
    """A reply moving every value by +1 and claiming loss 1e15 took 0.91 of the way before."""
    moved = {}
    for loss in (1.0, 1e15):
        guard = _guard(tmp_path / str(loss), QFedAvg(client_learning_rate=0.1, q=0.1))
        with caplog.at_level(logging.INFO, logger="flwr.trust"):
            arrays, metrics, _ = _round(guard, 4, bad=_shift(1.0),
                                        bad_metrics={"train_loss": loss})
        assert arrays is not None and metrics["trust.replies-refused"] == 0
        moved[loss] = float(np.mean(arrays["layer.b"].numpy() - INIT_NP["layer.b"]))
    assert moved[1.0] < 0.05
    assert moved[1e15] <= 0.5  # at most the default share of the round (max-weight-share)
    assert "losses 'train_loss' of nodes" in caplog.text


def test_the_loss_cap_does_not_overflow_at_a_large_q(tmp_path):
    # 1e15 ** 30 is past float range: the cap works in logs (found in review)
    guard = _guard(tmp_path, QFedAvg(client_learning_rate=0.1, q=30.0))
    arrays, metrics, _ = _round(guard, 4, bad_metrics={"train_loss": 1e15})
    assert metrics["trust.replies-valid"] == 4 and arrays is not None


class _OverflowingFedAvg(FedAvg):
    """FedAvg whose own arithmetic overflows (as QFedAvg's did on a negative loss, or any
    strategy can on values near the float range): its aggregate holds Inf and NaN."""

    def aggregate_train(self, server_round, replies):
        arrays, metrics = super().aggregate_train(server_round, replies)
        broken = {k: np.full_like(v.numpy(), np.inf) for k, v in arrays.items()}
        broken["layer.b"][0] = np.nan
        return ArrayRecord({k: Array(v) for k, v in broken.items()}), metrics


class _NaNMomentsFedAvg(FedAvg):
    """A stateful inner (as FedOpt's moments): round 1 leaves its state NaN, and a NaN state
    makes every later aggregate NaN, unless the guard restores the state it had before."""

    poisoned = False

    def aggregate_train(self, server_round, replies):
        arrays, metrics = super().aggregate_train(server_round, replies)
        self.poisoned |= server_round == 1
        if self.poisoned:
            arrays = ArrayRecord({k: Array(np.full_like(v.numpy(), np.nan))
                                  for k, v in arrays.items()})
        return arrays, metrics


@pytest.mark.parametrize("gate", ["off", "quarantine"])
def test_a_stateful_inner_is_restored_after_a_non_finite_aggregate(tmp_path, gate):
    guard = _guard(tmp_path, _NaNMomentsFedAvg(), gate=gate)
    assert _round(guard, 4)[0] is None  # round 1: refused
    msgs = sorted(guard.configure_train(2, INIT, ConfigRecord(), FakeGrid(4)),
                  key=lambda m: m.metadata.dst_node_id)
    arrays, _ = guard.aggregate_train(2, [reply(m, honest_update(INIT, m.metadata.dst_node_id,
                                                                 2), {"num-examples": 10})
                                          for m in msgs])
    assert arrays is not None and all(np.isfinite(a.numpy()).all() for a in arrays.values())


class _ReshapingFedAvg(FedAvg):
    """Returns the aggregate with one array reshaped and one added."""

    def aggregate_train(self, server_round, replies):
        arrays, metrics = super().aggregate_train(server_round, replies)
        out = {k: v.numpy() for k, v in arrays.items()}
        first = next(iter(out))
        out[first] = out[first].reshape(-1)
        out["extra"] = np.zeros(3, dtype=np.float32)
        return ArrayRecord({k: Array(v) for k, v in out.items()}), metrics


@pytest.mark.parametrize("inner", [MultiKrum(num_nodes_to_select=0), _ReshapingFedAvg()],
                         ids=["multikrum-selects-0", "reshaped"])
@pytest.mark.parametrize("gate", ["off", "rollback"])
def test_an_aggregate_with_another_layout_is_refused(tmp_path, inner, gate):
    """Found in review: MultiKrum told to select 0 nodes returns an empty ArrayRecord, which
    Flower would have made the global model (it replaces it with anything not None)."""
    guard = _guard(tmp_path, inner, gate=gate)
    arrays, _, _ = _round(guard, 4)
    assert arrays is None  # the previous global model is kept
    alarm = next(a for a in guard.alarms if a.mode == "update")
    assert alarm.metric == "aggregate-layout" and "not the global model's layout" in alarm.message


class _LockedFedAvg(FedAvg):
    """An inner holding something deepcopy refuses (a lock; equally a thread or an open file):
    before, the guard's per-round snapshot crashed every round under every gate."""

    def __init__(self, broken: bool = False) -> None:
        super().__init__()
        self.lock = threading.Lock()
        self.broken = broken

    def aggregate_train(self, server_round, replies):
        arrays, metrics = super().aggregate_train(server_round, replies)
        if self.broken:
            arrays = ArrayRecord({k: Array(np.full_like(v.numpy(), np.nan))
                                  for k, v in arrays.items()})
        return arrays, metrics


@pytest.mark.parametrize("gate", ["off", "quarantine"])
def test_an_uncopyable_inner_aggregates_with_one_warning(tmp_path, caplog, gate):
    with caplog.at_level(logging.WARNING, logger="flwr.trust"):
        guard = _guard(tmp_path / "ok", _LockedFedAvg(), gate=gate)
        for _ in range(2):
            arrays, metrics, _ = _round(guard, 4)
            assert arrays is not None and metrics["trust.replies-valid"] == 4
        broken = _guard(tmp_path / "nan", _LockedFedAvg(broken=True), gate=gate)
        assert _round(broken, 4)[0] is None  # a NaN aggregate is still refused
    warned = [r for r in caplog.records if "cannot copy the inner strategy" in r.getMessage()]
    assert len(warned) == 2  # once per guard, not once per round
    assert "_LockedFedAvg" in warned[0].getMessage() and "__deepcopy__" in warned[0].getMessage()


def test_rollback_refuses_an_uncopyable_inner_before_any_round(tmp_path):
    with pytest.raises(TrustError, match="cannot copy the inner strategy _LockedFedAvg") as err:
        _guard(tmp_path, _LockedFedAvg(), gate="rollback")
    assert "gate 'quarantine'" in str(err.value) and "__deepcopy__" in str(err.value)
    assert not (tmp_path / "run").exists()  # nothing half-written


@pytest.mark.parametrize("gate", ["off", "rollback"])
def test_a_non_finite_aggregate_is_refused_whatever_the_gate(tmp_path, gate):
    """A NaN model is no model: whatever the gate, the previous global model is kept (Flower
    keeps it when aggregate_train returns None), with an update alarm saying why."""
    guard = _guard(tmp_path, _OverflowingFedAvg(), gate=gate)
    arrays, metrics, _ = _round(guard, 4)
    assert arrays is None
    record = guard.history[-1]
    assert record.gate.action == "rollback" and "not finite" in record.gate.reason
    assert [a.metric for a in guard.alarms if a.mode == "update"] == ["aggregate-not-finite"]


class _ScoresNaNWhenHuge:
    """A stand-in server prober: a model holding values beyond 1e6 scores NaN (what NaN
    log-likelihoods give through the soft rates), any other 0.9 on 20 items."""

    def probe(self, arrays, suites):
        big = max(float(np.abs(a.numpy()).max()) for a in arrays.values()) > 1e6
        v = math.nan if big else 0.9
        items = tuple([v] * 20)
        value = MetricValue(v, math.nan if big else 0.01, 20, "lower", items)
        return BehaviorProfile({"alignment": {"refusal-rate": value}},
                               {"alignment": suites["alignment"].hash})


@pytest.mark.parametrize("secure,gate", [(False, "rollback"), (True, "rollback"),
                                         (False, "off"), (False, "quarantine")])
def test_a_candidate_that_scores_no_number_is_rolled_back(tmp_path, secure, gate):
    # before: the NaN was skipped as unusable, no test ran, and the gate accepted the model
    guard = _guard(tmp_path, gate=gate, prober=_ScoresNaNWhenHuge(),
                   modes=["alignment"], secure_aggregation=secure, server_probe_items=20)
    arrays, metrics, _ = _round(guard, 2 if not secure else 5, bad=_shift(1e12))
    assert guard.history[-1].gate.action == "rollback"
    assert any(a.evidence.get("test") == "unscorable" for a in guard.alarms)
    assert arrays is not None and np.abs(arrays["layer.b"].numpy()).max() < 1e3


class _FailsAnyTrainedModel:
    """The initial model refuses at 0.9, anything else at 0.5: every candidate fails. Reads
    every array (an emptied record has none: a KeyError, as the real prober's check raises)."""

    probed = 0

    def probe(self, arrays, suites):
        self.probed += 1
        same = all(np.array_equal(arrays[k].numpy(), v) for k, v in INIT_NP.items())
        v = 0.9 if same else 0.5
        value = MetricValue(v, 0.01, 10, "lower", tuple([v] * 10))
        return BehaviorProfile({"alignment": {"refusal-rate": value}},
                               {"alignment": suites["alignment"].hash})


@pytest.mark.parametrize("inner", [lambda: Bulyan(num_malicious_nodes=1),
                                   lambda: QFedAvg(client_learning_rate=0.1)],
                         ids=["bulyan", "qfedavg"])
def test_rollback_culprit_search_after_a_strategy_that_empties_replies(tmp_path, inner):
    # before: Bulyan and QFedAvg emptied the replies' ArrayRecords while aggregating, and the
    # culprit search then probed those empty records as the clients' own models: the run
    # stopped with an ArraysMismatchError
    prober = _FailsAnyTrainedModel()
    guard = _guard(tmp_path, inner(), gate="rollback", prober=prober, modes=["alignment"],
                   server_probe_items=10)
    _round(guard, 7)  # the prober reads every array: an emptied record raises
    assert guard.history[-1].gate.action == "rollback"
    assert prober.probed >= 8  # the candidate and the trials / own models


@pytest.mark.parametrize("declared_se", [0.02, 0.3, 0.5])
def test_a_declared_stderr_cannot_hide_a_degraded_client(tmp_path, declared_se):
    """Honest clear clients send the per-item values the server asks for; a degraded client
    (refusal 0.30 against about 0.93) leaving them out and declaring stderr 0.3 or 0.5 evaded
    its per-client test before; such a stderr now counts at most 3x the others' median."""
    rs = "trust.alignment.refusal-rate"
    guard = _guard(tmp_path, gate="quarantine", modes=["alignment"])
    msgs = sorted(guard.configure_train(1, INIT, ConfigRecord(), FakeGrid(6)),
                  key=lambda m: m.metadata.dst_node_id)
    replies = []
    for i, m in enumerate(msgs):
        value, se = (0.30, declared_se) if i == 0 else (0.90 + 0.01 * i, 0.02)
        items = {} if i == 0 else {rs + ".items": [value + 0.05, value - 0.05] * 16}
        replies.append(reply(m, honest_update(INIT, m.metadata.dst_node_id, 1), {
            "num-examples": 10, "train_loss": 1.0, rs: value, rs + ".stderr": se,
            rs + ".n": 32, rs + ".noise": 0.0, "trust.public-post-processing": 1} | items))
    guard.aggregate_train(1, replies)
    assert guard.history[-1].gate.excluded == [msgs[0].metadata.dst_node_id]
