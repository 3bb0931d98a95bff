"""The guard's decision core, Flower-free: a round's evidence in, a gate decision out.

Per train round: refuse malformed updates, run the update checks, the integrity audit and the
behavioural tests on the clients' reports, let the gate leave flagged clients out, aggregate
through the adapter's `Aggregation`, probe the candidate (`Prober`), and accept it, roll it
back (naming culprits by leave-one-out confirmed by their own models, culprits.py, or above
LOO_MAX_CLIENTS by a linear screen and exact probes of the clients it ranks worst:
screened.py; later candidates must then measure back within tolerance: inspection.py) or
halt. Every round is recorded (audit log, TensorBoard) by `GuardRecorder`.
With no alarm the aggregation sees exactly the replies the inner strategy would have seen
alone. A guard started on the folder of a run that crashed resumes it from its log
(resume.py): reference, monitors' state, history, round count and the alpha horizon.
"""

from __future__ import annotations

import copy
import dataclasses
import logging
import random
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from typing import Any

from flwr_trust import protocol
from flwr_trust.detect.alarm import Alarm
from flwr_trust.detect.behavior import BehaviorMonitor, DetectionResult
from flwr_trust.detect.config import DetectorConfig
from flwr_trust.detect.integrity import AuditResult, audit_round
from flwr_trust.detect.update import UpdateChecker, UpdateCheckResult
from flwr_trust.errors import AggregateNotAModel, TrustError
from flwr_trust.guard import resume
from flwr_trust.guard.culprits import LOO_MAX_CLIENTS, rollback_culprits, trial_test
from flwr_trust.guard.evidence import (
    Aggregation,
    Prober,
    RoundEvidence,
    RoundOutcome,
    checked_updates,
)
from flwr_trust.guard.gates import Gate, GateDecision, TrustHalt, alarmed, unscorable
from flwr_trust.guard.inspection import Inspection
from flwr_trust.guard.probation import UPDATE_KEY, Probation, ordinary_update, values_of
from flwr_trust.guard.recorder import GuardRecorder, merge_population
from flwr_trust.probes.sampling import modes_sampled_apart
from flwr_trust.probes.suite import ProbeSuite
from flwr_trust.report.records import RunResume
from flwr_trust.scoring.profile import BehaviorProfile

log = logging.getLogger("flwr.trust")  # under Flower's logger: shown by `flwr run --stream`

MONITORS = ("reports", "candidate", "evaluate")


@dataclass
class GuardSettings:
    """Everything the core decides with (validated by the adapter's constructor).

    client_suites / server_suites: what clients probe (its hash is sent) / what the server
    probes for the reference and every candidate; client_probe_budget: items per mode each
    client probes per round (0 = whole suites), needed to rebuild an audited client's sample.
    """

    gate: Gate
    detector: DetectorConfig
    client_suites: dict[str, ProbeSuite]
    server_suites: dict[str, ProbeSuite]
    client_probe_budget: int = 0
    checker: UpdateChecker = field(default_factory=UpdateChecker)
    audit_fraction: float = 0.0
    secure_aggregation: bool = False
    seed: int = 0


class Guard:
    """The decision core of one run (see the module docstring)."""

    def __init__(self, settings: GuardSettings, recorder: GuardRecorder, *,
                 prober: Prober | None = None, reference: BehaviorProfile | None = None,
                 on_alarm: Callable[[Alarm], None] | None = None) -> None:
        if reference is not None and (wrong := resume.reference_mismatch(
                reference, settings.server_suites)) is not None:
            raise wrong
        self.settings = settings
        self.recorder = recorder
        self.prober = prober
        self.reference = reference
        self.on_alarm = on_alarm
        self.alarms: list[Alarm] = []
        # Each evidence stream gets a third of alpha: the per-run bound holds for all three
        # together (union bound).
        self._share = dataclasses.replace(settings.detector, alpha=settings.detector.alpha / 3)
        self._monitors: dict[str, BehaviorMonitor] = {}
        self._rng = random.Random(settings.seed)  # own RNG: never touches the inner's sampling
        self._started = False
        self._opened = False
        self._prior: resume.PriorRun | None = None  # the run the folder's log held, if any
        self.round_offset = 0  # added to the caller's round numbers (a resumed run, resume.py)
        self.probation = Probation()  # clients named earlier, left out until they recover
        self.inspection = Inspection()  # metrics a rolled-back candidate failed (inspection.py)
        self._inner_aggregated = False  # whether the inner strategy aggregated once this run

    # ---------------------------------------------------------------- run start / end
    def start(self, global_model: Any, server_round: int | None = None) -> None:
        """First call: open the records and probe the reference (round 0, exact, no noise), or
        resume the run the folder's log holds (no second reference probe). `server_round`:
        the round about to be configured, which tells whether the caller counts on from the
        log's last round or from 1 again."""
        if self._started:
            return
        self._open(server_round)
        self._started = True
        prior = self._prior
        if prior is not None and (prior.reference is not None or prior.rounds):
            return  # resumed: the reference is the log's (or the run has none)
        if self.reference is None:
            self.reference = self.probe(global_model)
        self.recorder.reference(self.reference)

    def plan(self, num_rounds: int) -> None:
        """The run's planned rounds, known before its first look (TrustGuard.start): an unset
        horizon (DetectorConfig.horizon None) spends alpha evenly over them."""
        if not self._opened and self.settings.detector.horizon is None and num_rounds > 0:
            self._set_horizon(int(num_rounds))

    def _set_horizon(self, horizon: int) -> None:
        """Fix the horizon before any monitor exists (they copy `_share`)."""
        self.settings.detector = dataclasses.replace(self.settings.detector, horizon=horizon)
        self._share = dataclasses.replace(self._share, horizon=horizon)
        self.recorder.start = dataclasses.replace(self.recorder.start, horizon=horizon)

    def round_of(self, server_round: int) -> int:
        """The run's number for the caller's round (they differ after a resume)."""
        return server_round + self.round_offset

    def _enter(self, ev: RoundEvidence) -> None:
        """Open the records if no start() came first, and number the round as the run does."""
        self._open(ev.round)
        ev.round = self.round_of(ev.round)

    def _open(self, server_round: int | None) -> None:
        """Open the records once; resume the run they hold, or refuse to (resume.py)."""
        if self._opened:
            return
        if self.settings.detector.horizon is None:
            self._set_horizon(0)  # never planned (no start with num_rounds): open-ended
        self._prior = self.recorder.open()
        if self._prior is not None:
            self._resume(self._prior, server_round)  # raises (files closed) if refused
        self._opened = True

    def _resume(self, prior: resume.PriorRun, server_round: int | None) -> None:
        run_dir = self.recorder.run_dir
        problem = resume.refusal(prior, self.recorder.start, run_dir)
        if problem is not None:
            self.recorder.release()
            raise problem
        given, self.reference = self.reference, resume.reference_profile(prior, run_dir)
        if given is not None and (self.reference is None
                                  or given.to_json() != self.reference.to_json()):
            log.warning("TrustGuard: the reference passed in is ignored: run %s goes on with "
                        "the reference its first rounds were tested against.", run_dir)
        # Alpha already spent follows the logged horizon: keep it (logs without one: open-ended).
        logged = prior.start.horizon if prior.start and prior.start.horizon is not None else 0
        if logged != self.settings.detector.horizon:
            log.warning("TrustGuard: run %s spends alpha over horizon %d; it keeps it (this "
                        "guard has %s).", run_dir, logged, self.settings.detector.horizon)
            self._set_horizon(logged)
        last = prior.last_round
        if server_round is not None and server_round <= last:
            self.round_offset = last  # Flower counts from 1 again after a restart
        states, source = resume.monitor_states(prior, MONITORS)
        for name, state in states.items():
            self.monitor(name).state = state
        self.alarms = resume.alarms_of(prior.rounds)
        trained = [r for r in prior.rounds if r.phase == "train"]
        self.probation = Probation.from_json(trained[-1].gate.probation if trained else {})
        self.inspection = Inspection.from_json(trained[-1].gate.inspection if trained else {})
        self._rng = random.Random(f"{self.settings.seed}:resume:{last}:{prior.resumes}")
        record = RunResume(
            last, self.round_offset, prior.resumes + 1,
            "log" if prior.reference is not None else "none" if prior.rounds else "new",
            source, {n: dict(s.looks) for n, s in states.items()},
            resume.changed(prior.start, self.recorder.start),
            [t.to_payload() for t in prior.torn])
        self.recorder.resumed(record)
        log.warning("TrustGuard: resumed the run in %s after round %d (resume %d; reference: "
                    "%s; monitors: %s); round %s is recorded as round %s.", run_dir, last,
                    record.resumes, record.reference, source, server_round,
                    None if server_round is None else self.round_of(server_round))
        for name, (old, new) in record.changed.items():
            log.warning("TrustGuard: run %s started with %s=%r, this guard has %r.", run_dir,
                        name, old, new)

    def close(self, status: str = "halted") -> None:
        self.recorder.close(status, sum(a.severity == "alarm" for a in self.alarms))

    # ---------------------------------------------------------------- rounds
    def train_round(self, ev: RoundEvidence, aggregation: Aggregation) -> RoundOutcome:
        """Check, gate and aggregate one train round (see the module docstring)."""
        self._enter(ev)
        s, rnd = self.settings, ev.round
        update = checked_updates(ev, s.checker, s.secure_aggregation)
        reports = {r.node: r.trust for r in ev.replies}
        audit = self._audit(ev)
        integrity = audit.alarms if audit is not None else []
        distrusted = {c for a in integrity for c in a.clients}
        observed = _observations(reports)
        from_reports = self.monitor("reports").observe(rnd, None, observed)
        on_probation = self._on_probation(
            rnd, observed, ev.nodes, distrusted,
            None if audit is None else set(audit.audited) - distrusted, update)
        flagged = sorted(set(update.flagged) | from_reports.flagged_clients | set(on_probation)
                         | distrusted)
        if s.secure_aggregation:
            flagged = []  # only sums are visible: no client can be singled out
        if s.gate.quarantines and not s.secure_aggregation:
            self.probation.add(update.flagged, [UPDATE_KEY])
            for a in from_reports.alarms:
                if a.severity == "alarm" and a.clients:
                    self.probation.add(a.clients, [(a.mode, a.metric)])
        decision = s.gate.before(flagged)
        if on_probation and decision.excluded:
            decision.reason += f"; still on probation: {on_probation}"
        nodes = [n for n in ev.nodes if n not in decision.excluded]
        # The inner's state (FedOpt moments) must be restorable if the candidate is refused:
        # by a rollback gate, or under any gate when it is no model (NaN arrays or scores;
        # a FedOpt inner left with NaN moments would never aggregate again). Leave-one-out
        # needs intact copies of the replies (rollback, small rounds only).
        rollback = s.gate.rolls_back
        checkpoint = aggregation.checkpoint(
            nodes if rollback and 1 < len(nodes) <= LOO_MAX_CLIENTS else [])
        arrays, metrics, broken = self._aggregate(aggregation, nodes, rnd, nodes == ev.nodes)
        if broken:
            aggregation.restore(checkpoint)
        candidate = self.probe(arrays) if arrays is not None else None
        # the candidate test as it was before this round: what rollback trials are judged by
        before = copy.deepcopy(self.monitor("candidate")) if rollback else None
        on_candidate = (self.monitor("candidate").observe(rnd, candidate)
                        if candidate is not None else None)
        candidate_alarms = on_candidate.alarms if on_candidate is not None else []
        alarms = update.alarms + integrity + from_reports.alarms + candidate_alarms + broken
        if before is not None and alarmed(candidate_alarms):
            assert candidate is not None  # candidate_alarms come from its probe
            failed = {(a.mode, a.metric) for a in candidate_alarms if a.severity == "alarm"}
            culprits, reason = rollback_culprits(
                aggregation, checkpoint, ev, nodes,
                lambda arrays: self.probe(arrays, {mode for mode, _ in failed}),
                trial_test(before, rnd, candidate),
                (self.prober, candidate_alarms, self.settings.server_suites))
            arrays = ev.global_model
            decision = GateDecision("rollback", excluded=flagged, culprits=culprits,
                                    reason=reason)
            self.probation.add(culprits, failed)
            self.inspection.begin(failed, rnd)
            self.monitor("candidate").reset_trend()
        elif (before is not None and on_candidate is not None and self.inspection.since
              and (beyond := self.inspection.review(on_candidate.population))):
            aggregation.restore(checkpoint)
            arrays = ev.global_model
            decision = GateDecision(
                "rollback", excluded=flagged,
                reason=f"tightened inspection after a rollback: {'; '.join(beyond)}; previous "
                       "model kept (an intended change needs a larger trust.tolerance)")
            self.monitor("candidate").reset_trend()
        elif s.gate.halts(alarms):
            decision = GateDecision("halt", culprits=flagged, reason="an alarm fired")
        elif broken or unscorable(candidate_alarms):  # whatever the gate: no model
            if not broken:
                aggregation.restore(checkpoint)
                arrays = ev.global_model
            what = "is not finite" if broken else "scores no finite number on the probe"
            decision = GateDecision("rollback", excluded=decision.excluded,
                                    reason=f"the aggregate {what}; previous model kept "
                                           f"(under any gate){decision.reason and '; '}"
                                           f"{decision.reason}")
        self._emit(alarms)
        decision.probation = self.probation.to_json()
        decision.inspection = self.inspection.to_json()
        if decision.action != "accept":
            log.warning("TrustGuard round %s: %s (%s); left out %s, culprits %s", rnd,
                        decision.action, decision.reason, decision.excluded or "none",
                        decision.culprits or "none")
        population = merge_population(from_reports.population,
                                      on_candidate.population if on_candidate else {})
        self.recorder.round(ev, reports, update.stats, population, alarms, decision, metrics,
                            self._states())
        if decision.action == "halt":
            self.close()
            raise TrustHalt(
                f"TrustGuard halted the run in round {rnd}: "
                + "; ".join(a.message for a in alarms if a.severity == "alarm")[:500],
                f"Read the audit log {self.recorder.audit_path} (flwr-trust report "
                f"{self.recorder.run_dir}).")
        return RoundOutcome(arrays, metrics, decision, alarms, candidate)

    def unchecked_round(self, ev: RoundEvidence) -> None:
        """Record a train round none of whose replies could be checked (no global model yet:
        the adapter refused them all); nothing is aggregated and the global model is kept."""
        self._enter(ev)
        self.recorder.round(ev, {}, {}, {}, [], GateDecision(
            "accept", reason="no global model to check replies against; nothing aggregated"),
            None, self._states())

    def evaluate_round(self, ev: RoundEvidence, metrics: Mapping[str, Any] | None
                       ) -> list[Alarm]:
        """Test the evaluate-phase reports (of the global model the clients received)."""
        self._enter(ev)
        reports = {r.node: r.trust for r in ev.replies}
        behavior = self.monitor("evaluate").observe(ev.round, None, _observations(reports))
        self._emit(behavior.alarms)
        self.recorder.round(ev, reports, {}, behavior.population, behavior.alarms,
                            GateDecision(), metrics, self._states())
        return behavior.alarms

    # ---------------------------------------------------------------- parts
    def probe(self, arrays: Any, modes: Collection[str] | None = None
              ) -> BehaviorProfile | None:
        """The server's exact probe of `arrays` on its suites (only `modes`, if given)."""
        suites = {m: x for m, x in self.settings.server_suites.items()
                  if modes is None or m in modes}
        if self.prober is None or arrays is None or not suites:
            return None
        return self.prober.probe(arrays, suites)

    def monitor(self, kind: str) -> BehaviorMonitor:
        """The detectors of one evidence stream (MONITORS), created on first use."""
        if kind not in self._monitors:
            ref, s = (self.reference.metrics if self.reference else {}), self.settings
            # The server probes the same items every round (trend: rho = 1, no averaging gain);
            # clients' reports may score other items than the reference (its error counts).
            apart = modes_sampled_apart(s.client_suites, s.server_suites, s.client_probe_budget)
            cfg = dataclasses.replace(self._share, trend_rho=1.0) if kind == "candidate" \
                else dataclasses.replace(self._share,
                                         reference_sampled=apart | self._share.reference_sampled)
            self._monitors[kind] = BehaviorMonitor(ref, cfg)
        return self._monitors[kind]

    def _on_probation(self, rnd: int, observed: dict[int, Any], nodes: list[int],
                      distrusted: set[int], verified: set[int] | None,
                      update: UpdateCheckResult) -> list[int]:
        """This round's clients still on probation (probation.py); releases the recovered.
        `verified`: clients the server audited this round and found honest (None: the server
        cannot audit, and release rests on the reports alone)."""
        s = self.settings
        if not s.gate.quarantines or s.secure_aggregation or not self.probation.named:
            return []
        kept, released = self.probation.review(observed, s.detector.tolerance,
                                               reference=values_of(self.reference),
                                               distrusted=distrusted, verified=verified,
                                               update_ordinary=ordinary_update(update))
        if released:
            log.warning("TrustGuard round %s: clients %s released from probation (their "
                        "reports are back within tolerance of the median, their updates "
                        "ordinary)", rnd, released)
        return [n for n in kept if n in nodes]

    def _states(self) -> dict[str, dict[str, Any]]:
        """Every monitor's sequential state, for the round record (what a resume reads)."""
        return {name: m.state.to_json() for name, m in self._monitors.items()}

    def _audit(self, ev: RoundEvidence) -> AuditResult | None:
        """Re-probe a random sample of clients and compare with what they reported
        (flwr_trust.detect.integrity: values, stated noise and stderr, n, round). Clients on
        probation are audited every round, whatever `audit_fraction`: their release must not
        rest on their own word. None when the server cannot audit (secure aggregation, or no
        model of its own to probe with)."""
        s = self.settings
        if s.secure_aggregation or self.prober is None:
            return None
        always = set(self.probation.named) if s.gate.quarantines else set()
        replies = [(r.node, r.trust, r.model) for r in ev.replies if r.trust]
        return audit_round(replies, self.prober.probe, suites=s.client_suites,
                           server_round=ev.round, budget=s.client_probe_budget,
                           fraction=s.audit_fraction, rng=self._rng,
                           alpha=s.checker.alpha, always=always)

    def _aggregate(self, aggregation: Aggregation, nodes: list[int], rnd: int, untouched: bool
                   ) -> tuple[Any | None, Mapping[str, Any] | None, list[Alarm]]:
        """The inner strategy's aggregate; on failure the previous global model is kept, unless
        it never aggregated yet and the guard left every valid reply in: then it would fail
        alone too (a misconfiguration), and a run that trains nothing must not look healthy.
        An aggregate that is no model (not finite, another layout) is refused with an alarm
        (third item)."""
        if not nodes:
            return None, None, []
        try:
            arrays, metrics = aggregation.aggregate(nodes)
        except AggregateNotAModel as exc:
            return None, None, [Alarm("update", exc.metric, "alarm", rnd, (),
                                      {"nodes": sorted(nodes)}, exc.problem)]
        except Exception as exc:  # never crash the server over the guard's own exclusions
            if untouched and not self._inner_aggregated:
                raise TrustError(f"The inner strategy failed on replies TrustGuard left "
                                 f"untouched, before it ever aggregated: {exc}",
                                 "Check the inner strategy's options (it fails without "
                                 "TrustGuard too).") from exc
            log.warning("TrustGuard: inner aggregate_train failed (%s); global model kept", exc)
            return None, None, []
        self._inner_aggregated = True
        return arrays, metrics, []

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


def _observations(reports: Mapping[int, Mapping[str, Any]]) -> dict[int, Any]:
    return {n: protocol.observations(r) for n, r in reports.items() if r}


__all__ = ["LOO_MAX_CLIENTS", "Guard", "GuardSettings", "DetectionResult"]
