"""The client's trust report, Flower-free (`ClientReporter`): probe the model of a message on
the round's probe sample, compute private statistics on local data, privatize, and lay out the
``trust.*`` numbers. `flwr_trust.mods.trust_mod` adapts it to Flower messages."""

from flwr_trust.reporter.local import LocalData
from flwr_trust.reporter.reporter import ClientReporter, Incoming, RoundPlan, lazy

__all__ = ["ClientReporter", "Incoming", "LocalData", "RoundPlan", "lazy"]
