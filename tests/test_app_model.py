"""The mod probes the app's own model (use_model): one copy of the base model per client, the
probed adapter is the one the reply carries, and the app's model is left bit for bit as it was
(weights of every adapter, train/eval flags, requires_grad, gradients, active adapter, device,
parameter objects and storage)."""

from __future__ import annotations

import copy
import gc
import logging
import weakref

import numpy as np
import pytest
import torch
from flwr.app import ArrayRecord, Message, MetricRecord, RecordDict
from peft import LoraConfig, get_peft_model, get_peft_model_state_dict, set_peft_model_state_dict

from flwr_trust import modes
from flwr_trust.models import registered
from flwr_trust.models.tiny import build_tiny_model, build_tiny_tokenizer
from flwr_trust.mods import make_trust_mod, provide_local_data, use_model
from flwr_trust.probes import sample_suites
from flwr_trust.protocol import STATUS
from flwr_trust.scoring.runner import profile_model
from tests.helpers.mods import SUITES, TINY_DEFAULTS, context, message, metrics_of, single_thread

TEXTS = [f"Local sentence number {i} about boats and rivers." for i in range(8)]
HELD = [f"A held-out sentence {i} about rivers." for i in range(6)]
CHECKED = [("alignment", "refusal-margin"), ("capability", "accuracy"),
           ("bias", "stereotype-margin")]


@pytest.fixture(autouse=True)
def _isolated():
    registered.forget()
    with single_thread():
        yield
    registered.forget()


def tiny_app_model(seed: int = 0):
    """A FlowerTune-style model built in code: tiny Llama + LoRA (dropout on), a second,
    inactive adapter, one frozen module switched to eval and one base weight trainable."""
    base = build_tiny_model(seed)
    model = get_peft_model(base, LoraConfig(r=4, lora_alpha=8, lora_dropout=0.1,
                                            target_modules=["q_proj", "v_proj"]))
    model.add_adapter("other", LoraConfig(r=2, lora_alpha=4, target_modules=["k_proj"]))
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:  # non-zero adapters, so that writes are visible
                p.copy_(torch.randn(p.shape, generator=torch.Generator().manual_seed(7)) * 0.1)
    model.set_adapter("default")
    model.train()
    model.get_base_model().model.layers[1].mlp.eval()
    model.get_base_model().model.norm.weight.requires_grad_(True)
    return model, build_tiny_tokenizer()


def state(model) -> dict:
    """Everything probing could change, as comparable values (tensors as raw bytes)."""
    def raw(t: torch.Tensor) -> bytes:
        return t.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes()

    sd = model.state_dict()
    return {"tensors": {k: (raw(v), v.dtype, v.device, tuple(v.shape)) for k, v in sd.items()},
            "storage": {k: v.data_ptr() for k, v in sd.items()},
            "params": {n: id(p) for n, p in model.named_parameters()},
            "training": {n: m.training for n, m in model.named_modules()},
            "requires_grad": {n: p.requires_grad for n, p in model.named_parameters()},
            "grads": {n: None if p.grad is None else raw(p.grad)
                      for n, p in model.named_parameters()},
            "active": list(model.active_adapters)}


class App:
    """A FlowerTune-like ClientApp function: load the arrays, train a few AdamW steps on the
    LoRA weights, register the model, reply with its adapter (optionally scaled, to send
    something other than the trained state). Records the model's state at entry and return."""

    def __init__(self, model, tokenizer, *, steps: int = 2, send_scale: float = 1.0,
                 register: bool = True) -> None:
        self.model, self.tokenizer = model, tokenizer
        self.steps, self.send_scale, self.register = steps, send_scale, register
        self.at_entry: dict | None = None
        self.at_return: dict | None = None
        self.sent: dict[str, torch.Tensor] = {}

    def train(self, msg: Message, ctx) -> Message:
        self.at_entry = state(self.model)
        model = self.model
        set_peft_model_state_dict(model, msg.content["arrays"].to_torch_state_dict())
        if self.register:
            use_model(ctx, model, self.tokenizer)
        provide_local_data(ctx, train=TEXTS, heldout=HELD)
        params = [p for p in model.parameters() if p.requires_grad]
        opt = torch.optim.AdamW(params, lr=1e-2)
        for step in range(self.steps):
            enc = self.tokenizer(TEXTS[step::2][:4], return_tensors="pt", padding=True)
            labels = enc["input_ids"].masked_fill(enc["attention_mask"] == 0, -100)
            model(**enc, labels=labels).loss.backward()
            opt.step()
            opt.zero_grad()
        self.sent = {k: v.detach().clone() * self.send_scale
                     for k, v in get_peft_model_state_dict(model).items()}
        self.at_return = state(model)
        self.returned = copy.deepcopy(model)
        return Message(RecordDict({"arrays": ArrayRecord(self.sent),
                                   "metrics": MetricRecord({"train_loss": 1.0,
                                                            "num-examples": 4})}),
                       reply_to=msg)

    def evaluate(self, msg: Message, ctx) -> Message:
        self.at_entry = state(self.model)
        set_peft_model_state_dict(self.model, msg.content["arrays"].to_torch_state_dict())
        if self.register:
            use_model(ctx, self.model, self.tokenizer)
        provide_local_data(ctx, train=TEXTS, heldout=HELD)
        self.at_return = state(self.model)
        return Message(RecordDict({"metrics": MetricRecord({"eval_loss": 2.0,
                                                            "num-examples": 6})}),
                       reply_to=msg)


def incoming_arrays(model, seed: int) -> ArrayRecord:
    gen = torch.Generator().manual_seed(seed)
    return ArrayRecord({k: torch.randn(v.shape, generator=gen) * 0.05
                        for k, v in get_peft_model_state_dict(model).items()})


def full_mod(**extra):
    """A mod that probes every time it can: incoming (train), outgoing, private metrics on
    train and evaluate, shift, a client policy; never its own copy of the model."""
    return make_trust_mod(suites=SUITES, rng=np.random.default_rng(0), defaults=TINY_DEFAULTS | {
        "trust.probe-budget": 3, "trust.probe-incoming": True,
        "trust.local-data.messages": "train,evaluate",
        "trust.policy.rules": "alignment.refusal-rate >= 0"} | extra)


@pytest.fixture()
def no_own_copy(monkeypatch):
    """Fail the test if the mod loads its own copy of the model."""
    def refuse(*args, **kwargs):
        raise AssertionError("the mod loaded its own copy of the base model")

    monkeypatch.setattr("flwr_trust.models.get_bridge", refuse)


def reply_profile(model, arrays, rnd: int, budget: int = 3, *, planted: bool = True):
    """The profile of `model` (a copy of the app's) with `arrays` set in it, computed here on
    the round's sample (without planted-only modes when the client planted nothing, as the
    mod's outgoing probe)."""
    set_peft_model_state_dict(model, {k: torch.as_tensor(v.numpy()) for k, v in arrays.items()})
    sample = {m: s for m, s in sample_suites(SUITES, rnd, budget).items()
              if planted or not modes.get(m).planted_only}
    return profile_model(model, build_tiny_tokenizer(), sample, precision="fp32")


@pytest.mark.parametrize("send_scale", [1.0, 0.5])
def test_train_probes_the_reply_adapter_on_the_app_model_and_restores_it(no_own_copy,
                                                                         send_scale):
    model, tok = tiny_app_model()
    app = App(model, tok, send_scale=send_scale)
    mod, ctx = full_mod(), context()
    for rnd in (1, 2):  # round 2: the cached model is at hand before the app runs too
        before = state(model)
        reply = mod(message("train", incoming_arrays(model, rnd), round=rnd), ctx, app.train)
        m = metrics_of(reply)
        assert app.at_entry == before  # the check before the app gave the model back as it was
        assert state(model) == app.at_return  # ... and so did every probe after the app
        assert m["trust.status.incoming"] == m["trust.status.outgoing"] == STATUS["ok"]
        assert m["trust.status.private"] == STATUS["ok"]
        sent = reply.content["arrays"]
        assert all(torch.equal(torch.as_tensor(sent[k].numpy()), v) for k, v in app.sent.items())
        expected = reply_profile(app.returned, sent, rnd, planted=False)
        for mode, name in CHECKED:  # the probed model is the one the reply carries
            assert m[f"trust.{mode}.{name}"] == pytest.approx(expected.get(mode, name).value,
                                                              abs=1e-9)


def test_evaluate_probes_the_received_model_on_the_app_model_and_restores_it(no_own_copy):
    model, tok = tiny_app_model()
    app = App(model, tok)
    arrays = incoming_arrays(model, 9)
    reply = full_mod()(message("evaluate", arrays, round=4), context(), app.evaluate)
    m = metrics_of(reply)
    assert state(model) == app.at_return
    assert m["trust.status.private"] == STATUS["ok"]
    expected = reply_profile(copy.deepcopy(model), arrays, 4)
    for mode, name in CHECKED:
        assert m[f"trust.{mode}.{name}"] == pytest.approx(expected.get(mode, name).value,
                                                          abs=1e-9)


def test_a_model_built_per_message_is_not_kept_alive_by_the_mod(no_own_copy):
    """FlowerTune's template builds its model in every train call: the registry must not hold
    it after the message (else the next message would hold two)."""
    refs = []

    def per_message_train(msg, ctx):
        model, tok = tiny_app_model()
        refs.append(weakref.ref(model))
        return App(model, tok, steps=1).train(msg, ctx)

    mod, ctx = full_mod(), context()
    arrays = incoming_arrays(tiny_app_model()[0], 1)
    for rnd in (1, 2):
        metrics_of(mod(message("train", arrays, round=rnd), ctx, per_message_train))
        gc.collect()
        assert refs[-1]() is None
    assert registered.registered(ctx) is None


def test_a_cached_model_checks_misfit_arrays_before_the_app_runs(no_own_copy):
    model, tok = tiny_app_model()
    app, mod, ctx = App(model, tok), full_mod(), context()
    metrics_of(mod(message("train", incoming_arrays(model, 1)), ctx, app.train))
    good = incoming_arrays(model, 2)
    key = next(iter(good.keys()))
    bad = ArrayRecord({k: torch.as_tensor(v.numpy()) for k, v in good.items()}
                      | {key: torch.zeros(3, 3)})
    before = state(model)

    def never(msg, ctx):
        raise AssertionError("the app must not run")

    reply = mod(message("train", bad, round=2), ctx, never)
    assert reply.has_error() and "wrong shape" in reply.error.reason
    assert state(model) == before


def test_another_nodes_model_is_not_probed_before_this_nodes_app_runs(no_own_copy):
    model, tok = tiny_app_model()
    app, mod = App(model, tok), full_mod()
    metrics_of(mod(message("train", incoming_arrays(model, 1)), context(node_id=1), app.train))
    assert registered.registered(context(node_id=2)) is None
    assert registered.registered(context(node_id=1))[0] is model


def test_without_registration_the_mod_loads_its_own_copy_and_says_so(caplog):
    model, tok = tiny_app_model()
    app = App(model, tok, register=False)
    mod = full_mod(**{"trust.lora.r": 4, "trust.lora.alpha": 8})
    with caplog.at_level(logging.WARNING, logger="flwr"):
        for rnd in (1, 2):
            metrics_of(mod(message("train", incoming_arrays(model, rnd), round=rnd), context(),
                           app.train))
    notices = [r for r in caplog.records if "use_model(context, model, tokenizer)" in r.message]
    assert len(notices) == 1 and notices[0].levelno == logging.WARNING
    assert "twice" in notices[0].message


def test_use_model_refuses_what_is_not_a_model():
    from flwr_trust.errors import TrustError

    model, tok = tiny_app_model()
    with pytest.raises(TrustError, match="not a torch model"):
        use_model(context(), "my-model", tok)
    with pytest.raises(TrustError, match="tokenizer"):
        use_model(context(), model, None)


def test_bf16_base_with_fp32_adapter_is_probed_in_its_own_dtype(no_own_copy):
    """A bf16 base (as FlowerTune loads it) keeps bf16: probes run in it, never upcast."""
    model, tok = tiny_app_model()
    model.get_base_model().to(torch.bfloat16)
    for name, p in model.named_parameters():  # peft keeps adapters in fp32
        if "lora_" in name:
            p.data = p.data.float()
    app = App(model, tok, steps=0)
    reply = full_mod()(message("evaluate", incoming_arrays(model, 3)), context(), app.evaluate)
    metrics_of(reply)
    assert state(model) == app.at_return
    from flwr_trust.scoring.placement import pick_placement

    assert pick_placement(model, "fp32").label == "bf16"


def test_trust_device_moves_the_app_model_for_probing_and_back(monkeypatch, no_own_copy):
    """The move is exercised at the seam (no second device here): probe_device answers 'move
    to X', and the model must be sent to X on entry and back to its own device on exit."""
    import flwr_trust.models.app_model as app_model

    model, tok = tiny_app_model()
    moves: list[str] = []
    real_to = model.to

    def spy_to(device, *args, **kwargs):
        moves.append(str(device))
        return real_to(device, *args, **kwargs)

    monkeypatch.setattr(model, "to", spy_to)
    monkeypatch.setattr(app_model, "probe_device",  # "cpu:0" stands in for another device
                        lambda m, spec: torch.device("cpu:0") if spec == "cpu" else None)
    app = App(model, tok)
    metrics_of(full_mod(**{"trust.device": "cpu"})(
        message("evaluate", incoming_arrays(model, 1)), context(), app.evaluate))
    assert moves and moves == ["cpu:0", "cpu"] * (len(moves) // 2)
    after, expected = state(model), app.at_return
    assert after.pop("storage") != expected.pop("storage")  # really moved (new storage) ...
    assert after == expected  # ... and back, with the same values, flags and parameters


def test_a_device_that_is_not_there_is_an_error_reply_naming_the_key(monkeypatch, no_own_copy):
    monkeypatch.setattr("flwr_trust.scoring.placement.cuda_available", lambda: False)
    model, tok = tiny_app_model()
    app = App(model, tok)
    reply = full_mod(**{"trust.device": "cuda"})(
        message("evaluate", incoming_arrays(model, 1)), context(), app.evaluate)
    assert reply.has_error()
    assert "trust.device" in reply.error.reason and "no CUDA device" in reply.error.reason
    assert state(model) == app.at_return
