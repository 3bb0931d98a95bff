"""TrustGuard: wrap any Flower Message-API strategy with behavioral detection and gating.

`TrustGuard(FedAvg(...), gate="rollback")` delegates configuration and aggregation to the inner
strategy. Around each aggregation it screens the untrusted replies, checks the updates, runs the
behavioral detectors on what clients report and on the server's own probe of the candidate model,
and gates (off / quarantine / rollback / halt). With no alarm, the inner strategy sees exactly the
replies it would have seen alone, so the global arrays are bit-identical to the inner's.
"""

from __future__ import annotations

import copy
import dataclasses
import logging
import random
import time
from collections.abc import Callable, Collection, Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
from flwr.app import ArrayRecord, ConfigRecord, Message, MetricRecord
from flwr.serverapp import Grid
from flwr.serverapp.strategy import Result, Strategy

from flwr_trust.detect.alarm import Alarm
from flwr_trust.detect.behavior import BehaviorMonitor, DetectorConfig, observations_from_metrics
from flwr_trust.detect.update import (
    CENTRE_COORDS,
    CENTRE_SAMPLE,
    UpdateCheckResult,
    check_updates,
)
from flwr_trust.errors import TrustError
from flwr_trust.guard.gate import ACTION_CODE, GateDecision, TrustHalt, check_gate
from flwr_trust.guard.validation import (
    Screened,
    decode_array,
    screen_replies,
    weighted_key_of,
)
from flwr_trust.probes.defaults import load_suites
from flwr_trust.probes.suite import MODES, ProbeSuite
from flwr_trust.report.recorder import RunRecorder
from flwr_trust.scoring.profile import PREFIX, BehaviorProfile, hash_to_int

log = logging.getLogger("flwr_trust")

# Metric keys that describe system health, shown beside behavior ("loss fine, behavior failing").
LOO_MAX_CLIENTS = 8  # rollback names culprits by leave-one-out up to this many clients

SYSTEM_LOSS_KEYS = ("train_loss", "train-loss", "loss")


class TrustGuard(Strategy):
    """Behavioral trust monitor and gate around an inner Flower strategy.

    inner:          any Message-API strategy (FedAvg, FedProx, FedAdam, Krum, DP wrappers, ...)
    gate:           "off" | "quarantine" | "rollback" | "halt"
    model:          base model the server probes with ("default", "tiny", a folder), or None to
                    rely on client reports only (no reference probe, no rollback probe, no audit)
    peft_config:    the adapter config when the global arrays are a peft adapter state dict
    suites:         "default", a suite file or folder (must be the clients' suites)
    client_probe_budget: items per mode each client probes per round (sent as
                    `trust.probe-budget`; 0 = whole suites)
    server_probe_items: items per mode the server probes (a fixed, seeded subset, so reference
                    and candidates are scored on the same items); 0 = whole suites
    detector:       DetectorConfig (alpha, tolerances, modes); alpha is the per-run false-alarm
                    budget, split between train-phase and evaluate-phase monitoring
    update_alpha:   per-round false-alarm budget of the update checks
    update_centre_clients, update_centre_coords: the update checks' robust centre is the
                    median of this many sampled clients (two such halves in larger rounds) on
                    this many sampled coordinates; 0 = all (exact, slower at scale: see
                    docs/benchmarks.md, and docs/detection.md for the power it buys)
    audit_fraction: share of clients whose reported metrics the server re-measures each round
    secure_aggregation: only sums are visible: population-level detection, no attribution
    run_dir:        where the audit log and TensorBoard scalars go
    on_alarm:       callback receiving every Alarm
    """

    def __init__(self, inner: Strategy, *, gate: str = "off", model: str | None = "default",
                 peft_config: Any | None = None, suites: str | Path = "default",
                 modes: tuple[str, ...] = MODES, server_probe_items: int = 0,
                 client_probe_budget: int = 0,
                 precision: str = "fp32", detector: DetectorConfig | None = None,
                 update_alpha: float = 0.01, update_centre_clients: int = CENTRE_SAMPLE,
                 update_centre_coords: int = CENTRE_COORDS, audit_fraction: float = 0.0,
                 secure_aggregation: bool = False, run_dir: str | Path | None = None,
                 tensorboard: bool = True, on_alarm: Callable[[Alarm], None] | None = None,
                 seed: int = 0, reference: BehaviorProfile | None = None) -> None:
        if not isinstance(inner, Strategy):
            raise TrustError(f"TrustGuard wraps a Flower Strategy, got {type(inner).__name__}.",
                             "Pass e.g. TrustGuard(FedAvg(), gate='rollback').")
        if not 0.0 <= audit_fraction <= 1.0:
            raise TrustError(f"audit_fraction must be in [0, 1], got {audit_fraction}.",
                             "Use e.g. 0.2 to re-probe a fifth of the clients each round.")
        self.inner = inner
        self.gate = check_gate(gate)
        self.model_spec = model
        self.peft_config = peft_config
        self.precision = precision
        self.modes = tuple(modes)
        self.client_suites = load_suites(suites, self.modes)
        self.client_suite_hash = _combined(self.client_suites)
        self.suites = _server_suites(self.client_suites, server_probe_items, seed)
        if client_probe_budget < 0:
            raise TrustError(f"client_probe_budget must be >= 0, got {client_probe_budget}.",
                             "Use 0 for whole suites or a number of items per mode.")
        self.client_probe_budget = client_probe_budget
        self.detector = detector or DetectorConfig(modes=self.modes)
        self._detector_share = dataclasses.replace(self.detector, alpha=self.detector.alpha / 3)
        self.update_alpha = update_alpha
        for name, value in (("update_centre_clients", update_centre_clients),
                            ("update_centre_coords", update_centre_coords)):
            if not isinstance(value, int) or value < 0:
                raise TrustError(f"{name} must be an integer >= 0, got {value!r}.",
                                 "Use 0 for all (exact) or a sample size, e.g. 64.")
        # 0 means all: a bound no round reaches
        self.update_centre = (update_centre_clients or 2**62, update_centre_coords or 2**62)
        self.audit_fraction = audit_fraction
        self.secure_aggregation = secure_aggregation
        self.on_alarm = on_alarm
        self.seed = seed
        self._rng = random.Random(seed)  # own RNG: never touches the inner's sampling
        # A fresh folder per run by default: an existing audit log would be continued.
        self.run_dir = Path(run_dir) if run_dir else Path("runs") / time.strftime(
            "trust-guard-%Y%m%d-%H%M%S")
        self._tensorboard = tensorboard
        self._recorder: RunRecorder | None = None
        self._bridge: Any = None
        self.reference = reference
        self._monitors: dict[str, BehaviorMonitor] = {}
        self._global: ArrayRecord | None = None
        self._global_np: dict[str, np.ndarray] | None = None  # _global decoded, once a round
        self.alarms: list[Alarm] = []
        self.history: list[dict[str, Any]] = []

    # ---------------------------------------------------------------- Flower Strategy interface

    def summary(self) -> None:
        self.inner.summary()
        log.info("TrustGuard: gate=%s modes=%s suites=%s run_dir=%s", self.gate,
                 ",".join(self.modes), self.client_suite_hash[:12], self.run_dir)

    def configure_train(self, server_round: int, arrays: ArrayRecord, config: ConfigRecord,
                        grid: Grid) -> Iterable[Message]:
        self._start(arrays)
        self._global, self._global_np = arrays, None
        self._add_trust_config(config, server_round)
        return self.inner.configure_train(server_round, arrays, config, grid)

    def configure_evaluate(self, server_round: int, arrays: ArrayRecord, config: ConfigRecord,
                           grid: Grid) -> Iterable[Message]:
        self._start(arrays)
        self._add_trust_config(config, server_round)
        return self.inner.configure_evaluate(server_round, arrays, config, grid)

    def aggregate_train(self, server_round: int, replies: Iterable[Message]
                        ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        # Everything that reads client arrays runs before the inner strategy: some strategies
        # (Krum, Bulyan) consume the replies' ArrayRecords while aggregating.
        screened = self._screen(replies, expect_arrays=True,
                                check_finite=not self._sees_updates())
        update_result = self._update_checks(server_round, screened)
        reports = _take_trust_metrics(screened.valid)
        integrity = self._integrity_audit(server_round, screened.valid, reports)
        from_reports = self._monitor("reports").observe(server_round, None,
                                                        _observations(reports))
        flagged = sorted(set(update_result.flagged) | from_reports.flagged_clients
                         | {c for a in integrity for c in a.clients})
        if self.secure_aggregation:
            flagged = []  # only sums are visible: no client can be singled out
        decision = GateDecision()
        to_aggregate = screened.valid
        if self.gate in ("quarantine", "rollback") and flagged:
            # rollback includes quarantine: a client flagged by its own report or update never
            # enters the candidate (else one attacker in n, diluted below the candidate's
            # tolerance, would be averaged in round after round).
            to_aggregate = [m for m in screened.valid if m.metadata.src_node_id not in flagged]
            decision = GateDecision("quarantine", excluded=flagged,
                                    reason="flagged clients left out of this round")
        snapshot = spare = None
        if self.gate == "rollback":
            # The inner's state (FedOpt moments) must be restorable if the candidate is refused,
            # and leave-one-out needs intact copies of the replies (small federations only).
            snapshot = copy.deepcopy(self.inner)
            if 1 < len(to_aggregate) <= LOO_MAX_CLIENTS:
                spare = copy.deepcopy(to_aggregate)
        arrays, metrics = self._inner_aggregate(server_round, to_aggregate)
        candidate = self._probe(arrays) if arrays is not None else None
        on_candidate = self._monitor("candidate").observe(server_round, candidate, None) \
            if candidate is not None else None
        candidate_alarms = on_candidate.alarms if on_candidate is not None else []
        alarms = update_result.alarms + integrity + from_reports.alarms + candidate_alarms
        if self.gate == "rollback" and _alarmed(candidate_alarms) and snapshot is not None:
            failing = {a.mode for a in candidate_alarms if a.severity == "alarm"}
            assert candidate is not None  # candidate_alarms come from its probe
            culprits = self._leave_one_out(server_round, snapshot, spare or [], candidate,
                                           failing)
            self.inner = snapshot
            arrays = self._global
            reason = "candidate failed its probe; previous model kept"
            if spare is None:
                reason += f" (no leave-one-out search above {LOO_MAX_CLIENTS} clients)"
            decision = GateDecision("rollback", excluded=flagged, culprits=culprits,
                                    reason=reason)
            self._monitor("candidate").reset_trend()
        elif self.gate == "halt" and _alarmed(alarms):
            decision = GateDecision("halt", culprits=flagged, reason="an alarm fired")
        self._emit(alarms)
        population = _merge_population(from_reports.population,
                                       on_candidate.population if on_candidate else {})
        out_metrics = self._with_trust_metrics(metrics, screened, candidate, alarms, decision)
        self._record_round(server_round, "train", screened, reports, update_result.stats,
                           population, alarms, decision, metrics)
        if decision.action == "halt":
            self.close()
            raise TrustHalt(
                f"TrustGuard halted the run in round {server_round}: "
                + "; ".join(a.message for a in alarms if a.severity == "alarm")[:500],
                f"Read the audit log {self._recorder_path()} (flwr-trust report "
                f"{self.run_dir}).")
        return arrays, out_metrics

    def aggregate_evaluate(self, server_round: int, replies: Iterable[Message]
                           ) -> MetricRecord | None:
        screened = self._screen(replies, expect_arrays=False)
        reports = _take_trust_metrics(screened.valid)
        try:
            metrics = self.inner.aggregate_evaluate(server_round, screened.valid)
        except Exception as exc:  # the inner strategy must not take the server down
            log.warning("TrustGuard: inner aggregate_evaluate failed (%s); no metrics", exc)
            metrics = None
        behavior = self._monitor("evaluate").observe(server_round, None, _observations(reports))
        self._emit(behavior.alarms)
        self._record_round(server_round, "evaluate", screened, reports, {}, behavior.population,
                           behavior.alarms, GateDecision(), metrics)
        return self._with_trust_metrics(metrics, screened, None, behavior.alarms, None)

    # ---------------------------------------------------------------- internals

    def _start(self, arrays: ArrayRecord) -> None:
        """First call: open the records and probe the reference (round 0, exact, no noise)."""
        if self._recorder is not None:
            return
        self._recorder = RunRecorder(self.run_dir, tensorboard=self._tensorboard)
        self._recorder.record("run-start", {
            "strategy": type(self.inner).__name__, "gate": self.gate, "model": self.model_spec,
            "modes": list(self.modes), "suite_hash": self.client_suite_hash,
            "server_suites": {m: s.hash for m, s in self.suites.items()},
            "alpha": self.detector.alpha, "update_alpha": self.update_alpha,
            "audit_fraction": self.audit_fraction,
            "secure_aggregation": self.secure_aggregation})
        if self.reference is None and self.model_spec is not None:
            self.reference = self._probe(arrays)
        if self.reference is not None:
            self._recorder.record("reference", {"profile": self.reference.to_json()})
            self._recorder.scalars(0, _profile_scalars(self.reference))

    def _recorder_path(self) -> Path:
        return self.run_dir / "audit.jsonl"

    def _monitor(self, kind: str) -> BehaviorMonitor:
        """One monitor per evidence stream: train-phase client reports, the server's probe of
        each candidate, evaluate-phase client reports. Each gets a third of alpha, so the
        per-run false-alarm bound holds for all three together (union bound)."""
        if kind not in self._monitors:
            ref = self.reference.metrics if self.reference is not None else {}
            self._monitors[kind] = BehaviorMonitor(ref, self._detector_share)
        return self._monitors[kind]

    def _add_trust_config(self, config: ConfigRecord, server_round: int) -> None:
        config["trust.suite-hash"] = self.client_suite_hash
        config["trust.round"] = server_round
        config["trust.probe-budget"] = self.client_probe_budget

    def _screen(self, replies: Iterable[Message], *, expect_arrays: bool,
                check_finite: bool = True) -> Screened:
        screened = screen_replies(
            replies, global_arrays=self._global if expect_arrays else None,
            weighted_by_key=weighted_key_of(self.inner),
            suite_hash_int=hash_to_int(self.client_suite_hash), expect_arrays=expect_arrays,
            check_finite=check_finite)
        for node, reason in screened.refused.items():
            log.warning("TrustGuard: refused reply from node %s: %s", node, reason)
        return screened

    def _inner_aggregate(self, server_round: int, replies: list[Message]
                         ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        if not replies:
            return None, None
        try:
            return self.inner.aggregate_train(server_round, replies)
        except Exception as exc:  # never crash the server; keep the previous global model
            log.warning("TrustGuard: inner aggregate_train failed (%s); global model kept", exc)
            return None, None

    def _bridge_or_none(self) -> Any:
        if self.model_spec is None:
            return None
        if self._bridge is None:
            from flwr_trust.models import get_bridge

            self._bridge = get_bridge(self.model_spec, self.peft_config)
        return self._bridge

    def _probe(self, arrays: ArrayRecord | None, modes: Collection[str] | None = None
               ) -> BehaviorProfile | None:
        """The server's exact probe of `arrays` on its suites (only `modes`, if given)."""
        suites = {m: s for m, s in self.suites.items() if modes is None or m in modes}
        bridge = self._bridge_or_none()
        if bridge is None or arrays is None or not suites:
            return None
        from flwr_trust.scoring.runner import profile_arrays

        return profile_arrays(bridge, arrays, suites, precision=self.precision)

    def _sees_updates(self) -> bool:
        """Individual updates are visible (no secure aggregation) and there is a global model
        to take them relative to."""
        return not self.secure_aggregation and self._global is not None

    def _update_checks(self, server_round: int, screened: Screened) -> UpdateCheckResult:
        """Update checks on the arrays the screen already decoded, against the global model
        decoded once per round (the checks compute each update layer by layer).

        The screen left the NaN/Inf scan to these checks (they read every value anyway): a
        reply whose update is malformed is refused here, as the screen would have refused it,
        and leaves no alarm behind."""
        if not self._sees_updates():
            return check_updates({})
        if self._global_np is None:
            self._global_np = {k: decode_array(v) for k, v in self._global.items()}
        clients: dict[int, Mapping[str, Any]] = {}
        for msg in screened.valid:
            node = msg.metadata.src_node_id
            # The screen decodes every valid reply's arrays; a reply it could not decode is
            # compared as an empty layout, i.e. flagged malformed.
            clients[node] = screened.arrays.get(node, {})
        result = check_updates(clients, base=self._global_np, round=server_round,
                               alpha=self.update_alpha, seed=self.seed,
                               centre_sample=self.update_centre[0],
                               centre_coords=self.update_centre[1])
        malformed = {n: s["malformed"] for n, s in result.stats.items() if "malformed" in s}
        if not malformed:
            return result
        for node, problem in malformed.items():
            screened.refuse_valid(node, str(problem))
            log.warning("TrustGuard: refused reply from node %s: %s", node, problem)
        return dataclasses.replace(
            result, flagged=tuple(n for n in result.flagged if n not in malformed),
            stats={n: s for n, s in result.stats.items() if n not in malformed},
            alarms=[a for a in result.alarms if not set(a.clients) & set(malformed)])

    def _integrity_audit(self, server_round: int, replies: list[Message],
                         reports: dict[int, dict[str, float]]) -> list[Alarm]:
        """Re-probe a random sample of clients and compare with what they reported."""
        if self.audit_fraction <= 0 or self.secure_aggregation or self.model_spec is None:
            return []
        from flwr_trust.guard.integrity import audit_client

        candidates = [m for m in replies if reports.get(m.metadata.src_node_id)]
        k = min(len(candidates), max(1, round(self.audit_fraction * len(candidates))))
        alarms: list[Alarm] = []
        for msg in self._rng.sample(candidates, k) if candidates else []:
            node = msg.metadata.src_node_id
            arrays = next(iter(msg.content.array_records.values()))
            alarms.extend(audit_client(self._bridge_or_none(), arrays, reports[node],
                                       self.client_suites, node=node, server_round=server_round,
                                       budget=self.client_probe_budget,
                                       precision=self.precision, n_audited=k,
                                       alpha=self.update_alpha))
        return alarms

    def _leave_one_out(self, server_round: int, snapshot: Strategy, replies: list[Message],
                       candidate: BehaviorProfile, failing: set[str]) -> list[int]:
        """Culprits: aggregated clients whose removal alone makes the candidate pass its probe.

        One aggregation and one server probe per client, so only for federations of at most
        LOO_MAX_CLIENTS clients per round; flagged clients were already left out. A trial
        re-probes only the `failing` modes and keeps the candidate's numbers for the others:
        they passed with every client in, and the question is whose update made the failing
        ones fail. (Whole suites on SmolLM2 take about 150 s per probe on 2 CPU cores, so eight
        full trials would add 20 minutes to the round.)
        """
        culprits = []
        for node in sorted({m.metadata.src_node_id for m in replies}):
            keep = [copy.deepcopy(m) for m in replies if m.metadata.src_node_id != node]
            if not keep:
                continue
            try:
                arrays, _ = copy.deepcopy(snapshot).aggregate_train(server_round, keep)
            except Exception:  # a failed trial names no culprit
                continue
            profile = self._probe(arrays, failing)
            if profile is None:
                continue
            profile = _with_modes(candidate, profile)
            trial = copy.deepcopy(self._monitor("candidate")).observe(server_round, profile)
            if not _alarmed(trial.alarms):
                culprits.append(node)
        return culprits

    def _emit(self, alarms: list[Alarm]) -> None:
        for alarm in alarms:
            self.alarms.append(alarm)
            level = logging.WARNING if alarm.severity == "alarm" else logging.INFO
            log.log(level, "TrustGuard %s [%s.%s] round %s clients %s: %s", alarm.severity,
                    alarm.mode, alarm.metric, alarm.round, list(alarm.clients), alarm.message)
            if self.on_alarm is not None:
                try:
                    self.on_alarm(alarm)
                except Exception as exc:  # a user callback must not break aggregation
                    log.warning("TrustGuard: on_alarm callback failed: %s", exc)

    def _with_trust_metrics(self, metrics: MetricRecord | None, screened: Screened,
                            candidate: BehaviorProfile | None, alarms: list[Alarm],
                            decision: GateDecision | None) -> MetricRecord:
        out = MetricRecord(dict(metrics.items())) if metrics is not None else MetricRecord()
        out["trust.replies-valid"] = len(screened.valid)
        out["trust.replies-refused"] = screened.n_refused
        out["trust.replies-failed"] = screened.n_failed
        out["trust.alarms"] = sum(a.severity == "alarm" for a in alarms)
        out["trust.warnings"] = sum(a.severity == "warning" for a in alarms)
        if decision is not None:
            out["trust.gate-action"] = ACTION_CODE[decision.action]
            out["trust.excluded"] = len(decision.excluded)
        if candidate is not None:
            for key, value in candidate.to_metric_dict().items():
                if key.count(".") == 2:  # trust.<mode>.<metric> values only
                    out[key] = value
        return out

    def _record_round(self, server_round: int, phase: str, screened: Screened,
                      reports: dict[int, dict[str, float]], update_stats: dict[int, Any],
                      population: dict[str, Any], alarms: list[Alarm], decision: GateDecision,
                      metrics: MetricRecord | None) -> None:
        system = _system_metrics(metrics, update_stats)
        payload = {
            "round": server_round, "phase": phase,
            "clients": {"valid": sorted(screened.valid_nodes),
                        "refused": {str(k): v for k, v in screened.refused.items()},
                        "failed": {str(k): v for k, v in screened.errors.items()}},
            "system": system, "behavior": population,
            "client_metrics": {str(n): r for n, r in reports.items()},
            "privacy": {str(n): {k: v for k, v in r.items() if k.startswith("trust.privacy.")}
                        for n, r in reports.items()},
            "update_stats": {str(n): s for n, s in update_stats.items()},
            "alarms": [a.to_json() for a in alarms], "gate": decision.to_json(),
        }
        self.history.append(payload)
        assert self._recorder is not None
        self._recorder.record("round", payload)
        scalars = {f"system/{k}": v for k, v in system.items()}
        for mode, ms in population.items():
            for metric, row in ms.items():
                tag = f"{phase}/{mode}/{metric}"
                scalars[f"{tag}/value"] = row.get("value")
                scalars[f"{tag}/client-spread"] = row.get("client_spread")
        for mode in self.modes:
            scalars[f"{phase}/alarms/{mode}"] = sum(
                a.mode == mode and a.severity == "alarm" for a in alarms)
        scalars[f"{phase}/alarms/update"] = sum(a.mode == "update" for a in alarms)
        scalars[f"{phase}/gate-action"] = ACTION_CODE[decision.action]
        self._recorder.scalars(server_round, scalars)

    def close(self, status: str = "halted") -> None:
        """Write the run-end record and close the files (also called by `finish`)."""
        if self._recorder is None:
            return
        self._recorder.record("run-end", {
            "status": status, "rounds": max((h["round"] for h in self.history), default=0),
            "alarms": sum(a.severity == "alarm" for a in self.alarms)})
        self._recorder.close()
        self._recorder = None

    def start(self, grid: Grid, initial_arrays: ArrayRecord, num_rounds: int = 3,
              timeout: float = 3600, train_config: ConfigRecord | None = None,
              evaluate_config: ConfigRecord | None = None,
              evaluate_fn: Callable[[int, ArrayRecord], MetricRecord | None] | None = None,
              ) -> Result:
        """Flower's own loop (Strategy.start), then the run-end record."""
        result = super().start(grid, initial_arrays, num_rounds, timeout, train_config,
                               evaluate_config, evaluate_fn)
        self.finish()
        return result

    def finish(self) -> Path:
        """Close the records after `start()` returns; returns the run folder."""
        self.close(status="completed")
        return self.run_dir


# -------------------------------------------------------------------- helpers


def _combined(suites: dict[str, ProbeSuite]) -> str:
    from flwr_trust.probes.suite import combined_hash

    return combined_hash({m: s.hash for m, s in suites.items()})


def _server_suites(suites: dict[str, ProbeSuite], items: int, seed: int
                   ) -> dict[str, ProbeSuite]:
    """A fixed seeded subset per mode, so reference and candidates share items."""
    if items <= 0:
        return suites
    out = {}
    for mode, suite in suites.items():
        if len(suite.items) <= items:
            out[mode] = suite
            continue
        rng = random.Random(f"{seed}:{suite.hash}")
        idx = sorted(rng.sample(range(len(suite.items)), items))
        out[mode] = suite.subset(idx, name_suffix=f"@server{items}")
    return out


def _take_trust_metrics(replies: list[Message]) -> dict[int, dict[str, float]]:
    """Remove `trust.*` keys from each reply's MetricRecord (the inner strategy averages the
    user's metrics only; client-level trust numbers are not meaningful as weighted means, and a
    client whose privacy budget ran out sends fewer keys, which Flower's strategies reject) and
    return them per node."""
    out: dict[int, dict[str, float]] = {}
    for msg in replies:
        key, metrics = next(iter(msg.content.metric_records.items()))
        trust = {k: v for k, v in metrics.items() if k.startswith(PREFIX)}
        if trust:
            msg.content.metric_records[key] = MetricRecord(
                {k: v for k, v in metrics.items() if not k.startswith(PREFIX)})
        out[msg.metadata.src_node_id] = trust
    return out


def _with_modes(base: BehaviorProfile, update: BehaviorProfile) -> BehaviorProfile:
    """`base` with the modes `update` measured replaced by its numbers."""
    return dataclasses.replace(base, metrics={**base.metrics, **update.metrics},
                               suite_hashes={**base.suite_hashes, **update.suite_hashes})


def _alarmed(alarms: list[Alarm]) -> bool:
    return any(a.severity == "alarm" for a in alarms)


def _merge_population(from_reports: dict[str, Any], from_server: dict[str, Any]
                      ) -> dict[str, Any]:
    """Server-probe rows win where both exist; client-median rows fill the rest."""
    out = {mode: {m: dict(row) for m, row in rows.items()} for mode, rows in from_reports.items()}
    for mode, rows in from_server.items():
        for metric, row in rows.items():
            merged = out.setdefault(mode, {}).setdefault(metric, {})
            # Keep the clients' median and spread when the server row has none of its own.
            merged.update({k: v for k, v in row.items() if v is not None or k not in merged})
    return out


def _observations(reports: dict[int, dict[str, float]]) -> dict[int, Any]:
    return {n: observations_from_metrics(r) for n, r in reports.items() if r}


def _profile_scalars(profile: BehaviorProfile) -> dict[str, float]:
    return {f"reference/{mode}/{metric}": mv.value for mode, ms in profile.metrics.items()
            for metric, mv in ms.items()}


def _system_metrics(metrics: MetricRecord | None, update_stats: dict[int, Any]
                    ) -> dict[str, float]:
    out: dict[str, float] = {}
    if metrics is not None:
        for key in SYSTEM_LOSS_KEYS:
            value = metrics.get(key)
            if isinstance(value, int | float):
                out["loss"] = float(value)
                break
    norms = [s["norm"] for s in update_stats.values() if isinstance(s.get("norm"), float)]
    if norms:
        out["update-norm-median"] = float(np.median(norms))
        out["update-norm-max"] = float(np.max(norms))
    return out
