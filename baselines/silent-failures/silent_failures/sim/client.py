"""The baseline's ClientApp: LoRA fine-tuning on scenario data, with flwr-trust's client mod.

`make_client_app()` returns a Flower ClientApp. Its train function loads the global adapter,
draws this round's data for the client's partition (`scenarios.client_data`), trains with
`silent_failures.training.train_lora` (DP-SGD when ``train-dp = true``), poisons the update when the
scenario says so, hands its data to the trust mod (`provide_local_data`) and replies with the
adapter, ``train_loss``, ``num-examples``, ``dp-epsilon`` (with DP) and ``sim.partition-id``
(ground truth, removed by the server's RunLedger before any monitor sees it).

The trust mod runs only for the trust-* monitors: the other monitors are what Flower users run
today, without any client-side probing.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from flwr.app import ArrayRecord, ConfigRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp

from silent_failures.sim.config import BaselineConfig, parse_config
from silent_failures.sim.scenarios import Sample, client_data, poison_update

DP_STATE_KEY = "sim.dp-history"


def aligned_lora(model: str) -> Any:
    """A fresh aligned-adapter LoraConfig for `model` (silent_failures.aligned.aligned_lora)."""
    from silent_failures.aligned import aligned_lora as fresh_config

    return fresh_config(model)


def bridge_for(model: str) -> Any:
    """The process-wide model bridge with the aligned adapter's LoRA shape."""
    from flwr_trust.models import get_bridge

    return get_bridge(model, aligned_lora(model))


def limit_threads(model: str) -> None:
    """The tiny model gains nothing from intra-op threads and loses up to 50x to OpenMP
    oversubscription on a busy 2-core machine (measured): run it on one thread."""
    if model == "tiny":
        import torch

        torch.set_num_threads(1)


def partition_of(context: Context) -> tuple[int, int]:
    """(partition-id, num-partitions) from the node config, as Flower's simulation sets them
    (deployment: flower-supernode --node-config "partition-id=0 num-partitions=2")."""
    try:
        return int(context.node_config["partition-id"]), int(context.node_config["num-partitions"])
    except KeyError as exc:
        raise ValueError(f"node_config has no {exc}: start each SuperNode with --node-config "
                         "\"partition-id=<i> num-partitions=<n>\"") from exc


def as_examples(samples: list[Sample]) -> list[Any]:
    from silent_failures.training import ChatExample

    return [ChatExample(*s) if isinstance(s, tuple) else s for s in samples]


def as_texts(samples: list[Sample], tokenizer: Any) -> list[str]:
    """Plain strings for the trust mod's private metrics: chat pairs rendered by the template."""
    out = []
    for s in samples:
        if isinstance(s, tuple) and getattr(tokenizer, "chat_template", None):
            out.append(tokenizer.apply_chat_template(
                [{"role": "user", "content": s[0]}, {"role": "assistant", "content": s[1]}],
                tokenize=False))
        else:
            out.append(s if isinstance(s, str) else f"{s[0]}\n{s[1]}")
    return out


def train(msg: Message, context: Context) -> Message:
    """One round of local training (see the module docstring)."""
    from flwr_trust.mods import provide_local_data
    from silent_failures.training import DPConfig, compose_epsilon, train_lora

    cfg = parse_config(context.run_config)
    limit_threads(cfg.model)
    partition, num_partitions = partition_of(context)
    server_round = int(msg.content.config_records["config"]["server-round"])
    data = client_data(cfg.scenario, partition, num_partitions, server_round, cfg.params,
                       n_train=max(cfg.batch_size * cfg.local_steps, 8))
    bridge = bridge_for(cfg.model)
    received = next(iter(msg.content.array_records.values()))
    bridge.load_arrays(received)
    dp = DPConfig(cfg.dp_noise_multiplier, cfg.dp_max_grad_norm, cfg.dp_delta) \
        if cfg.train_dp else None
    stats = train_lora(bridge.model, bridge.tokenizer, as_examples(data.train),
                       steps=cfg.local_steps * data.steps_factor, batch_size=cfg.batch_size,
                       lr=cfg.lr, max_length=cfg.max_length, dp=dp, precision=cfg.precision,
                       seed=cfg.seed * 100_003 + partition * 1_009 + server_round)
    sent = bridge.to_array_record()
    if cfg.scenario == "poisoned-update" and data.affected:
        sent = _poisoned(sent, received, cfg)
    provide_local_data(context, train=as_texts(data.train, bridge.tokenizer),
                       heldout=data.heldout,
                       canaries=declarable_canaries(data.canaries, cfg.probe_items))
    metrics: dict[str, float | int] = {"train_loss": float(stats.mean_loss),
                                       "num-examples": len(data.train),
                                       "sim.partition-id": partition}
    if dp is not None:
        metrics["dp-epsilon"] = _account(context, stats.dp_history, cfg, compose_epsilon)
    return Message(RecordDict({"arrays": sent, "metrics": MetricRecord(metrics)}),
                   reply_to=msg)


def evaluate(msg: Message, context: Context) -> Message:
    """Loss of the received global adapter on the client's held-out local data."""
    from flwr_trust.mods import provide_local_data
    from silent_failures.training import mean_loss

    cfg = parse_config(context.run_config)
    limit_threads(cfg.model)
    partition, num_partitions = partition_of(context)
    server_round = int(msg.content.config_records["config"].get("server-round", 0))
    data = client_data(cfg.scenario, partition, num_partitions, server_round, cfg.params)
    bridge = bridge_for(cfg.model)
    bridge.load_arrays(next(iter(msg.content.array_records.values())))
    losses = mean_loss(bridge.model, bridge.tokenizer, data.heldout, max_length=cfg.max_length,
                       precision=cfg.precision)
    provide_local_data(context, train=as_texts(data.train, bridge.tokenizer),
                       heldout=data.heldout,
                       canaries=declarable_canaries(data.canaries, cfg.probe_items))
    metrics = {"eval_loss": float(np.mean(losses)), "num-examples": len(data.heldout),
               "sim.partition-id": partition}
    return Message(RecordDict({"metrics": MetricRecord(metrics)}), reply_to=msg)


def _poisoned(sent: ArrayRecord, received: ArrayRecord, cfg: BaselineConfig) -> ArrayRecord:
    from flwr.app import Array

    out = poison_update({k: v.numpy() for k, v in sent.items()},
                        {k: v.numpy() for k, v in received.items()}, cfg.poison,
                        cfg.poison_factor)
    return ArrayRecord({k: Array(np.ascontiguousarray(v)) for k, v in out.items()})


def _account(context: Context, history: list[tuple[float, float, int]], cfg: BaselineConfig,
             compose: Callable[..., float]) -> float:
    """This client's DP-SGD epsilon over all its rounds so far (history kept in its state)."""
    record = context.state.config_records.get(DP_STATE_KEY)
    past = [] if record is None else list(zip(record["sigma"], record["q"], record["steps"],
                                              strict=True))
    past += [(float(s), float(q), int(n)) for s, q, n in history]
    context.state.config_records[DP_STATE_KEY] = ConfigRecord(
        {"sigma": [p[0] for p in past], "q": [p[1] for p in past], "steps": [p[2] for p in past]})
    return float(compose([past], cfg.dp_delta))


def baseline_trust_mod(msg: Message, context: Context,
                       call_next: Callable[[Message, Context], Message]) -> Message:
    """flwr-trust's client mod for the trust-* monitors; a pass-through for the others."""
    if not parse_config(context.run_config).is_trust:
        return call_next(msg, context)
    cfg = parse_config(context.run_config)
    return _trust_mod(cfg.probe_items, cfg.precision)(msg, context, call_next)


_MODS: dict[tuple[int, str], Any] = {}


def _trust_mod(probe_items: int, precision: str) -> Any:
    """One TrustMod per process and probe set: it probes the baseline's fixed probe set (the
    server's too) with the same bridge the client trains; precision as trained unless
    trust.precision says otherwise."""
    key = (probe_items, precision)
    if key not in _MODS:
        from flwr_trust.mods import make_trust_mod
        from silent_failures.sim.probeset import probe_set

        _MODS[key] = make_trust_mod(
            model_loader=lambda ctx: bridge_for(parse_config(ctx.run_config).model),
            suites=probe_set(probe_items), defaults={"trust.precision": precision})
    return _MODS[key]


def declarable_canaries(planted: list[str], probe_items: int) -> list[str]:
    """The planted canaries the trust mod can score: those in the probe set it was given.

    The memorization scenario plants canaries drawn from the whole memorization suite (the
    monitors are not told which), so a probe set holds only some of them. The mod answers
    canary ids it does not know with an error reply, which would drop the client from the
    round: the trust monitors would then "resist" memorization only because the memorizing
    client never got aggregated.
    """
    from silent_failures.sim.probeset import probe_set

    known = {item.id for item in probe_set(probe_items)["memorization"].items}
    return [c for c in planted if c in known]


def make_client_app() -> ClientApp:
    """A fresh ClientApp with the baseline's train and evaluate functions."""
    app = ClientApp(mods=[baseline_trust_mod])
    app.train()(train)
    app.evaluate()(evaluate)
    return app
