"""Every ``trust.*`` configuration key, stated once: name, type, default, doc, side.

One `[tool.flwr.app.config]` serves server and clients. The client mod's parser
(`flwr_trust.config.client`), `strategy_from_config` (`flwr_trust.config.server`), the docs
tables (`markdown_table`, checked by tests/test_docs.py) and the unknown-key checks all read
`KEYS`. Values may be given as strings ("0.5", "true"); a malformed value raises
`TrustConfigError` naming the key and what it accepts.
"""

from __future__ import annotations

import difflib
import json
import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from flwr_trust.errors import TrustError

Side = Literal["client", "server", "both"]
Kind = Literal["bool", "int", "float", "str", "choice", "list"]


class TrustConfigError(TrustError):
    """A ``trust.*`` config value is missing its expected type or range, or a key is unknown."""


@dataclass(frozen=True)
class Key:
    """One configuration key.

    kind:       how the value is read: bool, int, float, str, choice (one of `choices`), list
                (comma-separated strings); an int key with `choices` also takes those words
    low, high:  inclusive bounds of an int / float; `open_low` / `open_high` make one exclusive
    side:       who reads it: "client" (the mod), "server" (TrustGuard), "both"
    node:       a client's node config may override it (its own budget and policy)
    flowertune: the FlowerTune key it falls back to when unset (e.g. model.name)
    keyword:    the TrustGuard(...) keyword a server key sets
    via:        for the docs: the TrustGuard keyword a key feeds without setting it directly
    """

    name: str
    kind: Kind
    default: Any
    doc: str
    side: Side
    choices: tuple[str, ...] = ()
    low: float | None = None
    high: float | None = None
    open_low: bool = False
    open_high: bool = False
    node: bool = False
    flowertune: str = ""
    keyword: str = ""
    via: str = ""

    @property
    def want(self) -> str:
        """What the key accepts, as a phrase ("an integer in [0, 2147483648]")."""
        if self.kind == "bool":
            return "a boolean (true or false)"
        if self.kind == "choice":
            return "one of " + ", ".join(repr(c) for c in self.choices)
        if self.kind == "list":
            return "a comma-separated list"
        if self.kind == "str":
            return "a string"
        what = "an integer" if self.kind == "int" else "a float"
        if self.low is None and self.high is None:
            return what
        lo = "(" if self.open_low else "["
        hi = "inf)" if self.high is None else f"{_num(self.high)}{')' if self.open_high else ']'}"
        words = "".join(f" or {c!r}" for c in self.choices)
        return (f"{what} in {lo}{_num(self.low if self.low is not None else -math.inf)}, {hi}"
                + words)

    def read(self, value: Any) -> Any:
        """The typed value, or TrustConfigError naming this key."""
        return _READERS[self.kind](self, value)

    def error(self, value: Any, want: str = "") -> TrustConfigError:
        want = want or self.want
        return TrustConfigError(
            f"Config key {self.name} = {value!r} is not {want}.",
            f"Set {self.name} to {want} in [tool.flwr.app.config] (or remove it to use the "
            f"default {self.default!r}).")


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else str(x)


def _read_bool(key: Key, v: Any) -> bool:
    if isinstance(v, bool):
        return v
    if isinstance(v, str) and v.strip().lower() in ("true", "false", "1", "0", "yes", "no"):
        return v.strip().lower() in ("true", "1", "yes")
    if isinstance(v, int) and v in (0, 1):
        return bool(v)
    raise key.error(v)


def _in_range(key: Key, x: float) -> bool:
    if key.low is not None and (x < key.low or (key.open_low and x == key.low)):
        return False
    return key.high is None or x < key.high or (x == key.high and not key.open_high)


def _read_int(key: Key, v: Any) -> int | str:
    if isinstance(v, bool):
        raise key.error(v)
    if isinstance(v, str) and v.strip().lower() in key.choices:
        return v.strip().lower()
    try:
        out = int(v) if not isinstance(v, float) or v.is_integer() else None
    except (TypeError, ValueError):
        out = None
    if out is None or not _in_range(key, out):
        raise key.error(v)
    return out


def _read_float(key: Key, v: Any) -> float:
    if isinstance(v, bool):
        raise key.error(v)
    try:
        out = float(v)
    except (TypeError, ValueError):
        raise key.error(v) from None
    if not math.isfinite(out) or not _in_range(key, out):
        raise key.error(v)
    return out


def _read_str(key: Key, v: Any) -> str:
    if not isinstance(v, str):
        raise key.error(v)
    return v.strip()


def _read_choice(key: Key, v: Any) -> str:
    s = _read_str(key, v).lower()
    if s not in key.choices:
        raise key.error(v)
    return s


def _read_list(key: Key, v: Any) -> tuple[str, ...]:
    return tuple(p.strip() for p in _read_str(key, v).split(",") if p.strip())


_READERS: dict[str, Callable[[Key, Any], Any]] = {
    "bool": _read_bool, "int": _read_int, "float": _read_float, "str": _read_str,
    "choice": _read_choice, "list": _read_list}

_MAX_INT = 2**31
# Probe items per mode per round on each client: a sample sized for a round. The whole default
# suites hold 30-315 items per mode (`flwr-trust suites`), and one pass over all six takes
# 80-116 s on SmolLM2 on 2 CPU cores (docs/benchmarks.md); whole suites only when 0 is asked.
DEFAULT_PROBE_ITEMS = 32
# The server's fixed subset per mode, probed for the reference and once per round's candidate:
# the candidate test's power comes from these items (paired: the same items every round), and
# they are probed once per round on the server's hardware, not by every client. On SmolLM2,
# 20 items per mode missed the honest clients' own refusal drift (2x its tolerance) in 20/20
# clean federations, 100 caught it in round 3 of 3 in 3/3, and the attacker in its onset round
# (bench/results/smollm2-clean20, smollm2-server100-client20; README). Memorization's suite
# holds 30 canaries, so it is probed whole.
DEFAULT_SERVER_PROBE_ITEMS = 100
_C, _S, _B = "client", "server", "both"
KEYS: tuple[Key, ...] = (
    # ---------------------------------------------------------------- both sides
    Key("trust.model", "str", "default", "base model: `default` (SmolLM2-135M-Instruct), "
        "`tiny`, a local Hugging Face model folder or a model name in the local Hugging Face "
        "cache (never downloaded); on the server also `none` (client reports only: no "
        "reference probe, no rollback probe, no integrity audit)", _B,
        flowertune="model.name", keyword="model"),
    Key("trust.lora.r", "int", 0, "LoRA rank of the exchanged arrays; 0 = they are a full "
        "state dict. The server reads the rank from the initial arrays and checks this key "
        "against them when it is set", _B, low=0, high=4096,
        flowertune="model.lora.peft-lora-r", via="peft_config"),
    Key("trust.lora.alpha", "int", 16, "LoRA alpha; the arrays do not carry it, so for LoRA "
        "arrays the server needs it (or FlowerTune's key) set and stops at startup otherwise",
        _B, low=1, high=1 << 20, flowertune="model.lora.peft-lora-alpha", via="peft_config"),
    Key("trust.lora.target-modules", "list", "q_proj,v_proj", "comma-separated LoRA target "
        "modules; the server reads them from the initial arrays' names and checks this key "
        "against them when it is set", _B, via="peft_config"),
    Key("trust.lora.dropout", "float", 0.0, "LoRA dropout (no effect on probing)", _B, low=0.0,
        high=0.999999, via="peft_config"),
    Key("trust.suites", "str", "default", "probe suites: `default` (shipped), a suite file or "
        "a folder of suite files; both sides must hold the same (the hash is checked)", _B,
        keyword="suites"),
    Key("trust.modes", "list", "all", "comma-separated failure modes to probe and monitor, or "
        "`all`", _B, via="modes, detector"),
    Key("trust.precision", "choice", "fp32", "probe scoring precision: `fp32` (no autocast: "
        "the model's own dtype; a bf16, fp16 or 4-/8-bit model runs as it is), `bf16` (bf16 "
        "autocast; faster only on CUDA or CPUs with native bf16, e.g. AVX512-BF16/AMX; "
        "emulated and several times slower on AVX2-only CPUs), or `auto` (bf16 where native, "
        "else fp32)", _B, choices=("auto", "bf16", "fp32"), keyword="precision"),
    # ---------------------------------------------------------------- server (TrustGuard)
    Key("trust.gate", "str", "off", "off (alarms only), quarantine (flagged clients left out "
        "of the round, and on probation: out of later rounds until their reports on the "
        "alarmed metric are back within tolerance of the median, or of the server's reference "
        "when fewer than three other clients report, and the server's audit of that report "
        "agrees; a client the update checks flagged: until an update of its own is ordinary), "
        "rollback (quarantine, "
        "then a failing candidate is refused: previous "
        "global kept, leave-one-out over up to 8 aggregated clients names culprits, each trial "
        "re-probing only the failing modes (when no one client is enough, the clients whose own "
        "model fails are named together if at most half and the candidate passes without "
        "them); above 8, a linear screen ranks the clients and "
        "the 3 it ranks worst are probed exactly, each named only if its own model fails; "
        "later candidates stay refused while they measure beyond the tolerance on a metric that "
        "failed: tightened inspection), halt (stop with an error). Under every gate an "
        "aggregate that is no model (NaN/Inf arrays, or no finite probe score) is not passed "
        "on", _S, keyword="gate"),
    Key("trust.server-probe-items", "int", DEFAULT_SERVER_PROBE_ITEMS, "items per mode the "
        "server probes for the reference and every candidate (a fixed seeded subset, so both are "
        "scored on the same items); 0 = whole suites (slow on CPU)", _S, low=0, high=_MAX_INT,
        keyword="server_probe_items"),
    Key("trust.client-probe-budget", "int", DEFAULT_PROBE_ITEMS, "items per mode each client "
        "probes per round, sent as `trust.probe-budget`; a stratified sample rotating across "
        "rounds (tests of the clients' median then count the reference's own sampling error: "
        "other items); 0 = whole suites (slow on CPU)", _S, low=0, high=_MAX_INT,
        keyword="client_probe_budget"),
    Key("trust.update-alpha", "float", 0.01, "per-round false-alarm budget of the update "
        "checks", _S, low=0.0, high=1.0, open_low=True, open_high=True, keyword="update_alpha"),
    Key("trust.update-centre-clients", "int", 64, "the update checks' robust centre is the "
        "coordinate-wise median of this many seeded sampled clients (two such halves above "
        "it); 0 = all clients", _S, keyword="update_centre_clients"),
    Key("trust.update-centre-coords", "int", 131072, "... on this many seeded sampled "
        "coordinates (cosines use them, norms use all); 0 = all coordinates (exact: smaller "
        "direction changes found, 7.6x FedAvg's cost at 1,000 clients instead of 1.6x)", _S,
        keyword="update_centre_coords"),
    Key("trust.update-cosine-margin", "float", 0.5, "the update checks flag a direction "
        "outlier only when its cosine to the others' median is significantly below (1 - "
        "margin) x the clients' median cosine: honest clients on other data (non-IID) keep "
        "part of the shared direction, a sign-flipped update none (docs/detection.md); 0 = "
        "below the median itself, 1 = only updates pointing away", _S, low=0.0, high=1.0,
        keyword="update_cosine_margin"),
    Key("trust.audit-fraction", "float", 0.0, "share of clients whose reported metrics the "
        "server re-measures each round (integrity); clients on probation are re-measured every "
        "round regardless", _S, low=0.0, high=1.0,
        keyword="audit_fraction"),
    Key("trust.max-weight-share", "float", 0.5, "the most of a round's aggregation weight one "
        "reply can carry while the others are honest: weights are capped at k x the round's "
        "lower median weight (docs/protocol.md, \"Reply contract\"); 1 = no cap", _S, low=0.0,
        high=1.0, open_low=True, keyword="max_weight_share"),
    Key("trust.secure-aggregation", "bool", False, "only sums are visible: population-level "
        "detection, no attribution, no quarantine", _S, keyword="secure_aggregation"),
    Key("trust.run-dir", "str", "", "folder of the audit log and TensorBoard scalars (the "
        "log of a run that crashed there is resumed, of one that ended refused: docs/report.md"
        "); empty = `runs/trust-guard-<time>`", _S,
        keyword="run_dir"),
    Key("trust.tensorboard", "bool", True, "write TensorBoard scalars", _S,
        keyword="tensorboard"),
    Key("trust.seed", "int", 0, "seed of the server's own sampling (probe subset, audited "
        "clients); never touches the inner strategy's", _S, low=0, high=_MAX_INT,
        keyword="seed"),
    Key("trust.alpha", "float", 0.05, "per-run false-alarm budget of all behavioral tests "
        "(split over train-phase reports, candidate probes and evaluate-phase reports, a third "
        "each)", _S, low=0.0, high=1.0, open_low=True, open_high=True, via="detector"),
    Key("trust.trend-window", "int", 4, "rounds averaged by the trend test", _S, low=2,
        high=_MAX_INT, via="detector"),
    Key("trust.paired-scale", "choice", "margin", "paired tests of soft rates: `margin` "
        "compares per-item logits (guarded by the rate's own change; docs/detection.md), "
        "`rate` per-item probabilities", _S, choices=("margin", "rate"), via="detector"),
    Key("trust.horizon", "int", "auto", "the run's planned rounds: the false-alarm budget is "
        "spent evenly over them (0.9 of it; the rest covers rounds beyond) instead of "
        "6/(pi^2 t^2) at round t, which leaves late rounds little power; `auto` = the "
        "num_rounds the strategy is started with (open-ended if it never is); 0 = open-ended. "
        "A resumed run keeps the horizon it started with", _S, choices=("auto",), low=0,
        high=_MAX_INT, via="detector"),
    # ---------------------------------------------------------------- client (trust_mod)
    Key("trust.client.enabled", "bool", True, "false: the mod passes every message through "
        "untouched", _C),
    Key("trust.device", "str", "auto", "where probes run: `auto` (the probed model's own "
        "device: the app's GPU when the app registered its model with `use_model`), or `cpu`, "
        "`cuda`, `cuda:<index>`, `mps`: the model is moved there for probing and back "
        "(refused for 4-/8-bit and multi-device models)", _C),
    Key("trust.probe-budget", "int", DEFAULT_PROBE_ITEMS, "probe items per mode per round "
        "(0 = whole suite); the server's `trust.probe-budget` wins when it sends one", _C,
        low=0, high=_MAX_INT),
    Key("trust.probe-incoming", "bool", False, "also probe the incoming global model on train "
        "messages and report `trust.delta.*` (outgoing minus incoming)", _C),
    Key("trust.personalized.state-key", "str", "", "ArrayRecord in `context.state` with "
        "local-only arrays; when set, the personalized model is reported privately as "
        "`trust.personal.*`", _C),
    Key("trust.privacy.outgoing", "choice", "auto", "`clear`: the server sees the outgoing "
        "model; `private`: it does not (noise its metrics); `auto`: private under SecAgg+, "
        "else clear", _C, choices=("auto", "clear", "private"), node=True),
    Key("trust.privacy.noise-multiplier", "float", 5.0, "Gaussian noise std per private "
        "statistic, in units of its sensitivity (the accountant needs it in [0.001, 10000])",
        _C, low=1e-3, high=1e4, node=True),
    Key("trust.privacy.epsilon", "float", 8.0, "the client's total epsilon for private metrics "
        "over the run", _C, low=0.0, open_low=True, node=True),
    Key("trust.privacy.delta", "float", 1e-5, "the delta the budget is accounted at", _C,
        low=0.0, high=0.999999, open_low=True, node=True),
    Key("trust.privacy.loss-bound", "float", 5.0, "per-sample loss clip (nats) for the private "
        "loss metrics", _C, low=0.0, open_low=True),
    Key("trust.local-data.messages", "list", "evaluate", "message types that compute private "
        "local metrics: `evaluate`, `train`, `train,evaluate` or `none`", _C),
    Key("trust.local-data.groups", "list", "", "comma-separated declared group names for "
        "per-group local loss", _C),
    Key("trust.local-data.max-samples", "int", 128, "max local samples per split used for "
        "private metrics", _C, low=2, high=_MAX_INT),
    Key("trust.local-data.max-tokens", "int", 128, "max tokens per local sample", _C, low=2,
        high=8192),
    Key("trust.shift.enabled", "bool", True, "report `trust.shift.*` on train messages when "
        "local data is given", _C),
    Key("trust.shift.buckets", "int", 64, "hashed token buckets of the shift sketch", _C,
        low=2, high=4096),
    Key("trust.policy.rules", "str", "", "the client's rules on the incoming model, e.g. "
        "`alignment.refusal-rate >= 0.8`", _C, node=True),
    Key("trust.policy.action", "choice", "report", "`report`: flag a violation and train; "
        "`refuse`: reply with an error instead of training", _C, choices=("report", "refuse"),
        node=True),
)
BY_NAME: dict[str, Key] = {k.name: k for k in KEYS}
TOLERANCE_PREFIX = "trust.tolerance."
CLIENT_PREFIXES = ("trust.client.", "trust.lora.", "trust.personalized.", "trust.privacy.",
                   "trust.local-data.", "trust.shift.", "trust.policy.")
"""Prefixes the client owns: an unknown key under them is an error on the client too."""


def keys_of(side: Side) -> list[Key]:
    """The keys one side reads ("both" keys included)."""
    return [k for k in KEYS if k.side in (side, "both")]


def defaults(side: Side) -> dict[str, Any]:
    return {k.name: k.default for k in keys_of(side)}


def close_match(name: str, known: Iterable[str]) -> str | None:
    """The known name `name` is most likely a typo of, if any."""
    close = difflib.get_close_matches(name, list(known), n=1, cutoff=0.75)
    return close[0] if close else None


def suggest(name: str, known: Iterable[str]) -> str:
    """" (did you mean 'x'?)" for a near-miss, else ""."""
    close = close_match(name, known)
    return f" (did you mean '{close}'?)" if close else ""


def unknown_key_error(key: str, known: Iterable[str], fix: str) -> TrustConfigError:
    return TrustConfigError(f"Unknown config key {key}{suggest(key, known)}.", fix)


def check_client_keys(sources: Iterable[Mapping[str, Any]]) -> None:
    """Unknown keys under the client-owned prefixes are errors (a typo in a privacy key must
    not silently fall back to a default)."""
    known = [k.name for k in keys_of("client") if k.name.startswith(CLIENT_PREFIXES)]
    for source in sources:
        for key in source:
            if key.startswith(CLIENT_PREFIXES) and key not in BY_NAME:
                raise unknown_key_error(key, known, "Known keys under this prefix: "
                                        + ", ".join(sorted(known)) + ".")


def shown_default(key: Key) -> str:
    """The default as the docs show it (JSON for strings and booleans)."""
    return json.dumps(key.default) if isinstance(key.default, str | bool) else repr(key.default)


def markdown_table(side: Side) -> str:
    """The docs table of one side's keys (docs/client.md; docs/configuration.md with the
    TrustGuard keyword each server key sets)."""
    server = side == "server"
    rows = (["| key | default | keyword | meaning |", "| --- | --- | --- | --- |"] if server
            else ["| key | default | meaning |", "| --- | --- | --- |"])
    for key in keys_of(side):
        mark = " (*node*)" if key.node and not server else ""
        extra = f" (falls back to FlowerTune's `{key.flowertune}`)" if key.flowertune else ""
        shown = key.keyword or key.via
        keyword = (f" `{shown}` |" if shown else " — |") if server else ""
        rows.append(f"| `{key.name}`{mark} | `{shown_default(key)}` |{keyword} "
                    f"{key.doc}{extra} |")
    return "\n".join(rows)
