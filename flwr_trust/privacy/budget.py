"""A client's (epsilon, delta) budget, and releasing private statistics only within it.

`release_within_budget` is the one entry point for every noised release: it loads the node's
accountant from the node state, checks BEFORE releasing whether one more release would push
the cumulative epsilon past the budget, and then either adds the noise and charges the
accountant, or refuses (and remembers that the budget is exhausted: no later release either).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from flwr_trust.privacy.accountant import load_accountant, save_accountant
from flwr_trust.privacy.mechanism import (
    Noised,
    Statistic,
    effective_noise_multiplier,
    gaussian_release,
)
from flwr_trust.privacy.state import StateStore

LOGGER = logging.getLogger("flwr")  # Flower's own logger, like its built-in mods


@dataclass(frozen=True)
class Budget:
    """Total privacy a client is willing to spend on released metrics over a run."""

    epsilon: float
    delta: float

    def __post_init__(self) -> None:
        if not (math.isfinite(self.epsilon) and self.epsilon > 0):
            raise ValueError(f"privacy epsilon must be positive and finite, not {self.epsilon}")
        if not 0 < self.delta < 1:
            raise ValueError(f"privacy delta must be in (0, 1), not {self.delta}")


@dataclass(frozen=True)
class ReleaseOutcome:
    """What a release attempt did. `released` is empty when it was refused."""

    released: Mapping[str, Noised]
    epsilon: float  # cumulative spend after this attempt
    releases: int  # number of releases accounted so far
    exhausted: bool
    effective_noise_multiplier: float
    refused: bool = False


def privacy_spent(state: StateStore, budget: Budget) -> tuple[float, int, bool]:
    """(cumulative epsilon, releases, exhausted flag) without releasing anything."""
    accountant, exhausted = load_accountant(state)
    return accountant.epsilon(budget.delta), accountant.releases, exhausted


def release_within_budget(stats: Sequence[Statistic], *, noise_multiplier: float,
                          budget: Budget, state: StateStore,
                          rng: np.random.Generator | None = None) -> ReleaseOutcome:
    """Noise and release `stats` as one Gaussian mechanism if the budget allows it.

    The accountant is charged with noise multiplier ``noise_multiplier / sqrt(len(stats))``
    (see `effective_noise_multiplier`). When that charge would exceed ``budget.epsilon`` nothing
    is released, one line is logged the first time, and the exhausted flag is kept in `state`.
    """
    accountant, exhausted = load_accountant(state)
    spent = accountant.epsilon(budget.delta)
    if not stats:
        return ReleaseOutcome({}, spent, accountant.releases, exhausted, 0.0)
    eff = effective_noise_multiplier(noise_multiplier, len(stats))
    if not exhausted and accountant.epsilon_after(eff, budget.delta) > budget.epsilon:
        exhausted = True
        save_accountant(state, accountant, exhausted)
        LOGGER.warning(
            "trust_mod: privacy budget exhausted: one more release would exceed epsilon=%g at "
            "delta=%g (spent %.3f over %d releases); private metrics are no longer released, "
            "training continues.", budget.epsilon, budget.delta, spent, accountant.releases)
    if exhausted:
        return ReleaseOutcome({}, spent, accountant.releases, True, eff, refused=True)
    released = gaussian_release(stats, noise_multiplier, rng or np.random.default_rng())
    accountant.step(eff)
    save_accountant(state, accountant, exhausted=False)
    return ReleaseOutcome(released, accountant.epsilon(budget.delta), accountant.releases,
                          False, eff)
