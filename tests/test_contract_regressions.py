"""The reply-contract cases of issue 13, one readable test each (each failed before the fix).

The fuzz suite (tests/test_guard_fuzz.py) covers the same rules over thousands of generated
replies; these pin the named attacks and operator mistakes with the numbers the issue reported.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
from flwr.app import ConfigRecord, Error, Message
from flwr.serverapp.strategy import DifferentialPrivacyServerSideFixedClipping, FedAvg

from flwr_trust.strategies import TrustGuard
from tests.helpers.guard import FakeGrid, honest_update, initial_arrays, reply, same_arrays


def _guard(tmp_path: Path, inner: object | None = None, **kw: object) -> TrustGuard:
    return TrustGuard(inner or FedAvg(), model=None, tensorboard=False, run_dir=tmp_path / "run",
                      **kw)


def _round(guard: TrustGuard, n: int) -> tuple[list[Message], object]:
    init = initial_arrays()
    msgs = sorted(guard.configure_train(1, init, ConfigRecord(), FakeGrid(n)),
                  key=lambda m: m.metadata.dst_node_id)
    return msgs, init


def _honest(msg: Message, init: object, weight: float = 10, loss: float = 1.0,
            dtype: type = np.float32) -> Message:
    node = msg.metadata.dst_node_id
    arrays = {k: v.astype(dtype) for k, v in honest_update(init, node, 1).items()}
    return reply(msg, arrays, {"num-examples": weight, "train_loss": loss})


def _alone(inner: object, replies: list[Message], n: int) -> object:
    inner.configure_train(1, initial_arrays(), ConfigRecord(), FakeGrid(n))
    return inner.aggregate_train(1, replies)


def test_weight_takeover_is_capped_at_half_the_round(tmp_path):
    """One client of eight claiming 1e14 examples (1e30 before the fix: now outside the valid
    range) gets at most half of the round's weight, not the whole global model."""
    guard = _guard(tmp_path)
    msgs, init = _round(guard, 8)
    replies = [_honest(m, init, weight=1e14 if i == 0 else 10) for i, m in enumerate(msgs)]
    arrays, metrics = guard.aggregate_train(1, replies)
    attacker = honest_update(init, msgs[0].metadata.dst_node_id, 1)
    assert arrays is not None and not same_arrays(arrays, reply(msgs[0], attacker, {}).content[
        "arrays"])
    weights = [float(r.content["metrics"]["num-examples"]) for r in replies]
    assert weights[0] / sum(weights) <= 0.5 + 1e-12


@pytest.mark.parametrize("weight", [1e30, 1e-30, 0, -1, float("nan"), float("inf")])
def test_implausible_weights_are_refused(weight, tmp_path):
    guard = _guard(tmp_path)
    msgs, init = _round(guard, 3)
    replies = [_honest(m, init, weight=weight if i == 0 else 10) for i, m in enumerate(msgs)]
    _, metrics = guard.aggregate_train(1, replies)
    assert metrics["trust.replies-refused"] == 1 and metrics["trust.replies-valid"] == 2
    assert "weight" in next(iter(guard.history[-1].clients.refused.values()))


def test_a_float16_reply_listed_first_cannot_change_the_global_dtype(tmp_path):
    guard = _guard(tmp_path)
    msgs, init = _round(guard, 3)
    replies = [_honest(m, init, dtype=np.float16 if i == 0 else np.float32)
               for i, m in enumerate(msgs)]
    arrays, _ = guard.aggregate_train(1, replies)
    assert arrays is not None
    for arr in arrays.values():
        assert arr.dtype == "float32" and np.isfinite(arr.numpy()).all()


@pytest.mark.parametrize("loss", [float("nan"), 1e30, float("-inf")])
def test_a_non_finite_or_absurd_user_metric_is_refused(loss, tmp_path):
    guard = _guard(tmp_path)
    msgs, init = _round(guard, 3)
    replies = [_honest(m, init, loss=loss if i == 1 else 1.0) for i, m in enumerate(msgs)]
    _, metrics = guard.aggregate_train(1, replies)
    assert metrics["train_loss"] == 1.0 and metrics["trust.replies-refused"] == 1


def test_an_evaluate_reply_cannot_set_the_aggregated_loss_alone(tmp_path):
    guard = _guard(tmp_path)
    init = initial_arrays()
    msgs = sorted(guard.configure_evaluate(1, init, ConfigRecord(), FakeGrid(8)),
                  key=lambda m: m.metadata.dst_node_id)
    replies = [reply(m, None, {"num-examples": 1e14 if i == 0 else 10,
                               "eval_loss": 100.0 if i == 0 else 1.0})
               for i, m in enumerate(msgs)]
    metrics = guard.aggregate_evaluate(1, replies)
    assert metrics is not None and metrics["eval_loss"] <= 50.5  # at most half the weight


def test_aggregate_train_before_configure_train_refuses_instead_of_crashing(tmp_path):
    guard = _guard(tmp_path)
    other = _guard(tmp_path / "other")
    msgs, init = _round(other, 2)
    arrays, metrics = guard.aggregate_train(1, [_honest(m, init) for m in msgs])
    assert arrays is None and metrics["trust.replies-refused"] == 2
    assert "configure_train" in next(iter(guard.history[-1].clients.refused.values()))


def test_client_error_replies_are_logged_and_counted(tmp_path, caplog):
    guard = _guard(tmp_path)
    msgs, init = _round(guard, 3)
    replies = [_honest(m, init) for m in msgs[:2]]
    replies.append(Message(Error(code=7, reason="CUDA out of memory"), reply_to=msgs[2]))
    with caplog.at_level(logging.WARNING, logger="flwr.trust"):
        _, metrics = guard.aggregate_train(1, replies)
    assert metrics["trust.replies-failed"] == 1
    assert any("CUDA out of memory" in r.getMessage() for r in caplog.records)


def test_an_inner_dp_wrapper_sees_every_left_out_reply_as_a_failure(tmp_path):
    """The guard with Flower's server-side DP wrapper gives exactly what the wrapper alone gives
    on the same round, a failed and a refused reply included (its own failure rule applies)."""
    def wrapper() -> DifferentialPrivacyServerSideFixedClipping:
        return DifferentialPrivacyServerSideFixedClipping(
            FedAvg(), noise_multiplier=0.5, clipping_norm=1.0, num_sampled_clients=4)

    guard = _guard(tmp_path, wrapper())
    msgs, init = _round(guard, 4)

    def replies() -> list[Message]:
        out = [_honest(m, init) for m in msgs[:2]]
        out.append(Message(Error(code=7, reason="lost"), reply_to=msgs[2]))
        out.append(_honest(msgs[3], init, weight=float("nan")))  # refused by the guard
        return out

    np.random.seed(3)
    guarded = guard.aggregate_train(1, replies())
    alone_replies = replies()[:3] + [Message(Error(code=0, reason="x"), reply_to=msgs[3])]
    np.random.seed(3)
    alone = _alone(wrapper(), alone_replies, 4)
    assert (guarded[0] is None) == (alone[0] is None)
    if alone[0] is not None:
        assert same_arrays(guarded[0], alone[0])


def test_model_none_as_a_string_means_no_server_model(tmp_path):
    guard = TrustGuard(FedAvg(), model="none", tensorboard=False, run_dir=tmp_path / "run")
    msgs, init = _round(guard, 3)
    arrays, _ = guard.aggregate_train(1, [_honest(m, init) for m in msgs])
    assert arrays is not None


def test_aggregate_evaluate_without_its_configure_refuses_every_reply(tmp_path):
    """Evaluate replies of a round no instruction went to (nodes unknown) were accepted from
    any node, as aggregate_train refuses them."""
    guard = _guard(tmp_path)
    other = _guard(tmp_path / "other")
    init = initial_arrays()
    msgs = other.configure_evaluate(1, init, ConfigRecord(), FakeGrid(4))
    replies = [reply(m, None, {"num-examples": 10, "eval_loss": 1.0}) for m in msgs]
    metrics = guard.aggregate_evaluate(1, replies)
    assert metrics is not None and metrics["trust.replies-refused"] == 4


class _Failing(FedAvg):
    """An inner strategy that cannot aggregate (a misconfigured one), from round `start`."""

    def __init__(self, start: int = 1) -> None:
        super().__init__()
        self.start_round = start

    def aggregate_train(self, server_round, replies):
        if server_round >= self.start_round:
            raise ValueError("slice indices must be integers")
        return super().aggregate_train(server_round, replies)


def test_an_inner_that_never_aggregates_stops_the_run_with_a_clear_error(tmp_path):
    """Every round used to log a warning and keep the initial model: a run that trained
    nothing looked as if it completed. Before any aggregation, with every valid reply left
    in, the inner's failure is a TrustError naming its cause."""
    from flwr_trust.errors import TrustError

    guard = _guard(tmp_path, _Failing())
    msgs, init = _round(guard, 4)
    with pytest.raises(TrustError, match="slice indices must be integers"):
        guard.aggregate_train(1, [_honest(m, init) for m in msgs])


def test_a_later_inner_failure_keeps_the_previous_model(tmp_path, caplog):
    guard = _guard(tmp_path, _Failing(start=2))
    msgs, init = _round(guard, 4)
    arrays, _ = guard.aggregate_train(1, [_honest(m, init) for m in msgs])
    assert arrays is not None
    msgs = sorted(guard.configure_train(2, arrays, ConfigRecord(), FakeGrid(4)),
                  key=lambda m: m.metadata.dst_node_id)
    with caplog.at_level(logging.WARNING, logger="flwr"):
        kept, _ = guard.aggregate_train(2, [_honest(m, arrays) for m in msgs])
    assert kept is None and "global model kept" in caplog.text
