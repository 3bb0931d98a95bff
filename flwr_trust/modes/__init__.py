"""The registry of failure modes: one `FailureMode` declaration per mode, read by everything.

    from flwr_trust import modes
    modes.ids()                          # ('bias', 'fairness', ..., 'memorization')
    modes.get("alignment").headline      # Metric('refusal-rate', worse='lower', ...)
    modes.watched("bias", "stereotype-pref/gender")   # the Metric, or None if not watched

A new mode is one module declaring a `FailureMode` plus one probe-suite data file; `register`
adds it for this process (scoring, suite validation, detection, the client mod and the report
pick it up), `registered(mode)` does so for a `with` block (tests).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from flwr_trust.errors import TrustError
from flwr_trust.modes.base import FailureMode, LocalEvidence, Metric, SampleCount

_REGISTRY: dict[str, FailureMode] = {}


def register(mode: FailureMode) -> FailureMode:
    """Add a mode (its id must be new); returns it, so a module can write
    ``MODE = register(FailureMode(...))``."""
    if not mode.id or not mode.id.replace("-", "").isalnum() or mode.id != mode.id.lower():
        raise TrustError(f"Mode id {mode.id!r} is not a lowercase kebab-case word.",
                         "Use e.g. 'toxicity'.")
    if mode.id in _REGISTRY:
        raise TrustError(f"A failure mode {mode.id!r} is already registered.",
                         "Pick another id, or unregister the old one first.")
    _REGISTRY[mode.id] = mode
    return mode


def unregister(mode_id: str) -> None:
    _REGISTRY.pop(mode_id, None)


@contextmanager
def registered(mode: FailureMode) -> Iterator[FailureMode]:
    """The mode is registered inside the block only."""
    register(mode)
    try:
        yield mode
    finally:
        unregister(mode.id)


def ids() -> tuple[str, ...]:
    """Every registered mode id, in registration order (the six built-in ones first)."""
    return tuple(_REGISTRY)


def find(mode_id: str) -> FailureMode | None:
    return _REGISTRY.get(mode_id)


def get(mode_id: str) -> FailureMode:
    """The mode, or a TrustError naming the known ones."""
    mode = _REGISTRY.get(mode_id)
    if mode is None:
        raise TrustError(f"Unknown failure mode {mode_id!r}.", f"Use one of {', '.join(ids())}.")
    return mode


def metric(mode_id: str, name: str) -> Metric | None:
    """The declared metric `name` ("<metric>/<group>" for per-group ones) of a mode, or None."""
    mode = _REGISTRY.get(mode_id)
    return mode.metric(name) if mode is not None else None


def watched(mode_id: str, name: str) -> Metric | None:
    """The metric if the detectors watch it, else None."""
    mode = _REGISTRY.get(mode_id)
    return mode.watch(name) if mode is not None else None


def tolerance_keys() -> list[str]:
    """Every "mode.metric" that takes a tolerance (watched metrics)."""
    return [f"{m.id}.{x.name}" for m in _REGISTRY.values() for x in m.metrics if x.watched]


def _register_builtins() -> tuple[str, ...]:
    from flwr_trust.modes import (  # noqa: F401 - each registers its mode on import
        alignment,
        bias,
        calibration,
        capability,
        fairness,
        memorization,
    )

    order = ("bias", "fairness", "alignment", "capability", "calibration", "memorization")
    for mode_id in order:  # registration order = the documented order
        _REGISTRY[mode_id] = _REGISTRY.pop(mode_id)
    return order


MODES: tuple[str, ...] = _register_builtins()
"""The six built-in modes. Code that must also see modes registered later calls `ids()`."""

__all__ = ["MODES", "FailureMode", "LocalEvidence", "Metric", "SampleCount", "find", "get",
           "ids", "metric", "register", "registered", "tolerance_keys", "unregister",
           "watched"]
