"""Which model the mod probes: the app's own, so a client holds one copy of the base model.

In order of preference, per message:

1. the model the app registered with ``use_model(context, model, tokenizer)`` (one line in its
   train/evaluate function): probed in place, on its own device and dtype, and restored exactly
   (`flwr_trust.models.AppModel`);
2. the app's ``make_trust_mod(model_loader=...)``;
3. the mod's own copy (`get_bridge(trust.model, trust.lora.*)`), loaded only after the app
   returned without registering, with one warning saying the process now holds two copies.

Before the app runs (the incoming check) only a model already at hand is used: one the app
registered on an earlier message and still keeps, the loader, or an own copy loaded earlier.
Otherwise the incoming check waits until the app has returned, so nothing is ever loaded just
to check arrays the app is about to load itself.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from flwr.app import Context

from flwr_trust.config.client import TrustConfig
from flwr_trust.models import registered
from flwr_trust.models.app_model import AppModel
from flwr_trust.reporter.probing import ProbeTarget

LOGGER = logging.getLogger("flwr")
ModelLoader = Callable[[Context], ProbeTarget]


class ModelSource:
    """Resolves the probe target of each message (see the module docstring)."""

    def __init__(self, loader: ModelLoader | None = None) -> None:
        self.loader = loader
        self._own: set[tuple[Any, ...]] = set()
        self._warned = False

    def before_app(self, cfg: TrustConfig, context: Context) -> Callable[[], ProbeTarget] | None:
        """A factory of the target if one is at hand without loading a model, else None."""
        app = registered.registered(context)
        if app is not None:
            return lambda: AppModel(*app, device=cfg.device)
        if self.loader is not None:
            loader = self.loader
            return lambda: loader(context)
        if _own_key(cfg) in self._own:
            return lambda: self._own_copy(cfg)
        return None

    def after_app(self, cfg: TrustConfig, context: Context) -> ProbeTarget:
        """The target once the app has returned (it may have registered its model)."""
        app = registered.registered(context)
        if app is not None:
            return AppModel(*app, device=cfg.device)
        if self.loader is not None:
            return self.loader(context)
        return self._own_copy(cfg)

    def _own_copy(self, cfg: TrustConfig) -> ProbeTarget:
        from flwr_trust.models import get_bridge
        from flwr_trust.scoring.placement import probe_device

        bridge = get_bridge(cfg.model, cfg.lora_config(), activate=False)
        self._own.add(_own_key(cfg))
        target = probe_device(bridge.model, cfg.device)
        if target is not None:
            bridge.model.to(target)  # the mod's own copy: moved once, for good
        if not self._warned:
            self._warned = True
            LOGGER.warning(
                "trust_mod: the app registered no model, so the mod loaded its own copy of "
                "trust.model = %r (this process now holds the base model twice) and probes it "
                "on %s. Add `use_model(context, model, tokenizer)` (from flwr_trust.mods) to "
                "the app's train and evaluate functions to probe the app's own model, on its "
                "device.", cfg.model, next(bridge.model.parameters()).device)
        return bridge


def _own_key(cfg: TrustConfig) -> tuple[Any, ...]:
    return (cfg.model, cfg.lora_r, cfg.lora_alpha, cfg.lora_target_modules, cfg.lora_dropout)


def use_model(context: Context, model: Any, tokenizer: Any) -> None:
    """Tell the trust mod which model this app trains, so it probes that object instead of
    loading a copy: call it in the train and evaluate functions, once the model exists.

        model = get_model(cfg.model)                 # the app's own (peft) model
        use_model(context, model, tokenizer)

    The mod probes the arrays of the message (the reply's on train, the received ones on
    evaluate) on this model, on its device and dtype, and leaves it exactly as it was (weights,
    train/eval mode, requires_grad, active adapter, device). It holds the model only until the
    message is done (weakly afterwards), so a model built per message is freed as before.
    """
    registered.register(context, model, tokenizer)
