"""Server strategies: `TrustGuard` wraps any Flower strategy; `strategy_from_config` builds one."""

from flwr_trust.guard.gate import TrustHalt
from flwr_trust.strategies.trust_guard import TrustGuard

__all__ = ["TrustGuard", "TrustHalt"]
