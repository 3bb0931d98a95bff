"""Build a TrustGuard from Flower run config (`[tool.flwr.app.config]`), for config-only apps.

    trust.strategy = "fedprox"            # inner strategy (see STRATEGIES)
    trust.fedprox.proximal-mu = 0.1       # its own options, kebab-case, under trust.<strategy>.*
    trust.dp = "server-fixed"             # optional Flower DP wrapper (see DP_WRAPPERS)
    trust.dp.noise-multiplier = 1.0       # the wrapper's options under trust.dp.*
    trust.gate = "quarantine"             # off | quarantine | rollback | halt
    trust.model = "default"               # what the server probes with ("none": no probing)
    ...                                   # every guard key: see GUARD_KEYS

Unknown names and options are errors that list the valid ones.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from typing import Any

from flwr.serverapp import strategy as flwr_strategies

from flwr_trust.detect.behavior import DetectorConfig
from flwr_trust.errors import TrustError
from flwr_trust.probes.suite import MODES
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
# Guard keys: run-config key -> (TrustGuard keyword, type).
GUARD_KEYS: dict[str, tuple[str, type]] = {
    "trust.gate": ("gate", str),
    "trust.model": ("model", str),
    "trust.suites": ("suites", str),
    "trust.server-probe-items": ("server_probe_items", int),
    "trust.client-probe-budget": ("client_probe_budget", int),
    "trust.precision": ("precision", str),
    "trust.update-alpha": ("update_alpha", float),
    "trust.update-centre-clients": ("update_centre_clients", int),
    "trust.update-centre-coords": ("update_centre_coords", int),
    "trust.audit-fraction": ("audit_fraction", float),
    "trust.secure-aggregation": ("secure_aggregation", bool),
    "trust.run-dir": ("run_dir", str),
    "trust.tensorboard": ("tensorboard", bool),
    "trust.seed": ("seed", int),
}
DETECTOR_KEYS = ("trust.alpha", "trust.modes", "trust.trend-window")
LORA_KEYS = ("trust.lora.r", "trust.lora.alpha", "trust.lora.dropout",
             "trust.lora.target-modules")
# Keys read by the client mod; accepted here so one config can serve both sides.
CLIENT_PREFIXES = ("trust.privacy.", "trust.policy.", "trust.local-data", "trust.probe-",
                   "trust.client.", "trust.shift.", "trust.canaries", "trust.delta",
                   "trust.personalized", "trust.on-evaluate")


def _kwargs_for(cls: type, prefix: str, cfg: Mapping[str, Any], skip: tuple[str, ...] = ()
                ) -> dict[str, Any]:
    """Options `prefix<kebab-name>` mapped onto `cls.__init__` keywords, checked by name."""
    params = {n: p for n, p in inspect.signature(cls.__init__).parameters.items()
              if n not in ("self", "strategy", *skip)
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


def peft_config_from(cfg: Mapping[str, Any]) -> Any | None:
    """A LoraConfig from trust.lora.* keys (None when trust.lora.r is not set: full weights)."""
    if "trust.lora.r" not in cfg:
        return None
    from peft import LoraConfig

    targets = str(cfg.get("trust.lora.target-modules", "q_proj,v_proj"))
    return LoraConfig(r=int(cfg["trust.lora.r"]), lora_alpha=int(cfg.get("trust.lora.alpha", 16)),
                      lora_dropout=float(cfg.get("trust.lora.dropout", 0.0)),
                      target_modules=[t.strip() for t in targets.split(",") if t.strip()])


def _check_known_keys(cfg: Mapping[str, Any], strategy_name: str) -> None:
    known_prefixes = (f"trust.{strategy_name}.", "trust.dp.", "trust.tolerance.",
                      *CLIENT_PREFIXES)
    known = {"trust.strategy", "trust.dp", *GUARD_KEYS, *DETECTOR_KEYS, *LORA_KEYS}
    for key in cfg:
        if not key.startswith("trust.") or key in known or key.startswith(known_prefixes):
            continue
        other = next((n for n in STRATEGIES if key.startswith(f"trust.{n}.")), None)
        hint = (f"it configures '{other}' but trust.strategy is '{strategy_name}'" if other
                else "it is not a flwr-trust key")
        raise TrustError(f"Unknown config key {key!r}: {hint}.",
                         f"Valid guard keys: {', '.join(sorted(known))}, plus "
                         f"trust.{strategy_name}.*, trust.dp.*, trust.tolerance.*.")


def _typed(key: str, value: Any, kind: type) -> Any:
    if kind is bool:
        if isinstance(value, bool):
            return value
        if str(value).lower() in ("true", "1", "yes"):
            return True
        if str(value).lower() in ("false", "0", "no"):
            return False
        raise TrustError(f"{key} = {value!r} is not a boolean.", "Use true or false.")
    try:
        return kind(value)
    except (TypeError, ValueError) as exc:
        raise TrustError(f"{key} = {value!r} is not a {kind.__name__}.",
                         f"Give {key} a {kind.__name__} value.") from exc


def strategy_from_config(cfg: Mapping[str, Any], **overrides: Any) -> TrustGuard:
    """TrustGuard(inner from trust.strategy, guard options from trust.*); keywords override."""
    name = str(cfg.get("trust.strategy", "fedavg")).lower()
    if name not in STRATEGIES:
        raise TrustError(f"Unknown trust.strategy {name!r}.",
                         f"Use one of {', '.join(sorted(STRATEGIES))}.")
    _check_known_keys(cfg, name)
    try:
        inner = STRATEGIES[name](**_kwargs_for(STRATEGIES[name], f"trust.{name}.", cfg))
    except (TypeError, ValueError) as exc:
        raise TrustError(f"trust.strategy = {name!r} could not be built: {exc}.",
                         f"Set its options as trust.{name}.<option> (kebab-case).") from exc
    if "trust.dp" in cfg:
        dp = str(cfg["trust.dp"]).lower()
        if dp not in DP_WRAPPERS:
            raise TrustError(f"Unknown trust.dp {dp!r}.",
                             f"Use one of {', '.join(sorted(DP_WRAPPERS))}.")
        try:
            inner = DP_WRAPPERS[dp](inner, **_kwargs_for(DP_WRAPPERS[dp], "trust.dp.", cfg))
        except TypeError as exc:
            raise TrustError(f"trust.dp = {dp!r} is missing options: {exc}.",
                             "Set e.g. trust.dp.noise-multiplier, trust.dp.clipping-norm and "
                             "trust.dp.num-sampled-clients.") from exc
    kwargs: dict[str, Any] = {kw: _typed(key, cfg[key], kind)
                              for key, (kw, kind) in GUARD_KEYS.items() if key in cfg}
    if str(kwargs.get("model", "")).lower() == "none":
        kwargs["model"] = None
    detector = DetectorConfig.from_config(cfg)
    kwargs["modes"] = detector.modes if "trust.modes" in cfg else MODES
    kwargs["detector"] = detector
    kwargs["peft_config"] = peft_config_from(cfg)
    kwargs.update(overrides)
    return TrustGuard(inner, **kwargs)
