"""The scorer's inputs and outputs: token requests and their log-likelihood scores.

Kept free of torch so that mode declarations (flwr_trust.modes) and the detectors can be
imported without loading a deep-learning framework.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

Precision = Literal["fp32", "bf16", "auto"]
PRECISIONS: tuple[str, ...] = ("fp32", "bf16", "auto")


@dataclass(frozen=True)
class Request:
    """Score log p(continuation | context). Both are token id tuples; context is non-empty."""

    context: tuple[int, ...]
    continuation: tuple[int, ...]


@dataclass(frozen=True)
class Scores:
    """Per request: summed log-probability and number of continuation tokens scored."""

    logprob: np.ndarray
    n_tokens: np.ndarray

    @property
    def mean_logprob(self) -> np.ndarray:
        return self.logprob / np.maximum(self.n_tokens, 1)
