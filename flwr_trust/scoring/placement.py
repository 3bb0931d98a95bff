"""Where and in which precision probes run: the probed model's own device and dtype.

Probing never copies or converts a model to run it. Inputs go to the device of the model's input
embeddings (a model spread over devices with ``device_map`` moves activations itself); a model
whose weights are bf16/fp16, or 4-/8-bit bitsandbytes (detected through transformers' public
``is_loaded_in_4bit`` / ``is_loaded_in_8bit`` / ``config.quantization_config``, bitsandbytes is
never imported here), runs as the app runs it. `trust.precision` only adds an autocast around
the forward passes: ``bf16`` always, ``auto`` where bf16 is native (a CUDA device that supports
it, or a CPU with AMX / AVX512-BF16), ``fp32`` never.

`trust.device` (``auto`` = leave the model where it is) asks for another device; `probe_device`
says whether the model can be moved there (a quantized or multi-device model cannot).

The hardware questions (`cuda_available`, `cuda_bf16`, `cpu_bf16`) are small functions so that
tests can answer them on a machine without a GPU.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from flwr_trust.errors import TrustError

NATIVE_HALF = (torch.bfloat16, torch.float16)


class DeviceError(TrustError):
    """The requested probe device does not exist or the model cannot be moved there."""


@dataclass(frozen=True)
class Placement:
    """How one model is probed.

    device:   where the input ids go
    autocast: dtype of an autocast around the forward passes, or None (the model's own dtype)
    weights:  what the weights are: "4bit", "8bit", or a dtype name ("float32", "bfloat16")
    """

    device: torch.device
    autocast: torch.dtype | None
    weights: str

    @property
    def label(self) -> str:
        """The precision the probe computed in, for reports ("bf16", "fp32", "4bit+bf16")."""
        compute = {torch.bfloat16: "bf16", torch.float16: "fp16"}.get(self.autocast, "")
        if not compute:
            compute = {"bfloat16": "bf16", "float16": "fp16"}.get(self.weights, "fp32")
        return f"{self.weights}+{compute}" if self.weights in ("4bit", "8bit") else compute

    def context(self) -> Any:
        """The autocast context of a forward pass (a no-op when autocast is None)."""
        if self.autocast is None:
            return nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.autocast)


@contextmanager
def weights_cast_once(model: Any, place: Placement) -> Iterator[None]:
    """Run the forward passes inside with `no_grad`, casting fp32 weights to the autocast dtype
    once for the whole block instead of once per forward pass.

    Autocast re-casts every fp32 weight in every forward call unless it keeps the cast in its
    weight cache, which it does only for leaf tensors that require grad, until the outermost
    autocast block exits (torch's autocast cache). Frozen weights (a LoRA model's base) thus
    cost a full-model cast per call, a large share of a probe's small forward calls (SmolLM2,
    the packaged baseline's monitored federation: clients 100.0 -> 82.6 s, server 28.3 -> 20.6
    s; bench/federation_overhead.py, docs/benchmarks.md). Here the frozen fp32 weights are
    marked as requiring grad for the block (no graph is built under no_grad) and one outer
    autocast block holds the cache, so each weight is cast once: the same bf16 values, so the
    same scores, bit for bit. The flags are restored on exit, also on error. The cache costs
    half the fp32 weights' size while the block runs; on a CUDA device it is used only if that
    fits in free memory twice over. The weights must not change inside the block (the cache
    would go stale): callers wrap one model state only."""
    frozen = [p for p in model.parameters()
              if p.dtype == torch.float32 and not p.requires_grad] \
        if place.autocast is not None else []
    if not frozen or not _cache_fits(frozen, place):
        with torch.no_grad():
            yield
        return
    try:
        for p in frozen:
            p.requires_grad_(True)
        with torch.autocast(device_type=place.device.type, dtype=place.autocast), \
                torch.no_grad():
            yield
    finally:
        for p in frozen:
            p.requires_grad_(False)


def _cache_fits(weights: list[torch.Tensor], place: Placement) -> bool:
    """Whether the autocast cache of `weights` may be held: always in host memory; on CUDA only
    with twice its size free."""
    if place.device.type != "cuda":
        return True
    size = sum(p.numel() for p in weights) * torch.finfo(place.autocast).bits // 8
    free, _total = torch.cuda.mem_get_info(place.device)
    return free > 2 * size


# -- hardware questions (the seam tests answer) ------------------------------------------------
def cuda_available() -> bool:
    return torch.cuda.is_available()


def cuda_bf16(device: torch.device) -> bool:
    """Whether this CUDA device runs bf16 natively (Ampere and later)."""
    return torch.cuda.is_available() and torch.cuda.is_bf16_supported()


def cpu_bf16() -> bool:
    """Whether this CPU has native bf16 matrix units (AMX or AVX512-BF16); emulated bf16 on
    AVX2-only CPUs is several times slower than fp32, so it is never chosen there."""
    try:
        flags = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="ignore")
    except OSError:
        return False
    return "amx_bf16" in flags or "avx512_bf16" in flags


# -- what the model is -------------------------------------------------------------------------
def quantization(model: Any) -> str | None:
    """"4bit" or "8bit" for a bitsandbytes-quantized model (also behind a peft wrapper), else
    None. Reads transformers' public flags and the config's quantization_config only."""
    if getattr(model, "is_loaded_in_4bit", False) is True:
        return "4bit"
    if getattr(model, "is_loaded_in_8bit", False) is True:
        return "8bit"
    config = getattr(getattr(model, "config", None), "quantization_config", None)
    if config is None:
        return None
    get = config.get if isinstance(config, dict) else lambda k: getattr(config, k, None)
    if get("load_in_4bit"):
        return "4bit"
    if get("load_in_8bit"):
        return "8bit"
    return None


def model_device(model: Any) -> torch.device:
    """The device of the model's input embeddings (where input ids must go), else of its first
    parameter."""
    embeddings = getattr(model, "get_input_embeddings", None)
    layer = embeddings() if callable(embeddings) else None
    weight = getattr(layer, "weight", None)
    if isinstance(getattr(weight, "device", None), torch.device):
        return weight.device
    return next(model.parameters()).device


def model_devices(model: Any) -> set[torch.device]:
    """Every device the model's parameters live on (more than one under a device_map)."""
    return {p.device for p in model.parameters()}


def weights_dtype(model: Any) -> torch.dtype:
    """The dtype the model computes in without autocast: its first floating parameter's."""
    for p in model.parameters():
        if p.is_floating_point():
            return p.dtype
    return torch.float32


# -- the decisions -----------------------------------------------------------------------------
def autocast_dtype(precision: str, device: torch.device,
                   weights: torch.dtype) -> torch.dtype | None:
    """The autocast dtype for `precision` on `device`; None keeps the model's own dtype (and a
    model already in bf16/fp16 always runs in it: probing never upcasts or converts weights)."""
    if precision not in ("fp32", "bf16", "auto"):
        raise ValueError(f"precision must be 'fp32', 'bf16' or 'auto', not {precision!r}")
    if weights in NATIVE_HALF or precision == "fp32":
        return None
    if precision == "bf16":
        return torch.bfloat16
    native = cuda_bf16(device) if device.type == "cuda" else \
        cpu_bf16() if device.type == "cpu" else False
    return torch.bfloat16 if native else None


def pick_placement(model: Any, precision: str = "fp32") -> Placement:
    """Device and autocast of a probe on `model`, which stays where and as it is."""
    device = model_device(model)
    dtype = weights_dtype(model)
    quant = quantization(model)
    weights = quant or str(dtype).removeprefix("torch.")
    return Placement(device, autocast_dtype(precision, device, dtype), weights)


def probe_device(model: Any, spec: str) -> torch.device | None:
    """The device `trust.device = spec` moves the model to for probing; None = stay (auto, or it
    is there already). DeviceError when the device is absent or the model cannot move."""
    from flwr_trust.config.client import parse_device

    value = parse_device(spec)
    if value == "auto":
        return None
    wanted = torch.device(value)
    if wanted.type == "cuda" and not cuda_available():
        raise DeviceError(f"trust.device = {spec!r} but torch sees no CUDA device in this "
                          "process.", "Remove trust.device (auto: the model's own device) or "
                          "give the client a GPU (CUDA_VISIBLE_DEVICES, the simulation's "
                          "client-resources num-gpus).")
    devices = model_devices(model)
    if devices == {wanted} or (wanted.index is None and {d.type for d in devices} ==
                               {wanted.type} and len(devices) == 1):
        return None
    quant = quantization(model)
    if quant is not None:
        raise DeviceError(f"trust.device = {spec!r} would move the model, but it is a {quant} "
                          f"bitsandbytes model on {sorted(map(str, devices))}, which cannot "
                          "be moved.", "Remove trust.device: probes run on the model's own "
                          "device.")
    if len(devices) > 1:
        raise DeviceError(f"trust.device = {spec!r} would move the model, but it is spread over "
                          f"{sorted(map(str, devices))} (a device_map).",
                          "Remove trust.device: probes run where the model is.")
    return wanted
