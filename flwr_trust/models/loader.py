"""Load a base causal LM once per process: "default" (SmolLM2), "tiny" or a model folder."""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from flwr_trust.errors import ModelLoadError

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # never wait on a model hub we cannot reach

_CACHE: dict[str, LoadedModel] = {}
_LOCK = threading.Lock()


@dataclass
class LoadedModel:
    """A base model and its tokenizer; `name` says where it came from (for reports)."""

    model: Any  # transformers.PreTrainedModel
    tokenizer: Any  # transformers tokenizer with a chat template when the model has one
    name: str


def resolve_model_spec(spec: str | os.PathLike[str]) -> str:
    """Normalize a model spec to a cache key: 'tiny', or an absolute folder path."""
    spec = str(spec)
    if spec == "tiny":
        return "tiny"
    if spec == "default":
        from flwr_trust.models.default_model import ensure_default_model

        return str(ensure_default_model().resolve())
    path = Path(spec).expanduser()
    if not path.is_dir():
        path = cached_hub_folder(spec) or path
    if not path.is_dir():
        raise ModelLoadError(
            f"Model {spec!r} is neither a local folder nor a model in the Hugging Face cache.",
            "Use the model `default` (the embedded SmolLM2), `tiny`, or a local Hugging Face "
            "model folder containing config.json (flwr-trust never downloads models).")
    if not (path / "config.json").is_file():
        raise ModelLoadError(f"{spec} has no config.json: not a Hugging Face model folder.",
                             "Point to the folder that save_pretrained() wrote.")
    return str(path.resolve())


def cached_hub_folder(name: str) -> Path | None:
    """The local snapshot folder of Hugging Face model `name` (e.g. "mistralai/Mistral-7B-v0.3",
    as FlowerTune's model.name gives it) if the Hugging Face cache holds one; never downloads."""
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(name, local_files_only=True))
    except Exception:  # not a repo id, or not cached: both mean "not here"
        return None


def load_base_model(spec: str | os.PathLike[str] = "default", *,
                    slot: str = "full") -> LoadedModel:
    """Return the process-wide base model for `spec`, loading it on first use only.

    `slot` separates copies that cannot share weights in place: peft injects adapter layers into
    the model it wraps, and adapters of different types (LoRA vs IA3) cannot live on one model,
    so each adapter type (and plain full-weight use) gets its own copy, loaded once.
    """
    key = f"{resolve_model_spec(spec)}::{slot}"
    with _LOCK:
        if key not in _CACHE:
            _CACHE[key] = _load(key.rsplit("::", 1)[0])
        return _CACHE[key]


def load_uncached_model(spec: str | os.PathLike[str] = "default") -> LoadedModel:
    """A fresh private copy of the base model for `spec`, not the process-wide one: for callers
    that change the weights in place (training an adapter) while others keep using the shared
    copy. Each call loads the model again."""
    return _load(resolve_model_spec(spec))


def clear_model_cache() -> None:
    """Forget loaded base models (tests; freeing memory)."""
    with _LOCK:
        _CACHE.clear()


def _load(key: str) -> LoadedModel:
    if key == "tiny":
        from flwr_trust.models.tiny import build_tiny_model, build_tiny_tokenizer

        return LoadedModel(build_tiny_model(), build_tiny_tokenizer(), "tiny")
    from transformers import AutoModelForCausalLM, AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(key)
        model = AutoModelForCausalLM.from_pretrained(key)
    except (OSError, ValueError, KeyError) as exc:
        raise ModelLoadError(
            f"Could not load a causal language model from {key}: {exc}",
            "Check that the folder holds a complete save_pretrained() checkpoint "
            "(config.json, weights, tokenizer files).") from exc
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    model.eval()
    return LoadedModel(model, tokenizer, Path(key).name)
