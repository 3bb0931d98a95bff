"""`trust_mod`: private behavioral reports from any Flower ClientApp (a thin Flower adapter).

Train and evaluate messages: unpack the message (config, arrays, SecAgg+ stage), let the
Flower-free `ClientReporter` check the incoming model, call the app, then merge the reporter's
``trust.*`` numbers into the reply's MetricRecord. Other messages pass through untouched. Any
failure becomes an error reply that names its cause, never an exception. The model probed is
the app's own when it registers it with `use_model` (`model_source`).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
from flwr.app import ArrayRecord, Context, Error, Message, MetricRecord
from flwr.common.constant import ErrorCode

from flwr_trust import protocol
from flwr_trust.config.client import TrustConfig, parse_trust_config
from flwr_trust.errors import TrustError
from flwr_trust.models import registered
from flwr_trust.mods.local_data import RecordState, local_data_from_context
from flwr_trust.mods.model_source import ModelLoader, ModelSource
from flwr_trust.reporter import ClientReporter, Incoming, LocalData, lazy
from flwr_trust.reporter.reporter import SuitesArg

LOGGER = logging.getLogger("flwr")  # Flower's own logger, like its built-in mods
SECAGG_CONFIGS = "secaggplus_configs"  # flwr.common.secure_aggregation.secaggplus_constants
SECAGG_COLLECT = "collect_masked_vectors"
LEGACY_METRICS = ("fitres.metrics", "evaluateres.metrics")  # flwr.compat reply records
LocalDataSource = Callable[[Context], LocalData | None]
PersonalSource = Callable[[Message, Message, Context], ArrayRecord | None]
Handler = Callable[[Message, Context], Message]


class TrustMod:
    """The mod. Build it with `make_trust_mod`; `trust_mod` is the config-driven instance."""

    def __init__(self, *, model_loader: ModelLoader | None = None, suites: SuitesArg = None,
                 local_data: LocalDataSource | None = None, personal: PersonalSource | None = None,
                 defaults: Mapping[str, Any] | None = None,
                 rng: np.random.Generator | None = None) -> None:
        self.model_loader = model_loader
        self.models = ModelSource(model_loader)
        self.local_data = local_data
        self.personal = personal
        self.defaults = dict(defaults or {})
        self.reporter = ClientReporter(suites=suites, rng=rng)

    def __call__(self, msg: Message, context: Context, call_next: Handler) -> Message:
        try:
            return self._handle(msg, context, call_next)
        finally:
            registered.release()  # the app's model is held only while its message is handled

    def _handle(self, msg: Message, context: Context, call_next: Handler) -> Message:
        kind = msg.metadata.message_type.split(".", 1)[0]
        if kind not in ("train", "evaluate") or not msg.has_content() or _secagg_setup(msg):
            return call_next(msg, context)
        start = time.perf_counter()
        try:
            cfg = parse_trust_config(context.run_config, context.node_config, self.defaults)
            if not cfg.enabled:
                return call_next(msg, context)
            server = protocol.ServerConfig.parse(
                protocol.server_configs(msg.content.config_records), msg.metadata.group_id)
            plan = self.reporter.plan(kind, cfg, server, _secagg(msg))
            incoming_arrays = _model_arrays(msg)
            at_hand = self.models.before_app(cfg, context)
            incoming = None if at_hand is None else \
                self.reporter.check_incoming(plan, incoming_arrays, lazy(at_hand))
        except Exception as exc:  # every failure becomes an error reply, never a crash
            return _error_reply(msg, exc)
        if incoming is not None and _refuses(cfg, incoming):
            return _veto_reply(msg, server.round, incoming)
        seconds = time.perf_counter() - start
        reply = call_next(msg, context)
        if reply.has_error() or not reply.has_content():
            return reply
        start = time.perf_counter()
        try:
            target = lazy(lambda: self.models.after_app(cfg, context))
            if incoming is None:  # no model was at hand before the app: check it now
                incoming = self.reporter.check_incoming(plan, incoming_arrays, target)
                if _refuses(cfg, incoming):  # the update trained on it is not sent
                    return _veto_reply(msg, server.round, incoming)
            wanted = bool(cfg.personal_key) or self.personal is not None
            metrics = self.reporter.report(
                plan, incoming, incoming_arrays=incoming_arrays,
                outgoing=_model_arrays(reply) if kind == "train" else None,
                personal=self._personal(msg, reply, context, cfg) if wanted and
                kind == "train" else None,
                personal_wanted=wanted, data=self._data(context), target=target,
                state=RecordState(context.state))
            metrics[protocol.MOD_SECONDS] = round(seconds + time.perf_counter() - start, 4)
            _merge_metrics(reply, metrics)
        except Exception as exc:
            return _error_reply(msg, exc)
        return reply

    def _personal(self, msg: Message, reply: Message, context: Context, cfg: TrustConfig
                  ) -> ArrayRecord | None:
        if self.personal is not None:
            return self.personal(msg, reply, context)
        return context.state.array_records.get(cfg.personal_key)

    def _data(self, context: Context) -> LocalData | None:
        if self.local_data is not None:
            return self.local_data(context)
        return local_data_from_context(context)


def _refuses(cfg: TrustConfig, incoming: Incoming) -> bool:
    return bool(incoming.violations) and cfg.policy_action == "refuse"


def _veto_reply(msg: Message, server_round: int, incoming: Incoming) -> Message:
    why = "; ".join(v.describe() for v in incoming.violations)
    return _error_reply(msg, None, f"trust_mod veto: refused to train on the round "
                                   f"{server_round} global model: {why}")


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


def _merge_metrics(reply: Message, metrics: Mapping[str, protocol.Number]) -> None:
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

    model_loader(context) -> an object with .model, .tokenizer and .load_arrays(arrays)
        (e.g. a flwr_trust.models.ModelBridge); default: the model the app registered with
        use_model(context, model, tokenizer), else the mod's own get_bridge(trust.model, LoRA
        config) (a second copy of the base model: docs/client.md, "Which model the mod probes").
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
