"""trust_mod next to Flower's own mods, in either order, and with per-function mods.

Everything runs on Flower's own objects: clipping and local-DP mods through a real ClientApp;
SecAgg+ with Flower's own server workflow (SecAggPlusWorkflow) driving secaggplus_mod.
"""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
from flwr.app import ArrayRecord, ConfigRecord, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp
from flwr.clientapp.mod import LocalDpMod, adaptiveclipping_mod, fixedclipping_mod
from flwr.supercore.differential_privacy import KEY_CLIPPING_NORM, KEY_NORM_BIT

from flwr_trust import protocol
from flwr_trust.mods import make_trust_mod
from flwr_trust.probes import sample_suites
from flwr_trust.scoring.runner import profile_model
from tests.helpers.mods import (
    SUITES,
    TINY_DEFAULTS,
    context,
    echo_train,
    evaluate_app,
    loaded_model,
    message,
    metrics_of,
    single_thread,
)


@pytest.fixture(autouse=True)
def _one_thread():
    with single_thread():
        yield


def _trust():
    return make_trust_mod(suites=SUITES, defaults=TINY_DEFAULTS | {"trust.probe-budget": 4},
                          rng=np.random.default_rng(0))


def _local_dp():
    return LocalDpMod(clipping_norm=0.05, sensitivity=0.05, epsilon=5.0, delta=1e-5)


FLOWER_MODS = {"fixedclipping": lambda: fixedclipping_mod,
               "adaptiveclipping": lambda: adaptiveclipping_mod, "localdp": _local_dp}


def _run(app: ClientApp, kind: str = "train") -> Message:
    msg = message(kind, extra_config={KEY_CLIPPING_NORM: 0.05})
    return app(msg, context())


def _check(reply: Message, flower: str) -> dict:
    m = metrics_of(reply)  # also: no error, exactly one MetricRecord
    assert len(reply.content.array_records) == 1
    assert all(f"trust.{mode}.accuracy" in m or f"trust.{mode}.refusal-rate" in m
               or f"trust.{mode}.stereotype-pref" in m or f"trust.{mode}.ece" in m
               or f"trust.{mode}.canary-exposure" in m
               for mode in ("capability", "alignment", "bias", "calibration", "memorization"))
    if flower == "adaptiveclipping":
        assert KEY_NORM_BIT in m
    return m


def _outgoing_profile(reply: Message):
    arrays = next(iter(reply.content.array_records.values()))
    return profile_model(*loaded_model(arrays), sample_suites(SUITES, 1, 4), precision="fp32")


@pytest.mark.parametrize("flower", sorted(FLOWER_MODS))
def test_trust_first_probes_exactly_what_the_server_receives(flower):
    app = ClientApp(mods=[_trust(), FLOWER_MODS[flower]()])
    app.train()(echo_train(20))  # a large update, so that clipping changes the model
    reply = _run(app)
    m = _check(reply, flower)
    server_view = _outgoing_profile(reply)
    # Every metric the client reports is the server's own measurement of the arrays it
    # receives. Two float32 forward passes batched differently agree to about 1e-7 relative
    # (localdp's noisy arrays showed 7e-8 in CI); margins are differences of log-probability
    # sums of size ~30, so they agree to a few 1e-6 absolute: float32 rounding, no more.
    compared = 0
    for mode, values in server_view.metrics.items():
        for name, mv in values.items():
            key = protocol.metric_key(mode, name)
            if m.get(key + ".n", 0) > 0:
                assert m[key] == pytest.approx(mv.value, rel=1e-6, abs=1e-5), key
                compared += 1
            elif math.isnan(mv.stderr) and mv.n == 1:  # e.g. log-ppl on one passage: its
                assert m.get(key + ".n", 0) == 0  # stderr is unknown, so it is sent absent
    assert compared >= 15


@pytest.mark.parametrize("flower", sorted(FLOWER_MODS))
def test_trust_after_a_flower_mod_still_reports(flower):
    app = ClientApp(mods=[FLOWER_MODS[flower](), _trust()])
    app.train()(echo_train(20))
    _check(_run(app), flower)


@pytest.mark.parametrize("flower", sorted(FLOWER_MODS))
def test_with_per_function_mods(flower):
    app = ClientApp(mods=[_trust()])
    app.train(mods=[FLOWER_MODS[flower]()])(echo_train(20))
    app.evaluate()(evaluate_app)  # evaluate: trust only (clipping mods are train-only in use)
    _check(_run(app), flower)
    ev = metrics_of(_run(app, "evaluate"))
    assert ev["eval_loss"] == 2.0 and ev["trust.capability.accuracy.n"] > 0


def test_trust_as_a_per_function_mod_only_on_train():
    app = ClientApp()
    app.train(mods=[_trust(), fixedclipping_mod])(echo_train(1))
    app.evaluate()(evaluate_app)
    _check(_run(app), "fixedclipping")
    ev = metrics_of(_run(app, "evaluate"))
    assert not any(k.startswith("trust.") for k in ev)


def test_secagg_key_exchange_messages_pass_through_untouched():
    """Outside secaggplus_mod, trust_mod sees every SecAgg+ stage message; only the stage that
    trains is its business."""
    content = RecordDict({"secaggplus_configs": ConfigRecord({"stage": "setup",
                                                              "sample_num": 2})})
    msg = message("train")
    setup = Message(content=content, metadata=msg.metadata)
    seen = []

    def secagg_like(m, ctx):
        seen.append(m)
        return Message(RecordDict({"secaggplus_configs": ConfigRecord({"pk1": b"k"})}),
                       reply_to=m)

    reply = _trust()(setup, context(), secagg_like)
    assert seen == [setup]
    assert list(reply.content.keys()) == ["secaggplus_configs"]


def test_secagg_collect_stage_seen_from_outside_reports_the_model_as_hidden():
    """Outside secaggplus_mod the reply's arrays are masked away: no outgoing probe, and the
    report says so (trust.status.outgoing = model-unavailable)."""
    msg = message("train")
    content = RecordDict({"fitins.parameters": msg.content["arrays"],
                          "fitins.config": ConfigRecord({"trust.round": 1}),
                          "secaggplus_configs": ConfigRecord({"stage":
                                                              "collect_masked_vectors"})})
    collect = Message(content=content, metadata=msg.metadata)

    def masked(m, ctx):  # what secaggplus_mod returns at this stage
        return Message(RecordDict({"fitres.parameters": ArrayRecord(),
                                   "fitres.num_examples": MetricRecord({"num_examples": 4}),
                                   "secaggplus_configs": ConfigRecord({"masked_params": [b"x"]})}),
                       reply_to=m)

    m = metrics_of(_trust()(collect, context(), masked))
    assert m["trust.status.outgoing"] == 5 and m["num_examples"] == 4
    assert not any(k.startswith("trust.alignment.") for k in m)


# ------------------------------------------------- SecAgg+: Flower's real server workflow

class _InProcessGrid:
    """A Grid that delivers each message to the ClientApp of its node in this process (a
    copy of it, as a transport would) and keeps every reply: Flower's own SecAgg+ server
    workflow drives Flower's own secaggplus_mod, without starting Ray."""

    def __init__(self, app: ClientApp, nodes: int) -> None:
        from types import SimpleNamespace

        self.app = app
        self.run = SimpleNamespace(run_id=1)
        self.contexts = {nid: context(node_id=nid) for nid in range(1, nodes + 1)}
        self.replies: list[Message] = []

    def get_node_ids(self) -> list[int]:
        return list(self.contexts)

    def send_and_receive(self, messages, *args, **kwargs) -> list[Message]:
        out = []
        for msg in messages:
            reply = self.app(copy.deepcopy(msg), self.contexts[msg.metadata.dst_node_id])
            out.append(copy.deepcopy(reply))
        self.replies.extend(out)
        return out


@pytest.fixture
def server_identity():
    """A ServerApp's task identity for the test, then the previous one again (None: unset),
    through Flower's public properties (their getters raise RuntimeError when unset)."""
    from flwr.supercore.task_identity import TaskIdentity

    saved: dict[str, int | None] = {}
    for name in ("run_id", "node_id", "task_id"):
        try:
            saved[name] = getattr(TaskIdentity, name)
        except RuntimeError:
            saved[name] = None
    TaskIdentity.run_id, TaskIdentity.node_id, TaskIdentity.task_id = 1, 0, 1
    yield
    for name, value in saved.items():
        setattr(TaskIdentity, name, value)


def _secagg_round(trust_first: bool) -> list[Message]:
    from flwr.client import NumPyClient
    from flwr.client.mod import secaggplus_mod
    from flwr.common import ndarrays_to_parameters
    from flwr.server import LegacyContext, ServerConfig
    from flwr.server.strategy import FedAvg
    from flwr.server.workflow import DefaultWorkflow, SecAggPlusWorkflow

    from tests.helpers.mods import lora_arrays

    start = [a.numpy() for a in lora_arrays(0).values()]

    class Client(NumPyClient):
        def fit(self, parameters, config):
            return [p + 0.5 for p in parameters], 4, {}

    trust = make_trust_mod(suites=SUITES, defaults=TINY_DEFAULTS | {
        "trust.probe-budget": 2, "trust.modes": "alignment,capability",
        "trust.probe-incoming": True, "trust.privacy.epsilon": 1e6})
    mods = [trust, secaggplus_mod] if trust_first else [secaggplus_mod, trust]
    grid = _InProcessGrid(ClientApp(client_fn=lambda ctx: Client().to_client(), mods=mods), 3)
    strategy = FedAvg(fraction_fit=1.0, fraction_evaluate=0.0, min_fit_clients=3,
                      min_available_clients=3, initial_parameters=ndarrays_to_parameters(start))
    legacy = LegacyContext(context=context(), config=ServerConfig(num_rounds=1),
                           strategy=strategy)
    DefaultWorkflow(fit_workflow=SecAggPlusWorkflow(num_shares=3, reconstruction_threshold=2))(
        grid, legacy)
    assert not any(r.has_error() for r in grid.replies)
    # The protocol completed: the unmasked aggregate is the clients' common update (up to
    # SecAgg+'s quantization).
    final = legacy.state.array_records["parameters"].to_numpy_ndarrays()
    for got, first in zip(final, start, strict=True):
        np.testing.assert_allclose(got, first + 0.5, atol=3e-3)
    return [r for r in grid.replies if "fitres.num_examples" in r.content.metric_records]


def test_secaggplus_with_trust_inside_noises_the_hidden_model(server_identity):
    trained = _secagg_round(trust_first=False)
    assert len(trained) == 3
    for reply in trained:
        m = dict(reply.content.metric_records["fitres.num_examples"])
        assert m["trust.public-post-processing"] == 0  # hidden by SecAgg+: noised
        assert m["trust.alignment.refusal-rate.noise"] > 0
        assert m["trust.capability.accuracy.n"] > 0
        assert m["trust.privacy.releases"] == 1
        assert all(len(a) == 0 for a in reply.content.array_records.values())  # still masked


def test_secaggplus_with_trust_outside_sees_only_the_global_model(server_identity):
    trained = _secagg_round(trust_first=True)
    assert len(trained) == 3
    for reply in trained:
        m = dict(reply.content.metric_records["fitres.num_examples"])
        assert m["trust.status.outgoing"] == 5  # masked away before trust_mod sees it
        assert m["trust.status.incoming"] == 0  # the global model was probed
        assert m["trust.privacy.releases"] == 0
