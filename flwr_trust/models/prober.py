"""The server's probe of a model given as Flower arrays: load them into the process-wide base
model (with the run's adapter config) and score the suites (the guard core's `Prober`)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from flwr_trust.probes.suite import ProbeSuite
from flwr_trust.scoring.profile import BehaviorProfile
from flwr_trust.scoring.requests import Precision


class BridgeProber:
    """Scores arrays on the server. The base model is loaded on the first probe only."""

    def __init__(self, model: str, peft_config: Any | None = None,
                 precision: Precision = "fp32") -> None:
        self.model = model
        self.peft_config = peft_config
        self.precision = precision
        self._bridge: Any = None

    @property
    def bridge(self) -> Any:
        if self._bridge is None:
            from flwr_trust.models import get_bridge

            self._bridge = get_bridge(self.model, self.peft_config)
        return self._bridge

    def probe(self, arrays: Any, suites: Mapping[str, ProbeSuite]) -> BehaviorProfile:
        from flwr_trust.scoring.runner import profile_arrays

        return profile_arrays(self.bridge, arrays, suites, precision=self.precision)

    def screen(self, arrays: Any, suites: Mapping[str, ProbeSuite],
               metrics: Mapping[str, Any]) -> Any:
        """The linear screen of `metrics` at `arrays` (flwr_trust.scoring.linear): what the guard
        ranks clients by when a round is too large for leave-one-out (guard/screened.py)."""
        from flwr_trust.scoring.linear import linear_screen

        return linear_screen(self.bridge, arrays, suites, metrics=metrics,
                             precision=self.precision)
