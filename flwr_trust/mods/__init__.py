"""Client mods: `trust_mod` adds private behavioral reports to any Flower ClientApp.

    from flwr_trust.mods import trust_mod
    app = ClientApp(mods=[trust_mod])        # configured by trust.* run-config keys

or, for apps whose model or data is not described by config, `make_trust_mod(...)`.
See docs/client.md.
"""

from flwr_trust.mods.config import (
    DEFAULTS,
    TrustConfig,
    TrustConfigError,
    parse_server_config,
    parse_trust_config,
)
from flwr_trust.mods.local_data import LocalData, canary_text, provide_local_data
from flwr_trust.mods.policy import Rule, Violation, check_policy, parse_policy
from flwr_trust.mods.sampling import round_indices, round_sample, sample_suites
from flwr_trust.mods.trust_mod import TrustMod, make_trust_mod, trust_mod

__all__ = ["DEFAULTS", "LocalData", "Rule", "TrustConfig", "TrustConfigError", "TrustMod",
           "Violation", "canary_text", "check_policy", "make_trust_mod", "parse_policy",
           "parse_server_config", "parse_trust_config", "provide_local_data", "round_indices",
           "round_sample", "sample_suites", "trust_mod"]
