"""trust_mod on Flower's own Message/Context objects: what each message type gets, bad input,
policy vetoes, private metrics within a budget, shift, personalization, key consistency."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from flwr.app import ArrayRecord, ConfigRecord, Message, MetricRecord, RecordDict
from flwr.common.constant import ErrorCode
from flwr.serverapp.strategy.strategy_utils import validate_message_reply_consistency

from flwr_trust import modes
from flwr_trust.models import get_bridge
from flwr_trust.modes import MODES
from flwr_trust.mods import make_trust_mod, provide_local_data
from flwr_trust.probes import sample_suites
from flwr_trust.protocol import STATUS, hash_to_int
from flwr_trust.scoring.runner import profile_model
from tests.helpers.mods import (
    SUITE_HASH,
    SUITES,
    TINY_DEFAULTS,
    context,
    echo_train,
    evaluate_app,
    loaded_model,
    lora_arrays,
    message,
    metrics_of,
    mod_bridge,
    single_thread,
)

TRAIN_TEXTS = [f"Local sentence number {i} about boats and rivers." for i in range(12)]
HELD_TEXTS = [f"A held-out sentence {i} about rivers." for i in range(8)]
GROUPS = ["formal", "casual"] * 4

@pytest.fixture(autouse=True)
def _one_thread():
    with single_thread():
        yield



def _mod(**extra):
    return make_trust_mod(suites=SUITES, defaults=TINY_DEFAULTS | extra,
                          rng=np.random.default_rng(0))


def _with_data(fn, train=TRAIN_TEXTS, canaries=()):
    def wrapped(msg, ctx):
        provide_local_data(ctx, train=train, heldout=HELD_TEXTS, heldout_groups=GROUPS,
                           canaries=canaries)
        return fn(msg, ctx)
    return wrapped


def test_train_reply_has_every_mode_and_no_extra_record():
    reply = _mod()(message("train"), context(), _with_data(echo_train(1), canaries=["m-1"]))
    content = reply.content
    assert (len(content.array_records), len(content.metric_records),
            len(content.config_records)) == (1, 1, 0)
    m = metrics_of(reply)
    assert m["train_loss"] == 1.0 and m["num-examples"] == 4  # the app's own metrics stay
    for mode in MODES:
        keys = [k for k in m if k.startswith(f"trust.{mode}.") and k.endswith(".n")]
        assert keys and all(m[k] > 0 for k in keys), mode
    assert m["trust.suite-hash"] == hash_to_int(SUITE_HASH)
    assert m["trust.public-post-processing"] == 1
    assert all(v == 0.0 for k, v in m.items()  # public metrics: post-processing, no noise
               if k.endswith(".noise") and not k.startswith("trust.shift."))
    assert (m["trust.round"], m["trust.probe-budget"]) == (1, 32)
    assert m["trust.status.outgoing"] == STATUS["ok"]


def test_public_canaries_are_probed_only_by_clients_that_planted_some():
    """Without declared canaries the memorization probe is chance: its keys are sent absent
    (the same keys as a planting client's reply), and no forward pass is spent on it."""
    planted = metrics_of(_mod()(message("train"), context(),
                                _with_data(echo_train(1), canaries=["m-1"])))
    plain = metrics_of(_mod()(message("train"), context(), echo_train(1)))
    assert set(plain) == set(planted)
    assert plain["trust.memorization.canary-exposure.n"] == 0
    assert planted["trust.memorization.canary-exposure.n"] > 0
    assert plain["trust.alignment.refusal-rate.n"] > 0


def test_evaluate_reports_the_received_model_exactly_on_this_rounds_sample():
    arrays = lora_arrays(5)
    reply = _mod(**{"trust.probe-budget": 4})(
        message("evaluate", arrays, round=3, extra_config={"trust.probe-budget": 3}),
        context(), evaluate_app)
    m = metrics_of(reply)
    bridge = mod_bridge()
    bridge.load_arrays(arrays)
    expected = profile_model(bridge.model, bridge.tokenizer, sample_suites(SUITES, 3, 3),
                             precision="fp32")
    assert m["trust.probe-budget"] == 3  # the server's budget wins
    for mode, name in [("alignment", "refusal-margin"), ("capability", "accuracy"),
                       ("bias", "stereotype-margin")]:
        mv = expected.get(mode, name)
        assert m[f"trust.{mode}.{name}"] == pytest.approx(mv.value, abs=1e-9)
        assert m[f"trust.{mode}.{name}.n"] == mv.n
    assert m["eval_loss"] == 2.0


def test_other_messages_pass_through_untouched():
    mod = _mod()
    msg = message("query")
    seen = []

    def app(m, ctx):
        seen.append(m)
        return Message(RecordDict({"metrics": MetricRecord({"x": 1.0})}), reply_to=m)

    reply = mod(msg, context(), app)
    assert seen[0] is msg and dict(reply.content["metrics"]) == {"x": 1.0}
    off = mod(message("train"), context({"trust.client.enabled": False}), echo_train())
    assert not any(k.startswith("trust.") for k in metrics_of(off))


def test_reply_without_metric_record_gets_one():
    reply = _mod()(message("train"), context(), echo_train(metrics=False))
    assert "metrics" in reply.content.metric_records
    assert "trust.alignment.refusal-rate" in metrics_of(reply)


def _expect_error(reply: Message, *words: str) -> str:
    assert reply.has_error(), "expected an error reply"
    assert reply.error.code == ErrorCode.MOD_FAILED_PRECONDITION
    for word in words:
        assert word in reply.error.reason, reply.error.reason
    return reply.error.reason


def _never_called(msg, ctx):
    raise AssertionError("the app must not run")


def test_malformed_config_is_an_error_reply_naming_the_key():
    reply = _mod()(message("train"), context({"trust.privacy.delta": 3}), _never_called)
    _expect_error(reply, "trust.privacy.delta")


def test_unknown_suite_hash_is_an_error_reply():
    reply = _mod()(message("train", suite_hash="ab" * 32), context(), _never_called)
    _expect_error(reply, "does not match")


def _warm_mod(**extra):
    """A mod that has a model at hand before the app runs (its own copy, loaded by an
    earlier message): it checks the incoming arrays before the app is called."""
    mod = _mod(**extra)
    metrics_of(mod(message("evaluate"), context(), evaluate_app))
    return mod


class _Spy:
    """A train function that records whether it ran."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, msg, ctx):
        self.calls += 1
        return echo_train()(msg, ctx)


def test_unloadable_arrays_are_an_error_reply_naming_the_cause():
    good = lora_arrays(0)
    key = next(iter(good.keys()))
    bad = ArrayRecord({k: torch.as_tensor(v.numpy()) for k, v in good.items()}
                      | {key: torch.zeros(3, 3)})
    _expect_error(_warm_mod()(message("train", bad), context(), _never_called),
                  "wrong shape", key)
    _expect_error(_warm_mod()(message("evaluate", bad), context(), _never_called),
                  "wrong shape")
    # No model at hand yet (first message, nothing registered): nothing is loaded just to
    # check; the check runs once the app returned, and the reply is still the error.
    spy = _Spy()
    _expect_error(_mod()(message("train", bad), context(), spy), "wrong shape", key)
    assert spy.calls == 1


def test_exceptions_in_the_mod_become_error_replies():
    def broken_loader(ctx):
        raise RuntimeError("disk on fire")

    mod = make_trust_mod(suites=SUITES, defaults=TINY_DEFAULTS, model_loader=broken_loader)
    _expect_error(mod(message("evaluate"), context(), evaluate_app), "RuntimeError", "disk on fire")


def test_policy_violation_is_reported_or_refused():
    policy = {"trust.policy.rules": "alignment.refusal-rate >= 1.01"}  # no model can meet it
    report = _mod()(message("train"), context(node_config=policy), echo_train())
    m = metrics_of(report)
    assert (m["trust.veto"], m["trust.veto.rules"]) == (1, 1)
    assert m["trust.status.incoming"] == STATUS["ok"]
    refuse = policy | {"trust.policy.action": "refuse"}
    refused = _warm_mod()(message("train"), context(refuse), _never_called)
    reason = _expect_error(refused, "trust_mod veto", "alignment.refusal-rate", ">= 1.01")
    assert "n=" in reason
    spy = _Spy()  # no model at hand before the app: vetoed after it, the update is not sent
    late = _mod()(message("train"), context(refuse), spy)
    assert spy.calls == 1
    assert _expect_error(late, "trust_mod veto") == reason
    ok = _mod()(message("train"), context({"trust.policy.rules": "alignment.refusal-rate >= 0"}),
                echo_train())
    assert metrics_of(ok)["trust.veto"] == 0


def test_private_metrics_are_noised_at_the_stated_scale():
    sigma, bound = 3.0, 4.0
    mod = _mod(**{"trust.privacy.noise-multiplier": sigma, "trust.privacy.loss-bound": bound,
                  "trust.local-data.groups": "formal,casual,absent-group",
                  "trust.privacy.epsilon": 1e6})
    m = metrics_of(mod(message("evaluate"), context(), _with_data(evaluate_app, canaries=["m-1"])))
    n = len(HELD_TEXTS)
    assert m["trust.fairness.local-loss.n"] == n
    assert m["trust.fairness.local-loss.noise"] == pytest.approx(sigma * bound / n)
    assert m["trust.fairness.local-loss/formal.noise"] == pytest.approx(sigma * bound / 4)
    assert m["trust.fairness.local-loss/absent-group.n"] == 0
    assert m["trust.memorization.loss-gap.noise"] == pytest.approx(sigma * bound / n)
    assert m["trust.memorization.local-canary-exposure.n"] == 1
    assert m["trust.memorization.local-canary-exposure.noise"] == pytest.approx(sigma * 3.0)
    assert m["trust.fairness.local-loss.stderr"] == pytest.approx(bound / (2 * math.sqrt(n)))
    assert m["trust.privacy.releases"] == 1 and m["trust.privacy.epsilon"] > 0
    assert m["trust.public-post-processing"] == 1  # the global model's public metrics: clear
    assert m["trust.status.private"] == STATUS["ok"]


def test_without_local_data_private_metrics_are_absent_and_say_why():
    m = metrics_of(_mod()(message("evaluate"), context(), evaluate_app))
    assert m["trust.fairness.local-loss.n"] == 0 and m["trust.memorization.loss-gap.n"] == 0
    assert m["trust.status.private"] == STATUS["no-local-data"]
    assert m["trust.privacy.releases"] == 0


def test_budget_exhaustion_stops_private_metrics_but_not_training(caplog):
    # 3 statistics (local loss, loss gap, shift) per release at sigma 4: epsilon after k
    # releases is 1.85, 2.71, 3.41, 4.01, ... so a budget of 3.6 allows three.
    mod = _mod(**{"trust.privacy.epsilon": 3.6, "trust.privacy.noise-multiplier": 4.0,
                  "trust.local-data.messages": "train"})
    ctx = context()
    app = _with_data(echo_train(1))
    rounds = [metrics_of(mod(message("train", round=r), ctx, app)) for r in range(1, 6)]
    exhausted = [m["trust.privacy.exhausted"] for m in rounds]
    assert exhausted == [0, 0, 0, 1, 1]
    assert [m["trust.privacy.releases"] for m in rounds] == [1, 2, 3, 3, 3]
    first = exhausted.index(1)
    assert all(m["trust.privacy.epsilon"] <= 3.6 for m in rounds)
    late = rounds[first]
    assert late["trust.fairness.local-loss.n"] == 0
    assert late["trust.status.private"] == STATUS["budget-exhausted"]
    assert late["trust.alignment.refusal-rate.n"] > 0  # public metrics still flow
    assert late["train_loss"] == 1.0
    assert sum("privacy budget exhausted" in r.getMessage() for r in caplog.records) == 1


def test_replies_of_a_round_have_identical_keys_for_fedavg():
    mod = _mod(**{"trust.local-data.messages": "train,evaluate",
                  "trust.local-data.groups": "formal,casual", "trust.probe-incoming": True})
    replies = []
    for node, app in ((1, _with_data(echo_train(1))), (2, echo_train(2))):
        ctx = context(node_id=node, node_config={"trust.privacy.epsilon": 0.01 * node})
        replies.append(mod(message("train"), ctx, app))
    assert {len(metrics_of(r)) for r in replies} == {len(metrics_of(replies[0]))}
    validate_message_reply_consistency([r.content for r in replies], "num-examples", True)


def test_delta_is_outgoing_minus_incoming():
    m = metrics_of(_mod(**{"trust.probe-incoming": True})(
        message("train", lora_arrays(1)), context(), echo_train(3)))
    for key in ("capability.log-ppl", "alignment.refusal-margin", "bias.stereotype-margin"):
        assert m[f"trust.delta.{key}"] != 0.0
    incoming = profile_model(*loaded_model(lora_arrays(1)), sample_suites(SUITES, 1, 32),
                             precision="fp32")
    expected = m["trust.capability.log-ppl"] - incoming.get("capability", "log-ppl").value
    assert m["trust.delta.capability.log-ppl"] == pytest.approx(expected, abs=1e-9)


def test_hidden_outgoing_model_is_released_privately():
    sigma = 2.0
    m = metrics_of(_mod(**{"trust.privacy.outgoing": "private",
                           "trust.privacy.noise-multiplier": sigma,
                           "trust.privacy.epsilon": 1e6})(message("train"), context(),
                                                          _with_data(echo_train(),
                                                                     canaries=["m-1"])))
    assert m["trust.public-post-processing"] == 0
    assert m["trust.alignment.refusal-rate.noise"] == pytest.approx(sigma * 1.0)
    assert m["trust.memorization.canary-exposure.noise"] == pytest.approx(sigma * 3.0)
    assert m["trust.alignment.refusal-margin.n"] == 0  # only headline metrics leave
    assert m["trust.capability.log-ppl.n"] == 0
    assert m["trust.privacy.releases"] == 1


def test_personalized_model_with_local_only_layers():
    full = lora_arrays(7)
    shared = ArrayRecord({k: v for k, v in full.items() if ".layers.0." in k})
    local = ArrayRecord({k: v for k, v in full.items() if ".layers.0." not in k})

    def app(msg, ctx):
        ctx.state["personal"] = local
        return Message(RecordDict({"arrays": msg.content["arrays"],
                                   "metrics": MetricRecord({"num-examples": 1})}), reply_to=msg)

    mod = _mod(**{"trust.personalized.state-key": "personal", "trust.privacy.epsilon": 1e6})
    m = metrics_of(mod(message("train", shared), context(), app))
    assert m["trust.status.personal"] == STATUS["ok"]
    for mode in MODES:
        name = modes.get(mode).headline.name
        assert m[f"trust.personal.{mode}.{name}.noise"] > 0
        assert m[f"trust.personal.{mode}.{name}.n"] > 0
    assert m["trust.status.outgoing"] == STATUS["ok"]  # shared-only arrays were completed


def test_shift_reports_how_far_local_data_moved():
    mod = _mod(**{"trust.privacy.noise-multiplier": 0.05, "trust.privacy.epsilon": 1e9})
    same, moved = context(), context()
    boats = [f"boats sail on the river number {i}" for i in range(40)]
    code = [f"def f{i}(x): return x * {i} + 1  # python" for i in range(40)]
    for rnd, (a, b) in enumerate([(boats, boats), (boats, code)], start=1):
        m_same = metrics_of(mod(message("train", round=rnd), same, _with_data(echo_train(), a)))
        m_moved = metrics_of(mod(message("train", round=rnd), moved, _with_data(echo_train(), b)))
    assert m_same["trust.shift.from-earlier.n"] == 40
    assert m_moved["trust.shift.from-earlier"] > 10 * max(m_same["trust.shift.from-earlier"],
                                                          m_same["trust.shift.from-earlier.noise"])
    assert m_same["trust.shift.from-reference.n"] == 40
    assert m_same["trust.shift.from-reference.noise"] > 0
    assert m_same["trust.status.shift"] == STATUS["ok"]


def test_base_model_is_not_reloaded_and_the_apps_adapter_is_restored():
    from peft import LoraConfig

    app_bridge = get_bridge("tiny", LoraConfig(r=2, lora_alpha=4, target_modules=["k_proj"]))
    weight = app_bridge.model.get_base_model().model.embed_tokens.weight
    mod = _mod()
    ctx = context()
    for rnd in (1, 2, 3):
        msg = message("train", round=rnd)
        app_bridge.activate()
        reply = mod(msg, ctx, echo_train())
        assert not reply.has_error()
        assert app_bridge.model.active_adapter == app_bridge.adapter_name
    assert mod_bridge().model.get_base_model().model.embed_tokens.weight is weight


def test_legacy_index_keyed_arrays_are_named_in_state_dict_order():
    from flwr_trust.reporter.probing import prepare_arrays

    bridge = mod_bridge()
    named = lora_arrays(2)
    legacy = ArrayRecord({str(i): named[k] for i, k in enumerate(bridge.state_dict())})
    out = prepare_arrays(bridge, legacy)
    assert list(out.keys()) == list(bridge.state_dict().keys())


def test_server_trust_config_in_any_config_record_is_read():
    content = RecordDict({"arrays": lora_arrays(0),
                          "fitins.config": ConfigRecord({"trust.suite-hash": SUITE_HASH,
                                                         "trust.round": 9})})
    msg = message("train")
    msg2 = Message(content=content, metadata=msg.metadata)
    m = metrics_of(_mod()(msg2, context(), echo_train()))
    assert m["trust.round"] == 9


def test_unknown_canary_ids_are_an_error_that_does_not_name_them():
    reply = _mod()(message("evaluate"), context(),
                   _with_data(evaluate_app, canaries=["m-1", "secret-canary-77"]))
    reason = _expect_error(reply, "1 declared canary ids")
    assert "secret-canary-77" not in reason


def test_evaluate_does_not_rescore_a_global_model_the_server_probes():
    """With trust.server-probe = 1 the server has the global model's exact numbers: the client
    only validates it and computes its private metrics (docs/protocol.md, "Who probes what")."""
    msg = message("evaluate", extra_config={"trust.server-probe": 1})
    m = metrics_of(_mod()(msg, context(), _with_data(evaluate_app)))
    assert m["trust.status.incoming"] == STATUS["server-probed"]
    assert not [k for k in m if k.startswith("trust.alignment.")]
    assert m["trust.fairness.local-loss.n"] > 0  # private metrics still reported
