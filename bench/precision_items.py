"""Per-item scoring differences between a bf16 client and an fp32 server, against the audit's
allowances: does the integrity audit's `items` check (and its value check) leave honest
mixed-precision clients alone on a real model?

    python bench/precision_items.py --model default            # SmolLM2, one round's sample
    python bench/precision_items.py --model default --budget 0 # the whole default suites
    python bench/precision_items.py --model tiny --quick       # smoke

One LoRA adapter (random A and B, std `--scale`, a stand-in for a fine-tuned client) on the
model; the default suites sampled as a client samples them in round 1 under `--budget` items
per mode (0 = whole suites); scored once in fp32 (the server's default) and once in bf16 (a
client on bf16 hardware), with the prober the server audits with. Per metric that carries
per-item values: the mean absolute per-item gap and the value gap, each next to the allowance
`flwr_trust.detect.integrity.allowances` gives it, and their ratio (an honest client is
flagged when a ratio exceeds 1). Prints one row per metric and the largest ratios.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def adapter(bridge, seed: int, scale: float) -> dict:
    """Random LoRA weights (A and B both non-zero, so the adapter changes the model)."""
    import torch

    gen = torch.Generator().manual_seed(seed)
    return {k: torch.randn(v.shape, generator=gen) * scale for k, v in bridge.state_dict().items()}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="default", choices=("default", "tiny"))
    ap.add_argument("--budget", type=int, default=32, help="items per mode (0 = whole suites)")
    ap.add_argument("--scale", type=float, default=0.01, help="std of the LoRA weights")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--quick", action="store_true", help="budget 4 (smoke)")
    args = ap.parse_args(argv)
    import torch
    from peft import LoraConfig

    from flwr_trust.detect.integrity import allowances, client_suites
    from flwr_trust.models import get_bridge
    from flwr_trust.models.prober import BridgeProber
    from flwr_trust.probes.defaults import load_suites

    if args.threads:
        torch.set_num_threads(args.threads)
    budget = 4 if args.quick else args.budget
    lora = LoraConfig(r=16, lora_alpha=32, target_modules=["q_proj", "v_proj"])
    suites = client_suites(load_suites("default"), 1, budget)
    arrays = adapter(get_bridge(args.model, lora), args.seed, args.scale)
    profiles, seconds = {}, {}
    for precision in ("fp32", "bf16"):
        start = time.perf_counter()
        profiles[precision] = BridgeProber(args.model, lora, precision).probe(arrays, suites)
        seconds[precision] = time.perf_counter() - start
    print("python bench/precision_items.py " + " ".join(argv or sys.argv[1:]))
    print(f"model {args.model}, LoRA r=16 on q_proj,v_proj (std {args.scale}), budget {budget} "
          f"per mode; fp32 {seconds['fp32']:.0f} s, bf16 {seconds['bf16']:.0f} s")
    print(f"{'metric':44s} {'n':>4s} {'item gap':>9s} {'allowed':>8s} {'ratio':>6s} "
          f"{'value gap':>9s} {'allowed':>8s} {'ratio':>6s}")
    worst = []
    server, client = profiles["fp32"].metrics, profiles["bf16"].metrics
    for mode, metrics in server.items():
        for name, mv in metrics.items():
            other = client.get(mode, {}).get(name)
            if mv.items is None or other is None or other.items is None or mv.n <= 0:
                continue
            value_tol, _, items_tol = allowances(metrics, mode, name, suites.get(mode))
            gap = sum(abs(a - b) for a, b in zip(mv.items, other.items, strict=True)) / mv.n
            vgap = abs(mv.value - other.value)
            worst.append((gap / items_tol, vgap / value_tol, f"{mode}.{name}"))
            print(f"{mode + '.' + name:44s} {mv.n:4d} {gap:9.5f} {items_tol:8.5f} "
                  f"{gap / items_tol:6.3f} {vgap:9.5f} {value_tol:8.5f} {vgap / value_tol:6.3f}")
    items_worst = max(worst, default=(0.0, 0.0, "-"))
    value_worst = max(worst, key=lambda w: w[1], default=(0.0, 0.0, "-"))
    print(f"largest item-gap ratio {items_worst[0]:.3f} ({items_worst[2]}); largest value-gap "
          f"ratio {value_worst[1]:.3f} ({value_worst[2]}); an honest client is flagged above 1")
    return 0


if __name__ == "__main__":
    sys.exit(main())
