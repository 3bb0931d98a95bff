"""Probe a model that arrives as named arrays: load it into the target model, score the suites.

The target comes from `flwr_trust.models.get_bridge` (one base model per process, adapters
swapped in place) or from the app's own `model_loader`. Arrays are any mapping of name to array
(a Flower ArrayRecord is one). Legacy (NumPyClient) arrays named "0", "1", ... are mapped to the
model's state-dict names by order; adapter arrays that leave out local-only adapter layers are
completed with the values that make those layers a no-op (LoRA: zeros, IA3: ones).
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any, Protocol

import numpy as np

from flwr_trust.errors import ArraysMismatchError
from flwr_trust.probes.suite import ProbeSuite
from flwr_trust.scoring.profile import BehaviorProfile
from flwr_trust.scoring.requests import Precision

Arrays = Mapping[str, Any]


class ProbeTarget(Protocol):
    """What the mod needs of a model: a `ModelBridge` is one, the app's own model wrapped in an
    `AppModel` another; a custom loader may return others. Optional, used when present:
    ``state_dict()`` (the exchanged names: legacy arrays, missing adapter layers),
    ``activate()`` (its adapter), ``check_arrays(arrays)`` (validate without writing) and
    ``preserved()`` (a context that restores the model after probing)."""

    model: Any
    tokenizer: Any

    def load_arrays(self, arrays: Arrays) -> None: ...


def expected_names(target: ProbeTarget) -> list[str] | None:
    """The state-dict names the target exchanges, when it can tell (ModelBridge can)."""
    state_dict = getattr(target, "state_dict", None)
    return list(state_dict().keys()) if callable(state_dict) else None


def _noop_value(name: str, shape: tuple[int, ...], dtype: Any) -> np.ndarray | None:
    if "lora_A" in name or "lora_B" in name or "lora_embedding" in name:
        return np.zeros(shape, dtype=dtype)
    if "ia3_" in name:
        return np.ones(shape, dtype=dtype)
    return None


def prepare_arrays(target: ProbeTarget, arrays: Arrays) -> Arrays:
    """Name legacy index-keyed arrays and complete adapters that lack local-only layers."""
    names = expected_names(target)
    if names is None:
        return arrays
    keys = list(arrays.keys())
    if keys and all(k.isdigit() for k in keys) and sorted(map(int, keys)) == \
            list(range(len(keys))):
        if len(keys) != len(names):
            raise ArraysMismatchError(
                f"The message has {len(keys)} unnamed (legacy) arrays, the model exchanges "
                f"{len(names)}.", "Send the arrays of the same model and adapter config, in "
                                  "state-dict order.")
        arrays = {n: arrays[str(i)] for i, n in enumerate(names)}
    missing = [n for n in names if n not in arrays]
    if not missing:
        return arrays
    state = target.state_dict()  # type: ignore[attr-defined]
    filled = dict(arrays.items())
    for name in missing:
        ref = state[name]
        value = _noop_value(name, tuple(ref.shape), ref.detach().cpu().numpy().dtype)
        if value is None:
            return arrays  # not an adapter layer: let load_arrays report what is missing
        filled[name] = value
    return filled


def merge_arrays(base: Arrays, extra: Arrays) -> dict[str, Any]:
    """`base` with the arrays of `extra` added or replaced (a personalized model's arrays)."""
    return dict(base.items()) | dict(extra.items())


@contextmanager
def preserved_adapter(target: ProbeTarget) -> Iterator[None]:
    """Activate the target's adapter while probing and give the app its active adapter back.

    The mod and the app may share one base model (get_bridge's cache) with different adapters;
    peft's set_adapter also toggles which adapter is trainable, so restoring matters. A target
    that restores itself (`preserved()`, e.g. the app's own model: flwr_trust.models.AppModel)
    does so instead.
    """
    keep = getattr(target, "preserved", None)
    if callable(keep):
        with keep():
            yield
        return
    model = target.model
    before = getattr(model, "active_adapter", None) if hasattr(model, "set_adapter") else None
    activate = getattr(target, "activate", None)
    if callable(activate):
        activate()
    try:
        yield
    finally:
        if isinstance(before, str) and getattr(model, "active_adapter", None) != before:
            model.set_adapter(before)


def probe(target: ProbeTarget, arrays: Arrays, suites: Mapping[str, ProbeSuite], *,
          precision: Precision, name: str = "") -> tuple[BehaviorProfile, float]:
    """Load `arrays` into the target and profile it on `suites`; returns (profile, seconds)."""
    from flwr_trust.scoring.runner import profile_model

    start = time.perf_counter()
    with preserved_adapter(target):
        target.load_arrays(prepare_arrays(target, arrays))
        profile = profile_model(target.model, target.tokenizer, suites, name=name,
                                precision=precision)
    return profile, time.perf_counter() - start


def validate(target: ProbeTarget, arrays: Arrays) -> None:
    """Check that `arrays` fit the target (an error naming what does not), without changing it
    where the target can check alone (`check_arrays`), else by loading them and restoring."""
    check = getattr(target, "check_arrays", None)
    if callable(check):
        check(prepare_arrays(target, arrays))
        return
    with loaded(target, arrays):
        pass


@contextmanager
def loaded(target: ProbeTarget, arrays: Arrays) -> Iterator[ProbeTarget]:
    """Load `arrays` into the target for a private computation, restoring the app's adapter."""
    with preserved_adapter(target):
        target.load_arrays(prepare_arrays(target, arrays))
        yield target
