"""The client's trust report, Flower-free: model + probe sample + local data + privacy state in,
the ``trust.*`` numbers of one reply out.

probe (`probing`) -> score (flwr_trust.scoring) -> privatize (flwr_trust.privacy) -> report
(`entries`, flwr_trust.protocol). `trust_mod` (flwr_trust.mods) only unpacks Flower messages
and calls, per train or evaluate message: `plan` (before the app runs), `check_incoming` (the
received global model; a policy violation can refuse training) and `report` (after the app
returned its reply).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import numpy as np

from flwr_trust import modes as registry
from flwr_trust import protocol
from flwr_trust.config.client import TrustConfig
from flwr_trust.config.policy import Violation, check_policy
from flwr_trust.errors import SuiteHashMismatchError
from flwr_trust.privacy import StateStore, privacy_spent, release_within_budget
from flwr_trust.privacy.private_set import PrivateSet
from flwr_trust.probes.sampling import sample_suites
from flwr_trust.probes.suite import ProbeSuite, check_hash, combined_hash
from flwr_trust.protocol import Number, ServerConfig
from flwr_trust.reporter import entries
from flwr_trust.reporter.local import LocalData, LocalEvidence, expected_keys, private_statistics
from flwr_trust.reporter.probing import (
    Arrays,
    ProbeTarget,
    loaded,
    merge_arrays,
    probe,
    validate,
)
from flwr_trust.reporter.shift import ShiftReporter
from flwr_trust.scoring.profile import BehaviorProfile

LOGGER = logging.getLogger("flwr")  # Flower's own logger, like its built-in mods
SuitesArg = Mapping[str, ProbeSuite] | str | None


@dataclass(frozen=True)
class RoundPlan:
    """What one train/evaluate message asks of the reporter, resolved before the app runs.

    hidden: the outgoing model is hidden from the server (trust.privacy.outgoing = private, or
            auto under SecAgg+): its metrics are released privately.
    """

    kind: str
    cfg: TrustConfig
    server: ServerConfig
    suite_hash: str
    sample: dict[str, ProbeSuite]
    budget: int
    hidden: bool


@dataclass
class Incoming:
    """The check of the received global model."""

    profile: BehaviorProfile | None = None
    violations: list[Violation] = field(default_factory=list)
    status: str = "not-configured"
    seconds: float = 0.0


@dataclass
class _Report:
    """What `report` accumulates: the numbers, private statistics, statuses, probe time."""

    out: dict[str, Number] = field(default_factory=dict)
    private: PrivateSet = field(default_factory=PrivateSet)
    status: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0
    outgoing: BehaviorProfile | None = None


class ClientReporter:
    """One per mod instance: the suites cache and once-per-process notices live here.

    suites: mode -> ProbeSuite, a suite path, or None (the trust.suites key)
    rng:    noise generator (tests); default: a fresh OS-seeded generator per release
    Methods take `target`, a callable returning the model to probe (see `lazy`): it is only
    loaded when a probe needs it.
    """

    def __init__(self, *, suites: SuitesArg = None,
                 rng: np.random.Generator | None = None) -> None:
        self.suites_arg = suites
        self.rng = rng
        self.shift = ShiftReporter(self.suites)
        self._suite_cache: dict[str, dict[str, ProbeSuite]] = {}
        self._logged: set[str] = set()

    # -- before the app runs ------------------------------------------------------------------
    def plan(self, kind: str, cfg: TrustConfig, server: ServerConfig, secagg: bool) -> RoundPlan:
        """Resolve suites, the shared probe sample and the privacy of the outgoing model."""
        suites = self.suites(cfg)
        suite_hash = matching_hash(suites, cfg.modes, server.suite_hash)
        budget = cfg.probe_budget if server.probe_budget is None else server.probe_budget
        probed = {m: suites[m] for m in cfg.modes if m in suites}
        hidden = cfg.outgoing == "private" or (cfg.outgoing == "auto" and secagg)
        return RoundPlan(kind, cfg, server, suite_hash,
                         sample_suites(probed, server.round, budget), budget, hidden)

    def check_incoming(self, plan: RoundPlan, arrays: Arrays | None,
                       target: Callable[[], ProbeTarget]) -> Incoming:
        """Validate the received model, and probe it when this client needs its numbers: its
        policy or trust.probe-incoming on train messages, and on evaluate messages unless the
        server already probes the global model exactly (then re-scoring it here would spend
        forward passes on evidence the server has: docs/protocol.md, "Who probes what")."""
        cfg = plan.cfg
        if arrays is None:
            return Incoming(status="model-unavailable")
        if plan.kind == "evaluate":
            wanted = not plan.server.server_probe
        else:
            wanted = cfg.probe_incoming or bool(cfg.policy)
        if not wanted:
            validate(target(), arrays)  # before the app spends a round on arrays that misfit
            probed_by_server = plan.kind == "evaluate"
            return Incoming(status="server-probed" if probed_by_server else "not-configured")
        profile, secs = probe(target(), arrays, plan.sample, precision=cfg.precision,
                              name="incoming")
        violations = check_policy(cfg.policy, profile) if plan.kind == "train" else []
        if violations:
            LOGGER.warning("trust_mod veto (round %d): incoming global model violates the "
                           "local policy: %s", plan.server.round,
                           "; ".join(v.describe() for v in violations))
        return Incoming(profile, violations, "ok", secs)

    # -- after the app returns ----------------------------------------------------------------
    def report(self, plan: RoundPlan, incoming: Incoming, *, incoming_arrays: Arrays | None,
               outgoing: Arrays | None, personal: Arrays | None, personal_wanted: bool,
               data: LocalData | None, target: Callable[[], ProbeTarget], state: StateStore
               ) -> dict[str, Number]:
        """probe -> score -> privatize -> report, for the model(s) of this message.

        personal: the local-only arrays of a personalized model (None: unavailable);
        personal_wanted: the app asked for the personalized model's report.
        """
        cfg, rep = plan.cfg, _Report()
        rep.status["incoming"] = incoming.status
        rep.seconds = incoming.seconds
        rep.out |= {protocol.SUITE_HASH: protocol.hash_to_int(plan.suite_hash),
                    protocol.ROUND: plan.server.round, protocol.PROBE_BUDGET: plan.budget}
        if plan.kind == "evaluate":
            if incoming.profile is not None:
                rep.out |= protocol.profile_entries(incoming.profile.metrics,
                                                    items=plan.server.report_items)
            model_for_private = incoming_arrays
        else:
            model_for_private = outgoing
            self._outgoing(plan, rep, outgoing, target, data)
            if personal_wanted:
                self._personal(plan, rep, outgoing, personal, target)
        private_on = plan.kind in cfg.private_messages
        local = self._local(plan, rep, data, model_for_private, target) if private_on \
            else PrivateSet()
        rep.private.merge(local)
        shift_stat, shift_n = self.shift.statistic(plan, data, target)
        outcome = release_within_budget(
            rep.private.statistics + ([shift_stat] if shift_stat else []),
            noise_multiplier=cfg.noise_multiplier, budget=cfg.budget, state=state, rng=self.rng)
        released = outcome.released
        if plan.hidden and rep.outgoing is not None:
            hidden_keys = [f"{m}.{n}" for m, n in entries.metric_names(rep.outgoing)]
            rep.out |= entries.private_metrics(hidden_keys, rep.private.metrics, released)
        if cfg.probe_incoming and plan.kind == "train":
            rep.out |= self._delta(plan, rep, incoming)
        if personal_wanted:
            rep.out |= entries.private_metrics(entries.personal_keys(cfg.modes),
                                               rep.private.metrics, released)
        if private_on:
            rep.out |= entries.private_metrics(expected_keys(cfg.modes, cfg.groups),
                                               rep.private.metrics, released)
            self._log_absent(local, outcome.refused)
        if plan.kind == "train" and cfg.shift:
            rep.out |= self.shift.metrics(plan, released, shift_n, state, target)
            rep.status["shift"] = "ok" if shift_stat is not None else "no-local-data"
        self._set_statuses(plan, rep, private_on, outcome.refused, bool(local.metrics))
        rep.out |= self._flags(plan, rep, incoming, state)
        rep.out[protocol.PROBE_SECONDS] = round(rep.seconds, 4)
        return rep.out

    def _outgoing(self, plan: RoundPlan, rep: _Report, arrays: Arrays | None,
                  target: Callable[[], ProbeTarget], data: LocalData | None) -> None:
        """Probe the model the client sends: clear metrics, or private statistics if hidden.
        A planted-only mode (memorization's canaries) is probed only when this client declared
        planted items, and reported absent otherwise (the reply keeps the same keys)."""
        if arrays is None:
            rep.status["outgoing"] = "model-unavailable"
            return
        planted = bool(data and data.canaries)
        skipped = [m for m in plan.sample if registry.get(m).planted_only and not planted]
        sample = {m: s for m, s in plan.sample.items() if m not in skipped}
        for mode in skipped:
            for name in (registry.get(mode).headline.name,) if plan.hidden else \
                    registry.get(mode).public_keys():
                key = protocol.metric_key(mode, name)
                rep.out |= protocol.absent(key)
        if not sample:
            rep.status["outgoing"] = "ok"
            return
        profile, secs = probe(target(), arrays, sample, precision=plan.cfg.precision,
                              name="outgoing")
        rep.seconds += secs
        rep.status["outgoing"] = "ok"
        rep.outgoing = profile
        if not plan.hidden:
            rep.out |= protocol.profile_entries(profile.metrics, items=plan.server.report_items)
            return
        metrics, stats = entries.hidden_statistics(profile, plan.sample)
        rep.private.metrics += metrics
        rep.private.statistics += stats

    def _personal(self, plan: RoundPlan, rep: _Report, outgoing: Arrays | None,
                  personal: Arrays | None, target: Callable[[], ProbeTarget]) -> None:
        """The personalized model (outgoing + local-only arrays), always released privately."""
        if personal is None or outgoing is None:
            rep.status["personal"] = "model-unavailable"
            return
        profile, secs = probe(target(), merge_arrays(outgoing, personal), plan.sample,
                              precision=plan.cfg.precision, name="personal")
        rep.seconds += secs
        rep.status["personal"] = "ok"
        metrics, stats = entries.hidden_statistics(profile, plan.sample,
                                                   prefix=protocol.PERSONAL + ".")
        rep.private.metrics += metrics
        rep.private.statistics += stats

    def _local(self, plan: RoundPlan, rep: _Report, data: LocalData | None,
               arrays: Arrays | None, target: Callable[[], ProbeTarget]) -> PrivateSet:
        """The private statistics on local data of the model this message is about."""
        import time

        if data is None:
            rep.status["private"] = "no-local-data"
            return PrivateSet()
        if arrays is None:
            rep.status["private"] = "model-unavailable"
            return PrivateSet()
        cfg = plan.cfg
        start = time.perf_counter()
        with loaded(target(), arrays) as model:
            evidence = LocalEvidence(model.model, model.tokenizer, data, groups=cfg.groups,
                                     loss_bound=cfg.loss_bound, max_samples=cfg.max_samples,
                                     max_tokens=cfg.max_tokens, precision=cfg.precision,
                                     suites=self.suites(cfg))
            out = private_statistics(evidence, cfg.modes)
        rep.seconds += time.perf_counter() - start
        return out

    def _delta(self, plan: RoundPlan, rep: _Report, incoming: Incoming) -> dict[str, Number]:
        """trust.delta.*: post-processing of what was reported (noised values if hidden)."""
        if rep.outgoing is None or incoming.profile is None:
            known = rep.outgoing or incoming.profile
            return {protocol.metric_key(m, n, protocol.DELTA_PREFIX): 0.0
                    for m, n in (entries.metric_names(known) if known else [])}
        return entries.delta_metrics(rep.outgoing, incoming.profile,
                                     rep.out if plan.hidden else None)

    @staticmethod
    def _set_statuses(plan: RoundPlan, rep: _Report, private_on: bool, refused: bool,
                      any_private: bool) -> None:
        if private_on and "private" not in rep.status:
            rep.status["private"] = "ok" if any_private else "too-few-samples"
        if refused:
            for part in ("private", "shift", "personal"):
                if rep.status.get(part) == "ok":
                    rep.status[part] = "budget-exhausted"
            if rep.status.get("outgoing") == "ok" and plan.hidden:
                rep.status["outgoing"] = "budget-exhausted"

    @staticmethod
    def _flags(plan: RoundPlan, rep: _Report, incoming: Incoming, state: StateStore
               ) -> dict[str, Number]:
        """Privacy spend, post-processing flag, veto and status codes (every reply has them)."""
        cfg = plan.cfg
        spent, releases, exhausted = privacy_spent(state, cfg.budget)
        out: dict[str, Number] = {
            protocol.PUBLIC_POST_PROCESSING: int(not (plan.hidden and rep.outgoing is not None)),
            protocol.PRIVACY_EPSILON: float(spent),
            protocol.PRIVACY_DELTA: float(cfg.budget.delta),
            protocol.PRIVACY_EXHAUSTED: int(exhausted),
            protocol.PRIVACY_NOISE_MULTIPLIER: float(cfg.noise_multiplier),
            protocol.PRIVACY_RELEASES: int(releases),
            protocol.VETO: int(bool(incoming.violations)),
            protocol.VETO_RULES: len(incoming.violations)}
        return out | {protocol.status_key(part):
                      protocol.STATUS[rep.status.get(part, "not-configured")]
                      for part in protocol.STATUS_PARTS}

    def _log_absent(self, local: PrivateSet, refused: bool) -> None:
        why = "; ".join(f"{k}: {v}" for k, v in sorted(local.absent.items()))
        if why and not refused and why not in self._logged:
            self._logged.add(why)  # once per process and reason, not every round
            LOGGER.info("trust_mod: private metrics absent (trust.status.private): %s", why)

    # -- resources ----------------------------------------------------------------------------
    def suites(self, cfg: TrustConfig) -> dict[str, ProbeSuite]:
        if isinstance(self.suites_arg, Mapping):
            return dict(self.suites_arg)
        spec = self.suites_arg if isinstance(self.suites_arg, str) else cfg.suites
        if spec not in self._suite_cache:
            from flwr_trust.probes import load_suites

            self._suite_cache[spec] = load_suites(spec)
        return self._suite_cache[spec]


def lazy(factory: Callable[[], ProbeTarget]) -> Callable[[], ProbeTarget]:
    """`factory` called on first use only, its result kept (one model load per message)."""
    made: list[ProbeTarget] = []

    def get() -> ProbeTarget:
        if not made:
            made.append(factory())
        return made[0]

    return get


def matching_hash(suites: Mapping[str, ProbeSuite], modes: tuple[str, ...],
                  server_hash: str | None) -> str:
    """The combined hash the client reports; raise when the server's does not match it."""
    full = combined_hash({m: s.hash for m, s in suites.items()})
    missing = [m for m in modes if m not in suites]
    if missing:
        raise SuiteHashMismatchError(f"The client has no probe suite for modes {missing}.",
                                     "Set trust.modes to the modes trust.suites covers.")
    if server_hash is None:
        return full
    probed = combined_hash({m: suites[m].hash for m in modes})
    for candidate in (full, probed):
        try:
            check_hash(server_hash, candidate, what="combined probe suite")
            return candidate
        except SuiteHashMismatchError:
            continue
    check_hash(server_hash, full, what="combined probe suite")  # raises with the full message
    return full
