"""Privatize before reporting: Gaussian mechanism, per-client RDP accounting, budget, shift sketch.

Which metrics need noise (DESIGN.md, "Privacy model"): metrics of a model on public probes are
post-processing of that model and are released as they are when the server already receives the
model; metrics of a model the server does not see, and every metric on private local data, go
through `release_within_budget`.
"""

from flwr_trust.privacy.accountant import ClientAccountant, load_accountant, save_accountant
from flwr_trust.privacy.budget import Budget, ReleaseOutcome, privacy_spent, release_within_budget
from flwr_trust.privacy.mechanism import (
    Noised,
    Statistic,
    clipped_mean,
    effective_noise_multiplier,
    gaussian_release,
    noise_std,
)
from flwr_trust.privacy.private_set import PrivateMetric, PrivateSet
from flwr_trust.privacy.state import MemoryState, StateStore

__all__ = ["Budget", "ClientAccountant", "MemoryState", "Noised", "PrivateMetric", "PrivateSet",
           "ReleaseOutcome", "StateStore", "Statistic", "clipped_mean",
           "effective_noise_multiplier", "gaussian_release", "load_accountant", "noise_std",
           "privacy_spent", "release_within_budget", "save_accountant"]
