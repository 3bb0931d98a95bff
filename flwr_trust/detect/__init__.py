"""Detectors: each failure mode's checks, all emitting `Alarm` objects."""

from flwr_trust.detect.alarm import Alarm

__all__ = ["Alarm"]
