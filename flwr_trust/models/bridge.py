"""Bridge between what Flower carries (an ArrayRecord) and a runnable HF causal LM.

Two kinds of arrays travel in FlowerTune-style apps:

- full state dicts (``model.state_dict()``), and
- peft adapter state dicts (``get_peft_model_state_dict(model)``): LoRA, and any other adapter
  type whose state dict peft's own get/set functions handle (tested: LoRA, IA3).

`ModelBridge` wraps one base model (loaded once per process by `load_base_model`). Adapters are
added to that same base with peft's multi-adapter API and their weights are swapped in place on
every message, so the base is never reloaded. Everything that enters is checked first: names,
shapes and finiteness, with errors that list what does not fit.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any

import numpy as np
import torch
from flwr.app import ArrayRecord

from flwr_trust.errors import ArraysMismatchError
from flwr_trust.models.loader import LoadedModel, load_base_model

_BRIDGES: dict[tuple[str, str], ModelBridge] = {}
_BRIDGES_LOCK = threading.Lock()


def _config_key(peft_config: Any | None) -> str:
    if peft_config is None:
        return "full"
    as_dict = peft_config.to_dict()
    text = json.dumps(as_dict, sort_keys=True, default=str)
    return "adapter-" + hashlib.sha256(text.encode()).hexdigest()[:12]


class ModelBridge:
    """One base model, optionally with a peft adapter, that Flower arrays load into in place."""

    def __init__(self, base: LoadedModel, peft_config: Any | None = None) -> None:
        self.base = base
        self.tokenizer = base.tokenizer
        self.peft_config = peft_config
        self.adapter_name = _config_key(peft_config)
        self.model = base.model if peft_config is None else _attach_adapter(
            base, peft_config, self.adapter_name)

    @property
    def kind(self) -> str:
        return "full" if self.peft_config is None else "adapter"

    def activate(self) -> None:
        """Make this bridge's adapter the active one on the shared base model."""
        if self.peft_config is not None:
            self.model.set_adapter(self.adapter_name)

    def state_dict(self) -> dict[str, torch.Tensor]:
        """What this bridge exchanges with Flower: the adapter's or the full model's tensors."""
        if self.peft_config is None:
            return {k: v.detach() for k, v in self.model.state_dict().items()}
        from peft import get_peft_model_state_dict

        sd = get_peft_model_state_dict(self.model, adapter_name=self.adapter_name)
        return {k: v.detach() for k, v in sd.items()}

    def to_array_record(self) -> ArrayRecord:
        """The current weights as an ArrayRecord (a copy; later training does not change it)."""
        return ArrayRecord({k: v.cpu().clone() for k, v in self.state_dict().items()})

    def load_arrays(self, arrays: ArrayRecord | Mapping[str, Any]) -> None:
        """Check `arrays` against this model and copy them in place; raise ArraysMismatchError."""
        expected = self.state_dict()
        tensors = arrays_to_tensors(arrays)
        check_arrays_fit(tensors, expected, what=f"{self.kind} arrays for {self.base.name}")
        self.activate()
        with torch.no_grad():
            if self.peft_config is None:
                self.model.load_state_dict(
                    {k: t.to(expected[k].dtype) for k, t in tensors.items()}, strict=True)
            else:
                from peft import set_peft_model_state_dict

                cast = {k: t.to(expected[k].dtype) for k, t in tensors.items()}
                result = set_peft_model_state_dict(self.model, cast,
                                                   adapter_name=self.adapter_name)
                unexpected = getattr(result, "unexpected_keys", [])
                if unexpected:
                    raise ArraysMismatchError(
                        f"peft did not use adapter tensors {unexpected[:3]}.",
                        "Send the state dict of get_peft_model_state_dict() for the same "
                        "LoRA config.")

    def load_adapter_dir(self, path: str | Path) -> None:
        """Load weights saved by peft's save_pretrained() into this bridge's adapter."""
        from peft.utils import load_peft_weights

        folder = Path(path)
        if not (folder / "adapter_config.json").is_file():
            raise ArraysMismatchError(
                f"{path} is not a peft adapter folder (no adapter_config.json).",
                "Pass the folder written by model.save_pretrained() of a PeftModel.")
        try:
            weights = load_peft_weights(str(folder), device="cpu")
        except Exception as exc:  # safetensors/torch raise many kinds on corrupt files
            raise ArraysMismatchError(f"Could not read adapter weights in {path}: {exc}",
                                      "Re-save the adapter; the file may be corrupt.") from exc
        self.load_arrays(weights)

    @contextmanager
    def base_only(self) -> Iterator[None]:
        """Run the base model without the adapter (e.g. to probe the reference)."""
        ctx = self.model.disable_adapter() if self.peft_config is not None else nullcontext()
        with ctx:
            yield


def get_bridge(model: str = "default", peft_config: Any | None = None, *,
               activate: bool = True) -> ModelBridge:
    """The process-wide bridge for (base model, adapter config): created once, then reused.

    activate=False leaves the shared base model's active adapter as it is (the client mod
    activates its own only while probing, then gives the app's back).
    """
    slot = "full" if peft_config is None else str(peft_config.peft_type)
    base = load_base_model(model, slot=slot)
    key = (f"{id(base)}", _config_key(peft_config))
    with _BRIDGES_LOCK:
        if key not in _BRIDGES:
            _BRIDGES[key] = ModelBridge(base, peft_config)
        bridge = _BRIDGES[key]
    if activate:
        bridge.activate()
    return bridge


def adapter_config_from_dir(path: str | Path) -> Any:
    """Read a peft adapter folder's config, with a clear error when it is missing or broken."""
    from peft import PeftConfig

    try:
        return PeftConfig.from_pretrained(str(path))
    except (OSError, ValueError, TypeError, RecursionError) as exc:
        raise ArraysMismatchError(f"Could not read a peft adapter config from {path}: {exc}",
                                  "Pass the folder written by PeftModel.save_pretrained().") \
            from exc


def _attach_adapter(base: LoadedModel, peft_config: Any, name: str) -> Any:
    """Add an adapter to the shared base: the first one wraps it in a PeftModel, later ones join."""
    from peft import PeftModel, get_peft_model

    try:
        if isinstance(base.model, PeftModel):
            if name not in base.model.peft_config:
                base.model.add_adapter(name, peft_config)
            model = base.model
        else:
            model = get_peft_model(base.model, peft_config, adapter_name=name)
            base.model = model  # later bridges add their adapters to the same PeftModel
    except (ValueError, TypeError) as exc:  # TypeError: e.g. a rank that is a string
        raise ArraysMismatchError(
            f"The adapter config does not fit {base.name}: {exc}",
            "Check its fields (r, lora_alpha, target_modules) against the model's layers.") \
            from exc
    model.eval()
    return model


def arrays_to_tensors(arrays: ArrayRecord | Mapping[str, Any]) -> dict[str, torch.Tensor]:
    """Turn an ArrayRecord or a mapping of arrays into CPU tensors, refusing what is not numeric."""
    out: dict[str, torch.Tensor] = {}
    for key, value in arrays.items():
        try:
            if isinstance(value, torch.Tensor):
                tensor = value.detach().cpu()
            else:
                array = value.numpy() if hasattr(value, "numpy") and not isinstance(
                    value, np.ndarray) else np.asarray(value)
                tensor = torch.from_numpy(np.ascontiguousarray(array))
        except Exception as exc:  # a malformed Array can fail deserialization in many ways
            raise ArraysMismatchError(f"Array {key!r} could not be read as a numeric array: {exc}",
                                      "Send arrays made by ArrayRecord(model.state_dict()).") \
                from exc
        if not (tensor.is_floating_point() or tensor.dtype in (torch.int64, torch.int32)):
            raise ArraysMismatchError(f"Array {key!r} has dtype {tensor.dtype}, not a number type.",
                                      "Send float weights.")
        out[key] = tensor
    return out


def check_arrays_fit(tensors: Mapping[str, torch.Tensor], expected: Mapping[str, torch.Tensor],
                     *, what: str) -> None:
    """Raise ArraysMismatchError listing missing, unexpected, mis-shaped or non-finite arrays."""
    from flwr_trust.models.shapes import fit_problems

    problems = fit_problems({k: tuple(t.shape) for k, t in tensors.items()},
                            {k: tuple(t.shape) for k, t in expected.items()})
    if problems:
        raise ArraysMismatchError(
            f"The {what} do not fit the model: " + "; ".join(problems) + ".",
            "Both sides must use the same base model and the same adapter config "
            "(rank, target modules); send get_peft_model_state_dict() for adapters or "
            "state_dict() for full models.")
    bad = [k for k, t in tensors.items() if t.is_floating_point() and not torch.isfinite(t).all()]
    if bad:
        raise ArraysMismatchError(f"The {what} contain NaN or Inf in {len(bad)} arrays "
                                  f"(e.g. {bad[:2]}).", "Do not load a diverged model.")
