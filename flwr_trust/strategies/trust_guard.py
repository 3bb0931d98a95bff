"""TrustGuard: wrap any Flower Message-API strategy with behavioral detection and gating.

A thin Flower adapter over the Flower-free decision core (flwr_trust.guard.Guard): it adds the
``trust.*`` keys to every configuration, screens the untrusted replies (screening.py), unpacks
them into the core's evidence, lets the core run the inner strategy through `InnerAggregation`,
and merges the core's counters into the MetricRecord Flower's Result keeps. With no alarm, the
inner strategy sees exactly the replies it would have seen alone, so the global arrays are
bit-identical to the inner's.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from flwr.app import ArrayRecord, ConfigRecord, Message, MetricRecord
from flwr.serverapp import Grid
from flwr.serverapp.strategy import Result, Strategy

from flwr_trust import modes as registry
from flwr_trust import protocol
from flwr_trust.config.keys import BY_NAME
from flwr_trust.detect.alarm import Alarm
from flwr_trust.detect.config import DetectorConfig
from flwr_trust.detect.update import CENTRE_COORDS, CENTRE_SAMPLE, COSINE_MARGIN, UpdateChecker
from flwr_trust.errors import TrustError
from flwr_trust.guard import Guard, GuardRecorder, GuardSettings, Prober, Reply, RoundEvidence
from flwr_trust.guard.gates import GateDecision, make_gate
from flwr_trust.probes.defaults import load_suites
from flwr_trust.probes.sampling import server_suites
from flwr_trust.probes.suite import combined_hash
from flwr_trust.report.records import RoundRecord, RunStart
from flwr_trust.scoring.profile import BehaviorProfile
from flwr_trust.strategies.arrays import decode_array
from flwr_trust.strategies.inner import (
    DP_WRAPPERS,
    InnerAggregation,
    InnerSnapshots,
    as_error,
    log_notes,
    result_metrics,
)
from flwr_trust.strategies.lost_nodes import SentMessages
from flwr_trust.strategies.normalization import loss_weight_of, normalize_round, weighted_key_of
from flwr_trust.strategies.screening import RoundSpec, Screened, screen_replies, stop_if_all_refused
from flwr_trust.strategies.startup import (
    AUTO,
    check_run_dir,
    default_run_dir,
    resolve_server_model,
    run_config_of,
    shapes_of,
    unapplied_keys,
)

log = logging.getLogger("flwr.trust")  # under Flower's logger: shown by `flwr run --stream`


class TrustGuard(Strategy):
    """Behavioral trust monitor and gate around an inner Flower strategy.

    inner:          any Message-API strategy (FedAvg, FedProx, FedAdam, Krum, DP wrappers, ...);
                    deep-copied every round so that a refused aggregate leaves its state as it
                    was (one that cannot be copied: an error under rollback, else a warning)
    gate:           "off" | "quarantine" | "rollback" | "halt"
    model:          base model the server probes with ("default", "tiny", a folder, a name in
                    the Hugging Face cache), None to rely on client reports only (no reference
                    probe, no rollback probe, no audit), or "auto": trust.model, else
                    FlowerTune's model.name, else "default" (startup.py)
    peft_config:    the adapter config when the global arrays are a peft adapter state dict;
                    None: read from the initial arrays (LoRA rank, target modules) and the run
                    config (alpha); checked at the start of the run, before any model loads
    run_config:     the run config the model keys are read from (strategy_from_config passes
                    it); None: the config of the run the Grid serves, read from Flower
    suites:         "default", a suite file or folder (must be the clients' suites)
    modes:          the failure modes monitored (default: every registered mode)
    client_probe_budget: items per mode each client probes per round (sent as
                    `trust.probe-budget`; 0 = whole suites)
    server_probe_items: items per mode the server probes (a fixed, seeded subset, so reference
                    and candidates are scored on the same items); 0 = whole suites
    detector:       DetectorConfig (alpha, tolerances, modes); alpha is the per-run false-alarm
                    budget, split between train-phase and evaluate-phase monitoring
    update_alpha, update_centre_clients, update_centre_coords, update_cosine_margin: the
                    update checks' per-round budget, robust centre (0 = all: exact) and the
                    share of the median cosine a client may lack (docs/detection.md)
    audit_fraction: share of clients whose reported metrics the server re-measures each round
    secure_aggregation: only sums are visible: population-level detection, no attribution
    run_dir:        where the audit log and TensorBoard scalars go; a folder whose log holds
                    a run that crashed is resumed from it, one whose run ended is refused
                    (flwr_trust/guard/resume.py)
    on_alarm:       callback receiving every Alarm
    max_weight_share: the most of a round's aggregation weight one reply can carry while the
                    others are honest (weights capped at k x the round's lower median; 1 = no
                    cap; docs/protocol.md, "Reply contract")
    prober, update_checker: seams for other scorers / checks (default: the model above, and
                    `UpdateChecker` with the update_* options)
    """

    def __init__(self, inner: Strategy, *, gate: str = "off", model: str | None = AUTO,
                 peft_config: Any | None = None, suites: str | Path = "default",
                 modes: Sequence[str] | None = None,
                 server_probe_items: int = BY_NAME["trust.server-probe-items"].default,
                 client_probe_budget: int = BY_NAME["trust.client-probe-budget"].default,
                 precision: str = "fp32",
                 detector: DetectorConfig | None = None, update_alpha: float = 0.01,
                 update_centre_clients: int = CENTRE_SAMPLE,
                 update_centre_coords: int = CENTRE_COORDS,
                 update_cosine_margin: float = COSINE_MARGIN, audit_fraction: float = 0.0,
                 secure_aggregation: bool = False, run_dir: str | Path | None = None,
                 tensorboard: bool = True, on_alarm: Callable[[Alarm], None] | None = None,
                 seed: int = 0, reference: BehaviorProfile | None = None,
                 prober: Prober | None = None, update_checker: UpdateChecker | None = None,
                 max_weight_share: float = 0.5,
                 run_config: Mapping[str, Any] | None = None) -> None:
        if not isinstance(inner, Strategy):
            raise TrustError(f"TrustGuard wraps a Flower Strategy, got {type(inner).__name__}.",
                             "Pass e.g. TrustGuard(FedAvg(), gate='rollback').")
        if not 0.0 <= audit_fraction <= 1.0:
            raise TrustError(f"audit_fraction must be in [0, 1], got {audit_fraction}.",
                             "Use e.g. 0.2 to re-probe a fifth of the clients each round.")
        if not 0.0 < max_weight_share <= 1.0:
            raise TrustError(f"max_weight_share must be in (0, 1], got {max_weight_share}.",
                             "Use 0.5 (no reply outweighs the rest) or 1 (no cap).")
        if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
            raise TrustError(f"seed must be an integer >= 0, got {seed!r}.",
                             "Use e.g. 0 (trust.seed = 0); numpy's generators refuse negatives.")
        if client_probe_budget < 0:
            raise TrustError(f"client_probe_budget must be >= 0, got {client_probe_budget}.",
                             "Use 0 for whole suites or a number of items per mode.")
        if isinstance(model, str) and model.lower() == "none":
            model = None  # the configuration table's spelling of "no server model"
        self.inner = inner
        self.max_weight_share = max_weight_share
        self.model_spec = model
        self.peft_config = peft_config
        self._run_config = dict(run_config) if run_config is not None else None
        self._started = False  # the server model is resolved once, at the start (startup.py)
        self._planned = self._finished = self._aggregated = False  # lifecycle (start, finish)
        self.precision = precision
        self.modes = registry.ids() if modes is None else tuple(modes)
        self.client_suites = load_suites(suites, self.modes)
        self._max_items = max((len(x.items) for x in self.client_suites.values()), default=0)
        self.client_suite_hash = combined_hash({m: s.hash for m, s in self.client_suites.items()})
        self.suites = server_suites(self.client_suites, server_probe_items, seed)
        self.client_probe_budget = client_probe_budget
        detector = detector or DetectorConfig(modes=self.modes)
        checker = update_checker or UpdateChecker(update_alpha, update_centre_clients,
                                                  update_centre_coords, seed,
                                                  update_cosine_margin)
        gate_policy = make_gate(gate)
        self.snapshots = InnerSnapshots(inner, required=gate_policy.rolls_back)
        # A fresh folder per run by default: an existing run's log would be resumed.
        self.run_dir = Path(run_dir) if run_dir else default_run_dir()
        check_run_dir(self.run_dir)
        start = RunStart(type(inner).__name__, gate_policy.name, model, list(self.modes),
                         self.client_suite_hash, {m: s.hash for m, s in self.suites.items()},
                         detector.alpha, checker.alpha, audit_fraction, secure_aggregation,
                         server_items={m: len(s.items) for m, s in self.suites.items()},
                         client_probe_budget=client_probe_budget,
                         horizon=detector.horizon,  # None: planned at start (core.plan)
                         update_cosine_margin=getattr(checker, "cosine_margin", None))
        self._infer = prober is None and model is not None  # else: nothing to resolve
        self.core = Guard(
            GuardSettings(gate_policy, detector, self.client_suites, self.suites,
                          client_probe_budget, checker, audit_fraction, secure_aggregation, seed),
            GuardRecorder(self.run_dir, start, tensorboard=tensorboard),
            prober=prober, reference=reference, on_alarm=on_alarm)
        self._global: ArrayRecord | None = None
        self._global_np: dict[str, Any] | None = None  # _global decoded, once a round
        self._sent: dict[tuple[str, int], tuple[frozenset[int], str]] = {}  # phase, round ->
        # the nodes instructions went to and their ArrayRecord name (the round's own layout)
        self._lost_nodes = SentMessages()  # names the node behind the SuperLink's error replies

    # ---------------------------------------------------------------- what the core decided
    gate = property(lambda self: self.core.settings.gate.name)
    global_arrays = property(lambda self: self._global)  # this round's, from configure_train
    audit_fraction = property(lambda self: self.core.settings.audit_fraction)
    # The detectors' settings in effect: after `plan`, an auto horizon holds the planned rounds.
    detector = property(lambda self: self.core.settings.detector)
    update_centre = property(lambda self: self.core.settings.checker.centre)
    alarms = property(lambda self: self.core.alarms)

    @property
    def reference(self) -> BehaviorProfile | None:
        return self.core.reference

    @property
    def history(self) -> list[RoundRecord]:
        return self.core.recorder.history

    # ---------------------------------------------------------------- Flower Strategy interface
    def summary(self) -> None:
        self.inner.summary()
        log.info(
            "TrustGuard: gate=%s modes=%s suites=%s run folder %s", self.gate,
            ",".join(self.modes), self.client_suite_hash[:12], self.run_dir.absolute())

    def startup(self, arrays: ArrayRecord, grid: Grid) -> None:
        """Once, before anything is probed: resolve the server's model and adapter config
        from the arrays and the run config (startup.py; a TrustError names the key to set) and
        log what was resolved, the probe sample sizes and the run folder."""
        if self._finished:
            raise TrustError(f"This TrustGuard already ran (its records in {self.run_dir} are "
                             "closed).", "Build a new TrustGuard for each run.")
        if self._started:
            return
        cfg = self._run_config if self._run_config is not None else run_config_of(grid)
        if self._run_config is None and (ignored := unapplied_keys(cfg)):
            log.warning("TrustGuard was built in code: run-config keys %s are not applied "
                        "(use strategy_from_config(context.run_config), or pass them as "
                        "keywords)", ", ".join(ignored))
        notes: tuple[str, ...] = ("no server model: client reports only",)
        if self._infer:
            resolved = resolve_server_model(self.model_spec, self.peft_config, cfg,
                                            shapes_of(arrays),
                                            from_config=self._run_config is not None)
            self.model_spec, self.peft_config = resolved.spec, resolved.peft_config
            notes = resolved.notes
            if resolved.spec is not None:
                from flwr_trust.models.prober import BridgeProber

                self.core.prober = BridgeProber(resolved.spec, resolved.peft_config,
                                                self.precision)  # type: ignore[arg-type]
            self.core.recorder.start = dataclasses.replace(self.core.recorder.start,
                                                           model=resolved.spec)
        elif self.core.prober is not None:
            notes = ("the server probes through the prober given in code",)
        self._started = True
        for note in notes:
            log.info("TrustGuard: %s", note)
        items = self.core.recorder.start.server_items
        log.info("TrustGuard: probe items per mode: server %s, each client %s per round "
                 "(0 = whole suites; trust.server-probe-items, trust.client-probe-budget)",
                 ", ".join(f"{m} {n}" for m, n in items.items()) if self.core.prober
                 else "none", self.client_probe_budget)
        log.info("TrustGuard: run folder %s (audit log, TensorBoard; report: flwr-trust "
                 "report %s)", self.run_dir.absolute(), self.run_dir.absolute())

    def configure_train(self, server_round: int, arrays: ArrayRecord, config: ConfigRecord,
                        grid: Grid) -> Iterable[Message]:
        self.startup(arrays, grid)
        if not self._planned:
            self._planned = True  # warned once: the run goes on open-ended
            log.warning("TrustGuard: start() was not called (is it wrapped by another "
                        "strategy? keep it outermost, or call plan(num_rounds) before the "
                        "first round and finish() after the last): alpha is spent open-ended "
                        "and no run-end record will be written")
        self.core.start(arrays, server_round)
        self._global, self._global_np = arrays, None
        self._add_trust_config(config, self.core.round_of(server_round))
        return self._remember("train", server_round, self._lost_nodes.remember(
            "train", self.inner.configure_train(server_round, arrays, config, grid)))

    def configure_evaluate(self, server_round: int, arrays: ArrayRecord, config: ConfigRecord,
                           grid: Grid) -> Iterable[Message]:
        self.startup(arrays, grid)
        self.core.start(arrays, server_round)
        self._add_trust_config(config, self.core.round_of(server_round))
        return self._remember("evaluate", server_round, self._lost_nodes.remember(
            "evaluate", self.inner.configure_evaluate(server_round, arrays, config, grid)))

    def aggregate_train(self, server_round: int, replies: Iterable[Message]
                        ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        # Everything that reads client arrays runs before the inner strategy: some strategies
        # (Krum, Bulyan) consume the replies' ArrayRecords while aggregating.
        if self._global is None:  # no configure_train before: nothing to check arrays against
            return None, self._unconfigured(server_round, replies)
        sees_updates = not self.core.settings.secure_aggregation
        replies = self._lost_nodes.attribute("train", replies)
        screened, spec = self._screen(replies, "train", server_round,
                                      check_finite=not sees_updates)
        if sees_updates and self._global_np is None:
            assert self._global is not None
            self._global_np = {k: decode_array(v) for k, v in self._global.items()}
        ev = self._evidence(server_round, "train", screened)
        ev.global_model, ev.global_arrays = self._global, self._global_np if sees_updates \
            else None
        messages = {msg.metadata.src_node_id: msg for msg in screened.valid}
        failed = None
        if isinstance(self.inner, DP_WRAPPERS):
            failed = screened.error_replies + [as_error(m) for m in screened.refused_replies]
        try:
            outcome = self.core.train_round(ev, InnerAggregation(self, server_round, messages,
                                                                 spec, failed))
            stop_if_all_refused(server_round, screened, self._aggregated)
        except TrustError:  # a halt (its run-end record stays), or a run that cannot train
            self.close("stopped")
            raise
        self._aggregated |= outcome.arrays is not None
        return outcome.arrays, result_metrics(outcome.metrics, ev, outcome.alarms,
                                              outcome.decision, outcome.candidate)

    def aggregate_evaluate(self, server_round: int, replies: Iterable[Message]
                           ) -> MetricRecord | None:
        screened, spec = self._screen(self._lost_nodes.attribute("evaluate", replies),
                                      "evaluate", server_round)
        ev = self._evidence(server_round, "evaluate", screened)
        log_notes(server_round, normalize_round(screened.valid, spec))
        try:
            metrics = self.inner.aggregate_evaluate(server_round, screened.valid)
        except Exception as exc:  # the inner strategy must not take the server down
            log.warning("TrustGuard: inner aggregate_evaluate failed (%s); no metrics", exc)
            metrics = None
        alarms = self.core.evaluate_round(ev, metrics)
        # The gate acts on train rounds only: evaluate rounds carry accept, 0 excluded.
        return result_metrics(metrics, ev, alarms, GateDecision(), None)

    def start(self, grid: Grid, initial_arrays: ArrayRecord, num_rounds: int = 3,
              timeout: float = 3600, train_config: ConfigRecord | None = None,
              evaluate_config: ConfigRecord | None = None,
              evaluate_fn: Callable[[int, ArrayRecord], MetricRecord | None] | None = None,
              ) -> Result:
        """Flower's own loop (Strategy.start), then the run-end record. The server's model
        is resolved first, so a setting that is missing fails before any model loads."""
        self.startup(initial_arrays, grid)
        self.plan(num_rounds)
        result = super().start(grid, initial_arrays, num_rounds, timeout, train_config,
                               evaluate_config, evaluate_fn)
        self.finish()
        return result

    def plan(self, num_rounds: int) -> None:
        """The run's planned rounds, before its first round: an unset horizon
        (`trust.horizon = auto`) spends the false-alarm budget evenly over them. `start` calls
        it; a wrapper that runs Flower's loop around this strategy should too."""
        self._planned = True
        self.core.plan(num_rounds)

    def close(self, status: str = "halted") -> None:
        """Write the run-end record and close the files (also called by `finish`); the guard
        cannot run again after it."""
        self._finished = True
        self.core.close(status)

    def finish(self) -> Path:
        """Close the records after `start()` returns; returns the run folder."""
        self.close(status="completed")
        log.info("TrustGuard: run completed; records in %s (report: flwr-trust report %s)",
                 self.run_dir.absolute(), self.run_dir.absolute())
        return self.run_dir

    # ---------------------------------------------------------------- unpacking and merging
    def _add_trust_config(self, config: ConfigRecord, server_round: int) -> None:
        server = protocol.ServerConfig(self.client_suite_hash, server_round,
                                       self.client_probe_budget,
                                       server_probe=self.core.prober is not None,
                                       report_items=True)
        for key, value in server.to_config().items():
            config[key] = value

    def _remember(self, phase: str, server_round: int, messages: Iterable[Message]
                  ) -> list[Message]:
        """Note whom this round's instructions went to and how they named the arrays."""
        out = list(messages)
        names = [next(iter(m.content.array_records), "arrays") for m in out]
        self._sent[phase, server_round] = (frozenset(m.metadata.dst_node_id for m in out),
                                           names[0] if names else "arrays")
        for key in [k for k in self._sent if k[1] < server_round - 1]:
            del self._sent[key]
        return out

    def _screen(self, replies: Iterable[Message], phase: str, server_round: int, *,
                check_finite: bool = True) -> tuple[Screened, RoundSpec]:
        """The reply contract (screening.py) against this round's own configuration."""
        # No instruction sent this round (restarted ServerApp): every reply is unsolicited.
        nodes, arrays_name = self._sent.get((phase, server_round), (frozenset(), "arrays"))
        layout = None
        if phase == "train" and self._global is not None:
            layout = {k: (tuple(v.shape), str(v.dtype)) for k, v in self._global.items()}
        spec = RoundSpec(server_round, layout, arrays_name, nodes, weighted_key_of(self.inner),
                         protocol.hash_to_int(self.client_suite_hash), self.max_weight_share,
                         self.core.round_of(server_round), self._max_items,
                         loss_weight_of(self.inner) if phase == "train" else None)
        screened = screen_replies(replies, spec, check_finite=check_finite)
        for node, reason in screened.errors.items():
            log.warning("TrustGuard: client error reply from node %s: %s", node, reason)
        for node, reason in screened.refused.items():
            log.warning("TrustGuard: refused reply from node %s: %s", node, reason)
        return screened, spec

    def _unconfigured(self, server_round: int, replies: Iterable[Message]) -> MetricRecord:
        """aggregate_train before any configure_train (a restarted ServerApp, a custom loop):
        there is no global model to check the replies against, so nothing is aggregated."""
        ev = RoundEvidence(server_round, "train", [])
        for msg in replies:
            node = msg.metadata.src_node_id
            ev.refuse(node, "no global model to check it against: aggregate_train was called "
                            "before configure_train")
            log.warning("TrustGuard: refused reply from node %s: %s", node, ev.refused[node])
        self.core.unchecked_round(ev)
        return result_metrics(None, ev, [], None, None)

    @staticmethod
    def _evidence(server_round: int, phase: str, screened: Screened) -> RoundEvidence:
        """The core's view of the valid replies; their ``trust.*`` numbers are taken out of
        the MetricRecord (the inner strategy averages the user's metrics only: client-level
        trust numbers are not meaningful as weighted means, and a client whose privacy budget
        ran out sends fewer keys, which Flower's strategies reject)."""
        replies = []
        for msg in screened.valid:
            name, metrics = next(iter(msg.content.metric_records.items()))
            trust, user = protocol.split_trust(metrics)
            if trust:
                msg.content.metric_records[name] = MetricRecord(user)
            node = msg.metadata.src_node_id
            model = next(iter(msg.content.array_records.values()), None)
            replies.append(Reply(node, trust, screened.arrays.get(node), model))
        return RoundEvidence(server_round, phase, replies, dict(screened.refused),
                             dict(screened.errors), screened.n_refused, screened.n_failed)
