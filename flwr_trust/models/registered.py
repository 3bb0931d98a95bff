"""Which model object an app trains, per node: the app registers it, the client mod probes it.

An app calls ``use_model(context, model, tokenizer)`` (flwr_trust.mods) in its train or
evaluate function. The registration is held strongly until the mod has finished the message
(`release`), then only weakly: a model the app caches survives to the next message and is used
there before the app runs, while a model the app builds per message (FlowerTune's template) is
freed with the app's own reference, so the registry never keeps a second model alive. Keys are
(run id, node id): in simulation one process serves many nodes in turn. Flower-free.
"""

from __future__ import annotations

import threading
import weakref
from typing import Any

_LOCK = threading.Lock()
_STRONG: dict[tuple[int, int], tuple[Any, Any]] = {}
_WEAK: dict[tuple[int, int], tuple[weakref.ref[Any], Any]] = {}


def node_key(context: Any) -> tuple[int, int]:
    """(run id, node id) of a Flower Context (or anything with those attributes)."""
    return int(getattr(context, "run_id", 0)), int(getattr(context, "node_id", 0))


def register(context: Any, model: Any, tokenizer: Any) -> None:
    """Hold `model` (and its tokenizer) as the one this node's app trains."""
    if not hasattr(model, "parameters") or not callable(getattr(model, "forward", None)):
        from flwr_trust.errors import TrustError

        raise TrustError(f"use_model() got a {type(model).__name__}, not a torch model.",
                         "Pass the model object the app trains (e.g. the peft model of "
                         "get_peft_model) and its tokenizer: use_model(context, model, "
                         "tokenizer).")
    if tokenizer is None or not callable(getattr(tokenizer, "encode", None)):
        from flwr_trust.errors import TrustError

        raise TrustError(f"use_model() got a {type(tokenizer).__name__} as tokenizer.",
                         "Pass the model's Hugging Face tokenizer as the third argument.")
    key = node_key(context)
    with _LOCK:
        _STRONG[key] = (model, tokenizer)
        _WEAK[key] = (weakref.ref(model), tokenizer)


def registered(context: Any) -> tuple[Any, Any] | None:
    """(model, tokenizer) this node's app registered, if that model is still alive."""
    key = node_key(context)
    with _LOCK:
        if key in _STRONG:
            return _STRONG[key]
        ref, tokenizer = _WEAK.get(key, (None, None))
        model = ref() if ref is not None else None
        if model is None:
            _WEAK.pop(key, None)
            return None
        return model, tokenizer


def release() -> None:
    """Stop holding registered models strongly (the mod calls it when a message is done), and
    forget registrations whose model is gone."""
    with _LOCK:
        _STRONG.clear()
        for key in [k for k, (ref, _) in _WEAK.items() if ref() is None]:
            del _WEAK[key]


def forget() -> None:
    """Drop every registration (tests)."""
    with _LOCK:
        _STRONG.clear()
        _WEAK.clear()
