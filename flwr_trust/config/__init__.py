"""Configuration: one typed table of every ``trust.*`` key (`keys.KEYS`), the client mod's
settings (`client.parse_trust_config`) and TrustGuard's options (`server.guard_options`)."""

from flwr_trust.config.keys import KEYS, Key, TrustConfigError

__all__ = ["KEYS", "Key", "TrustConfigError"]
