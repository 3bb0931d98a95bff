"""Behavior scoring: probe suites in, a BehaviorProfile (value, stderr, n per metric) out."""

from flwr_trust.scoring.profile import BehaviorProfile, MetricValue

__all__ = ["BehaviorProfile", "MetricValue", "profile_model"]


def __getattr__(name: str):  # lazy: the runner imports torch
    if name == "profile_model":
        from flwr_trust.scoring.runner import profile_model

        return profile_model
    raise AttributeError(name)
