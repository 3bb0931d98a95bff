"""Build a TrustGuard from Flower run config (`[tool.flwr.app.config]`), for config-only apps.

    trust.strategy = "fedprox"            # inner strategy (see STRATEGIES)
    trust.fedprox.proximal-mu = 0.1       # its own options, kebab-case, under trust.<strategy>.*
    trust.dp = "server-fixed"             # optional Flower DP wrapper (see DP_WRAPPERS)
    trust.dp.noise-multiplier = 1.0       # the wrapper's options under trust.dp.*
    trust.gate = "quarantine"             # off | quarantine | rollback | halt
    ...                                   # every other key: flwr_trust.config.keys

Unknown names, options and keys are errors that say what is valid.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from typing import Any

from flwr.serverapp import strategy as flwr_strategies

from flwr_trust.config.server import DP_KEY, STRATEGY_KEY, check_server_keys, guard_options
from flwr_trust.errors import TrustError
from flwr_trust.strategies.trust_guard import TrustGuard

STRATEGIES: dict[str, type] = {
    "fedavg": flwr_strategies.FedAvg, "fedprox": flwr_strategies.FedProx,
    "fedadam": flwr_strategies.FedAdam, "fedyogi": flwr_strategies.FedYogi,
    "fedadagrad": flwr_strategies.FedAdagrad, "fedavgm": flwr_strategies.FedAvgM,
    "fedmedian": flwr_strategies.FedMedian, "fedtrimmedavg": flwr_strategies.FedTrimmedAvg,
    "krum": flwr_strategies.Krum, "multikrum": flwr_strategies.MultiKrum,
    "bulyan": flwr_strategies.Bulyan, "qfedavg": flwr_strategies.QFedAvg,
}
DP_WRAPPERS: dict[str, type] = {
    "server-fixed": flwr_strategies.DifferentialPrivacyServerSideFixedClipping,
    "client-fixed": flwr_strategies.DifferentialPrivacyClientSideFixedClipping,
    "server-adaptive": flwr_strategies.DifferentialPrivacyServerSideAdaptiveClipping,
    "client-adaptive": flwr_strategies.DifferentialPrivacyClientSideAdaptiveClipping,
}


def _kwargs_for(cls: type, prefix: str, cfg: Mapping[str, Any]) -> dict[str, Any]:
    """Options `prefix<kebab-name>` mapped onto `cls.__init__` keywords, checked by name."""
    params = {n: p for n, p in inspect.signature(cls.__init__).parameters.items()
              if n not in ("self", "strategy")
              and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
    valid = {n.replace("_", "-"): n for n in params}
    out = {}
    for key, value in cfg.items():
        if not key.startswith(prefix):
            continue
        name = key[len(prefix):]
        if name not in valid:
            raise TrustError(f"Unknown option {key!r} for {cls.__name__}.",
                             f"Valid options: {', '.join(prefix + v for v in sorted(valid))}.")
        out[valid[name]] = value
    return out


def inner_strategy(cfg: Mapping[str, Any]) -> Any:
    """The inner Flower strategy named by trust.strategy (FedAvg by default), with its
    options, wrapped in the DP wrapper trust.dp names (if any)."""
    name = str(cfg.get(STRATEGY_KEY, "fedavg")).lower()
    if name not in STRATEGIES:
        raise TrustError(f"Unknown trust.strategy {name!r}.",
                         f"Use one of {', '.join(sorted(STRATEGIES))}.")
    check_server_keys(cfg, name, STRATEGIES)
    try:
        inner = STRATEGIES[name](**_kwargs_for(STRATEGIES[name], f"trust.{name}.", cfg))
    except (TypeError, ValueError) as exc:
        raise TrustError(f"trust.strategy = {name!r} could not be built: {exc}.",
                         f"Set its options as trust.{name}.<option> (kebab-case).") from exc
    if DP_KEY not in cfg:
        return inner
    dp = str(cfg[DP_KEY]).lower()
    if dp not in DP_WRAPPERS:
        raise TrustError(f"Unknown trust.dp {dp!r}.",
                         f"Use one of {', '.join(sorted(DP_WRAPPERS))}.")
    try:
        return DP_WRAPPERS[dp](inner, **_kwargs_for(DP_WRAPPERS[dp], f"{DP_KEY}.", cfg))
    except TypeError as exc:
        raise TrustError(f"trust.dp = {dp!r} is missing options: {exc}.",
                         "Set e.g. trust.dp.noise-multiplier, trust.dp.clipping-norm and "
                         "trust.dp.num-sampled-clients.") from exc


def strategy_from_config(cfg: Mapping[str, Any], **overrides: Any) -> TrustGuard:
    """TrustGuard(inner from trust.strategy, guard options from trust.*); keywords override."""
    inner = inner_strategy(cfg)
    return TrustGuard(inner, **(guard_options(cfg) | overrides))
