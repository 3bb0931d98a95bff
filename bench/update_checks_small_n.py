"""Update checks with few clients (4-16, FlowerTune's range): false alarms and power.

Run: `python bench/update_checks_small_n.py [--trials 200] [--quick] [--cosine-margin 0.5]`.

Synthetic rounds through the real `check_updates`, on a LoRA-like layout of 60 arrays x 800
coordinates. Honest client i sends s_i (mu + noise_i), s_i ~ N(1, 0.1), noise of std `--noise`
per coordinate (2: a cosine of ~0.45 to the shared direction mu). Per number of clients n:

- **clean, iid**: every client honest; share of rounds with any flag at alpha = 0.1 (the design
  bounds it by alpha / 2 = 0.05 when the statistics are normal across clients);
- **clean, clustered**: honest but non-IID: a minority of max(1, n // 4) clients also share a
  direction of their own (strength `--cluster` x the noise per coordinate: a data cluster the
  others lack); same share at alpha = 0.1 and at the default 0.01. The bound assumes no such
  structure: this measures what it costs (the minority is legitimately different, and the
  checks flag it);
- **one poisoner**: one client sends -2 x its honest update (sign-flipped and doubled, as the
  baseline's poisoned-update scenario); share of rounds it is flagged at alpha = 0.01 (the
  default), and share of rounds an honest client is flagged.

`--cosine-margin` is the direction test's margin (`trust.update-cosine-margin`; default the
package's): 0 tests each cosine against the median itself, as before the margin existed.
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np

from flwr_trust.detect.update import COSINE_MARGIN, check_updates

LAYERS, WIDTH = 60, 800
CLIENTS = (4, 5, 6, 8, 10, 16)


def honest_round(n: int, seed: int, noise: float, minority: int = 0,
                 cluster: float = 0.0) -> dict[int, dict[str, np.ndarray]]:
    """n honest updates; the first `minority` clients share an extra direction."""
    rng = np.random.default_rng(seed)
    d = LAYERS * WIDTH
    mu = rng.standard_normal(d, dtype=np.float32)
    extra = rng.standard_normal(d, dtype=np.float32) * np.float32(cluster * noise)
    out = {}
    for i in range(n):
        row = mu + noise * rng.standard_normal(d, dtype=np.float32)
        if i < minority:
            row += extra
        row *= np.float32(1 + 0.1 * rng.standard_normal())
        out[i] = {f"l{j}": row[j * WIDTH:(j + 1) * WIDTH] for j in range(LAYERS)}
    return out


def flagged_share(n: int, trials: int, alpha: float, noise: float, minority: int = 0,
                  cluster: float = 0.0, poisoner: bool = False,
                  margin: float = COSINE_MARGIN) -> tuple[float, float]:
    """(share of rounds with any flag, or with the poisoner flagged; share with an honest one)."""
    hit = honest_hit = 0
    for seed in range(trials):
        updates = honest_round(n, 1000 * n + seed, noise, minority, cluster)
        if poisoner:  # client 0 is the poisoner
            updates[0] = {k: -2.0 * v for k, v in updates[0].items()}
        flagged = set(check_updates(updates, alpha=alpha, seed=seed,
                                    cosine_margin=margin).flagged)
        hit += (0 in flagged) if poisoner else bool(flagged)
        honest_hit += bool(flagged - {0}) if poisoner else 0
    return hit / trials, honest_hit / trials


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=200, help="rounds per cell")
    parser.add_argument("--noise", type=float, default=2.0)
    parser.add_argument("--cluster", type=float, default=0.5)
    parser.add_argument("--quick", action="store_true", help="50 rounds per cell")
    parser.add_argument("--cosine-margin", type=float, default=COSINE_MARGIN,
                        help="the direction test's margin, in [0, 1]")
    args = parser.parse_args(argv)
    trials = 50 if args.quick else args.trials
    if trials < 1 or args.noise <= 0 or args.cluster < 0 or not 0 <= args.cosine_margin <= 1:
        parser.error("--trials must be >= 1, --noise > 0, --cluster >= 0 and --cosine-margin "
                     "in [0, 1]")
    m = args.cosine_margin
    start = time.perf_counter()
    print(f"{trials} rounds per cell, {LAYERS} arrays x {WIDTH} coordinates, noise {args.noise},"
          f" cluster strength {args.cluster}, cosine margin {m:g}")
    print(f"{'clients':>7}  {'clean iid, any flag':>20}  {'clean clustered':>16}  "
          f"{'clean clustered':>16}  {'poisoner flagged':>16}  {'honest flagged':>14}")
    print(f"{'':>7}  {'(alpha 0.1, <=0.05)':>20}  {'(alpha 0.1)':>16}  {'(alpha 0.01)':>16}  "
          f"{'(alpha 0.01)':>16}  {'(alpha 0.01)':>14}")
    for n in CLIENTS:
        iid, _ = flagged_share(n, trials, 0.1, args.noise, margin=m)
        minority = max(1, n // 4)
        clustered = [flagged_share(n, trials, a, args.noise, minority, args.cluster,
                                   margin=m)[0] for a in (0.1, 0.01)]
        power, honest = flagged_share(n, trials, 0.01, args.noise, poisoner=True, margin=m)
        print(f"{n:>7}  {iid:>20.3f}  {clustered[0]:>16.3f}  {clustered[1]:>16.3f}  "
              f"{power:>16.3f}  {honest:>14.3f}", flush=True)
    print(f"{time.perf_counter() - start:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
