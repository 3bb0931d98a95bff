"""Simulate the tail of a MAD-based robust z-score of n normal values and print, per n, the
largest Student-t df whose quantiles cover it: the source of `SIMULATED_DF` in
flwr_trust/detect/update_thresholds.py (the update checks' thresholds).

For each n, `--values` z-scores (x - median) / (1.4826 MAD) of rows of n standard normals are
simulated; the upper quantiles at 1e-3 ... 1e-6 are compared with the t quantiles. A t df
"covers" the MAD z when its quantile is at least the simulated one at every level, so the
threshold built on it cannot be lower than the true one (over-coverage only costs power).

    python tools/mad_z_df.py                 # print the table for n = 3..25 (about 1 minute)
    python tools/mad_z_df.py --check         # exit 1 if the table in the package differs
"""

from __future__ import annotations

import argparse
import sys

import numpy as np

from flwr_trust.detect.statistics import MAD_SCALE, t_quantile
from flwr_trust.detect.update_thresholds import SIMULATED_DF

LEVELS = (1e-3, 1e-4, 1e-5, 1e-6)
CHUNK_ROWS = 500_000


def simulated_quantiles(n: int, values: int, rng: np.random.Generator) -> list[float]:
    """Upper quantiles of the MAD z of n normals at LEVELS, from `values` z-scores."""
    rows = values // n
    tail = []
    for start in range(0, rows, CHUNK_ROWS):
        x = rng.standard_normal((min(CHUNK_ROWS, rows - start), n))
        med = np.median(x, axis=1, keepdims=True)
        z = (x - med) / (MAD_SCALE * np.median(np.abs(x - med), axis=1, keepdims=True))
        tail.append(z[z > 2.0])  # every level of interest lies far above 2
    top = np.sort(np.concatenate(tail))[::-1]
    return [float(top[int(p * rows * n)]) for p in LEVELS]


def covering_df(quantiles: list[float], max_df: int = 60) -> int:
    """The largest df whose t quantiles are >= the simulated ones at every level (>= 1)."""
    ok = [df for df in range(1, max_df + 1)
          if all(t_quantile(p, df) >= q for p, q in zip(LEVELS, quantiles, strict=True))]
    return max(ok, default=1)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--max-n", type=int, default=25)
    parser.add_argument("--values", type=int, default=40_000_000,
                        help="z-scores simulated per n (the 1e-6 level needs >= 10 million)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--check", action="store_true",
                        help="exit 1 if SIMULATED_DF differs from the simulated table")
    args = parser.parse_args(argv)
    if args.max_n < 3 or args.values < 10 * args.max_n:
        parser.error("--max-n must be >= 3 and --values large enough for the tail levels")
    rng = np.random.default_rng(args.seed)
    table = {}
    for n in range(3, args.max_n + 1):
        quantiles = simulated_quantiles(n, args.values, rng)
        table[n] = covering_df(quantiles)
        print(f"n={n:3d}  quantiles at {LEVELS}: "
              + ", ".join(f"{q:.1f}" for q in quantiles)
              + f"  -> df {table[n]} (0.4 n: {max(1, int(0.4 * n))})", flush=True)
    print("SIMULATED_DF =", table)
    if args.check:
        wrong = {n: (SIMULATED_DF.get(n), df) for n, df in table.items()
                 if SIMULATED_DF.get(n) != df}
        if wrong:
            print(f"SIMULATED_DF differs (n: (package, simulated)): {wrong}", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
