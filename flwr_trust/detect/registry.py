"""Registry of behavioral detectors: mode id -> module with MODE and WATCH.

A new failure mode is one module with `MODE: str` and `WATCH: dict[str, MetricSpec]` added here.
"""

from __future__ import annotations

from types import ModuleType

from flwr_trust.detect import alignment, bias, calibration, capability, fairness, memorization
from flwr_trust.detect.behavior import MetricSpec

DETECTORS: dict[str, ModuleType] = {m.MODE: m for m in (
    bias, fairness, alignment, capability, calibration, memorization)}


def watched(mode: str) -> dict[str, MetricSpec]:
    """The metrics `mode` watches, with their default specs (empty for an unknown mode)."""
    module = DETECTORS.get(mode)
    return dict(module.WATCH) if module is not None else {}
