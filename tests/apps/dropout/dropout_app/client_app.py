"""Clients that add a node-specific step to the global arrays; in the slow round they first
write a marker file (so the test knows the round has reached them) and sleep."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
from flwr.app import Array, ArrayRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp

app = ClientApp()


@app.train()
def train(msg: Message, context: Context) -> Message:
    rnd = int(msg.content["config"]["server-round"])
    partition = int(context.node_config["partition-id"])
    marker = Path(str(context.node_config["marker-dir"]))
    (marker / f"round{rnd}-partition{partition}").write_text(str(context.node_id))
    if rnd == int(context.run_config["slow-round"]):
        time.sleep(float(context.run_config["slow-seconds"]))
    arrays = msg.content["arrays"]
    step = 0.1 * (partition + 1)
    new = {k: Array((v.numpy() + step).astype(np.float32)) for k, v in arrays.items()}
    metrics = MetricRecord({"num-examples": 10, "train_loss": 1.0 / rnd})
    return Message(RecordDict({"arrays": ArrayRecord(new), "metrics": metrics}), reply_to=msg)
