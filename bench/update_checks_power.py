"""Update checks: what the sampled robust centre costs in false alarms and detection power.

Run: `python bench/update_checks_power.py [--quick]`.

`check_updates` takes its robust centre from a seeded sample of CENTRE_SAMPLE clients (two
halves, nobody scored against a centre it is part of) on a random CENTRE_COORDS coordinates;
before, it used the exact coordinate-wise median of all clients on every coordinate. This
script runs both on the same synthetic rounds:

- false alarms: clean rounds (every client honest), share of rounds with any flag at alpha =
  0.1 (large enough to be measured with a few hundred rounds; the Bonferroni design bounds it
  by alpha / 2 up to t-tail error);
- power: 10% of the clients send a partly reversed update, honest noise + (1 - 2 lam) * mean
  (lam = 1: a sign flip of the shared direction, lam = 0: honest); TPR over attackers and FPR
  over honest clients at alpha = 0.01, per lam.

Honest client i sends s_i * (mu + 3 * noise_i) with s_i ~ N(1, 0.1): its cosine to the true
mean is ~0.32, its norm spread 10%. Updates are computed when read (a window of one pooled
noise vector per client), so 1,000 clients of 1M parameters need no 4 GB of memory.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Iterator, Mapping

import numpy as np

from flwr_trust.detect.update import CENTRE_COORDS, CENTRE_SAMPLE, check_updates

NOISE = 3.0
STRIDE = 1009


class Round:
    """n clients' updates over `layers` equal layers of `width` coordinates."""

    def __init__(self, n: int, layers: int, width: int, seed: int, attackers: int = 0,
                 lam: float = 0.0) -> None:
        rng = np.random.default_rng(seed)
        self.names = [f"layer{j}" for j in range(layers)]
        self.width, self.d = width, layers * width
        self.mu = rng.standard_normal(self.d, dtype=np.float32)
        self.pool = rng.standard_normal(self.d + STRIDE * n, dtype=np.float32)
        self.scale = (1.0 + 0.1 * rng.standard_normal(n)).astype(np.float32)
        self.attackers = set(rng.choice(n, attackers, replace=False).tolist())
        self.lam, self.n = lam, n

    def client(self, i: int) -> Mapping[str, np.ndarray]:
        return _Client(self, i)

    def updates(self) -> dict[int, Mapping[str, np.ndarray]]:
        return {i: self.client(i) for i in range(self.n)}


class _Client(Mapping[str, np.ndarray]):
    def __init__(self, rnd: Round, i: int) -> None:
        self.rnd, self.i = rnd, i

    def __getitem__(self, name: str) -> np.ndarray:
        r, j = self.rnd, self.rnd.names.index(name)
        a, b = j * r.width, (j + 1) * r.width
        mean = r.mu[a:b] * ((1 - 2 * r.lam) if self.i in r.attackers else 1.0)
        start = self.i * STRIDE
        return r.scale[self.i] * (mean + NOISE * r.pool[start + a:start + b])

    def __iter__(self) -> Iterator[str]:
        return iter(self.rnd.names)

    def __len__(self) -> int:
        return len(self.rnd.names)


CONFIGS = {"exact (all clients, all coordinates)": {"centre_sample": 10**9,
                                                    "centre_coords": 10**12},
           "sampled (default)": {}}


def false_alarms(n: int, layers: int, width: int, seeds: int, alpha: float,
                 coords: int) -> None:
    print(f"\nfalse alarms: {seeds} clean rounds, n = {n}, d = {layers * width:,}, alpha = {alpha}"
          f" (sampled: {CENTRE_SAMPLE} + {CENTRE_SAMPLE} clients, {coords:,} coordinates)")
    for name, cfg in CONFIGS.items():
        cfg = dict(cfg) or {"centre_coords": coords}
        start, hits = time.perf_counter(), 0
        for seed in range(seeds):
            hits += bool(check_updates(Round(n, layers, width, seed).updates(), alpha=alpha,
                                       seed=seed, round=1, **cfg).flagged)
        rate = hits / seeds
        se = (rate * (1 - rate) / seeds) ** 0.5
        print(f"  {name:<40} rounds with a flag {rate:.3f} ± {se:.3f} (bound alpha/2 = "
              f"{alpha / 2}), {time.perf_counter() - start:.1f} s")


def power(n: int, layers: int, width: int, seeds: int, lams: list[float]) -> None:
    print(f"\npower: n = {n}, d = {layers * width:,}, 10% attackers, alpha = 0.01, {seeds} "
          "seeds per cell (TPR over attackers, FPR over honest clients, mean ± SD over seeds; "
          f"sampled: {CENTRE_SAMPLE} + {CENTRE_SAMPLE} clients, {CENTRE_COORDS:,} coordinates)")
    print(f"  {'lam':>5} {'centre':<40} {'TPR':>13} {'FPR':>9} {'s/round':>8}")
    for lam in lams:
        for name, cfg in CONFIGS.items():
            tprs, fprs, secs = [], [], []
            for seed in range(seeds):
                rnd = Round(n, layers, width, 1000 + seed, attackers=n // 10, lam=lam)
                start = time.perf_counter()
                flagged = set(check_updates(rnd.updates(), seed=seed, round=1, **cfg).flagged)
                secs.append(time.perf_counter() - start)
                tprs.append(len(flagged & rnd.attackers) / len(rnd.attackers))
                fprs.append(len(flagged - rnd.attackers) / (n - len(rnd.attackers)))
            print(f"  {lam:>5} {name:<40} {np.mean(tprs):>6.3f} ± {np.std(tprs):.3f} "
                  f"{np.mean(fprs):>9.4f} {np.mean(secs):>8.2f}", flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller rounds, fewer seeds")
    args = parser.parse_args()
    if args.quick:
        false_alarms(n=200, layers=8, width=4096, seeds=40, alpha=0.1, coords=4096)
        power(n=200, layers=8, width=16384, seeds=2, lams=[0.25, 1.0])
    else:
        # d = 65,536 with a 1/8 coordinate share: the share the default has at 1M parameters.
        false_alarms(n=200, layers=16, width=4096, seeds=300, alpha=0.1, coords=8192)
        power(n=1000, layers=16, width=65536, seeds=3, lams=[0.005, 0.01, 0.02, 0.04, 1.0])
    return 0


if __name__ == "__main__":
    sys.exit(main())
