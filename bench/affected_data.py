"""How far does one affected client's own fine-tune move its scenario's target? No federation.

    python bench/affected_data.py --scenario calibration-drift --steps 30

Before a scenario is run as a federation (minutes per seed), this checks that its data moves the
construct the probes measure at all: from the aligned adapter, one client trains on what an
affected client of `--scenario` trains on in its onset round, and one on its honest domain
notes (`clean`), each for `--steps` LoRA steps with the baseline's batch size and learning
rate, for each of `--seeds` data draws. The scenario's target metric is measured on the ground
truth's held-out items (outside the `--probe-items` probe set) before and after: the `clean`
rows say how much of a change longer training alone makes. FedAvg then dilutes a client's
change by its share of the federation, and rounds compound it (docs/baselines.md,
"Strengthening a scenario honestly").
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "baselines" / "silent-failures"))


def main(argv: list[str] | None = None) -> int:
    from flwr_trust.scoring.runner import profile_arrays
    from silent_failures.sim.client import as_examples
    from silent_failures.sim.config import parse_config
    from silent_failures.sim.probeset import heldout_suite
    from silent_failures.sim.scenarios import SCENARIOS, ScenarioParams, client_data
    from silent_failures.sim.server import initial_adapter
    from silent_failures.training import train_lora

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scenario", required=True, choices=[s for s in SCENARIOS
                                                          if SCENARIOS[s].target[0] != "fairness"])
    ap.add_argument("--steps", type=int, default=30, help="LoRA steps (default 30: the "
                    "baseline's 6 local steps x affected-steps-factor 5)")
    ap.add_argument("--probe-items", type=int, default=100,
                    help="the probe set the held-out items exclude (as in the grid)")
    ap.add_argument("--model", default="default", choices=["default", "tiny"])
    ap.add_argument("--seeds", type=int, default=3, help="seeds 0..N-1 (data draw and order)")
    args = ap.parse_args(argv)
    if args.steps < 1 or args.seeds < 1:
        ap.error("--steps and --seeds must be >= 1")

    cfg = parse_config({"model": args.model, "probe-items": args.probe_items})
    mode, metric = SCENARIOS[args.scenario].target
    suites = {mode: heldout_suite(mode, args.probe_items, 0)}
    bridge, start = initial_adapter(cfg)

    def measure() -> float:
        value = profile_arrays(bridge, bridge.to_array_record(), suites,
                               precision=cfg.precision).get(mode, metric)
        return math.nan if value is None else value.value

    before = measure()
    print(f"{mode}.{metric} on {len(suites[mode].items)} held-out items, {cfg.model} model, "
          f"{cfg.precision}; {args.steps} steps x batch {cfg.batch_size}, lr {cfg.lr}; "
          f"aligned start {before:.3f}")
    print("| data | seed | after | change | train loss |\n| --- | --- | --- | --- | --- |")
    changes: dict[str, list[float]] = {args.scenario: [], "clean": []}
    for seed in range(args.seeds):
        params = ScenarioParams(fraction=1.0, onset=1, seed=seed)
        for scenario in changes:
            data = client_data(scenario, 0, 1, 1, params, n_train=cfg.batch_size * args.steps)
            bridge.load_arrays(start)
            stats = train_lora(bridge.model, bridge.tokenizer, as_examples(data.train),
                               steps=args.steps, batch_size=cfg.batch_size, lr=cfg.lr,
                               max_length=cfg.max_length, precision=cfg.precision, seed=seed)
            after = measure()
            changes[scenario].append(after - before)
            print(f"| {scenario} | {seed} | {after:.3f} | {after - before:+.3f} | "
                  f"{stats.mean_loss:.3f} |", flush=True)
    for scenario, values in changes.items():
        sd = statistics.stdev(values) if len(values) > 1 else 0.0
        print(f"| {scenario} | mean | - | {statistics.fmean(values):+.3f} ± {sd:.3f} | - |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
