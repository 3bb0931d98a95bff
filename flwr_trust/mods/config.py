"""The client's ``trust.*`` configuration: parsed, validated, with documented defaults.

Values come from the run config (``[tool.flwr.app.config]`` in pyproject.toml, or
``flwr run --run-config``). A node may override the keys in `NODE_KEYS` with its node config
(``--node-config``): its own privacy budget and its own policy. Keys that change which metric
keys a reply carries are run-wide on purpose, so that all replies of a round have the same
MetricRecord keys (Flower's FedAvg refuses to aggregate otherwise).

Numbers may also be given as strings ("0.5"). A malformed value raises `TrustConfigError`,
which the mod turns into an error reply that names the key. Unknown keys under the
client-owned prefixes (`CLIENT_PREFIXES`, e.g. ``trust.privacy.``) are errors too: a typo in
a privacy key must not silently fall back to a default.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from flwr_trust.errors import TrustError
from flwr_trust.mods.policy import PolicyError, Rule, parse_policy
from flwr_trust.privacy.budget import Budget
from flwr_trust.probes.suite import MODES
from flwr_trust.scoring.profile import metric_key


class TrustConfigError(TrustError):
    """A ``trust.*`` config value is missing its expected type or range."""


# key: (default, what it means). The table is the documentation (docs/client.md mirrors it).
# Names follow the server's (flwr_trust.strategies.config) so one pyproject serves both sides.
DEFAULTS: dict[str, tuple[Any, str]] = {
    "trust.client.enabled": (True, "false: the mod passes every message through untouched"),
    "trust.model": ("default", "base model: 'default' (SmolLM2-135M), 'tiny', or a model "
                               "folder; falls back to FlowerTune's model.name"),
    "trust.lora.r": (0, "LoRA rank of the arrays; 0 = they are a full state dict (falls back "
                        "to FlowerTune's model.lora.peft-lora-r)"),
    "trust.lora.alpha": (16, "LoRA alpha (falls back to model.lora.peft-lora-alpha)"),
    "trust.lora.target-modules": ("q_proj,v_proj", "comma-separated LoRA target modules"),
    "trust.lora.dropout": (0.0, "LoRA dropout (no effect on probing; accepted so the server's "
                                "LoRA keys can be shared)"),
    "trust.suites": ("default", "'default' (shipped suites) or a suite file or folder"),
    "trust.modes": ("all", "comma-separated modes to probe, or 'all'"),
    "trust.probe-budget": (32, "probe items per mode per round (0 = whole suite); the "
                               "server's trust.probe-budget wins when it sends one"),
    "trust.precision": ("fp32", "probe scoring precision: 'fp32', or 'bf16' (faster only on "
                                "CPUs with native bf16, e.g. AVX512-BF16/AMX)"),
    "trust.probe-incoming": (False, "also probe the incoming global model on train messages and "
                                    "report trust.delta.* (outgoing minus incoming)"),
    "trust.personalized.state-key": ("", "name of an ArrayRecord in context.state holding "
                                         "local-only arrays; when set, the personalized model "
                                         "(outgoing + local) is probed and reported privately "
                                         "as trust.personal.*"),
    "trust.privacy.outgoing": ("auto", "'clear': the server sees the outgoing model, report "
                                       "its public-probe metrics as post-processing; 'private': "
                                       "it does not (noise them); 'auto': private under "
                                       "SecAgg+, else clear"),
    "trust.privacy.noise-multiplier": (5.0, "Gaussian noise std per private statistic, in "
                                            "units of its sensitivity"),
    "trust.privacy.epsilon": (8.0, "the client's total epsilon for private metrics over the run"),
    "trust.privacy.delta": (1e-5, "the delta the budget is accounted at"),
    "trust.privacy.loss-bound": (5.0, "per-sample loss clip (nats) for private loss metrics"),
    "trust.local-data.messages": ("evaluate", "message types that compute private local "
                                              "metrics: 'evaluate', 'train', 'train,evaluate' "
                                              "or 'none'"),
    "trust.local-data.groups": ("", "comma-separated declared group names for per-group local "
                                    "loss"),
    "trust.local-data.max-samples": (128, "max local samples per split used for private "
                                          "metrics"),
    "trust.local-data.max-tokens": (128, "max tokens per local sample"),
    "trust.shift.enabled": (True, "report trust.shift.* on train messages when local data is "
                                  "given"),
    "trust.shift.buckets": (64, "hashed token buckets of the shift sketch"),
    "trust.policy.rules": ("", "the client's rules on the incoming model, e.g. "
                               "'alignment.refusal-rate >= 0.8'"),
    "trust.policy.action": ("report", "'report': flag a violation (trust.veto = 1) and train; "
                                      "'refuse': reply with an error instead of training"),
}
NODE_KEYS = frozenset({"trust.privacy.noise-multiplier", "trust.privacy.epsilon",
                       "trust.privacy.delta", "trust.privacy.outgoing", "trust.policy.rules",
                       "trust.policy.action"})
CLIENT_PREFIXES = ("trust.client.", "trust.lora.", "trust.personalized.", "trust.privacy.",
                   "trust.local-data.", "trust.shift.", "trust.policy.")
FLOWERTUNE_FALLBACKS = {"trust.model": "model.name", "trust.lora.r": "model.lora.peft-lora-r",
                        "trust.lora.alpha": "model.lora.peft-lora-alpha"}
PRIVATE_MESSAGE_TYPES = ("train", "evaluate")


@dataclass(frozen=True)
class TrustConfig:
    """Everything the mod needs to know, validated. Build it with `parse_trust_config`."""

    enabled: bool = True
    model: str = "default"
    lora_r: int = 0
    lora_alpha: int = 16
    lora_target_modules: tuple[str, ...] = ("q_proj", "v_proj")
    lora_dropout: float = 0.0
    suites: str = "default"
    modes: tuple[str, ...] = MODES
    probe_budget: int = 32
    precision: str = "fp32"
    probe_incoming: bool = False
    personal_key: str = ""
    outgoing: str = "auto"
    noise_multiplier: float = 5.0
    budget: Budget = field(default_factory=lambda: Budget(8.0, 1e-5))
    loss_bound: float = 5.0
    private_messages: tuple[str, ...] = ("evaluate",)
    groups: tuple[str, ...] = ()
    max_samples: int = 128
    max_tokens: int = 128
    shift: bool = True
    shift_buckets: int = 64
    policy: tuple[Rule, ...] = ()
    policy_action: str = "report"

    def lora_config(self) -> Any:
        """The peft LoraConfig the mod's model bridge uses (None for full-weight arrays)."""
        if self.lora_r == 0:
            return None
        from peft import LoraConfig

        return LoraConfig(r=self.lora_r, lora_alpha=self.lora_alpha,
                          lora_dropout=self.lora_dropout,
                          target_modules=list(self.lora_target_modules))


def _bad(key: str, value: Any, want: str) -> TrustConfigError:
    return TrustConfigError(f"Config key {key} = {value!r} is not {want}.",
                            f"Set {key} to {want} in [tool.flwr.app.config] (or remove it to "
                            f"use the default {DEFAULTS[key][0]!r}).")


def _as_bool(key: str, v: Any) -> bool:
    if isinstance(v, bool):
        return v
    if isinstance(v, str) and v.strip().lower() in ("true", "false", "1", "0", "yes", "no"):
        return v.strip().lower() in ("true", "1", "yes")
    if isinstance(v, int) and v in (0, 1):
        return bool(v)
    raise _bad(key, v, "true or false")


def _as_int(key: str, v: Any, lo: int, hi: int = 2**31) -> int:
    if isinstance(v, bool):
        raise _bad(key, v, f"an integer in [{lo}, {hi}]")
    try:
        out = int(v) if not isinstance(v, float) or v.is_integer() else None
    except (TypeError, ValueError):
        out = None
    if out is None or not lo <= out <= hi:
        raise _bad(key, v, f"an integer in [{lo}, {hi}]")
    return out


def _as_float(key: str, v: Any, check: Callable[[float], bool], want: str) -> float:
    if isinstance(v, bool):
        raise _bad(key, v, want)
    try:
        out = float(v)
    except (TypeError, ValueError):
        raise _bad(key, v, want) from None
    if not math.isfinite(out) or not check(out):
        raise _bad(key, v, want)
    return out


def _as_str(key: str, v: Any) -> str:
    if not isinstance(v, str):
        raise _bad(key, v, "a string")
    return v.strip()


def _as_choice(key: str, v: Any, choices: tuple[str, ...]) -> str:
    s = _as_str(key, v).lower()
    if s not in choices:
        raise _bad(key, v, "one of " + ", ".join(repr(c) for c in choices))
    return s


def _as_list(key: str, v: Any) -> tuple[str, ...]:
    return tuple(p.strip() for p in _as_str(key, v).split(",") if p.strip())


def merged_values(run_config: Mapping[str, Any], node_config: Mapping[str, Any] | None = None,
                  defaults: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Defaults < code `defaults` < FlowerTune fallbacks < run config < node config (NODE_KEYS).

    Raises TrustConfigError for unknown keys under the client-owned prefixes.
    """
    values = {k: d for k, (d, _) in DEFAULTS.items()}
    for source in (defaults or {}, run_config, node_config or {}):
        for key in source:
            if key.startswith(CLIENT_PREFIXES) and key not in DEFAULTS:
                known = sorted(k for k in DEFAULTS if k.startswith(CLIENT_PREFIXES))
                raise TrustConfigError(f"Unknown config key {key}.",
                                       "Known keys under this prefix: " + ", ".join(known) + ".")
    values.update({k: v for k, v in (defaults or {}).items() if k in DEFAULTS})
    for ours, theirs in FLOWERTUNE_FALLBACKS.items():
        if ours not in run_config and theirs in run_config:
            values[ours] = run_config[theirs]
    values.update({k: v for k, v in run_config.items() if k in DEFAULTS})
    values.update({k: v for k, v in (node_config or {}).items() if k in NODE_KEYS})
    return values


def parse_trust_config(run_config: Mapping[str, Any],
                       node_config: Mapping[str, Any] | None = None,
                       defaults: Mapping[str, Any] | None = None) -> TrustConfig:
    """Validate the ``trust.*`` keys into a TrustConfig; raise TrustConfigError naming the key."""
    v = merged_values(run_config, node_config, defaults)
    modes_raw = _as_list("trust.modes", v["trust.modes"])
    modes = MODES if modes_raw in ((), ("all",)) else modes_raw
    unknown = [m for m in modes if m not in MODES]
    if unknown or len(set(modes)) != len(modes):
        raise _bad("trust.modes", v["trust.modes"], "'all' or distinct modes from "
                   + ", ".join(MODES))
    msgs_raw = _as_list("trust.local-data.messages", v["trust.local-data.messages"])
    messages = () if msgs_raw in ((), ("none",)) else msgs_raw
    if any(m not in PRIVATE_MESSAGE_TYPES for m in messages):
        raise _bad("trust.local-data.messages", v["trust.local-data.messages"],
                   "'none' or a comma list of train, evaluate")
    groups = tuple(metric_key(g) for g in _as_list("trust.local-data.groups",
                                                   v["trust.local-data.groups"]))
    if any(not g for g in groups) or len(set(groups)) != len(groups):
        raise _bad("trust.local-data.groups", v["trust.local-data.groups"],
                   "distinct, non-empty group names")
    try:
        policy = parse_policy(_as_str("trust.policy.rules", v["trust.policy.rules"]))
    except PolicyError as exc:
        raise TrustConfigError(f"Config key trust.policy.rules: {exc.problem}", exc.fix) \
            from exc
    from flwr_trust.scoring.runner import SCORERS

    unknown_metrics = [str(r) for r in policy
                       if r.metric.split("/", 1)[0] not in SCORERS[r.mode].METRICS]
    if unknown_metrics:
        raise TrustConfigError(f"trust.policy.rules names metrics no scorer reports: "
                               f"{unknown_metrics}.",
                               "Metric names: " + "; ".join(f"{m}: {', '.join(s.METRICS)}"
                                                             for m, s in SCORERS.items()) + ".")
    missing = sorted({r.mode for r in policy} - set(modes))
    if missing:
        raise TrustConfigError(f"trust.policy.rules checks modes {missing} that trust.modes "
                               "does not probe.", "Add them to trust.modes or remove the rules.")
    targets = _as_list("trust.lora.target-modules", v["trust.lora.target-modules"])
    lora_r = _as_int("trust.lora.r", v["trust.lora.r"], 0, 4096)
    if lora_r and not targets:
        raise _bad("trust.lora.target-modules", v["trust.lora.target-modules"],
                   "a comma-separated list of module names")
    eps = _as_float("trust.privacy.epsilon", v["trust.privacy.epsilon"], lambda x: x > 0,
                    "a positive number")
    delta = _as_float("trust.privacy.delta", v["trust.privacy.delta"], lambda x: 0 < x < 1,
                      "a number in (0, 1)")
    return TrustConfig(
        enabled=_as_bool("trust.client.enabled", v["trust.client.enabled"]),
        model=_as_str("trust.model", v["trust.model"]) or "default",
        lora_r=lora_r,
        lora_alpha=_as_int("trust.lora.alpha", v["trust.lora.alpha"], 1, 1 << 20),
        lora_target_modules=targets,
        lora_dropout=_as_float("trust.lora.dropout", v["trust.lora.dropout"],
                               lambda x: 0 <= x < 1, "a number in [0, 1)"),
        suites=_as_str("trust.suites", v["trust.suites"]) or "default",
        modes=modes,
        probe_budget=_as_int("trust.probe-budget", v["trust.probe-budget"], 0),
        precision=_as_choice("trust.precision", v["trust.precision"], ("bf16", "fp32")),
        probe_incoming=_as_bool("trust.probe-incoming", v["trust.probe-incoming"]),
        personal_key=_as_str("trust.personalized.state-key", v["trust.personalized.state-key"]),
        outgoing=_as_choice("trust.privacy.outgoing", v["trust.privacy.outgoing"],
                            ("auto", "clear", "private")),
        noise_multiplier=_as_float("trust.privacy.noise-multiplier",
                                   v["trust.privacy.noise-multiplier"], lambda x: x > 0,
                                   "a positive number"),
        budget=Budget(eps, delta),
        loss_bound=_as_float("trust.privacy.loss-bound", v["trust.privacy.loss-bound"],
                             lambda x: x > 0, "a positive number"),
        private_messages=messages,
        groups=groups,
        max_samples=_as_int("trust.local-data.max-samples", v["trust.local-data.max-samples"],
                            2),
        max_tokens=_as_int("trust.local-data.max-tokens", v["trust.local-data.max-tokens"], 2,
                           8192),
        shift=_as_bool("trust.shift.enabled", v["trust.shift.enabled"]),
        shift_buckets=_as_int("trust.shift.buckets", v["trust.shift.buckets"], 2, 4096),
        policy=policy,
        policy_action=_as_choice("trust.policy.action", v["trust.policy.action"],
                                 ("report", "refuse")),
    )


@dataclass(frozen=True)
class ServerTrustConfig:
    """The ``trust.*`` keys the server sent in the message's ConfigRecord (docs/protocol.md)."""

    suite_hash: str | None
    round: int
    probe_budget: int | None


def parse_server_config(configs: Mapping[str, Any], group_id: str = "") -> ServerTrustConfig:
    """Read trust.suite-hash, trust.round (else Flower's server-round) and trust.probe-budget."""
    suite_hash = configs.get("trust.suite-hash")
    if suite_hash is not None and (not isinstance(suite_hash, str) or len(suite_hash) < 12
                                   or any(c not in "0123456789abcdef" for c in suite_hash)):
        raise TrustConfigError(f"The server sent trust.suite-hash = {suite_hash!r}, not a hex "
                               "SHA-256.", "Update the server to the same flwr-trust version.")
    rnd: Any = configs.get("trust.round", configs.get("server-round"))
    if rnd is None:
        rnd = int(group_id) if group_id.isdigit() else 0
    if isinstance(rnd, bool) or not isinstance(rnd, int) or rnd < 0:
        raise TrustConfigError(f"The server sent round {rnd!r}, not a non-negative integer.",
                               "Send trust.round / server-round as an int.")
    budget = configs.get("trust.probe-budget")
    if budget is not None and (isinstance(budget, bool) or not isinstance(budget, int)
                               or budget < 0):
        raise TrustConfigError(f"The server sent trust.probe-budget = {budget!r}.",
                               "Send a non-negative int (0 = whole suite).")
    return ServerTrustConfig(suite_hash, rnd, budget)
