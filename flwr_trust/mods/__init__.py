"""Client mod: `trust_mod` adds private behavioral reports to any Flower ClientApp.

    from flwr_trust.mods import trust_mod, use_model
    app = ClientApp(mods=[trust_mod])        # configured by trust.* run-config keys
    ...
    use_model(context, model, tokenizer)     # in train/evaluate: probe the app's own model

or, for apps whose model or data is not described by config, `make_trust_mod(...)`; apps hand
the mod their local data with `provide_local_data(context, ...)`. See docs/client.md.
"""

from flwr_trust.mods.local_data import provide_local_data
from flwr_trust.mods.model_source import use_model
from flwr_trust.mods.trust_mod import make_trust_mod, trust_mod
from flwr_trust.reporter.local import LocalData

__all__ = ["LocalData", "make_trust_mod", "provide_local_data", "trust_mod", "use_model"]
