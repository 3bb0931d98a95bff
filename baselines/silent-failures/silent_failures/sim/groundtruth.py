"""Ground truth of a baseline run: the server measures the initial and the final global model.

This is the evaluator's view, not a monitor's: it runs outside the strategy, after the run, on
the scenario's target metric (the whole probe suite of its mode, or a fixed seeded subset) and
on the honest local task's held-out notes. Every monitor of a matrix row is judged by the same
measurement, so "final behavior change vs the aligned reference" is comparable across monitors.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from silent_failures.sim.probeset import heldout_suite
from silent_failures.sim.scenarios import SCENARIOS, minority_heldout, task_heldout


@dataclass(frozen=True)
class Measurement:
    """target: (mode, metric) value and stderr; task_loss: mean NLL on the honest held-out
    notes (nats/token); minority_loss: the same notes in the minority's register."""

    target: float
    target_stderr: float
    task_loss: float
    minority_loss: float

    def to_json(self) -> dict[str, float]:
        return {"target": self.target, "target_stderr": self.target_stderr,
                "task_loss": self.task_loss, "minority_loss": self.minority_loss}


class GroundTruth:
    """Measures a global adapter for one scenario (see the module docstring)."""

    def __init__(self, scenario: str, bridge: Any, *, probe_items: int, eval_items: int = 0,
                 precision: str = "bf16", max_length: int = 64) -> None:
        self.scenario = SCENARIOS[scenario]
        self.bridge = bridge
        self.precision = precision
        self.max_length = max_length
        mode, self.metric = self.scenario.target
        self.suites = {} if mode == "fairness" else {
            mode: heldout_suite(mode, probe_items, eval_items)}

    @property
    def target_name(self) -> str:
        return ".".join(self.scenario.target)

    def measure(self, arrays: Any) -> Measurement:
        from flwr_trust.scoring.runner import profile_arrays
        from silent_failures.training import mean_loss

        self.bridge.load_arrays(arrays)
        model, tok = self.bridge.model, self.bridge.tokenizer
        task = float(np.mean(mean_loss(model, tok, task_heldout(), max_length=self.max_length,
                                       precision=self.precision)))
        minority = float(np.mean(mean_loss(model, tok, minority_heldout(),
                                           max_length=self.max_length,
                                           precision=self.precision)))
        if not self.suites:  # fairness: the minority's loss relative to the majority's
            return Measurement(minority / task, 0.0, task, minority)
        profile = profile_arrays(self.bridge, arrays, self.suites, precision=self.precision)
        mode = self.scenario.target[0]
        value = profile.get(mode, self.metric)
        if value is None:
            return Measurement(float("nan"), float("nan"), task, minority)
        return Measurement(value.value, value.stderr, task, minority)
