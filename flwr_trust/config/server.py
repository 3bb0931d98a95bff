"""TrustGuard's options from run config: the server-side keys of `flwr_trust.config.keys`.

`guard_options(cfg)` returns the TrustGuard keywords the config sets (unset keys keep the
constructor's defaults), with the detector settings resolved. The model and adapter config
are resolved at the start of the run, from the config and the initial arrays
(`flwr_trust.strategies.startup`). The choice of inner strategy and DP wrapper needs Flower
and lives in `flwr_trust.strategies.from_config`, which also checks that no key is unknown
(`check_server_keys`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from flwr_trust import modes as registry
from flwr_trust.config.client import parse_modes
from flwr_trust.config.keys import (
    BY_NAME,
    KEYS,
    TOLERANCE_PREFIX,
    TrustConfigError,
    close_match,
    keys_of,
    unknown_key_error,
)
from flwr_trust.detect.config import DetectorConfig

STRATEGY_KEY = "trust.strategy"
DP_KEY = "trust.dp"


def guard_options(cfg: Mapping[str, Any]) -> dict[str, Any]:
    """TrustGuard(...) keywords from the ``trust.*`` keys present in `cfg`."""
    out: dict[str, Any] = {key.keyword: key.read(cfg[key.name]) for key in keys_of("server")
                           if key.keyword and key.name in cfg}
    if str(out.get("model", "")).lower() == "none":
        out["model"] = None
    if out.get("run_dir") == "":
        out.pop("run_dir")
    modes = parse_modes(cfg["trust.modes"]) if "trust.modes" in cfg else registry.ids()
    out["modes"] = modes
    out["detector"] = detector_config(cfg, modes)
    return out


def detector_config(cfg: Mapping[str, Any], modes: tuple[str, ...]) -> DetectorConfig:
    """trust.alpha, trust.trend-window, trust.paired-scale, trust.horizon and
    trust.tolerance.<mode>.<metric>
    (the detectors validate the tolerance keys against the registry)."""
    kwargs: dict[str, Any] = {"modes": modes}
    if "trust.alpha" in cfg:
        kwargs["alpha"] = BY_NAME["trust.alpha"].read(cfg["trust.alpha"])
    if "trust.trend-window" in cfg:
        kwargs["trend_window"] = BY_NAME["trust.trend-window"].read(cfg["trust.trend-window"])
    if "trust.paired-scale" in cfg:
        kwargs["paired_scale"] = BY_NAME["trust.paired-scale"].read(cfg["trust.paired-scale"])
    if "trust.horizon" in cfg:
        horizon = BY_NAME["trust.horizon"].read(cfg["trust.horizon"])
        kwargs["horizon"] = None if horizon == "auto" else horizon
    tolerances = {}
    for key, value in cfg.items():
        if key.startswith(TOLERANCE_PREFIX):
            try:
                if isinstance(value, bool):  # float(True) = 1.0: a rate that never alarms
                    raise TypeError(value)
                tolerances[key[len(TOLERANCE_PREFIX):]] = float(value)
            except (TypeError, ValueError):
                raise TrustConfigError(f"Config key {key} = {value!r} is not a number.",
                                       "Give the largest harmless degradation, in the metric's "
                                       "units.") from None
    kwargs["tolerances"] = tolerances
    return DetectorConfig(**kwargs)


def check_server_keys(cfg: Mapping[str, Any], strategy: str, strategies: Iterable[str]) -> None:
    """Every ``trust.*`` key must be a known key of either side (one config serves both), an
    option of the chosen inner strategy (``trust.<strategy>.*``), of the DP wrapper
    (``trust.dp.*``, with trust.dp set) or a tolerance. A near-miss names the key it is most
    likely a typo of; a key of another strategy or of an unset DP wrapper says "remove it"."""
    names = list(strategies)
    known = {k.name for k in KEYS} | {STRATEGY_KEY, DP_KEY}
    prefixes = (f"trust.{strategy}.", TOLERANCE_PREFIX) + ((f"{DP_KEY}.",) if DP_KEY in cfg
                                                           else ())
    for key in cfg:
        if not key.startswith("trust.") or key in known or key.startswith(prefixes):
            continue
        other = next((n for n in names if key.startswith(f"trust.{n}.")), None)
        if other is not None:
            raise unknown_key_error(
                key, [], f"It configures '{other}' but trust.strategy is '{strategy}'; remove "
                f"it, or set trust.strategy = \"{other}\".")
        if key.startswith(f"{DP_KEY}."):
            raise unknown_key_error(
                key, [], "It configures a DP wrapper but trust.dp is not set; remove it, or "
                "set trust.dp (server-fixed, client-fixed, server-adaptive, client-adaptive).")
        close = close_match(key, known)
        if close is not None:
            raise unknown_key_error(key, [close], f"Rename it to {close}, or remove it.")
        raise unknown_key_error(key, [], "Remove it, or use one of: " + ", ".join(sorted(known))
                                + f", trust.{strategy}.*, trust.dp.*, trust.tolerance.* "
                                "(docs/configuration.md, docs/client.md).")


def tolerance_table() -> str:
    """The docs table of every watched metric's tolerance key (docs/configuration.md)."""
    rows = ["| key | default | worse if | metric |", "| --- | --- | --- | --- |"]
    for mode in registry.ids():
        for metric in registry.get(mode).metrics:
            if metric.watched:
                rows.append(f"| `{TOLERANCE_PREFIX}{mode}.{metric.name}` | {metric.tolerance:g} "
                            f"| {metric.worse} | {metric.description} |")
    return "\n".join(rows)
