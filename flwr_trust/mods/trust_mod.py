"""`trust_mod`: private behavioral reports from any Flower ClientApp.

Train messages: the incoming arrays are checked (and, with a policy or trust.probe-incoming,
probed) before the app trains; after it returns, the outgoing model is probed on this round's
public probe sample, private metrics are noised within the client's budget, and every number is
merged into the reply's MetricRecord as ``trust.*``. Evaluate messages: the received global model
is probed and the private local metrics are computed. Other messages pass through untouched.

Data flows one way: probe (probing.py) -> score (flwr_trust.scoring) -> privatize
(flwr_trust.privacy) -> report (report.py). No record is added to a reply that has one
MetricRecord; any failure becomes an error reply that names its cause, never an exception.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from flwr.app import ArrayRecord, Context, Error, Message, MetricRecord
from flwr.common.constant import ErrorCode

from flwr_trust.errors import SuiteHashMismatchError, TrustError
from flwr_trust.mods.config import (
    ServerTrustConfig,
    TrustConfig,
    parse_server_config,
    parse_trust_config,
)
from flwr_trust.mods.local_data import (
    LocalData,
    PrivateSet,
    expected_keys,
    local_data_from_context,
    private_statistics,
)
from flwr_trust.mods.policy import Violation, check_policy
from flwr_trust.mods.probing import ProbeTarget, loaded, merge_arrays, probe
from flwr_trust.mods.report import (
    HEADLINE,
    STATUS,
    PrivateMetric,
    absent,
    clear_metrics,
    delta_metrics,
    entry,
    hidden_statistics,
    metric_names,
    private_metrics,
)
from flwr_trust.mods.sampling import sample_suites
from flwr_trust.privacy import Statistic, privacy_spent, release_within_budget
from flwr_trust.privacy.shift import (
    SKETCH_NAME,
    ShiftHistory,
    sketch,
    sketch_statistic,
    squared_distance,
)
from flwr_trust.probes.suite import ProbeSuite, check_hash, combined_hash
from flwr_trust.scoring.profile import BehaviorProfile, hash_to_int

LOGGER = logging.getLogger("flwr")  # Flower's own logger, like its built-in mods
SECAGG_CONFIGS = "secaggplus_configs"  # flwr.common.secure_aggregation.secaggplus_constants
SECAGG_COLLECT = "collect_masked_vectors"
LEGACY_METRICS = ("fitres.metrics", "evaluateres.metrics")  # flwr.compat reply records
Number = int | float
ModelLoader = Callable[[Context], ProbeTarget]
LocalDataSource = Callable[[Context], LocalData | None]
PersonalSource = Callable[[Message, Message, Context], ArrayRecord | None]
SuitesArg = Mapping[str, ProbeSuite] | str | None


@dataclass
class _Job:
    """Everything one message's handling needs, resolved before the app runs."""

    msg: Message
    context: Context
    kind: str  # "train" | "evaluate"
    cfg: TrustConfig
    server: ServerTrustConfig
    suite_hash: str
    sample: dict[str, ProbeSuite]
    budget_used: int
    secagg: bool
    incoming: ArrayRecord | None
    target: ProbeTarget | None = None
    incoming_profile: BehaviorProfile | None = None
    outgoing_profile: BehaviorProfile | None = None
    hidden: bool = False  # the outgoing model is hidden from the server: release it privately
    hidden_keys: list[str] = field(default_factory=list)
    violations: list[Violation] = field(default_factory=list)
    seconds: float = 0.0
    probe_seconds: float = 0.0
    status: dict[str, str] = field(default_factory=dict)


class TrustMod:
    """The mod. Build it with `make_trust_mod`; `trust_mod` is the config-driven instance."""

    def __init__(self, *, model_loader: ModelLoader | None = None, suites: SuitesArg = None,
                 local_data: LocalDataSource | None = None, personal: PersonalSource | None = None,
                 defaults: Mapping[str, Any] | None = None,
                 rng: np.random.Generator | None = None) -> None:
        self.model_loader = model_loader
        self.suites_arg = suites
        self.local_data = local_data
        self.personal = personal
        self.defaults = dict(defaults or {})
        self.rng = rng
        self._suite_cache: dict[str, dict[str, ProbeSuite]] = {}
        self._reference_cache: dict[tuple[int, str, int], np.ndarray] = {}
        self._logged: set[str] = set()

    # -- the Flower mod interface -------------------------------------------------------------
    def __call__(self, msg: Message, context: Context,
                 call_next: Callable[[Message, Context], Message]) -> Message:
        kind = msg.metadata.message_type.split(".", 1)[0]
        if kind not in ("train", "evaluate") or not msg.has_content() or _secagg_setup(msg):
            return call_next(msg, context)
        start = time.perf_counter()
        try:
            job = self._prepare(msg, context, kind)
            if job is None:
                return call_next(msg, context)
            refusal = self._before(job)
        except Exception as exc:  # every failure becomes an error reply, never a crash
            return _error_reply(msg, exc)
        if refusal is not None:
            return refusal
        job.seconds += time.perf_counter() - start
        reply = call_next(msg, context)
        if reply.has_error() or not reply.has_content():
            return reply
        start = time.perf_counter()
        try:
            metrics = self._after(job, reply)
            job.seconds += time.perf_counter() - start
            metrics["trust.mod-seconds"] = round(job.seconds, 4)
            metrics["trust.probe-seconds"] = round(job.probe_seconds, 4)
            _merge_metrics(reply, metrics)
        except Exception as exc:
            return _error_reply(msg, exc)
        return reply

    # -- before the app runs ------------------------------------------------------------------
    def _prepare(self, msg: Message, context: Context, kind: str) -> _Job | None:
        cfg = parse_trust_config(context.run_config, context.node_config, self.defaults)
        if not cfg.enabled:
            return None
        server = parse_server_config(_server_configs(msg), msg.metadata.group_id)
        suites = self._suites(cfg)
        suite_hash = _matching_hash(suites, cfg.modes, server.suite_hash)
        budget = cfg.probe_budget if server.probe_budget is None else server.probe_budget
        probed = {m: suites[m] for m in cfg.modes if m in suites}
        return _Job(msg, context, kind, cfg, server, suite_hash,
                    sample_suites(probed, server.round, budget), budget, _secagg(msg),
                    _model_arrays(msg))

    def _before(self, job: _Job) -> Message | None:
        """Check (and probe) the incoming model; return an error reply to refuse training."""
        if job.incoming is None:
            job.status["incoming"] = "model-unavailable"
            return None
        job.target = self._target(job)
        wants_profile = job.kind == "evaluate" or job.cfg.probe_incoming or bool(job.cfg.policy)
        if not wants_profile:
            with loaded(job.target, job.incoming):  # validate before the app spends a round
                pass
            job.status["incoming"] = "not-configured"
            return None
        job.incoming_profile, secs = probe(job.target, job.incoming, job.sample,
                                           precision=job.cfg.precision, name="incoming")
        job.probe_seconds += secs
        job.status["incoming"] = "ok"
        if job.kind == "train" and job.cfg.policy:
            job.violations = check_policy(job.cfg.policy, job.incoming_profile)
            if job.violations:
                why = "; ".join(v.describe() for v in job.violations)
                LOGGER.warning("trust_mod veto (round %d): incoming global model violates the "
                               "local policy: %s", job.server.round, why)
                if job.cfg.policy_action == "refuse":
                    return _error_reply(job.msg, None, f"trust_mod veto: refused to train on "
                                        f"the round {job.server.round} global model: {why}")
        return None

    # -- after the app returns ----------------------------------------------------------------
    def _after(self, job: _Job, reply: Message) -> dict[str, Number]:
        """probe -> score -> privatize -> report, for the model(s) of this message."""
        cfg = job.cfg
        out: dict[str, Number] = {"trust.suite-hash": hash_to_int(job.suite_hash),
                                  "trust.round": job.server.round,
                                  "trust.probe-budget": job.budget_used}
        private = PrivateSet()
        if job.kind == "evaluate":
            if job.incoming_profile is not None:
                out |= clear_metrics(job.incoming_profile)  # the server's own model
            model_for_private = job.incoming
        else:
            model_for_private = _model_arrays(reply)
            out |= self._outgoing(job, model_for_private, private)
            self._add(private, self._personal_stats(job, reply, model_for_private))
        data = self._local_data(job)
        private_on = job.kind in cfg.private_messages
        local = self._private_stats(job, data, model_for_private) if private_on \
            else PrivateSet()
        self._add(private, (local.metrics, local.statistics))
        shift_stat, shift_n = self._shift_stat(job, data)
        outcome = release_within_budget(
            private.statistics + ([shift_stat] if shift_stat else []),
            noise_multiplier=cfg.noise_multiplier, budget=cfg.budget, state=job.context.state,
            rng=self.rng)
        released = outcome.released
        if job.hidden:
            out |= private_metrics(job.hidden_keys, private.metrics, released)
        if cfg.probe_incoming and job.kind == "train":
            out |= self._delta(job, out)
        if cfg.personal_key or self.personal is not None:
            out |= private_metrics(_personal_keys(job), private.metrics, released)
        if private_on:
            out |= private_metrics(expected_keys(cfg.groups), private.metrics, released)
            self._log_absent(local, outcome.refused)
        if job.kind == "train" and cfg.shift:
            out |= self._shift_metrics(job, released, shift_n)
        self._set_statuses(job, private_on, outcome.refused, bool(local.metrics), shift_stat)
        return out | self._flags(job)

    def _outgoing(self, job: _Job, arrays: ArrayRecord | None, private: PrivateSet
                  ) -> dict[str, Number]:
        """Probe the model the client sends: clear metrics, or private statistics if hidden."""
        cfg = job.cfg
        job.hidden = cfg.outgoing == "private" or (cfg.outgoing == "auto" and job.secagg)
        if arrays is None:
            job.status["outgoing"] = "model-unavailable"
            job.hidden = False
            return {}
        job.target = job.target or self._target(job)
        profile, secs = probe(job.target, arrays, job.sample, precision=cfg.precision,
                              name="outgoing")
        job.probe_seconds += secs
        job.status["outgoing"] = "ok"
        job.outgoing_profile = profile
        if not job.hidden:
            return clear_metrics(profile)
        self._add(private, hidden_statistics(profile, job.sample))
        job.hidden_keys = [f"{m}.{n}" for m, n in metric_names(profile)]
        return {}

    @staticmethod
    def _add(private: PrivateSet, part: tuple[list[PrivateMetric], list[Statistic]]) -> None:
        private.metrics += part[0]
        private.statistics += part[1]

    def _log_absent(self, local: PrivateSet, refused: bool) -> None:
        why = "; ".join(f"{k}: {v}" for k, v in sorted(local.absent.items()))
        if why and not refused and why not in self._logged:
            self._logged.add(why)  # once per process and reason, not every round
            LOGGER.info("trust_mod: private metrics absent (trust.status.private): %s", why)

    def _flags(self, job: _Job) -> dict[str, Number]:
        """Privacy spend, post-processing flag, veto and status codes (every reply has them)."""
        spent, releases, exhausted = privacy_spent(job.context.state, job.cfg.budget)
        out: dict[str, Number] = {
            "trust.public-post-processing": int(not job.hidden),
            "trust.privacy.epsilon": float(spent),
            "trust.privacy.delta": float(job.cfg.budget.delta),
            "trust.privacy.exhausted": int(exhausted),
            "trust.privacy.noise-multiplier": float(job.cfg.noise_multiplier),
            "trust.privacy.releases": int(releases),
            "trust.veto": int(bool(job.violations)),
            "trust.veto.rules": len(job.violations)}
        return out | {f"trust.status.{part}": STATUS[job.status.get(part, "not-configured")]
                      for part in ("incoming", "outgoing", "personal", "private", "shift")}

    def _personal_stats(self, job: _Job, reply: Message, outgoing: ArrayRecord | None
                        ) -> tuple[list[PrivateMetric], list[Statistic]]:
        if not job.cfg.personal_key and self.personal is None:
            return [], []
        if self.personal is not None:
            local = self.personal(job.msg, reply, job.context)
        else:
            local = job.context.state.array_records.get(job.cfg.personal_key)
        if local is None or outgoing is None:
            job.status["personal"] = "model-unavailable"
            return [], []
        job.target = job.target or self._target(job)
        profile, secs = probe(job.target, merge_arrays(outgoing, local), job.sample,
                              precision=job.cfg.precision, name="personal")
        job.probe_seconds += secs
        job.status["personal"] = "ok"
        return hidden_statistics(profile, job.sample, prefix="personal.")

    def _private_stats(self, job: _Job, data: LocalData | None, arrays: ArrayRecord | None
                       ) -> PrivateSet:
        if data is None:
            job.status["private"] = "no-local-data"
            return PrivateSet()
        if arrays is None:
            job.status["private"] = "model-unavailable"
            return PrivateSet()
        if job.target is None:
            job.target = self._target(job)
        start = time.perf_counter()
        suites = self._suites(job.cfg)
        with loaded(job.target, arrays) as target:
            out = private_statistics(target.model, target.tokenizer, data,
                                     groups=job.cfg.groups, loss_bound=job.cfg.loss_bound,
                                     max_samples=job.cfg.max_samples,
                                     max_tokens=job.cfg.max_tokens,
                                     precision=job.cfg.precision,
                                     canary_suite=suites.get("memorization"))
        job.probe_seconds += time.perf_counter() - start
        return out

    def _shift_stat(self, job: _Job, data: LocalData | None) -> tuple[Statistic | None, int]:
        if job.kind != "train" or not job.cfg.shift or data is None or not data.train:
            return None, 0
        tokenizer = self._tokenizer(job)
        samples = [_token_ids(tokenizer, t)[:job.cfg.max_tokens]
                   for t in data.train[:job.cfg.max_samples]]
        if not any(samples):
            return None, 0
        return sketch_statistic(samples, job.cfg.shift_buckets)

    def _shift_metrics(self, job: _Job, released: Mapping[str, Any], n: int
                       ) -> dict[str, Number]:
        keys = ("trust.shift.from-earlier", "trust.shift.from-reference")
        noised = released.get(SKETCH_NAME)
        if noised is None:
            return absent(keys[0]) | absent(keys[1])
        var = float(np.mean(noised.noise_std ** 2))  # the same for every coordinate
        history = ShiftHistory.from_state(job.context.state, job.cfg.shift_buckets)
        out: dict[str, Number] = {}
        if history.count:
            mean, var_mean = history.mean()
            est, std = squared_distance(noised.value, var, mean, var_mean)
            out |= entry(keys[0], est, 0.0, n, std)
        else:
            out |= absent(keys[0])
        est, std = squared_distance(noised.value, var, self._reference(job), 0.0)
        out |= entry(keys[1], est, 0.0, n, std)
        history.add(noised.value, var)
        history.save(job.context.state)
        return out

    def _delta(self, job: _Job, reported: Mapping[str, Number]) -> dict[str, Number]:
        """trust.delta.*: post-processing of what was reported (noised values if hidden)."""
        if job.outgoing_profile is None or job.incoming_profile is None:
            known = job.outgoing_profile or job.incoming_profile
            return {f"trust.delta.{m}.{n}": 0.0 for m, n in (metric_names(known) if known else [])}
        return delta_metrics(job.outgoing_profile, job.incoming_profile,
                             reported if job.hidden else None)

    def _set_statuses(self, job: _Job, private_on: bool, refused: bool, any_private: bool,
                      shift_stat: Statistic | None) -> None:
        if private_on and "private" not in job.status:
            job.status["private"] = "ok" if any_private else "too-few-samples"
        if job.kind == "train" and job.cfg.shift:
            job.status["shift"] = "ok" if shift_stat is not None else "no-local-data"
        if refused:
            for part in ("private", "shift", "personal"):
                if job.status.get(part) == "ok":
                    job.status[part] = "budget-exhausted"
            if job.status.get("outgoing") == "ok" and job.hidden:
                job.status["outgoing"] = "budget-exhausted"

    # -- resources ----------------------------------------------------------------------------
    def _target(self, job: _Job) -> ProbeTarget:
        if self.model_loader is not None:
            return self.model_loader(job.context)
        from flwr_trust.models import get_bridge

        return get_bridge(job.cfg.model, job.cfg.lora_config(), activate=False)

    def _tokenizer(self, job: _Job) -> Any:
        if job.target is None:
            job.target = self._target(job)
        return job.target.tokenizer

    def _suites(self, cfg: TrustConfig) -> dict[str, ProbeSuite]:
        if isinstance(self.suites_arg, Mapping):
            return dict(self.suites_arg)
        spec = self.suites_arg if isinstance(self.suites_arg, str) else cfg.suites
        if spec not in self._suite_cache:
            from flwr_trust.probes import load_suites

            self._suite_cache[spec] = load_suites(spec)
        return self._suite_cache[spec]

    def _local_data(self, job: _Job) -> LocalData | None:
        if self.local_data is not None:
            return self.local_data(job.context)
        return local_data_from_context(job.context)

    def _reference(self, job: _Job) -> np.ndarray:
        tokenizer = self._tokenizer(job)
        suites = {m: s for m, s in self._suites(job.cfg).items() if m in job.cfg.modes}
        key = (id(tokenizer), combined_hash({m: s.hash for m, s in suites.items()}),
               job.cfg.shift_buckets)
        if key not in self._reference_cache:
            texts = [t for s in suites.values() for i in s.items
                     for t in (i.prompt, i.text, *i.choices) if t]
            ids = [_token_ids(tokenizer, t)[:job.cfg.max_tokens] for t in texts]
            self._reference_cache[key] = sketch([x for x in ids if x], job.cfg.shift_buckets)[0]
        return self._reference_cache[key]


def _personal_keys(job: _Job) -> list[str]:
    return [f"personal.{mode}.{HEADLINE[mode][0]}" for mode in job.cfg.modes if mode in HEADLINE]


def _token_ids(tokenizer: Any, text: str) -> list[int]:
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])


def _server_configs(msg: Message) -> dict[str, Any]:
    """The trust.* keys and Flower's server-round from the message's ConfigRecords."""
    out: dict[str, Any] = {}
    for record in msg.content.config_records.values():
        for key, value in record.items():
            if key.startswith("trust.") or key == "server-round":
                out[key] = value
    return out


def _matching_hash(suites: Mapping[str, ProbeSuite], modes: tuple[str, ...],
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


def _model_arrays(msg: Message) -> ArrayRecord | None:
    """The message's model: its single non-empty ArrayRecord (or the one named 'arrays')."""
    records = {k: r for k, r in msg.content.array_records.items() if len(r) > 0}
    if len(records) == 1:
        return next(iter(records.values()))
    if "arrays" in records:
        return records["arrays"]
    if records:
        raise TrustError(f"The message has {len(records)} ArrayRecords ({sorted(records)}); "
                         "trust_mod cannot tell which one is the model.",
                         "Send the model in one ArrayRecord (Flower's strategies call it "
                         "'arrays').")
    return None


def _secagg(msg: Message) -> bool:
    return SECAGG_CONFIGS in msg.content.config_records


def _secagg_setup(msg: Message) -> bool:
    """A SecAgg+ message other than the one that trains (key exchange, unmasking)."""
    if not _secagg(msg):
        return False
    stage = msg.content.config_records[SECAGG_CONFIGS].get("stage")
    return stage is not None and stage != SECAGG_COLLECT


def _merge_metrics(reply: Message, metrics: Mapping[str, Number]) -> None:
    """Add the numbers to the reply's first MetricRecord (creating 'metrics' if it has none).

    Legacy (NumPyClient) replies carry their metrics in a ConfigRecord 'fitres.metrics' or
    'evaluateres.metrics'; the numbers go there too, so legacy strategies see them.
    """
    clean = {k: (0.0 if isinstance(v, float) and not math.isfinite(v) else v)
             for k, v in metrics.items()}
    records = reply.content.metric_records
    if not records:
        LOGGER.info("trust_mod: the reply had no MetricRecord; added one named 'metrics'.")
        reply.content["metrics"] = MetricRecord()
        records = reply.content.metric_records
    record = next(iter(records.values()))
    for key, value in clean.items():
        record[key] = value
    for legacy in LEGACY_METRICS:
        if legacy in reply.content.config_records:
            reply.content.config_records[legacy].update(clean)


def _error_reply(msg: Message, exc: BaseException | None, reason: str = "") -> Message:
    if exc is not None:
        what = str(exc) if isinstance(exc, TrustError) else f"{type(exc).__name__}: {exc}"
        reason = f"trust_mod: {what}"
    LOGGER.error(reason)
    return Message(Error(code=ErrorCode.MOD_FAILED_PRECONDITION, reason=reason), reply_to=msg)


def make_trust_mod(*, model_loader: ModelLoader | None = None, suites: SuitesArg = None,
                   local_data: LocalDataSource | None = None,
                   personal: PersonalSource | None = None,
                   defaults: Mapping[str, Any] | None = None,
                   rng: np.random.Generator | None = None) -> TrustMod:
    """A trust mod for apps whose model or data is not described by config.

    model_loader(context) -> an object with .model, .tokenizer and .load_arrays(ArrayRecord)
        (e.g. a flwr_trust.models.ModelBridge); default: get_bridge(trust.model, LoRA config).
    suites: mode -> ProbeSuite, or a suite path; default: the trust.suites config key.
    local_data(context) -> LocalData | None; default: what the app passed to provide_local_data.
    personal(msg, reply, context) -> ArrayRecord of local-only arrays | None; default: the
        ArrayRecord context.state[trust.personalized.state-key] when that key is set.
    defaults: trust.* values used unless the run config sets them.
    rng: noise generator (tests); default: a fresh OS-seeded generator per release.
    """
    return TrustMod(model_loader=model_loader, suites=suites, local_data=local_data,
                    personal=personal, defaults=defaults, rng=rng)


trust_mod = make_trust_mod()
"""The config-driven mod: ``ClientApp(mods=[trust_mod])`` with ``trust.*`` run-config keys."""
