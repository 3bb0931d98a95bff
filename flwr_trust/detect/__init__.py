"""Detectors: behavioural tests with a bounded false-alarm rate, update checks and the integrity
audit, all emitting `Alarm` objects. Flower-free."""

from flwr_trust.detect.alarm import Alarm
from flwr_trust.detect.behavior import BehaviorMonitor, DetectionResult, detect_round
from flwr_trust.detect.config import DetectorConfig
from flwr_trust.detect.monitor_state import MonitorState
from flwr_trust.detect.statistics import spend
from flwr_trust.protocol import Observation, observations

__all__ = ["Alarm", "BehaviorMonitor", "DetectionResult", "DetectorConfig", "MonitorState",
           "Observation", "detect_round", "observations", "spend"]
