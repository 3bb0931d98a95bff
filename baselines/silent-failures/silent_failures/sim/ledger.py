"""`RunLedger`: the outermost strategy of a baseline run, recording ground truth and system data.

Clients add ``sim.*`` numbers to their replies (their partition id). The ledger removes them
before any monitor sees a reply, so no monitor can use ground truth; it keeps the node ->
partition map, per-client train loss, weight and DP epsilon, and each update's L2 norm, and it
runs the `SystemMonitor` on every round. For the ``system`` monitor those are its alarms; for
every other monitor they are a shadow verdict: what a loss/norm dashboard would have said about
the same run. The wrapped strategy sees the replies exactly as sent, minus ``sim.*``.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np
from flwr.app import ArrayRecord, ConfigRecord, Message, MetricRecord
from flwr.serverapp import Grid
from flwr.serverapp.strategy import Result, Strategy

from silent_failures.sim.monitors import SystemMonitor

SIM_PREFIX = "sim."
PARTITION_KEY = "sim.partition-id"
LOSS_KEYS = ("train_loss", "eval_loss")
EPSILON_KEY = "dp-epsilon"


def update_norm(sent: ArrayRecord, received: ArrayRecord) -> float:
    """L2 norm of sent - received over all arrays (NaN when they do not line up)."""
    total = 0.0
    try:
        for key, array in sent.items():
            diff = array.numpy().astype(np.float64) - received[key].numpy().astype(np.float64)
            total += float(np.sum(diff * diff))
    except (KeyError, ValueError, TypeError):
        return math.nan
    return math.sqrt(total)


class RunLedger(Strategy):
    """Wraps the monitor's strategy; see the module docstring."""

    def __init__(self, inner: Strategy, system: SystemMonitor) -> None:
        self.inner = inner
        self.system = system
        self.node_partition: dict[int, int] = {}
        self.rounds: list[dict[str, Any]] = []
        self.evaluations: list[dict[str, Any]] = []
        self._global: ArrayRecord | None = None
        self._sent_at = math.nan

    # -- Strategy interface --------------------------------------------------------------------
    def summary(self) -> None:
        self.inner.summary()

    def configure_train(self, server_round: int, arrays: ArrayRecord, config: ConfigRecord,
                        grid: Grid) -> Iterable[Message]:
        self._global = arrays
        messages = self.inner.configure_train(server_round, arrays, config, grid)
        self._sent_at = time.perf_counter()
        return messages

    def configure_evaluate(self, server_round: int, arrays: ArrayRecord, config: ConfigRecord,
                           grid: Grid) -> Iterable[Message]:
        return self.inner.configure_evaluate(server_round, arrays, config, grid)

    def aggregate_train(self, server_round: int, replies: Iterable[Message]
                        ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        received_at = time.perf_counter()
        replies = list(replies)
        clients = self._take(replies, with_norms=True)
        losses = {n: (c["loss"], c["weight"]) for n, c in clients.items()
                  if c.get("loss") is not None}
        norms = {n: c["norm"] for n, c in clients.items() if "norm" in c}
        alarms = self.system.observe(server_round, losses, norms)
        arrays, metrics = self.inner.aggregate_train(server_round, replies)
        self.rounds.append({
            "round": server_round, "phase": "train", "clients": clients,
            "failed": [m.metadata.src_node_id for m in replies if m.has_error()],
            "accepted": arrays is not None,
            "system_alarms": [a.to_json() for a in alarms],
            # Where the round's time went: clients (training + their mods, as the server
            # waits for the slowest) and the server's aggregation (its monitor's probes).
            "client_seconds": round(received_at - self._sent_at, 1),
            "server_seconds": round(time.perf_counter() - received_at, 1)})
        return arrays, metrics

    def aggregate_evaluate(self, server_round: int, replies: Iterable[Message]
                           ) -> MetricRecord | None:
        replies = list(replies)
        clients = self._take(replies, with_norms=False)
        self.rounds.append({"round": server_round, "phase": "evaluate", "clients": clients})
        return self.inner.aggregate_evaluate(server_round, replies)

    def start(self, grid: Grid, initial_arrays: ArrayRecord, num_rounds: int = 3,
              timeout: float = 3600, train_config: ConfigRecord | None = None,
              evaluate_config: ConfigRecord | None = None,
              evaluate_fn: Callable[[int, ArrayRecord], MetricRecord | None] | None = None,
              ) -> Result:
        """Flower's loop on the ledger, then the wrapped strategy's own close (TrustGuard),
        which first learns the planned rounds (its alpha horizon)."""
        plan = getattr(self.inner, "plan", None)
        if callable(plan):
            plan(num_rounds)
        try:
            return super().start(grid, initial_arrays, num_rounds, timeout, train_config,
                                 evaluate_config, evaluate_fn)
        finally:
            finish = getattr(self.inner, "finish", None)
            if callable(finish):
                finish()

    # -- helpers -------------------------------------------------------------------------------
    def _take(self, replies: list[Message], *, with_norms: bool) -> dict[int, dict[str, Any]]:
        """Strip sim.* from each reply and record what the ledger keeps per client."""
        out: dict[int, dict[str, Any]] = {}
        for msg in replies:
            if msg.has_error() or not msg.has_content():
                continue
            node = msg.metadata.src_node_id
            row: dict[str, Any] = {}
            for key, record in list(msg.content.metric_records.items()):
                sim = {k: v for k, v in record.items() if k.startswith(SIM_PREFIX)}
                if sim:
                    msg.content.metric_records[key] = MetricRecord(
                        {k: v for k, v in record.items() if not k.startswith(SIM_PREFIX)})
                if PARTITION_KEY in sim:
                    self.node_partition[node] = int(sim[PARTITION_KEY])
                row["loss"] = next((float(record[k]) for k in LOSS_KEYS if k in record), None)
                row["weight"] = float(record.get("num-examples", 1.0))
                if EPSILON_KEY in record:
                    row["epsilon"] = float(record[EPSILON_KEY])
            if with_norms and self._global is not None and msg.content.array_records:
                row["norm"] = update_norm(next(iter(msg.content.array_records.values())),
                                          self._global)
            row["partition"] = self.node_partition.get(node)
            out[node] = row
        return out

    def system_alarms(self) -> list[dict[str, Any]]:
        return [a for r in self.rounds for a in r.get("system_alarms", [])]
