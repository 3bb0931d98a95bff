"""How large is the per-item logit noise of real fine-tunes? Read it from detection-matrix runs.

    python bench/margin_spread.py runs/matrix/default-paired-margin

The power of the margin-scale paired test (docs/detection.md, "Margin scale") is set by the
spread of the per-item logit changes around their shared shift: bench/power.py reaches the
issue's target (2x tolerance, 20 items, first round) at a spread of about 0.15 and not at 0.3.
Every audit log (`<run>/audit.jsonl`, written by bench/detection_matrix.py) holds, per round and
soft-rate metric tested on the margin scale, the server's paired comparison of the candidate
with the round-0 reference: the mean logit change, its stderr and the number of items. This
prints them per run and round, the spread sd = logit_se * sqrt(items), and the median spread
per metric over all runs. Nothing is re-scored: it only reads the logs.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
from pathlib import Path


def rows(audit: Path) -> list[dict]:
    """Margin-scale comparisons of the candidate (train phase) in one audit log."""
    out = []
    for line in audit.read_text(encoding="utf-8").splitlines():
        record = json.loads(line)
        if record.get("kind") != "round" or record["payload"].get("phase") != "train":
            continue
        payload = record["payload"]
        for mode, metrics in payload.get("behavior", {}).items():
            for metric, row in metrics.items():
                if row.get("scale") != "margin" or row.get("logit_se") is None:
                    continue
                n = int(row["paired_items"])
                out.append({"run": str(audit.parent), "round": payload.get("round", len(out)),
                            "metric": f"{mode}.{metric}", "items": n,
                            "degradation": row.get("degradation"),
                            "shift": row["logit_shift"], "spread": row["logit_se"] * math.sqrt(n),
                            "bound": row.get("logit_tolerance"), "z_margin": row.get("z_margin"),
                            "z_rate": row.get("z_rate")})
    return out


def _fmt(x: object) -> str:
    return "-" if x is None else f"{x:.3f}" if isinstance(x, float) else str(x)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("dirs", nargs="+", type=Path, help="detection-matrix output folders")
    args = ap.parse_args(argv)
    audits = sorted(a for d in args.dirs for a in d.rglob("audit.jsonl"))
    if not audits:
        print(f"margin_spread: no audit.jsonl under {', '.join(map(str, args.dirs))}; run "
              "bench/detection_matrix.py first (it writes one per run)", file=sys.stderr)
        return 2
    found = [r for a in audits for r in rows(a)]
    print("| run | round | metric | items | rate degradation | logit shift | logit spread | "
          "logit bound | z margin | z rate |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for r in found:
        print("| " + " | ".join(_fmt(r[k]) for k in ("run", "round", "metric", "items",
                                                       "degradation", "shift", "spread",
                                                       "bound", "z_margin", "z_rate")) + " |")
    print("\n| metric | comparisons | median logit spread | max |")
    print("| --- | --- | --- | --- |")
    for metric in sorted({r["metric"] for r in found}):
        spreads = [r["spread"] for r in found if r["metric"] == metric]
        print(f"| {metric} | {len(spreads)} | {statistics.median(spreads):.3f} | "
              f"{max(spreads):.3f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
