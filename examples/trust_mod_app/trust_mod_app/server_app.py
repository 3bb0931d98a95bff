"""ServerApp: plain FedAvg (the trust metrics ride along in the clients' MetricRecords).

With ``results-path`` set, the aggregated train and evaluate metrics of every round are written
there as JSON (the example's test reads them).
"""

from __future__ import annotations

import json
from pathlib import Path

from flwr.app import ArrayRecord, Context
from flwr.serverapp import Grid, ServerApp
from flwr.serverapp.strategy import FedAvg
from peft import get_peft_model_state_dict

from trust_mod_app.task import get_model

app = ServerApp()


@app.main()
def main(grid: Grid, context: Context) -> None:
    cfg = context.run_config
    model, _ = get_model(str(cfg["model.name"]), int(cfg["model.lora.peft-lora-r"]),
                         int(cfg["model.lora.peft-lora-alpha"]))
    strategy = FedAvg(fraction_train=1.0, fraction_evaluate=1.0)
    result = strategy.start(grid=grid, initial_arrays=ArrayRecord(get_peft_model_state_dict(model)),
                            num_rounds=int(cfg["num-server-rounds"]))
    if cfg.get("results-path"):
        out = {"train": {r: dict(m) for r, m in result.train_metrics_clientapp.items()},
               "evaluate": {r: dict(m) for r, m in result.evaluate_metrics_clientapp.items()}}
        Path(str(cfg["results-path"])).write_text(json.dumps(out, indent=1, default=float))
