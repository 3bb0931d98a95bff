"""The app's own model as a probe target: probed in place, then given back exactly as it was.

`AppModel` wraps the model object an app trains (a peft model or a plain causal LM), so the mod
needs no copy of its own. Loading a message's arrays writes only the tensors that differ from
the model's current values (the adapter a train reply carries usually equals the trained one:
nothing is written), keeping each overwritten original on the CPU. `preserved()` restores, on
exit, everything probing may touch: the overwritten tensors, every module's train/eval flag,
every parameter's requires_grad, the active adapter and, when `trust.device` moved the model for
probing, its device. Flower-free.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch

from flwr_trust.models.bridge import arrays_to_tensors, check_arrays_fit
from flwr_trust.scoring.placement import model_devices, probe_device


def is_peft(model: Any) -> bool:
    from peft import PeftModel

    return isinstance(model, PeftModel)


@dataclass
class _Flags:
    """What probing may change besides weights, captured to be put back."""

    training: dict[str, bool]
    requires_grad: dict[str, bool]
    adapter: str | None
    device: torch.device | None

    @classmethod
    def capture(cls, model: Any) -> _Flags:
        devices = model_devices(model)
        return cls({n: m.training for n, m in model.named_modules()},
                   {n: p.requires_grad for n, p in model.named_parameters()},
                   active_adapter(model), next(iter(devices)) if len(devices) == 1 else None)

    def restore(self, model: Any) -> None:
        if self.adapter is not None and active_adapter(model) != self.adapter:
            model.set_adapter(self.adapter)  # (peft also flips requires_grad: restored below)
        for name, param in model.named_parameters():
            if name in self.requires_grad and param.requires_grad != self.requires_grad[name]:
                param.requires_grad_(self.requires_grad[name])
        for name, module in model.named_modules():
            if name in self.training:
                module.training = self.training[name]


def active_adapter(model: Any) -> str | None:
    """The active adapter's name of a peft model (None otherwise, or if several are active)."""
    if not is_peft(model):
        return None
    names = list(model.active_adapters)
    return names[0] if len(names) == 1 else None


class AppModel:
    """A probe target over a model object the app owns (see the module docstring).

    device: `trust.device` (auto = probe where the model is).
    """

    def __init__(self, model: Any, tokenizer: Any, *, device: str = "auto") -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.device = device
        self._saved: dict[str, torch.Tensor] | None = None
        self._depth = 0

    @property
    def kind(self) -> str:
        return "adapter" if is_peft(self.model) else "full"

    def state_dict(self) -> dict[str, torch.Tensor]:
        """The tensors a Flower reply of this app carries: the active adapter's
        (get_peft_model_state_dict) for a peft model, else the full state dict."""
        if not is_peft(self.model):
            return {k: v.detach() for k, v in self.model.state_dict().items()}
        from peft import get_peft_model_state_dict

        sd = get_peft_model_state_dict(self.model, adapter_name=self._adapter())
        return {k: v.detach() for k, v in sd.items()}

    def check_arrays(self, arrays: Mapping[str, Any]) -> dict[str, torch.Tensor]:
        """The arrays as tensors, after checking names, shapes and finiteness (no write)."""
        tensors = arrays_to_tensors(arrays)
        check_arrays_fit(tensors, self.state_dict(), what=f"{self.kind} arrays for the app's "
                                                          "model")
        return tensors

    def load_arrays(self, arrays: Mapping[str, Any]) -> None:
        """Write the arrays that differ from the model's values; inside `preserved()` their
        originals are kept (on the CPU) and written back on exit."""
        tensors = self.check_arrays(arrays)
        current = self.state_dict()
        changed = {}
        for name, tensor in tensors.items():
            now = current[name]
            value = tensor.to(device=now.device, dtype=now.dtype)
            if not torch.equal(value, now):
                changed[name] = value
        if not changed:
            return
        if self._saved is not None:
            for name in changed:
                self._saved.setdefault(name, current[name].to("cpu", copy=True))
        self._write(changed)

    def _write(self, tensors: Mapping[str, torch.Tensor], adapter: str | None = None) -> None:
        with torch.no_grad():
            if is_peft(self.model):
                from peft import set_peft_model_state_dict

                set_peft_model_state_dict(self.model, dict(tensors),
                                          adapter_name=adapter or self._adapter())
            else:
                self.model.load_state_dict(dict(tensors), strict=False)

    def _adapter(self) -> str:
        name = active_adapter(self.model)
        if name is None:
            from flwr_trust.errors import ArraysMismatchError

            raise ArraysMismatchError(
                f"The app's peft model has several active adapters "
                f"({self.model.active_adapters!r}); trust_mod cannot tell which one the reply "
                "carries.", "Activate the adapter the app trains and sends "
                            "(model.set_adapter(name)) before registering the model.")
        return name

    @contextmanager
    def preserved(self) -> Iterator[None]:
        """Probe inside this block: on exit the model is as the app left it, bit for bit."""
        if self._depth:
            self._depth += 1
            try:
                yield
            finally:
                self._depth -= 1
            return
        flags = _Flags.capture(self.model)
        target = probe_device(self.model, self.device)
        self._saved, self._depth = {}, 1
        try:
            if target is not None:
                self.model.to(target)
            yield
        finally:
            saved, self._saved, self._depth = self._saved, None, 0
            if saved:
                self._write(saved, flags.adapter)
            if target is not None and flags.device is not None:
                self.model.to(flags.device)
            flags.restore(self.model)
