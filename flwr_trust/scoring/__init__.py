"""Behavior scoring: probe suites in, a BehaviorProfile (value, stderr, n per metric) out."""

from flwr_trust.scoring.profile import BehaviorProfile, MetricValue, parse_metric_dict

__all__ = ["BehaviorProfile", "MetricValue", "parse_metric_dict", "profile_model"]


def __getattr__(name: str):  # lazy: runner imports every mode module and torch
    if name == "profile_model":
        from flwr_trust.scoring.runner import profile_model

        return profile_model
    raise AttributeError(name)
