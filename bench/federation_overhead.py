"""Monitored vs unmonitored federation of the packaged baseline, in one run.

    python bench/federation_overhead.py --model default --repeats 2      # SmolLM2 (goal <= 1.25)
    python bench/federation_overhead.py --model tiny --repeats 1 --rounds 2   # smoke
    python bench/federation_overhead.py --model default --repeats 1 --set local-steps=30
                                        # the same federation, clients training 5x longer

Runs `baselines/silent-failures` in this process (silent_failures.sim.runner.run_inline: the
app's own ClientApp and server code, clients one after another on an in-process Grid) with
the same scenario and seed twice per repeat, alternating: FedAvg alone (`monitor=none`: the
clients run no mod) and TrustGuard(FedAvg) with the trust mod (`--monitor`, default
trust-rollback), with the baseline app's own trust.* configuration. The federation time of a
run is the sum over its rounds of the clients' and the server's seconds (the baseline's own
ground-truth measurements before and after the run are not part of the federation). Printed:
each run, the per-round split, what the monitored run flagged (so that a cheaper setting is
not mistaken for one that still catches the attacker), and the ratio of the medians.
`--set KEY=VALUE` changes any baseline key (local-steps, batch-size, max-length, ...) in both.
"""

from __future__ import annotations

import argparse
import os
import shlex
import statistics
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

sys.path.insert(0, str(Path(__file__).resolve().parent))
from detection_matrix import app_trust_config, parse_sets  # noqa: E402


def federation_seconds(outcome) -> tuple[float, float, float]:
    """(total, clients, server) seconds over the rounds of one run."""
    rounds = outcome.per_round
    clients = sum(r.get("client_seconds") or 0.0 for r in rounds)
    server = sum(r.get("server_seconds") or 0.0 for r in rounds)
    return clients + server, clients, server


def flagged(outcome) -> str:
    """What the monitored run caught, against the truth: first alarm from onset, the clients
    named (alarms, quarantines and rollback culprits: outcome.flagged), alarms before onset."""
    first = outcome.first_alarm_after_onset
    found = "no alarm from onset" if first is None else f"first alarm in round {first}"
    return (f"{found} (onset {outcome.onset}); clients named {outcome.flagged or 'none'}, "
            f"affected {sorted(outcome.affected)}; alarm before onset: "
            f"{'yes' if outcome.false_alarm else 'no'}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="default")
    ap.add_argument("--scenario", default="alignment-erosion-malicious")
    ap.add_argument("--monitor", default="trust-rollback")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=None, help="num-server-rounds (app default)")
    ap.add_argument("--clients", type=int, default=4)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="any baseline key, in both runs (repeatable; not trust.*)")
    args = ap.parse_args(argv)
    extra = parse_sets(args.set, "federation_overhead")
    if trust := [k for k in extra if k.startswith("trust.")]:
        raise SystemExit(f"federation_overhead: --set takes baseline keys (not trust.*: both "
                         f"runs use the app's own trust settings), got {trust}")
    extra = {k.replace("-", "_"): v for k, v in extra.items()}
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    from silent_failures.sim.runner import run_inline

    keys = {"model": args.model, "scenario": args.scenario, "seed": args.seed}
    if args.rounds is not None:
        keys["num_server_rounds"] = args.rounds
    keys |= extra
    from silent_failures.sim.config import BaselineConfigError, parse_config

    try:  # a bad key or value stops here, before any federation runs
        parse_config(app_trust_config(), monitor=args.monitor, **keys)
    except (BaselineConfigError, TypeError) as exc:
        raise SystemExit(f"federation_overhead: {exc}") from exc
    print("python bench/federation_overhead.py " + shlex.join(argv or sys.argv[1:]))
    print("keys: " + ", ".join(f"{k}={v}" for k, v in keys.items()))
    totals: dict[str, list[float]] = {"none": [], args.monitor: []}
    with tempfile.TemporaryDirectory() as tmp:
        for rep in range(args.repeats):
            for monitor in ("none", args.monitor):  # alternate: machine drift hits both
                outcome = run_inline(num_clients=args.clients, run_config=app_trust_config(),
                                     base_dir=Path(tmp) / f"{monitor}-{rep}", monitor=monitor,
                                     **keys)
                total, clients, server = federation_seconds(outcome)
                totals[monitor].append(total)
                split = "; ".join(f"round {r['round']}: clients {r['client_seconds']:.1f} s, "
                                  f"server {r['server_seconds']:.1f} s"
                                  for r in outcome.per_round)
                print(f"repeat {rep + 1} {monitor:<15} federation {total:7.1f} s (clients "
                      f"{clients:.1f} s, server {server:.1f} s)  [{split}]")
                if monitor != "none":
                    print(f"  {monitor}: {flagged(outcome)}")
    plain, monitored = statistics.median(totals["none"]), statistics.median(totals[args.monitor])
    print(f"median federation: unmonitored {plain:.1f} s, {args.monitor} {monitored:.1f} s")
    print(f"ratio monitored / unmonitored: {monitored / plain:.3f}   (goal <= 1.25)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
