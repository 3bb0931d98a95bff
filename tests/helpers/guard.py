"""Test helpers: a fake Grid and simulated client replies as real Flower Messages."""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable

import numpy as np
from flwr.app import Array, ArrayRecord, ConfigRecord, Message, MetricRecord, RecordDict


def ensure_task_identity() -> None:
    """Flower Messages need a run/task identity, which a real ServerApp process sets at start;
    code that builds Messages in this process gets one here (Flower's public setters)."""
    from flwr.supercore.task_identity import TaskIdentity

    for name, value in (("run_id", 1), ("task_id", 1), ("node_id", 0)):
        try:
            getattr(TaskIdentity, name)
        except RuntimeError:
            setattr(TaskIdentity, name, value)


LAYERS = {"layer.a": (16, 8), "layer.b": (8,), "layer.c": (4, 4)}


class FakeGrid:
    """Enough of flwr's Grid for Strategy.start: node sampling, and send_and_receive answered
    in-process by `client(message, node, round)` (None = the node does not reply)."""

    def __init__(self, n_nodes: int, client: Callable[[Message, int, int], Message | None]
                 | None = None) -> None:
        self.nodes = list(range(101, 101 + n_nodes))
        self.client = client

    def get_node_ids(self) -> list[int]:
        return list(self.nodes)

    def send_and_receive(self, messages: Iterable[Message], *, timeout: float | None = None
                         ) -> list[Message]:
        assert self.client is not None
        out = []
        for msg in messages:
            rnd = int(msg.content.config_records["config"]["server-round"])
            answer = self.client(msg, msg.metadata.dst_node_id, rnd)
            if answer is not None:
                out.append(answer)
        return out


def initial_arrays(seed: int = 0) -> ArrayRecord:
    rng = np.random.default_rng(seed)
    return ArrayRecord({k: Array(rng.normal(size=s).astype(np.float32)) for k, s in LAYERS.items()})


def honest_update(arrays: ArrayRecord, node: int, rnd: int, scale: float = 0.01
                  ) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(node * 1000 + rnd)
    return {k: (v.numpy() + scale * (1 + rng.normal(size=v.shape))).astype(v.numpy().dtype)
            for k, v in arrays.items()}


def reply(msg: Message, arrays: dict[str, np.ndarray] | None, metrics: dict) -> Message:
    content = RecordDict({"metrics": MetricRecord(metrics)})
    if arrays is not None:
        content["arrays"] = ArrayRecord({k: Array(np.asarray(v)) for k, v in arrays.items()})
    return Message(content, reply_to=msg)


# A simulated client: (message, node id, round, global arrays) -> reply, or None (no reply).
ClientFn = Callable[[Message, int, int, ArrayRecord], Message | None]


def default_client(msg: Message, node: int, rnd: int, arrays: ArrayRecord) -> Message:
    return reply(msg, honest_update(arrays, node, rnd), {"num-examples": 10 + node % 7,
                                                         "train_loss": 1.0 / rnd})


def run_rounds(strategy, n_rounds: int, n_nodes: int = 7, client: ClientFn = default_client,
               seed: int = 0) -> list[ArrayRecord]:
    """Drive configure/aggregate like Strategy.start, returning the global arrays per round."""
    random.seed(seed)
    np.random.seed(seed)
    grid = FakeGrid(n_nodes)
    arrays = initial_arrays()
    history = []
    for rnd in range(1, n_rounds + 1):
        msgs: Iterable[Message] = strategy.configure_train(rnd, arrays, ConfigRecord(), grid)
        replies = [r for r in (client(m, m.metadata.dst_node_id, rnd, arrays) for m in msgs)
                   if r is not None]
        new, _ = strategy.aggregate_train(rnd, replies)
        if new is not None:
            arrays = new
        history.append(arrays)
    return history


def same_arrays(a: ArrayRecord, b: ArrayRecord) -> bool:
    return list(a.keys()) == list(b.keys()) and all(
        a[k].numpy().tobytes() == b[k].numpy().tobytes() for k in a)
