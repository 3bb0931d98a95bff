"""flwr-trust: make silent failures of federated LLM personalization visible and stoppable.

probe (public behavioral probes) -> score (BehaviorProfile) -> privatize (client mod) ->
detect -> gate (TrustGuard strategy) -> report (TensorBoard, audit log, HTML).
"""

__version__ = "0.1.0"
