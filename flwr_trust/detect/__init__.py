"""Detectors: each failure mode's checks, all emitting `Alarm` objects."""

from flwr_trust.detect.alarm import Alarm
from flwr_trust.detect.behavior import (
    BehaviorMonitor,
    DetectionResult,
    DetectorConfig,
    MetricSpec,
    MonitorState,
    Observation,
    detect_round,
    observations_from_metrics,
    spend,
)
from flwr_trust.detect.registry import DETECTORS

__all__ = [
    "DETECTORS",
    "Alarm",
    "BehaviorMonitor",
    "DetectionResult",
    "DetectorConfig",
    "MetricSpec",
    "MonitorState",
    "Observation",
    "detect_round",
    "observations_from_metrics",
    "spend",
]
