"""What a model's exchanged arrays look like, without loading any weights.

`adapter_shape` reads a LoRA adapter's rank and target modules from array names and shapes
(peft's ``get_peft_model_state_dict`` layout: ``...<module>.lora_A.weight`` of shape
``(r, in)``). `expected_shapes` builds the base model on PyTorch's meta device (no memory, no
weights; a 7B model takes well under a second) and returns the names and shapes the arrays of
that model, with that adapter config, must have. Together they let the server check, before it
loads anything, that the arrays a run starts from fit the model it will probe with.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from flwr_trust.errors import ModelLoadError

Shapes = Mapping[str, tuple[int, ...]]
LORA_MARKERS = (".lora_A.", ".lora_B.")
# Adapter layouts whose options cannot be read back from the arrays alone.
OTHER_ADAPTER_MARKERS = ("lora_magnitude_vector", "lora_embedding_A", "lora_embedding_B",
                         "ia3_l", ".oft_", ".boft_", ".vera_", "prompt_embeddings")


@dataclass(frozen=True)
class AdapterShape:
    """kind: "full" (a plain state dict), "lora" (rank and target modules read from the
    names), or "other" (an adapter whose config the arrays do not carry, e.g. DoRA, IA3)."""

    kind: str
    rank: int = 0
    target_modules: tuple[str, ...] = ()
    ranks: tuple[int, ...] = ()  # every distinct rank seen (more than one: a rank pattern)


def adapter_shape(shapes: Shapes) -> AdapterShape:
    """The adapter layout of arrays given as name -> shape."""
    names = list(shapes)
    if any(marker in name for name in names for marker in OTHER_ADAPTER_MARKERS):
        return AdapterShape("other")
    lora = [n for n in names if any(m in n for m in LORA_MARKERS)]
    if not lora:
        return AdapterShape("full")
    ranks, targets = set(), set()
    for name in lora:
        module, part = _split_lora_name(name)
        targets.add(module.rsplit(".", 1)[-1])
        shape = tuple(shapes[name])
        if len(shape) == 2:
            ranks.add(shape[0] if part == "lora_A" else shape[1])
    ordered = tuple(sorted(ranks))
    return AdapterShape("lora", ordered[0] if len(ordered) == 1 else 0, tuple(sorted(targets)),
                        ordered)


def _split_lora_name(name: str) -> tuple[str, str]:
    for part in ("lora_A", "lora_B"):
        marker = f".{part}."
        if marker in name:
            return name.split(marker, 1)[0], part
    raise ValueError(name)  # callers pass LoRA names only


def base_config(spec: str) -> Any:
    """The transformers config of a model spec ("tiny", "default" or a model folder), read
    without loading weights."""
    if spec == "tiny":
        from flwr_trust.models.tiny import tiny_config

        return tiny_config()
    from transformers import AutoConfig

    if spec == "default":
        from flwr_trust.models.default_model import default_model_config

        return default_model_config()
    path = Path(spec)
    if not (path / "config.json").is_file():
        raise ModelLoadError(f"{spec} has no config.json: not a Hugging Face model folder.",
                             "Point to the folder that save_pretrained() wrote.")
    try:
        return AutoConfig.from_pretrained(path)
    except (OSError, ValueError, KeyError) as exc:
        raise ModelLoadError(f"Could not read the model config in {spec}: {exc}",
                             "Point to the folder that save_pretrained() wrote.") from exc


def expected_shapes(spec: str | os.PathLike[str], peft_config: Any | None) -> dict[str, tuple]:
    """Names and shapes of the arrays of model `spec` (full state dict, or the adapter's state
    dict under `peft_config`), from a weightless meta-device copy of the model."""
    import torch
    from transformers import AutoModelForCausalLM

    config = base_config(str(spec))
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
        if peft_config is None:
            return {k: tuple(v.shape) for k, v in model.state_dict().items()}
        from peft import get_peft_model, get_peft_model_state_dict

        try:
            peft_model = get_peft_model(model, peft_config)
        except ValueError as exc:  # e.g. target modules the model does not have
            raise ModelLoadError(f"The adapter config does not fit the model: {exc}",
                                 "Check the target modules against the model's layer "
                                 "names.") from exc
        state = get_peft_model_state_dict(peft_model, save_embedding_layers=False)
        return {k: tuple(v.shape) for k, v in state.items()}


def fit_problems(given: Shapes, expected: Shapes) -> list[str]:
    """What keeps `given` arrays from loading into a model with `expected` arrays (empty if
    they fit): counts and examples of missing, unexpected and mis-shaped arrays."""
    missing = [k for k in expected if k not in given]
    unexpected = [k for k in given if k not in expected]
    shapes = [f"{k}: got {tuple(given[k])}, expected {tuple(expected[k])}"
              for k in expected if k in given and tuple(given[k]) != tuple(expected[k])]
    out = []
    if missing:
        out.append(f"{len(missing)} missing (e.g. {missing[:2]})")
    if unexpected:
        out.append(f"{len(unexpected)} unexpected (e.g. {unexpected[:2]})")
    if shapes:
        out.append(f"{len(shapes)} with wrong shape (e.g. {shapes[:2]})")
    return out
