"""TrustGuard(FedAvg) over every connected node; the global arrays' digest after each round is
written to RUN_DIR/global.jsonl (Strategy.start's evaluate_fn), the guard's log to RUN_DIR/guard."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
from flwr.app import Array, ArrayRecord, Context, MetricRecord
from flwr.serverapp import Grid, ServerApp
from flwr.serverapp.strategy import FedAvg

from flwr_trust.strategies import TrustGuard

app = ServerApp()


@app.main()
def main(grid: Grid, context: Context) -> None:
    run_dir = Path(str(context.run_config["run-dir"]))
    run_dir.mkdir(parents=True, exist_ok=True)
    strategy = TrustGuard(
        FedAvg(fraction_train=1.0, min_train_nodes=2, min_available_nodes=2,
               fraction_evaluate=0.0),
        model=None, run_dir=run_dir / "guard", tensorboard=False)

    def record(server_round: int, arrays: ArrayRecord) -> MetricRecord | None:
        digest = hashlib.sha256(b"".join(v.numpy().tobytes() for v in arrays.values()))
        with (run_dir / "global.jsonl").open("a") as file:
            file.write(json.dumps({"round": server_round, "sha256": digest.hexdigest()}) + "\n")
        return None

    initial = ArrayRecord({"w": Array(np.zeros((4, 4), np.float32)),
                           "b": Array(np.zeros(4, np.float32))})
    strategy.start(grid, initial, num_rounds=int(context.run_config["num-server-rounds"]),
                   evaluate_fn=record)
