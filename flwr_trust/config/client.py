"""The client mod's settings: the client-side keys of `flwr_trust.config.keys`, validated.

Sources, later ones winning: the key table's defaults < the code's `defaults` (make_trust_mod)
< FlowerTune fallbacks (model.name, model.lora.*) < the run config < the node config (only
for keys marked `node`: a client's own privacy budget and policy). Keys that change which
metric keys a reply carries are run-wide on purpose, so all replies of a round have the same
MetricRecord keys (Flower's FedAvg refuses to aggregate otherwise).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from flwr_trust import modes as registry
from flwr_trust.config.keys import (
    BY_NAME,
    TrustConfigError,
    check_client_keys,
    keys_of,
)
from flwr_trust.config.policy import PolicyError, Rule, parse_policy
from flwr_trust.privacy.budget import Budget
from flwr_trust.scoring.profile import metric_key

PRIVATE_MESSAGE_TYPES = ("train", "evaluate")
NODE_KEYS = frozenset(k.name for k in keys_of("client") if k.node)
DEVICE_PATTERN = re.compile(r"^(auto|cpu|mps|(cuda|xpu)(:\d+)?)$")


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
    modes: tuple[str, ...] = field(default_factory=registry.ids)
    probe_budget: int = 32
    precision: str = "fp32"
    device: str = "auto"
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


def merged_values(run_config: Mapping[str, Any], node_config: Mapping[str, Any] | None = None,
                  defaults: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Raw values of every client key from all sources (see the module docstring)."""
    check_client_keys((defaults or {}, run_config, node_config or {}))
    values = {k.name: k.default for k in keys_of("client")}
    values.update({k: v for k, v in (defaults or {}).items() if k in values})
    for key in keys_of("client"):
        if key.flowertune and key.name not in run_config and key.flowertune in run_config:
            values[key.name] = run_config[key.flowertune]
    values.update({k: v for k, v in run_config.items() if k in values})
    values.update({k: v for k, v in (node_config or {}).items() if k in NODE_KEYS})
    return values


def parse_modes(value: Any, key: str = "trust.modes") -> tuple[str, ...]:
    """'all' (or empty) = every registered mode; else distinct registered mode ids."""
    names = BY_NAME[key].read(value)
    if names in ((), ("all",)):
        return registry.ids()
    unknown = [m for m in names if registry.find(m) is None]
    if unknown:
        raise TrustConfigError(f"Unknown detection mode(s) {unknown} in {key} = {value!r}.",
                               f"Use 'all' or some of {', '.join(registry.ids())}.")
    if len(set(names)) != len(names):
        raise BY_NAME[key].error(value, "a list of distinct modes")
    return names


def parse_device(value: Any) -> str:
    """A `trust.device` value, normalized ("auto" when empty); TrustConfigError otherwise."""
    key = BY_NAME["trust.device"]
    text = key.read(value).lower() or "auto"
    if not DEVICE_PATTERN.match(text):
        raise key.error(value, "auto, cpu, cuda, cuda:<index>, mps or xpu")
    return text


def parse_trust_config(run_config: Mapping[str, Any],
                       node_config: Mapping[str, Any] | None = None,
                       defaults: Mapping[str, Any] | None = None) -> TrustConfig:
    """Validate the client's ``trust.*`` keys; raise TrustConfigError naming the key."""
    v = merged_values(run_config, node_config, defaults)
    r = {name: BY_NAME[name].read(value) for name, value in v.items()
         if name not in ("trust.modes", "trust.policy.rules")}
    modes = parse_modes(v["trust.modes"])
    messages = r["trust.local-data.messages"]
    messages = () if messages in ((), ("none",)) else messages
    if any(m not in PRIVATE_MESSAGE_TYPES for m in messages):
        raise BY_NAME["trust.local-data.messages"].error(
            v["trust.local-data.messages"], "'none' or a comma list of train, evaluate")
    groups = tuple(metric_key(g) for g in r["trust.local-data.groups"])
    if any(not g for g in groups) or len(set(groups)) != len(groups):
        raise BY_NAME["trust.local-data.groups"].error(v["trust.local-data.groups"],
                                                       "distinct, non-empty group names")
    policy = _policy(v["trust.policy.rules"], modes)
    targets = r["trust.lora.target-modules"]
    if r["trust.lora.r"] and not targets:
        raise BY_NAME["trust.lora.target-modules"].error(v["trust.lora.target-modules"],
                                                         "a comma-separated list of modules")
    return TrustConfig(
        enabled=r["trust.client.enabled"],
        model=r["trust.model"] or "default",
        lora_r=r["trust.lora.r"],
        lora_alpha=r["trust.lora.alpha"],
        lora_target_modules=targets,
        lora_dropout=r["trust.lora.dropout"],
        suites=r["trust.suites"] or "default",
        modes=modes,
        probe_budget=r["trust.probe-budget"],
        precision=r["trust.precision"],
        device=parse_device(v["trust.device"]),
        probe_incoming=r["trust.probe-incoming"],
        personal_key=r["trust.personalized.state-key"],
        outgoing=r["trust.privacy.outgoing"],
        noise_multiplier=r["trust.privacy.noise-multiplier"],
        budget=Budget(r["trust.privacy.epsilon"], r["trust.privacy.delta"]),
        loss_bound=r["trust.privacy.loss-bound"],
        private_messages=messages,
        groups=groups,
        max_samples=r["trust.local-data.max-samples"],
        max_tokens=r["trust.local-data.max-tokens"],
        shift=r["trust.shift.enabled"],
        shift_buckets=r["trust.shift.buckets"],
        policy=policy,
        policy_action=r["trust.policy.action"],
    )


def _policy(text: Any, modes: tuple[str, ...]) -> tuple[Rule, ...]:
    """The parsed policy, its metrics checked against the registry and the probed modes."""
    try:
        policy = parse_policy(BY_NAME["trust.policy.rules"].read(text))
    except PolicyError as exc:
        raise TrustConfigError(f"Config key trust.policy.rules: {exc.problem}", exc.fix) \
            from exc
    unknown = [str(r) for r in policy if (m := registry.metric(r.mode, r.metric)) is None
               or m.source != "public"]
    if unknown:
        public = {m: [x.name for x in registry.get(m).metrics if x.source == "public"]
                  for m in registry.ids()}
        names = "; ".join(f"{m}: {', '.join(xs)}" for m, xs in public.items())
        raise TrustConfigError(f"trust.policy.rules names metrics no scorer reports: "
                               f"{unknown}.", f"Metric names: {names}.")
    missing = sorted({r.mode for r in policy} - set(modes))
    if missing:
        raise TrustConfigError(f"trust.policy.rules checks modes {missing} that trust.modes "
                               "does not probe.", "Add them to trust.modes or remove the rules.")
    return policy
