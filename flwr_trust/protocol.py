"""The wire protocol between `trust_mod` (client) and `TrustGuard` (server), stated once.

Every ``trust.*`` key that travels is a constant here, with typed builders and parsers used by
both sides (docs/protocol.md is checked against this module). Flower-free: the builders return
plain dicts that the adapters put into Flower's ConfigRecord / MetricRecord, and the parsers
read any mapping.

Server -> client (ConfigRecord of train and evaluate messages): `ServerConfig`.
Client -> server (the reply's MetricRecord): behaviour metrics ``trust.<mode>.<metric>`` with
``.stderr``, ``.n`` and ``.noise`` (`entry`, `absent`, `observations`), plus privacy, status,
veto and timing keys. Server -> Flower's Result: `RESULT_KEYS`.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

from flwr_trust.errors import TrustError

PREFIX = "trust."
FLOWER_ROUND = "server-round"  # Flower's own round key, the fallback for ROUND

# ----------------------------------------------------------------- server -> client (config)
SUITE_HASH = "trust.suite-hash"  # str (hex) from the server; int (60 bits) in client replies
ROUND = "trust.round"
PROBE_BUDGET = "trust.probe-budget"
SERVER_PROBE = "trust.server-probe"  # 1: the server probes the global model exactly
REPORT_ITEMS = "trust.report-items"  # 1: send per-item values of clear public metrics

# ----------------------------------------------------------------- client -> server (metrics)
STDERR, N, NOISE, ITEMS = ".stderr", ".n", ".noise", ".items"
SUFFIXES = (STDERR, N, NOISE)  # non-negative numbers
PUBLIC_POST_PROCESSING = "trust.public-post-processing"
PRIVACY_PREFIX = "trust.privacy."
PRIVACY_EPSILON = "trust.privacy.epsilon"
PRIVACY_DELTA = "trust.privacy.delta"
PRIVACY_EXHAUSTED = "trust.privacy.exhausted"
PRIVACY_NOISE_MULTIPLIER = "trust.privacy.noise-multiplier"
PRIVACY_RELEASES = "trust.privacy.releases"
VETO = "trust.veto"
VETO_RULES = "trust.veto.rules"
STATUS_PREFIX = "trust.status."
STATUS_PARTS = ("incoming", "outgoing", "personal", "private", "shift")
STATUS = {"ok": 0, "not-configured": 1, "no-local-data": 2, "budget-exhausted": 3,
          "too-few-samples": 4, "model-unavailable": 5, "server-probed": 6}
DELTA_PREFIX = "trust.delta."
PERSONAL = "personal"  # trust.personal.<mode>.<metric>: the personalized model's headline
SHIFT_FROM_EARLIER = "trust.shift.from-earlier"
SHIFT_FROM_REFERENCE = "trust.shift.from-reference"
MOD_SECONDS = "trust.mod-seconds"
PROBE_SECONDS = "trust.probe-seconds"

# ----------------------------------------------------------------- server -> Result metrics
REPLIES_VALID = "trust.replies-valid"
REPLIES_REFUSED = "trust.replies-refused"
REPLIES_FAILED = "trust.replies-failed"
ALARMS = "trust.alarms"
WARNINGS = "trust.warnings"
GATE_ACTION = "trust.gate-action"
EXCLUDED = "trust.excluded"
RESULT_KEYS = (REPLIES_VALID, REPLIES_REFUSED, REPLIES_FAILED, ALARMS, WARNINGS, GATE_ACTION,
               EXCLUDED)
ACTION_CODE = {"accept": 0, "quarantine": 1, "rollback": 2, "halt": 3}

Number = int | float
_HEX = re.compile(r"[0-9a-f]{12,64}")


class ProtocolError(TrustError):
    """A peer sent a ``trust.*`` value of the wrong type or range."""


def metric_key(mode: str, metric: str, prefix: str = PREFIX) -> str:
    """``trust.<mode>.<metric>`` (``prefix`` = "trust.personal." etc. for the variants)."""
    return f"{prefix}{mode}.{metric}"


def hash_to_int(hex_hash: str) -> int:
    """A suite hash as an int that fits a MetricRecord (first 15 hex digits = 60 bits)."""
    return int(hex_hash[:15], 16)


def is_trust_key(key: str) -> bool:
    return key.startswith(PREFIX)


# ------------------------------------------------------------------------ server config


@dataclass(frozen=True)
class ServerConfig:
    """The ``trust.*`` keys the server adds to every train/evaluate ConfigRecord.

    suite_hash:   combined SHA-256 (hex) of the server's probe suites, or None (not sent)
    round:        the server round the client's probe sample is drawn for
    probe_budget: items per mode the client probes this round (0 = whole suites), or None
    server_probe: the server probes the global model exactly (clients need not re-score it)
    report_items: the server pairs per-item values (clients send `.items` of clear metrics)
    """

    suite_hash: str | None
    round: int
    probe_budget: int | None = None
    server_probe: bool = False
    report_items: bool = False

    def to_config(self) -> dict[str, Any]:
        out: dict[str, Any] = {ROUND: self.round}
        if self.suite_hash is not None:
            out[SUITE_HASH] = self.suite_hash
        if self.probe_budget is not None:
            out[PROBE_BUDGET] = self.probe_budget
        if self.server_probe:
            out[SERVER_PROBE] = 1
        if self.report_items:
            out[REPORT_ITEMS] = 1
        return out

    @classmethod
    def parse(cls, configs: Mapping[str, Any], group_id: str = "") -> ServerConfig:
        """Read the keys from a message's config values (Flower's server-round, then the
        message's group id are the round's fallbacks); ProtocolError names a bad one."""
        suite_hash = configs.get(SUITE_HASH)
        if suite_hash is not None and (not isinstance(suite_hash, str)
                                       or not _HEX.fullmatch(suite_hash)):
            raise ProtocolError(f"The server sent {SUITE_HASH} = {suite_hash!r}, not a hex "
                                "SHA-256.", "Update the server to the same flwr-trust version.")
        rnd: Any = configs.get(ROUND, configs.get(FLOWER_ROUND))
        if rnd is None:
            rnd = int(group_id) if group_id.isdigit() else 0
        if isinstance(rnd, bool) or not isinstance(rnd, int) or rnd < 0:
            raise ProtocolError(f"The server sent round {rnd!r}, not a non-negative integer.",
                                f"Send {ROUND} / {FLOWER_ROUND} as an int.")
        budget = configs.get(PROBE_BUDGET)
        if budget is not None and (isinstance(budget, bool) or not isinstance(budget, int)
                                   or budget < 0):
            raise ProtocolError(f"The server sent {PROBE_BUDGET} = {budget!r}.",
                                "Send a non-negative int (0 = whole suite).")
        flags = []
        for key in (SERVER_PROBE, REPORT_ITEMS):
            flag = configs.get(key, 0)
            if flag not in (0, 1) or isinstance(flag, float):
                raise ProtocolError(f"The server sent {key} = {flag!r}.", "Send 0 or 1.")
            flags.append(bool(flag))
        return cls(suite_hash, rnd, budget, *flags)


def server_configs(records: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """The ``trust.*`` keys and Flower's server-round from a message's ConfigRecords."""
    out: dict[str, Any] = {}
    for record in records.values():
        for key, value in record.items():
            if key.startswith(PREFIX) or key == FLOWER_ROUND:
                out[key] = value
    return out


# ------------------------------------------------------------------------ client metrics


def entry(key: str, value: float, stderr: float, n: int, noise: float = 0.0,
          items: Sequence[float] | None = None) -> dict[str, Any]:
    """The numbers of one metric; reported absent (n = 0) when the value, its stderr or its
    noise std is not a finite number: a stderr or noise sent as 0 would claim an exact value
    (e.g. noise so large its variance overflowed). `items` (per-item values, clear releases
    only) travel as the list ``<key>.items``."""
    if not all(math.isfinite(x) for x in (value, stderr, noise)) or n <= 0:
        return absent(key)
    out: dict[str, Any] = {key: float(value), key + STDERR: float(stderr),
                           key + N: int(n), key + NOISE: float(noise)}
    if items is not None and noise == 0 and all(math.isfinite(x) for x in items):
        out[key + ITEMS] = [float(x) for x in items]
    return out


def absent(key: str) -> dict[str, Number]:
    """A metric not available this round: still sent (every reply of a round carries the same
    keys), with n = 0 and value, stderr and noise 0. **n = 0 means absent.**"""
    return {key: 0.0, key + STDERR: 0.0, key + N: 0, key + NOISE: 0.0}


def profile_entries(metrics: Mapping[str, Mapping[str, Any]], prefix: str = PREFIX,
                    items: bool = False) -> dict[str, Any]:
    """Every metric of a profile (mode -> metric -> MetricValue) as released post-processing
    (noise 0); with `items`, each item-mean metric's per-item values too."""
    out: dict[str, Any] = {}
    for mode, values in metrics.items():
        for name, mv in values.items():
            out |= entry(metric_key(mode, name, prefix), mv.value, mv.stderr, mv.n,
                         items=getattr(mv, "items", None) if items else None)
    return out


def values_only(metrics: Mapping[str, Mapping[str, Any]]) -> dict[str, float]:
    """``trust.<mode>.<metric>`` -> value for the finite values of a profile (the server's
    probe of a candidate in Flower's Result)."""
    return {metric_key(mode, name): float(mv.value) for mode, values in metrics.items()
            for name, mv in values.items() if math.isfinite(mv.value)}


class Observation(NamedTuple):
    """A client-reported metric: value, sampling stderr, sample size, std of added DP noise.

    A NamedTuple (immutable, and cheap: a round holds clients x metrics of them).
    """

    value: float
    stderr: float = 0.0
    n: int = 0
    noise_std: float = 0.0
    items: tuple[float, ...] | None = None


def observations(flat: Mapping[str, Any], noise_std: float = 0.0
                 ) -> dict[str, dict[str, Observation]]:
    """A reply's flat ``trust.<mode>.<metric>[.stderr|.n|.noise]`` numbers as Observations.

    `noise_std` is used where a metric carries no `.noise`. Non-numeric values are skipped, and
    so are metrics reported with `.n = 0` (absent). Other ``trust.*`` keys (suite hash, privacy,
    deltas) come out under "modes" no detector watches.
    """
    out: dict[str, dict[str, Observation]] = {}
    for key, value in flat.items():
        if not key.startswith(PREFIX) or key.endswith((*SUFFIXES, ITEMS)):
            continue
        mode, _, metric = key[len(PREFIX):].partition(".")
        try:
            raw_items = flat.get(key + ITEMS)
            items = tuple(float(x) for x in raw_items) if isinstance(raw_items, list) else None
            obs = Observation(float(value), float(flat.get(key + STDERR, 0.0)),
                              int(flat.get(key + N, 0)),
                              float(flat.get(key + NOISE, noise_std)), items)
        except (TypeError, ValueError, OverflowError):
            continue
        if key + N in flat and obs.n == 0:
            continue
        if metric:
            out.setdefault(mode, {})[metric] = obs
    return out


def split_trust(metrics: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(the ``trust.*`` numbers, the user's own metrics) of one reply's MetricRecord."""
    trust = {k: v for k, v in metrics.items() if k.startswith(PREFIX)}
    user = {k: v for k, v in metrics.items() if not k.startswith(PREFIX)}
    return trust, user


def privacy_fields(flat: Mapping[str, Any]) -> dict[str, Any]:
    """The ``trust.privacy.*`` numbers of a reply (for the audit record)."""
    return {k: v for k, v in flat.items() if k.startswith(PRIVACY_PREFIX)}


def status_key(part: str) -> str:
    return STATUS_PREFIX + part


# ------------------------------------------------------------------------ reply shape

# A reply of the default suites carries about 200 trust.* keys and lists of at most the probe
# budget (items per mode); these bounds keep one reply from flooding the audit log and memory.
MAX_TRUST_KEYS = 10_000
MAX_ITEMS = 10_000
# All trust.* numbers of one reply, list items included: at least MAX_TRUST_NUMBERS, else
# LISTS_PER_SUITE lists as long as the largest suite (six modes, a few item lists each, and
# their per-group parts). The default suites' whole-suite items are about 5,000 numbers;
# keys x max items alone allowed 3 million (57 MB of audit log per reply and round, review).
MAX_TRUST_NUMBERS = 50_000
LISTS_PER_SUITE = 60
ITEMS_MEAN_SLACK = 1e-6  # relative: `<metric>` is the mean of `<metric>.items` (float rounding)


def report_shape_problem(metrics: Mapping[str, Any], max_items: int = MAX_ITEMS) -> str:
    """How the ``trust.*`` numbers hang together (values are checked before): a bounded number
    of keys; lists of at most `max_items` numbers (the server passes its largest suite);
    every watched metric a number with its `.n`, a whole number, and scalar `.stderr` /
    `.noise`; ``<metric>.items`` as many as `.n` says, averaging to the metric's value, and
    within [0, 1] for a rate (what the reporter sends: flwr_trust.protocol.entry). The
    detectors use `.items` and the value, the integrity audit skips a metric whose `.n` is
    missing or 0: these rules keep them reading the same claim. "" when the shape is right."""
    from flwr_trust import modes  # here: the mode modules import this one

    trust = {k: v for k, v in metrics.items() if k.startswith(PREFIX)}
    if len(trust) > MAX_TRUST_KEYS:
        return f"{len(trust)} trust.* metrics (at most {MAX_TRUST_KEYS})"
    total = sum(len(v) if isinstance(v, list) else 1 for v in trust.values())
    if total > (most := max(MAX_TRUST_NUMBERS, LISTS_PER_SUITE * max_items)):
        return f"{total} trust.* numbers in all (at most {most})"
    for key, value in trust.items():
        if isinstance(value, list) and len(value) > max_items:
            return f"metric {key} has {len(value)} items (at most {max_items})"
        base = next((key[:-len(s)] for s in (*SUFFIXES, ITEMS) if key.endswith(s)), key)
        mode, _, metric = base[len(PREFIX):].partition(".")
        spec = modes.watched(mode, metric)
        if spec is None:
            continue  # no detector reads it (a plugin's own numbers): only bounded
        if key.endswith(ITEMS):
            if reason := _items_problem(key, value, trust, spec.unit_interval):
                return reason
        elif isinstance(value, list):
            return f"metric {key} is a list; only {base}{ITEMS} may be one"
        elif key.endswith(N) and not float(value).is_integer():
            return f"metric {key} = {value!r:.40} is not a whole number of items"
        elif key == base and base + N not in trust:
            return f"metric {key} comes without {key}{N} (n = 0 marks a metric absent)"
        elif key == base and (reason := _declared_problem(key, trust, spec)):
            return reason
    return ""


def _declared_problem(key: str, trust: Mapping[str, Any], spec: Any) -> str:
    """A clear metric's self-declared numbers against what the metric allows: its value in
    its range, its stderr at most half the range (no statistic of values in [a, b] spreads
    more), and no DP noise on a public metric the reply says it released clear. Without
    these a reply could declare stderr 1e6 or noise 1e6 and blind its own per-client test."""
    declared = {s: trust.get(key + s, 0.0) for s in (N, NOISE, STDERR)}
    for suffix, number in declared.items():  # lists are refused on their own keys too, but
        if isinstance(number, list):  # those may come later in the reply's order
            return f"metric {key}{suffix} is a list; only {key}{ITEMS} may be one"
    if not declared[N]:
        return ""  # absent
    noise, se = declared[NOISE], declared[STDERR]
    if noise and spec.source == "public" and trust.get(PUBLIC_POST_PROCESSING) == 1:
        return (f"metric {key} declares DP noise {noise!r:.20} but the reply released its "
                f"public metrics clear ({PUBLIC_POST_PROCESSING} = 1)")
    if noise or not isinstance(spec.range, tuple):
        return ""  # a noised value may leave the range; a suite-dependent range: unknown here
    low, high = spec.range
    slack = 1e-6 * max(1.0, high - low)
    if not low - slack <= trust[key] <= high + slack:
        return f"metric {key} = {trust[key]!r:.40} is outside its range [{low:g}, {high:g}]"
    if se > (high - low) / 2 + slack:
        return (f"metric {key} declares stderr {se!r:.40}, more than half its range "
                f"[{low:g}, {high:g}] allows")
    return ""


def _items_problem(key: str, items: Any, trust: dict[str, Any], unit: bool) -> str:
    if not isinstance(items, list):
        return f"metric {key} is not a list of per-item values"
    base = key[:-len(ITEMS)]
    n, value = trust.get(base + N), trust.get(base)
    if n != len(items):
        return f"metric {key} has {len(items)} items but {base}{N} = {n!r:.40}"
    if not items or not isinstance(value, int | float) or isinstance(value, bool):
        return f"metric {key} comes without its value {base}"
    if unit and not all(0.0 <= x <= 1.0 for x in items):
        return f"metric {key} has items outside [0, 1] (per-item probabilities of a rate)"
    mean = math.fsum(items) / len(items)
    if abs(mean - value) > ITEMS_MEAN_SLACK * max(1.0, abs(value)):
        return f"metric {base} = {value!r:.40} is not the mean of its items ({mean:.6g})"
    return ""
