"""The update checks' robust z-scores of detection-matrix runs, read from their audit logs.

    python bench/update_evidence.py runs/matrix/smollm2-clean20-horizon/clean/trust-off-seed*

Per run and training round it prints each client's norm, cosine and worst-layer z-score (as the
update checks computed them) and marks the clients the scenario affected; at the end, the
largest z of the unaffected clients over all runs against the thresholds of the round size at
alpha 0.01 (the default `trust.update-alpha`). Nothing is recomputed: it reads `audit.jsonl`
and `summary.json` (partition p is node 1001 + p in the baseline's simulation).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from flwr_trust.detect.update_thresholds import bonferroni_families

FIRST_NODE = 1001  # the baseline's simulation numbers partition p as node 1001 + p


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", type=Path, help="run folders (audit.jsonl inside)")
    parser.add_argument("--quiet", action="store_true", help="only the summary lines")
    parser.add_argument("--arrays", type=int, default=420,
                        help="LoRA arrays per update, for the thresholds (SmolLM2's baseline: 420)")
    args = parser.parse_args(argv)
    worst = {"norm": 0.0, "cosine": 0.0, "layer": 0.0}
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
            for node, s in sorted(scored.items()):
                mark = " (affected)" if node in affected else ""
                if not args.quiet:
                    print(f"{run} round {record['payload']['round']} client {node}: z norm "
                          f"{s['z_norm']:+.1f}, cosine {s['z_cosine']:+.1f}, worst layer "
                          f"{s['max_layer_z']:+.1f}{mark}")
                if node not in affected:
                    worst["norm"] = max(worst["norm"], s["z_norm"])
                    worst["cosine"] = max(worst["cosine"], -s["z_cosine"])
                    worst["layer"] = max(worst["layer"], s["max_layer_z"])
    print(f"unaffected clients, largest: z norm {worst['norm']:.1f}, -z cosine "
          f"{worst['cosine']:.1f}, worst-layer z {worst['layer']:.1f}")
    for n in sorted(sizes):
        whole, layer = bonferroni_families(n, args.arrays, 0.01)
        print(f"thresholds with {n} clients and {args.arrays} arrays at alpha 0.01: norm and "
              f"cosine {whole.threshold:.1f}, layer {(layer or whole).threshold:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
