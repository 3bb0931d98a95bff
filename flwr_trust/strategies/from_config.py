"""Build a TrustGuard from Flower run config (`[tool.flwr.app.config]`), for config-only apps.

    trust.strategy = "fedprox"            # inner strategy (see STRATEGIES)
    trust.fedprox.proximal-mu = 0.1       # its own options, kebab-case, under trust.<strategy>.*
    trust.dp = "server-fixed"             # optional Flower DP wrapper (see DP_WRAPPERS)
    trust.dp.noise-multiplier = 1.0       # the wrapper's options under trust.dp.*
    trust.gate = "quarantine"             # off | quarantine | rollback | halt
    ...                                   # every other key: flwr_trust.config.keys

FlowerTune's own keys are honoured: ``strategy.fraction-train`` (or the older
``strategy.fraction-fit``) and ``strategy.fraction-evaluate`` set the inner strategy's
fractions unless ``trust.<strategy>.fraction-*`` does; ``model.name`` and ``model.lora.*`` give
the server's model and adapter (resolved at the start of the run: startup.py).

Every ``trust.*`` key of both sides is checked here, names and values (one config serves the
server and the clients): a typo fails at startup, not in every client's reply. Unknown names,
options and keys are errors that say what is valid.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Mapping
from typing import Any

from flwr.serverapp import strategy as flwr_strategies

from flwr_trust.config.client import parse_trust_config
from flwr_trust.config.keys import Key, suggest
from flwr_trust.config.server import DP_KEY, STRATEGY_KEY, check_server_keys, guard_options
from flwr_trust.errors import TrustError
from flwr_trust.strategies.trust_guard import TrustGuard

log = logging.getLogger("flwr.trust")  # under Flower's logger: shown by `flwr run --stream`

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
# FlowerTune's strategy keys -> the inner strategy's keyword (first key present wins).
FLOWERTUNE_FRACTIONS = {"fraction_train": ("strategy.fraction-train", "strategy.fraction-fit"),
                        "fraction_evaluate": ("strategy.fraction-evaluate",)}


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
            options = [prefix + v for v in sorted(valid)]
            raise TrustError(f"Unknown option {key!r} for {cls.__name__}"
                             f"{suggest(key, options)}.", f"Valid options: {', '.join(options)}.")
        out[valid[name]] = _checked(key, value, params[valid[name]])
    return out


def _checked(key: str, value: Any, param: inspect.Parameter) -> Any:
    """An option's value read as the keyword's declared type (or its default's): Flower passes
    them on unchecked ("half" as a fraction crashed later with a traceback, 2.0 waited forever
    for twice the nodes, "3" nodes to select failed every round); fractions within [0, 1],
    counts not negative. Options of other types (callables, accountants) pass as they are."""
    name = key.rsplit(".", 1)[-1]
    declared = param.annotation if param.annotation in (bool, int, float, str) else \
        type(param.default)
    for kind, plain in (("bool", bool), ("int", int), ("float", float), ("str", str)):
        if declared is plain:
            default = None if param.default is param.empty else param.default
            low, high = (0.0, 1.0) if name.startswith("fraction-") else (None, None)
            if kind == "int" and name.startswith(("min-", "num-")):
                low = 0
            return Key(key, kind, default, "", "server", low=low, high=high).read(value)
    return value


def flowertune_fractions(cls: type, kwargs: dict[str, Any], cfg: Mapping[str, Any]
                         ) -> list[str]:
    """Set the inner strategy's fractions from FlowerTune's strategy.* keys where its own
    trust.<strategy>.fraction-* keys do not; returns what was set, for the startup log."""
    params = inspect.signature(cls.__init__).parameters
    notes = []
    for keyword, keys in FLOWERTUNE_FRACTIONS.items():
        key = next((k for k in keys if k in cfg), None)
        if key is None or keyword not in params:
            continue
        value = Key(key, "float", 1.0, "", "server", low=0.0, high=1.0).read(cfg[key])
        if keyword in kwargs:
            notes.append(f"{keyword}={kwargs[keyword]} (trust.* wins over {key} = {value})")
            continue
        kwargs[keyword] = value
        notes.append(f"{keyword}={value} from {key}")
    return notes


def inner_strategy(cfg: Mapping[str, Any]) -> Any:
    """The inner Flower strategy named by trust.strategy (FedAvg by default), with its
    options, wrapped in the DP wrapper trust.dp names (if any)."""
    name = str(cfg.get(STRATEGY_KEY, "fedavg")).lower()
    if name not in STRATEGIES:
        raise TrustError(f"Unknown trust.strategy {name!r}.",
                         f"Use one of {', '.join(sorted(STRATEGIES))}.")
    check_server_keys(cfg, name, STRATEGIES)
    kwargs = _kwargs_for(STRATEGIES[name], f"trust.{name}.", cfg)
    notes = flowertune_fractions(STRATEGIES[name], kwargs, cfg)
    if notes:
        log.info("TrustGuard: inner %s: %s", STRATEGIES[name].__name__, "; ".join(notes))
    try:
        inner = STRATEGIES[name](**kwargs)
    except (TypeError, ValueError) as exc:
        raise TrustError(f"trust.strategy = {name!r} could not be built: {exc}.",
                         f"Set its options as trust.{name}.<option> (kebab-case).") from exc
    if DP_KEY not in cfg:
        return inner
    dp = str(cfg[DP_KEY]).lower()
    if dp not in DP_WRAPPERS:
        raise TrustError(f"Unknown trust.dp {dp!r}.",
                         f"Use one of {', '.join(sorted(DP_WRAPPERS))}.")
    options = _kwargs_for(DP_WRAPPERS[dp], f"{DP_KEY}.", cfg)
    try:
        return DP_WRAPPERS[dp](inner, **options)
    except ValueError as exc:  # Flower's own range checks (e.g. num-sampled-clients = 0)
        raise TrustError(f"trust.dp = {dp!r} could not be built: {exc}.",
                         "Set valid trust.dp.* options (docs/configuration.md).") from exc
    except TypeError as exc:
        raise TrustError(f"trust.dp = {dp!r} is missing options: {exc}.",
                         "Set e.g. trust.dp.noise-multiplier, trust.dp.clipping-norm and "
                         "trust.dp.num-sampled-clients.") from exc


def strategy_from_config(cfg: Mapping[str, Any], **overrides: Any) -> TrustGuard:
    """TrustGuard(inner from trust.strategy, guard options from trust.*); keywords override.

    Checks every trust.* key of both sides first; the model and adapter are resolved from
    `cfg` and the initial arrays when the run starts (TrustGuard.startup)."""
    inner = inner_strategy(cfg)  # checks the names of every trust.* key
    parse_trust_config(cfg)  # the clients' values, checked here once instead of on every client
    return TrustGuard(inner, **({"run_config": cfg} | guard_options(cfg) | overrides))
