"""Run one baseline federation on any Grid: Flower's (flwr run, deployment) or the InlineGrid.

`run_baseline(grid, run_config)` is the whole server side: validate the config, start from the
aligned adapter, measure the ground truth, run the monitor's strategy inside the RunLedger
through Flower's own `Strategy.start` loop, measure again, write summary.json / summary.md (and
report.html for the trust-* monitors) into the run folder, and return the RunOutcome.
"""

from __future__ import annotations

import random
import shutil
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from flwr.app import ArrayRecord
from flwr.serverapp import Grid

from silent_failures.sim.client import aligned_lora, limit_threads
from silent_failures.sim.config import BaselineConfig, parse_config
from silent_failures.sim.groundtruth import GroundTruth
from silent_failures.sim.ledger import RunLedger
from silent_failures.sim.monitors import SystemMonitor, build_strategy, check_trust_config
from silent_failures.sim.outcome import RunOutcome, build_outcome
from silent_failures.sim.summary import render_summary

RUN_FILES = ("audit.jsonl", "audit.jsonl.head", "report.html", "summary.json", "summary.md")
WAIT_FOR_NODES_S = 120.0


def seed_everything(seed: int) -> None:
    """Flower samples clients with the global `random`; torch seeds LoRA init and dropout."""
    import torch

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def fresh_run_folder(folder: Path) -> Path:
    """Create the run folder, removing only the files a previous run of it wrote."""
    folder.mkdir(parents=True, exist_ok=True)
    for name in RUN_FILES:
        (folder / name).unlink(missing_ok=True)
    shutil.rmtree(folder / "tensorboard", ignore_errors=True)
    return folder


def wait_for_nodes(grid: Grid, minimum: int = 2, timeout: float = WAIT_FOR_NODES_S) -> list[int]:
    """The connected node ids once at least `minimum` are there (deployment: nodes join late)."""
    deadline = time.monotonic() + timeout
    while len(nodes := list(grid.get_node_ids())) < minimum:
        if time.monotonic() > deadline:
            raise TimeoutError(f"only {len(nodes)} node(s) connected after {timeout:.0f} s; "
                               f"the baselines need at least {minimum}")
        time.sleep(1.0)
    return nodes


def initial_adapter(cfg: BaselineConfig) -> tuple[Any, ArrayRecord]:
    """(bridge, arrays): the adapter the federation starts from: initial-adapter, else the
    aligned adapter (built and cached the first time, with a message saying so)."""
    from silent_failures.aligned import ensure_aligned_adapter
    from silent_failures.sim.client import bridge_for

    folder = cfg.initial_adapter or ensure_aligned_adapter(cfg.model)
    bridge = bridge_for(cfg.model)
    bridge.load_adapter_dir(folder)
    return bridge, bridge.to_array_record()


def run_baseline(grid: Grid, run_config: Mapping[str, Any], *, base_dir: str | Path | None = None,
                 tensorboard: bool = True, report: bool = True,
                 **overrides: Any) -> RunOutcome:
    """One federation; see the module docstring. `overrides` replace baseline keys."""
    start = time.perf_counter()
    cfg = parse_config(run_config, **overrides)
    run_config = dict(run_config) | cfg.to_json()
    check_trust_config(cfg, run_config)  # a bad trust.* key must not cost the last results
    limit_threads(cfg.model)
    seed_everything(cfg.seed)
    folder = fresh_run_folder(cfg.run_folder(base_dir))
    nodes = wait_for_nodes(grid)
    bridge, initial = initial_adapter(cfg)
    truth = GroundTruth(cfg.scenario, bridge, probe_items=cfg.probe_items,
                        eval_items=cfg.eval_items, precision=cfg.precision,
                        max_length=cfg.max_length)
    reference = truth.measure(initial)
    if not tensorboard:
        run_config["trust.tensorboard"] = False
    strategy = build_strategy(cfg, len(nodes), run_config, peft_config=aligned_lora(cfg.model),
                              run_dir=str(folder))
    ledger = RunLedger(strategy, SystemMonitor(cfg.system_loss_rise, cfg.system_norm_factor))
    seed_everything(cfg.seed)
    result = ledger.start(grid, initial, num_rounds=cfg.num_server_rounds)
    final_arrays = result.arrays if result.arrays is not None else initial
    final = truth.measure(final_arrays)
    outcome = build_outcome(cfg, strategy, ledger, len(nodes), reference, final,
                            time.perf_counter() - start, folder)
    outcome.report = str(_write_report(folder) if report and cfg.is_trust else "")
    outcome.save(folder)
    (folder / "summary.md").write_text(render_summary(outcome), encoding="utf-8")
    return outcome


def _write_report(folder: Path) -> Path | str:
    """report.html from the audit log (flwr_trust.report.html); '' if it cannot be written."""
    try:
        from flwr_trust.report.html import write_report

        path, _ = write_report(folder)
        return path
    except Exception as exc:  # the run's numbers are saved either way; say why there is no page
        print(f"flwr-trust: could not write report.html: {exc}", flush=True)
        return ""
