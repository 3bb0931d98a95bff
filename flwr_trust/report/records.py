"""The audit log's records as typed, versioned dataclasses, shared by the guard (writer) and the
report (reader).

A record is written as ``{"kind": ..., "payload": record.to_payload()}`` (audit.py adds the
hash chain). `from_payload` reads a payload defensively: a hand-made chain can verify and still
hold odd data, so wrong types become empty values instead of exceptions. `version` is written
into every payload (absent = 1) so later formats can be read next to older logs.

Kinds: ``run-start`` (`RunStart`), ``reference`` (`Reference`), ``round`` (`RoundRecord`, one
per round and phase), ``run-resume`` (`RunResume`, a guard restarted on the run's folder),
``run-end`` (`RunEnd`). The log itself writes ``torn-tail`` records (report/torn.py).

Versions: 1, the first format; 2 adds `RoundRecord.monitors` (the behavioural monitors'
sequential state after the round, which a restarted guard resumes from) and ``run-resume``.
A version-1 round reads with empty `monitors`.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar

VERSION = 2

SYSTEM_LOSS_KEYS = ("train_loss", "train-loss", "loss")
"""Metric keys the guard reads the round's aggregated loss from (`RoundRecord.system["loss"]`),
the system health shown beside behavior ("loss fine, behavior failing")."""


def num(value: Any) -> float | None:
    """A finite float from a payload number, else None (non-finite, missing, bool, text)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    out = float(value)
    return out if math.isfinite(out) else None


def not_finite(value: Any) -> bool:
    """A number that is NaN or infinite, as written (the log stores them as these strings)."""
    if isinstance(value, str):
        return value in ("NaN", "Infinity", "-Infinity")
    return isinstance(value, float) and not math.isfinite(value)


def as_dict(value: Any) -> dict[str, Any]:
    """`value` if it is a JSON object, else an empty dict."""
    return value if isinstance(value, dict) else {}


def as_list(value: Any) -> list[Any]:
    """`value` if it is a JSON array, else an empty list."""
    return value if isinstance(value, list) else []


ROUND_BOUND = 2**53  # integers a float holds exactly: a larger "round" is no round


def is_round(value: Any) -> bool:
    """An integer count or round number that plots and sums can use (a hand-made chain can
    verify and still hold 10**400)."""
    return isinstance(value, int) and not isinstance(value, bool) and abs(value) < ROUND_BOUND


@dataclass
class RunStart:
    """How the guard was set up: strategy, gate, model, suites and detection budgets."""

    kind: ClassVar[str] = "run-start"
    strategy: str | None = None
    gate: str | None = None
    model: str | None = None
    modes: list[str] = field(default_factory=list)
    suite_hash: str | None = None
    server_suites: dict[str, str] = field(default_factory=dict)
    alpha: float | None = None
    update_alpha: float | None = None
    audit_fraction: float | None = None
    secure_aggregation: bool | None = None
    version: int = VERSION
    # Probe sample sizes (absent in logs written before them): items per mode the server
    # probes for the reference and every candidate, and per mode per round each client
    # probes (0 = whole suites).
    server_items: dict[str, int] = field(default_factory=dict)
    client_probe_budget: int | None = None
    # The planned rounds the behavioural tests spend alpha over (DetectorConfig.horizon;
    # 0 = open-ended; absent in logs written before it, which were open-ended by default).
    horizon: int | None = None
    # The update checks' direction margin (UpdateChecker.cosine_margin; absent in logs written
    # before it, which tested against the median: 0).
    update_cosine_margin: float | None = None

    def to_payload(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_payload(cls, p: Any) -> RunStart:
        p = as_dict(p)
        text = (lambda v: v if isinstance(v, str) else None)  # noqa: E731
        return cls(text(p.get("strategy")), text(p.get("gate")), text(p.get("model")),
                   [m for m in as_list(p.get("modes")) if isinstance(m, str)],
                   text(p.get("suite_hash")),
                   {str(k): str(v) for k, v in as_dict(p.get("server_suites")).items()},
                   num(p.get("alpha")), num(p.get("update_alpha")), num(p.get("audit_fraction")),
                   p.get("secure_aggregation") if isinstance(p.get("secure_aggregation"), bool)
                   else None, _version(p),
                   {str(k): int(v) for k, v in as_dict(p.get("server_items")).items()
                    if is_round(v)},
                   p.get("client_probe_budget") if is_round(p.get("client_probe_budget"))
                   else None,
                   p.get("horizon") if is_round(p.get("horizon")) else None,
                   num(p.get("update_cosine_margin")))

    @property
    def audited(self) -> bool:
        return (self.audit_fraction or 0.0) > 0


@dataclass
class Reference:
    """The round-0 profile of the initial global model (BehaviorProfile.to_json())."""

    kind: ClassVar[str] = "reference"
    profile: dict[str, Any] = field(default_factory=dict)
    version: int = VERSION

    def to_payload(self) -> dict[str, Any]:
        return {"profile": self.profile, "version": self.version}

    @classmethod
    def from_payload(cls, p: Any) -> Reference:
        p = as_dict(p)
        return cls(as_dict(p.get("profile")), _version(p))

    @property
    def metrics(self) -> dict[str, dict[str, Any]]:
        """mode -> metric -> {value, stderr, n, worse}."""
        return {m: {k: as_dict(row) for k, row in as_dict(ms).items()}
                for m, ms in as_dict(self.profile.get("metrics")).items()}


@dataclass
class Clients:
    """Who replied in a round: valid node ids, refused and failed ones with their reasons."""

    valid: list[Any] = field(default_factory=list)
    refused: dict[str, str] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_payload(cls, p: Any) -> Clients:
        p = as_dict(p)
        return cls(as_list(p.get("valid")),
                   {str(k): str(v) for k, v in as_dict(p.get("refused")).items()},
                   {str(k): str(v) for k, v in as_dict(p.get("failed")).items()})


@dataclass
class Gate:
    """What the gate did with a round: accept, quarantine, rollback or halt."""

    action: str = "accept"
    excluded: list[Any] = field(default_factory=list)
    culprits: list[Any] = field(default_factory=list)
    reason: str = ""
    probation: dict[str, Any] = field(default_factory=dict)  # node -> ["mode.metric", ...]
    inspection: dict[str, Any] = field(default_factory=dict)  # "mode.metric" -> since round

    @classmethod
    def from_payload(cls, p: Any) -> Gate:
        p = as_dict(p)
        return cls(str(p.get("action", "accept")), as_list(p.get("excluded")),
                   as_list(p.get("culprits")), str(p.get("reason", "")),
                   as_dict(p.get("probation")), as_dict(p.get("inspection")))


@dataclass
class RoundRecord:
    """One round and phase (train / evaluate) as the guard saw and decided it.

    system:         loss and update-norm summary (what dashboards show)
    behavior:       mode -> metric -> population row (value, stderr, source, reference,
                    degradation, tolerance, client_median, client_spread, n_clients)
    client_metrics: node -> that client's trust.* numbers; privacy: node -> trust.privacy.*
    update_stats:   node -> norm, cosine, z-scores (or {"malformed": reason})
    alarms:         Alarm.to_json() of every alarm and warning
    monitors:       monitor name -> MonitorState.to_json() after this round (version 2; empty
                    in version 1): what a guard restarted on this run resumes from
    """

    kind: ClassVar[str] = "round"
    round: int = 0
    phase: str = "train"
    clients: Clients = field(default_factory=Clients)
    system: dict[str, float] = field(default_factory=dict)
    behavior: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    client_metrics: dict[str, dict[str, Any]] = field(default_factory=dict)
    privacy: dict[str, dict[str, Any]] = field(default_factory=dict)
    update_stats: dict[str, dict[str, Any]] = field(default_factory=dict)
    alarms: list[dict[str, Any]] = field(default_factory=list)
    gate: Gate = field(default_factory=Gate)
    version: int = VERSION
    monitors: dict[str, dict[str, Any]] = field(default_factory=dict)

    def to_payload(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_payload(cls, p: Any) -> RoundRecord | None:
        """The record, or None when the payload has no integer round number."""
        p = as_dict(p)
        if not is_round(p.get("round")):
            return None
        alarms = []
        for a in as_list(p.get("alarms")):
            a = as_dict(a)
            if isinstance(a.get("mode"), str):
                alarms.append(a if is_round(a.get("round")) else a | {"round": p["round"]})
        return cls(p["round"], str(p.get("phase", "")), Clients.from_payload(p.get("clients")),
                   {str(k): v for k, v in as_dict(p.get("system")).items()},
                   {m: {x: as_dict(row) for x, row in as_dict(ms).items()}
                    for m, ms in as_dict(p.get("behavior")).items()},
                   {str(n): as_dict(f) for n, f in as_dict(p.get("client_metrics")).items()},
                   {str(n): as_dict(f) for n, f in as_dict(p.get("privacy")).items()},
                   {str(n): as_dict(s) for n, s in as_dict(p.get("update_stats")).items()},
                   alarms, Gate.from_payload(p.get("gate")), _version(p),
                   {str(k): as_dict(m) for k, m in as_dict(p.get("monitors")).items()})


@dataclass
class RunEnd:
    """How the run ended: status (completed / halted), rounds, alarms."""

    kind: ClassVar[str] = "run-end"
    status: str = "completed"
    rounds: int = 0
    alarms: int = 0
    version: int = VERSION

    def to_payload(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_payload(cls, p: Any) -> RunEnd:
        p = as_dict(p)
        rounds, alarms = p.get("rounds"), p.get("alarms")
        return cls(str(p.get("status", "unknown")), rounds if is_round(rounds) else 0,
                   alarms if is_round(alarms) else 0, _version(p))


@dataclass
class RunResume:
    """A guard restarted on the folder of a run that had not ended (a crash): it continued the
    log instead of starting a new run.

    after_round:   the last round the log had recorded (the run goes on after it)
    round_offset:  added to Flower's server round to get the run's round (Flower's
                   Strategy.start counts from 1 again after a restart)
    resumes:       how many times this run has been resumed, this one included
    reference:     "log" (read from the reference record, not probed again), "probed" (the
                   log had none and no round yet) or "none"
    monitors:      where the monitors' state came from: "log" (the last round record),
                   "rebuilt" (an older log without it: look counters set to the number of
                   rounds, an upper bound, and trend histories empty) or "none"
    looks:         monitor -> family -> look counter after resuming (one look per family is
                   skipped: the crashed round may have spent it before its record was written)
    changed:       run-start field -> [logged value, this guard's value], where they differ
    torn_tails:    torn writes the log recovered when it was opened (their own records follow
                   the same facts)
    """

    kind: ClassVar[str] = "run-resume"
    after_round: int = 0
    round_offset: int = 0
    resumes: int = 1
    reference: str = "none"
    monitors: str = "none"
    looks: dict[str, dict[str, int]] = field(default_factory=dict)
    changed: dict[str, list[Any]] = field(default_factory=dict)
    torn_tails: list[dict[str, Any]] = field(default_factory=list)
    version: int = VERSION

    def to_payload(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_payload(cls, p: Any) -> RunResume:
        p = as_dict(p)
        ints = (lambda v: v if is_round(v) else 0)  # noqa: E731
        return cls(ints(p.get("after_round")), ints(p.get("round_offset")),
                   ints(p.get("resumes")) or 1, str(p.get("reference", "none")),
                   str(p.get("monitors", "none")),
                   {str(m): {str(f): ints(k) for f, k in as_dict(fs).items()}
                    for m, fs in as_dict(p.get("looks")).items()},
                   {str(k): as_list(v) for k, v in as_dict(p.get("changed")).items()},
                   [as_dict(t) for t in as_list(p.get("torn_tails"))], _version(p))


def _version(p: dict[str, Any]) -> int:
    v = p.get("version", 1)
    return v if is_round(v) else 1


Record = RunStart | Reference | RoundRecord | RunResume | RunEnd
