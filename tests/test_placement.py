"""Device and precision of probes (flwr_trust.scoring.placement), decided for GPU and
quantized models on a machine without a GPU: the models are stand-ins that report CUDA devices
and bitsandbytes flags through the same public attributes real ones have, and the hardware
questions (CUDA present, native bf16) are answered by the test."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from flwr_trust.config.client import parse_trust_config
from flwr_trust.config.keys import TrustConfigError
from flwr_trust.scoring import placement
from flwr_trust.scoring.placement import DeviceError, Placement, pick_placement, probe_device
from flwr_trust.scoring.requests import Request

CUDA0, CUDA1, CPU = torch.device("cuda:0"), torch.device("cuda:1"), torch.device("cpu")


class FakeParam:
    def __init__(self, device: torch.device, dtype: torch.dtype) -> None:
        self.device, self.dtype = device, dtype

    def is_floating_point(self) -> bool:
        return self.dtype.is_floating_point


class FakeModel:
    """What placement reads of a model: parameters (device, dtype), the input embeddings, the
    bitsandbytes flags transformers sets, config.quantization_config."""

    def __init__(self, *params: FakeParam, embed: torch.device | None = None,
                 quant_config=None, **flags) -> None:
        self._params = params
        self._embed = SimpleNamespace(weight=SimpleNamespace(device=embed or params[0].device))
        self.config = SimpleNamespace(quantization_config=quant_config)
        for key, value in flags.items():
            setattr(self, key, value)

    def parameters(self):
        return iter(self._params)

    def get_input_embeddings(self):
        return self._embed


@pytest.fixture()
def gpu(monkeypatch):
    """A machine with a CUDA device that runs bf16 natively and a CPU without native bf16."""
    monkeypatch.setattr(placement, "cuda_available", lambda: True)
    monkeypatch.setattr(placement, "cuda_bf16", lambda device: True)
    monkeypatch.setattr(placement, "cpu_bf16", lambda: False)


def fp32_on(device):
    return FakeModel(FakeParam(device, torch.float32))


def test_probes_run_on_the_models_own_gpu(gpu):
    assert pick_placement(fp32_on(CUDA1), "fp32") == Placement(CUDA1, None, "float32")
    assert pick_placement(fp32_on(CUDA1), "auto") == Placement(CUDA1, torch.bfloat16, "float32")
    assert pick_placement(fp32_on(CUDA1), "auto").label == "bf16"
    assert pick_placement(fp32_on(CUDA1), "bf16").autocast == torch.bfloat16


def test_auto_is_bf16_only_where_it_is_native(monkeypatch, gpu):
    monkeypatch.setattr(placement, "cuda_bf16", lambda device: False)  # e.g. a V100
    assert pick_placement(fp32_on(CUDA0), "auto").autocast is None
    assert pick_placement(fp32_on(CPU), "auto").autocast is None  # AVX2-only CPU
    monkeypatch.setattr(placement, "cpu_bf16", lambda: True)  # AMX / AVX512-BF16
    assert pick_placement(fp32_on(CPU), "auto").autocast == torch.bfloat16


def test_a_half_precision_model_runs_in_its_own_dtype(gpu):
    for dtype, label in ((torch.bfloat16, "bf16"), (torch.float16, "fp16")):
        model = FakeModel(FakeParam(CUDA0, dtype))
        for precision in ("fp32", "bf16", "auto"):
            place = pick_placement(model, precision)
            assert place.autocast is None and place.label == label  # never upcast or converted


def test_bitsandbytes_models_are_recognised_by_public_flags(gpu):
    params = (FakeParam(CUDA0, torch.uint8), FakeParam(CUDA0, torch.float32))
    four = FakeModel(*params, is_loaded_in_4bit=True)
    assert pick_placement(four, "fp32") == Placement(CUDA0, None, "4bit")
    assert pick_placement(four, "fp32").label == "4bit+fp32"
    assert pick_placement(four, "auto").label == "4bit+bf16"
    eight = FakeModel(*params, quant_config={"load_in_8bit": True, "quant_method": "bitsandbytes"})
    assert pick_placement(eight, "fp32").weights == "8bit"
    bnb_like = SimpleNamespace(load_in_4bit=True, load_in_8bit=False)  # a BitsAndBytesConfig
    assert pick_placement(FakeModel(*params, quant_config=bnb_like), "fp32").weights == "4bit"
    assert pick_placement(FakeModel(*params, quant_config={"quant_method": "gptq"}),
                          "fp32").weights == "float32"  # not bitsandbytes: its float dtype


def test_inputs_go_to_the_embeddings_device_of_a_device_map_model(gpu):
    model = FakeModel(FakeParam(CUDA1, torch.float32), FakeParam(CUDA0, torch.float32),
                      embed=CUDA0)
    assert pick_placement(model, "fp32").device == CUDA0


def test_trust_device_moves_only_models_that_can_move(gpu):
    assert probe_device(fp32_on(CUDA0), "auto") is None
    assert probe_device(fp32_on(CUDA0), "cuda") is None  # already there
    assert probe_device(fp32_on(CUDA0), "cuda:0") is None
    assert probe_device(fp32_on(CUDA0), "cuda:1") == CUDA1
    assert probe_device(fp32_on(CUDA0), "cpu") == CPU
    assert probe_device(fp32_on(CPU), "cuda") == torch.device("cuda")
    four = FakeModel(FakeParam(CUDA0, torch.uint8), is_loaded_in_4bit=True)
    with pytest.raises(DeviceError, match="4bit bitsandbytes model .* cannot be moved"):
        probe_device(four, "cpu")
    spread = FakeModel(FakeParam(CUDA0, torch.float32), FakeParam(CUDA1, torch.float32))
    with pytest.raises(DeviceError, match="device_map"):
        probe_device(spread, "cuda:0")


def test_a_missing_gpu_is_named(monkeypatch):
    monkeypatch.setattr(placement, "cuda_available", lambda: False)
    with pytest.raises(DeviceError, match="trust.device = 'cuda'.*no CUDA device"):
        probe_device(fp32_on(CPU), "cuda")


@pytest.mark.parametrize("value", ["gpu", "cuda:x", "tpu", 3])
def test_a_malformed_device_names_the_key(value):
    with pytest.raises(TrustConfigError, match="trust.device"):
        parse_trust_config({"trust.device": value})


def test_device_and_precision_keys_parse():
    cfg = parse_trust_config({"trust.device": " CUDA:1 ", "trust.precision": "auto"})
    assert (cfg.device, cfg.precision) == ("cuda:1", "auto")
    assert parse_trust_config({}).device == "auto"


class _Stop(Exception):
    pass


def test_the_scorer_sends_inputs_where_the_seam_says(monkeypatch):
    """score_requests asks pick_placement and nothing else: inputs go to its device ("meta"
    stands in for a GPU) inside its autocast."""
    from flwr_trust.scoring import engine

    seen = {}

    class Recorder(torch.nn.Module):
        def forward(self, input_ids, **kwargs):
            seen["device"] = input_ids.device
            seen["autocast"] = torch.is_autocast_enabled("cpu")
            raise _Stop

    chosen = Placement(torch.device("meta"), None, "float32")
    monkeypatch.setattr(engine, "pick_placement", lambda model, precision: chosen)
    with pytest.raises(_Stop):
        engine.score_requests(Recorder(), [Request((1, 2), (3, 4))], pad_id=0)
    assert seen == {"device": torch.device("meta"), "autocast": False}
    monkeypatch.setattr(engine, "pick_placement",
                        lambda model, precision: Placement(CPU, torch.bfloat16, "float32"))
    with pytest.raises(_Stop):
        engine.score_requests(Recorder(), [Request((1, 2), (3, 4))], pad_id=0)
    assert seen == {"device": CPU, "autocast": True}


def test_auto_without_native_bf16_scores_exactly_as_fp32(monkeypatch):
    from flwr_trust.models.tiny import build_tiny_model
    from flwr_trust.scoring.engine import score_requests

    monkeypatch.setattr(placement, "cpu_bf16", lambda: False)
    model = build_tiny_model()
    requests = [Request((5, 6, 7), (8, 9)), Request((5, 6, 7), (10,)), Request((1,), (2, 3, 4))]
    fp32 = score_requests(model, requests, pad_id=0, precision="fp32")
    auto = score_requests(model, requests, pad_id=0, precision="auto")
    assert (fp32.logprob == auto.logprob).all()
    with pytest.raises(ValueError, match="precision"):
        score_requests(model, requests, pad_id=0, precision="fp8")


def _frozen_tiny_model():
    from flwr_trust.models.tiny import build_tiny_model

    model = build_tiny_model()
    params = list(model.parameters())
    for p in params[:-1]:  # a LoRA-like model: a frozen base, one trainable tensor
        p.requires_grad_(False)
    return model, [p.requires_grad for p in params]


def test_frozen_weights_are_cast_once_with_the_same_scores(monkeypatch):
    """bf16 scoring with the autocast cache held for the whole call gives the very scores of a
    cast per forward pass, and leaves every requires_grad flag as it was."""
    from contextlib import contextmanager

    from flwr_trust.scoring import engine

    model, flags = _frozen_tiny_model()
    requests = [Request((5, 6, 7), (8, 9)), Request((5, 6, 7), (10,)), Request((1,), (2, 3, 4)),
                Request((5, 6, 11, 12), (13, 14, 15))]
    once = engine.score_requests(model, requests, pad_id=0, precision="bf16")
    assert [p.requires_grad for p in model.parameters()] == flags

    @contextmanager
    def per_call(model, place):
        with torch.no_grad():
            yield

    monkeypatch.setattr(engine, "weights_cast_once", per_call)
    each = engine.score_requests(model, requests, pad_id=0, precision="bf16")
    assert (once.logprob == each.logprob).all()
    fp32 = engine.score_requests(model, requests, pad_id=0, precision="fp32")
    assert not (fp32.logprob == once.logprob).all()  # bf16 really ran


def test_the_cast_once_block_restores_flags_after_an_error():
    model, flags = _frozen_tiny_model()
    seen = {}
    with pytest.raises(_Stop), placement.weights_cast_once(
            model, Placement(CPU, torch.bfloat16, "float32")):
        seen["inside"] = [p.requires_grad for p in model.parameters()]
        seen["grad"] = torch.is_grad_enabled()
        raise _Stop
    assert all(seen["inside"]) and seen["grad"] is False
    assert [p.requires_grad for p in model.parameters()] == flags
    # fp32 probes (no autocast) and half-precision weights are left alone
    with placement.weights_cast_once(model, Placement(CPU, None, "float32")):
        assert [p.requires_grad for p in model.parameters()] == flags
    half = model.to(torch.bfloat16)
    with placement.weights_cast_once(half, Placement(CPU, torch.bfloat16, "bfloat16")):
        assert [p.requires_grad for p in half.parameters()] == flags
