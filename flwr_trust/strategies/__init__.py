"""Server strategies: `TrustGuard` wraps any Flower strategy; `strategy_from_config` builds one
from run config; `TrustHalt` is what the halt gate raises."""

from flwr_trust.guard.gates import TrustHalt
from flwr_trust.strategies.from_config import strategy_from_config
from flwr_trust.strategies.trust_guard import TrustGuard

__all__ = ["TrustGuard", "TrustHalt", "strategy_from_config"]
