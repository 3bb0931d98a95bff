"""The update checks' robust z-scores of detection-matrix runs, read from their audit logs.

    python bench/update_evidence.py runs/matrix/smollm2-clean20-horizon/clean/trust-off-seed*

Per run and training round it prints each client's norm, cosine and worst-layer z-score (as the
update checks computed them), its cosine as a share of the round's median cosine and its
direction z-score at `--cosine-margin` (what the cosine test compares with the threshold;
recomputed from the logged cosines, so logs written before the margin can be read), and marks
the clients the scenario affected; at the end, per group (unaffected, affected) the largest z
in the alarming direction, against the thresholds of the round size at alpha 0.01 (the
default `trust.update-alpha`). It reads `audit.jsonl` and `summary.json` (partition p is node
1001 + p in the baseline's simulation).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from flwr_trust.detect.update import COSINE_MARGIN, direction_z
from flwr_trust.detect.update_thresholds import bonferroni_families

FIRST_NODE = 1001  # the baseline's simulation numbers partition p as node 1001 + p


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", type=Path, help="run folders (audit.jsonl inside)")
    parser.add_argument("--quiet", action="store_true", help="only the summary lines")
    parser.add_argument("--arrays", type=int, default=420,
                        help="LoRA arrays per update, for the thresholds (SmolLM2's baseline: 420)")
    parser.add_argument("--cosine-margin", type=float, default=COSINE_MARGIN,
                        help="the direction test's margin (trust.update-cosine-margin)")
    args = parser.parse_args(argv)
    if not 0.0 <= args.cosine_margin <= 1.0:
        parser.error("--cosine-margin must be in [0, 1]")
    empty = {"norm": -np.inf, "cosine": -np.inf, "direction": -np.inf, "layer": -np.inf,
             "share": np.inf, "clients": 0}
    worst = {"unaffected": dict(empty), "affected": dict(empty)}
    sizes: set[int] = set()
    for run in args.runs:
        audit, summary = run / "audit.jsonl", run / "summary.json"
        if not audit.is_file():
            print(f"{run}: no audit.jsonl (not a run folder?)", file=sys.stderr)
            return 2
        affected = set()
        if summary.is_file():
            affected = {FIRST_NODE + p for p in json.loads(summary.read_text())["affected"]}
        for line in audit.read_text(encoding="utf-8").splitlines():
            record = json.loads(line)
            stats = record.get("payload", {}).get("update_stats") or {}
            scored = {int(n): s for n, s in stats.items() if "z_norm" in s}
            if record.get("kind") != "round" or not scored:
                continue
            sizes.add(len(scored))
            nodes = sorted(scored)
            cosines = np.array([scored[n]["cosine"] for n in nodes])
            z_dir, _ = direction_z(cosines, args.cosine_margin)
            median = float(np.median(cosines))
            for i, node in enumerate(nodes):
                s = scored[node]
                share = s["cosine"] / median if median > 0 else np.nan
                mark = " (affected)" if node in affected else ""
                if not args.quiet:
                    print(f"{run} round {record['payload']['round']} client {node}: z norm "
                          f"{s['z_norm']:+.1f}, cosine {s['z_cosine']:+.1f} (share of median "
                          f"{share:.2f}, direction z {z_dir[i]:+.1f}), worst layer "
                          f"{s['max_layer_z']:+.1f}{mark}")
                w = worst["affected" if node in affected else "unaffected"]
                w["clients"] += 1
                w["norm"] = max(w["norm"], s["z_norm"])
                w["cosine"] = max(w["cosine"], -s["z_cosine"])
                w["direction"] = max(w["direction"], -float(z_dir[i]))
                w["layer"] = max(w["layer"], s["max_layer_z"])
                w["share"] = min(w["share"], share) if np.isfinite(share) else w["share"]
    for group, w in worst.items():
        if not w["clients"]:
            continue
        print(f"{group} clients, largest: z norm {w['norm']:.1f}, -z cosine {w['cosine']:.1f}"
              f" (lowest share of the median cosine {w['share']:.2f}), -z direction at margin "
              f"{args.cosine_margin:g} {w['direction']:.1f}, worst-layer z {w['layer']:.1f}")
    for n in sorted(sizes):
        whole, layer = bonferroni_families(n, args.arrays, 0.01)
        print(f"thresholds with {n} clients and {args.arrays} arrays at alpha 0.01: norm and "
              f"cosine {whole.threshold:.1f}, layer {(layer or whole).threshold:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
