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
import types
import typing
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


# Ranges of numeric options beyond their types, by option name (low, high, open_low,
# open_high). Flower passes them on unchecked, and out of range they move the model away from
# the clients (a negative server learning rate or eta), make it NaN (beta-1 = 1), divide by
# zero (QFedAvg's client learning rate 0) or select no node at all.
RANGES: dict[str, tuple[float | None, float | None, bool, bool]] = {
    **dict.fromkeys(("server-learning-rate", "client-learning-rate", "eta", "eta-l", "tau"),
                    (0.0, None, True, False)),
    **dict.fromkeys(("beta-1", "beta-2", "server-momentum"), (0.0, 1.0, False, True)),
    **dict.fromkeys(("proximal-mu", "q", "clipped-count-stddev"), (0.0, None, False, False)),
    **dict.fromkeys(("num-nodes-to-select", "num-sampled-clients"), (1, None, False, False)),
}
KINDS = {bool: "bool", int: "int", float: "float", str: "str"}


def _kwargs_for(cls: type, prefix: str, cfg: Mapping[str, Any]) -> dict[str, Any]:
    """Options `prefix<kebab-name>` mapped onto `cls.__init__` keywords, checked by name;
    keywords that take Python objects (callables, accountants) cannot come from config."""
    params = {n: p for n, p in inspect.signature(cls.__init__).parameters.items()
              if n not in ("self", "strategy")
              and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
    valid = {n.replace("_", "-"): n for n in params}
    settable = sorted(prefix + k for k, n in valid.items() if _plain_type(params[n]))
    out = {}
    for key, value in cfg.items():
        if not key.startswith(prefix):
            continue
        name = key[len(prefix):]
        if name not in valid:
            raise TrustError(f"Unknown option {key!r} for {cls.__name__}"
                             f"{suggest(key, settable)}.", f"Valid options: {', '.join(settable)}.")
        param = params[valid[name]]
        if _plain_type(param) is None:
            raise TrustError(f"Option {key!r} of {cls.__name__} takes a Python object "
                             f"({param.annotation}), which a config value cannot be.",
                             f"Remove it, or build {cls.__name__}(...) in Python and wrap it: "
                             f"TrustGuard({cls.__name__}(...)).")
        out[valid[name]] = _checked(key, value, param)
    return out


def _plain_type(param: inspect.Parameter) -> type | None:
    """bool/int/float/str a keyword takes (`float | None` counts as float), else None."""
    annotation = param.annotation
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        annotation = args[0] if len(args) == 1 else None
    if annotation in KINDS:
        return annotation
    if annotation in (param.empty, None) and type(param.default) in KINDS:
        return type(param.default)
    return None


def _checked(key: str, value: Any, param: inspect.Parameter) -> Any:
    """An option's value read as the keyword's declared type: Flower passes them on
    unchecked ("half" as a fraction crashed later with a traceback, 2.0 waited forever for
    twice the nodes, "3" nodes to select failed every round); fractions within [0, 1], counts
    not negative, RANGES by name, strings (record keys) not empty."""
    name = key.rsplit(".", 1)[-1]
    kind = KINDS[_plain_type(param) or str]
    default = None if param.default is param.empty else param.default
    low, high, open_low, open_high = RANGES.get(name, (None, None, False, False))
    if name.startswith("fraction-"):
        low, high = 0.0, 1.0
    elif kind == "int" and low is None and name.startswith(("min-", "num-")):
        low = 0
    out = Key(key, kind, default, "", "server", low=low, high=high, open_low=open_low,
              open_high=open_high).read(value)
    if kind == "str" and not out:
        raise TrustError(f"Option {key!r} is empty.", f"Set it to a record key, or remove it "
                         f"to use the default {default!r}.")
    return out


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


def check_config(cfg: Mapping[str, Any]) -> tuple[Any, dict[str, Any]]:
    """(inner strategy, TrustGuard keywords) from every trust.* key of both sides, checked
    (names and values) without building the guard: an app can call it before it clears
    folders or loads models."""
    inner = inner_strategy(cfg)  # checks the names of every trust.* key
    parse_trust_config(cfg)  # the clients' values, checked here once instead of on every client
    return inner, guard_options(cfg)


def strategy_from_config(cfg: Mapping[str, Any], **overrides: Any) -> TrustGuard:
    """TrustGuard(inner from trust.strategy, guard options from trust.*); keywords override.

    Checks every trust.* key of both sides first; the model and adapter are resolved from
    `cfg` and the initial arrays when the run starts (TrustGuard.startup)."""
    inner, options = check_config(cfg)
    return TrustGuard(inner, **({"run_config": cfg} | options | overrides))
