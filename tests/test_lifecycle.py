"""TrustGuard's run lifecycle as a user meets it: started twice, default run folders, wrapped
by another strategy, a first round whose every reply is refused, keys a code-built guard
does not apply."""

from __future__ import annotations

import logging

import pytest
from flwr.app import ConfigRecord, Error, Message
from flwr.serverapp.strategy import FedAvg

from flwr_trust.errors import TrustError
from flwr_trust.strategies import TrustGuard
from flwr_trust.strategies.startup import default_run_dir, unapplied_keys
from tests.helpers.guard import FakeGrid, default_client, initial_arrays, reply, run_rounds


def _guard(tmp_path, **kw) -> TrustGuard:
    return TrustGuard(FedAvg(), model=None, tensorboard=False, run_dir=tmp_path / "run", **kw)


def _client(msg, node, rnd):
    return default_client(msg, node, rnd, initial_arrays())


def test_a_second_start_is_a_clear_error_before_any_client_trains(tmp_path):
    guard = _guard(tmp_path)
    guard.start(FakeGrid(3, _client), initial_arrays(), num_rounds=1)
    sent = []

    def counting(msg, node, rnd):
        sent.append(node)
        return _client(msg, node, rnd)

    with pytest.raises(TrustError, match="already ran"):
        guard.start(FakeGrid(3, counting), initial_arrays(), num_rounds=1)
    assert not sent


def test_default_run_folders_of_one_second_do_not_collide(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    first, second = default_run_dir(), default_run_dir()
    assert first != second and second.name.startswith(first.name)
    assert TrustGuard(FedAvg(), model=None).run_dir != TrustGuard(FedAvg(), model=None).run_dir


def test_a_guard_driven_without_start_warns_once(tmp_path, caplog):
    with caplog.at_level(logging.WARNING, logger="flwr"):
        run_rounds(_guard(tmp_path), 2, n_nodes=3)
    assert caplog.text.count("start() was not called") == 1


def test_a_first_round_whose_every_reply_is_refused_stops_the_run(tmp_path):
    """Flower alone fails on such replies; the guard used to refuse them round after round
    and return no model, as if the run had completed."""
    guard = _guard(tmp_path)
    init = initial_arrays()
    msgs = guard.configure_train(1, init, ConfigRecord(), FakeGrid(3))
    arrays = {k: v.numpy() for k, v in init.items()}
    replies = [reply(m, arrays, {"num_examples": 10}) for m in msgs]  # not the weight key
    with pytest.raises(TrustError, match="Every reply of round 1 was refused.*num-examples"):
        guard.aggregate_train(1, replies)


def test_a_first_round_of_error_replies_stops_the_run_with_the_mods_reason(tmp_path):
    """A client key the mod refuses (a typo) makes every client send an error reply."""
    guard = _guard(tmp_path)
    msgs = guard.configure_train(1, initial_arrays(), ConfigRecord(), FakeGrid(3))
    errors = [Message(Error(code=0, reason="trust_mod: Unknown config key trust.privacy."
                                           "epsilom"), reply_to=m) for m in msgs]
    with pytest.raises(TrustError, match="refused or an error.*epsilom"):
        guard.aggregate_train(1, errors)


def test_keys_a_code_built_guard_does_not_apply_are_named():
    cfg = {"trust.gate": "rollback", "trust.alpha": 0.2, "trust.strategy": "fedprox",
           "trust.fedprox.proximal-mu": 0.1, "trust.tolerance.alignment.refusal-rate": 0.1,
           "trust.model": "tiny", "trust.lora.alpha": 16, "trust.privacy.epsilon": 3.0}
    assert unapplied_keys(cfg) == ["trust.alpha", "trust.fedprox.proximal-mu", "trust.gate",
                                   "trust.strategy", "trust.tolerance.alignment.refusal-rate"]


def test_a_stopped_run_closes_its_records_and_cannot_start_again(tmp_path):
    """The stop wrote the round but no run-end record: a rerun with the same folder resumed
    the misconfigured run, and the same guard could run a second time into the open log."""
    from flwr_trust.report.audit import read_log

    guard = _guard(tmp_path)
    msgs = guard.configure_train(1, initial_arrays(), ConfigRecord(), FakeGrid(3))
    arrays = {k: v.numpy() for k, v in initial_arrays().items()}
    with pytest.raises(TrustError, match="Every reply"):
        guard.aggregate_train(1, [reply(m, arrays, {"num_examples": 10}) for m in msgs])
    kinds = [r["kind"] for r in read_log(guard.run_dir / "audit.jsonl")]
    assert kinds[-1] == "run-end"
    with pytest.raises(TrustError, match="already ran"):
        guard.configure_train(2, initial_arrays(), ConfigRecord(), FakeGrid(3))
    with pytest.raises(TrustError, match="already ended"):
        _guard(tmp_path).configure_train(1, initial_arrays(), ConfigRecord(), FakeGrid(3))


def test_lost_nodes_in_the_first_round_do_not_stop_the_run(tmp_path):
    """A SuperLink "Node Unavailable" error may be transient: only refusals and the mod's own
    errors count as a misconfiguration."""
    guard = _guard(tmp_path)
    msgs = guard.configure_train(1, initial_arrays(), ConfigRecord(), FakeGrid(3))
    lost = [Message(Error(code=0, reason="Node Unavailable"), reply_to=m) for m in msgs]
    arrays, _ = guard.aggregate_train(1, lost)
    assert arrays is None
