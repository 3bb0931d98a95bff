"""How far does one affected client's own fine-tune move its scenario's target? No federation.

    python bench/affected_data.py --scenario calibration-drift --steps 30

Before a scenario is run as a federation (minutes per seed), this checks that its data moves the
construct the probes measure at all: from the aligned adapter, one client trains on what an
affected client of `--scenario` trains on in its onset round, and one on its honest domain
notes (`clean`), each for `--steps` LoRA steps with the baseline's batch size and learning
rate. The scenario's target metric is measured on the ground truth's held-out items (outside
the `--probe-items` probe set) before and after. FedAvg then dilutes a client's change by its
share of the federation, and rounds compound it (docs/baselines.md, "Strengthening a scenario
honestly").
"""

from __future__ import annotations

import argparse
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
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    if args.steps < 1:
        ap.error("--steps must be >= 1")

    cfg = parse_config({"model": args.model, "probe-items": args.probe_items})
    mode, metric = SCENARIOS[args.scenario].target
    suites = {mode: heldout_suite(mode, args.probe_items, 0)}
    bridge, start = initial_adapter(cfg)

    def measure() -> str:
        value = profile_arrays(bridge, bridge.to_array_record(), suites,
                               precision=cfg.precision).get(mode, metric)
        return "n/a" if value is None else f"{value.value:.3f} ± {value.stderr:.3f}"

    print(f"{mode}.{metric} on {len(suites[mode].items)} held-out items, {cfg.model} model, "
          f"{cfg.precision}; {args.steps} steps x batch {cfg.batch_size}, lr {cfg.lr}")
    print(f"| data | before | after {args.steps} steps | train loss |\n| --- | --- | --- | --- |")
    before = measure()
    params = ScenarioParams(fraction=1.0, onset=1, seed=args.seed)
    for scenario in (args.scenario, "clean"):
        data = client_data(scenario, 0, 1, 1, params, n_train=cfg.batch_size * args.steps)
        bridge.load_arrays(start)
        stats = train_lora(bridge.model, bridge.tokenizer, as_examples(data.train),
                           steps=args.steps, batch_size=cfg.batch_size, lr=cfg.lr,
                           max_length=cfg.max_length, precision=cfg.precision, seed=args.seed)
        print(f"| {scenario} | {before} | {measure()} | {stats.mean_loss:.3f} |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
