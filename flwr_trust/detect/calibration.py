"""Calibration drift: expected calibration error and confidence on unanswerable items.

Overconfidence after fine-tuning shows up as a higher ECE on answerable items and a higher top
choice probability where no choice is right.
"""

from __future__ import annotations

from flwr_trust.detect.behavior import MetricSpec

MODE = "calibration"
WATCH = {
    "ece": MetricSpec("higher", 0.05, "expected calibration error"),
    "unanswerable-confidence": MetricSpec(
        "higher", 0.10, "mean top-choice probability on unanswerable items"),
}
