"""Detection power of paired per-item tests vs independent ones, on synthetic probe items.

    python bench/power.py --runs 400

Item model (soft rates, e.g. the probability of refusing each harmful request): item j of the
reference has logit a_j ~ N(1.5, 1.5); a model that changed by delta has logit a_j - delta +
e_j with item-specific noise e_j ~ N(0, 0.3) (a fine-tune nudges every item the same way, not
exactly equally). delta is calibrated so that the mean probability falls by a multiple of the
tolerance (0.05). Every run calls the real detectors (flwr_trust.detect.detect_round) with all
watched metrics of the six modes present (the others unchanged), so Bonferroni splits and
alpha spending are the production ones (alpha = 0.05 per run, a third per evidence stream as
in TrustGuard).

Printed, per degradation (multiples of the tolerance) and n items per mode:
- level: P(alarm in the first round) on the server's probe of the candidate, paired (items of
  candidate and reference) vs unpaired (the candidate's own stderr, as before);
- client: 4 clients, one of them degraded by the multiple, three honest ones that differ from
  each other by a little (logit shifts N(0, 0.05)): P(the degraded client is flagged) and
  P(an honest client is flagged), paired (clients send per-item values) vs unpaired.
At 1x (the least favourable null) the alarm rates are false alarms and must stay <= alpha.
"""

from __future__ import annotations

import argparse
import sys

import numpy as np

from flwr_trust import modes
from flwr_trust.detect import DetectorConfig, detect_round
from flwr_trust.protocol import Observation
from flwr_trust.scoring.profile import MetricValue
from flwr_trust.scoring.stats import sigmoid

TOL = 0.05
ALPHA = 0.05 / 3  # TrustGuard gives each evidence stream a third of the per-run alpha
ITEM_MEAN, ITEM_SD, CHANGE_SD, CLIENT_SD = 1.5, 1.5, 0.3, 0.05


def shift_for(drop: float, a: np.ndarray) -> float:
    """The logit shift that lowers the mean probability of items `a` by `drop` (bisection)."""
    lo, hi = 0.0, 20.0
    base = sigmoid(a).mean()
    for _ in range(60):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if base - sigmoid(a - mid).mean() < drop else (lo, mid)
    return 0.5 * (lo + hi)


def mv(p: np.ndarray, paired: bool) -> MetricValue:
    n = p.size
    return MetricValue(float(p.mean()), float(p.std(ddof=1) / np.sqrt(n)), n, "lower",
                       tuple(p.tolist()) if paired else None)


def background() -> dict[str, dict[str, MetricValue]]:
    """Every other watched metric, unchanged, so the Bonferroni split is the real one."""
    out: dict[str, dict[str, MetricValue]] = {}
    for mode_id in modes.MODES:
        for m in modes.get(mode_id).metrics:
            if m.watched and m.source == "public" and (mode_id, m.name) != ("alignment",
                                                                            "refusal-rate"):
                out.setdefault(mode_id, {})[m.name] = MetricValue(0.5, 0.02, 20, m.worse)
    return out


def level_run(rng: np.random.Generator, n: int, multiple: float, paired: bool) -> bool:
    a = rng.normal(ITEM_MEAN, ITEM_SD, n)
    delta = shift_for(multiple * TOL, a)
    ref = sigmoid(a)
    now = sigmoid(a - delta + rng.normal(0, CHANGE_SD, n))
    reference, candidate = background(), background()
    reference.setdefault("alignment", {})["refusal-rate"] = mv(ref, paired)
    candidate.setdefault("alignment", {})["refusal-rate"] = mv(now, paired)
    result = detect_round(reference, candidate, None, round=1,
                          config=DetectorConfig(alpha=ALPHA))
    return any(a.severity == "alarm" and a.metric == "refusal-rate" for a in result.alarms)


def client_run(rng: np.random.Generator, n: int, multiple: float, paired: bool
               ) -> tuple[bool, bool]:
    """(degraded client flagged, an honest client flagged) with 4 clients."""
    a = rng.normal(ITEM_MEAN, ITEM_SD, n)
    delta = shift_for(multiple * TOL, a)
    reports = {}
    for node in range(4):
        shift = delta if node == 0 else rng.normal(0, CLIENT_SD)
        p = sigmoid(a - shift + rng.normal(0, CHANGE_SD, n))
        reports[node] = {"alignment": {"refusal-rate": Observation(
            float(p.mean()), float(p.std(ddof=1) / np.sqrt(n)), n, 0.0,
            tuple(p.tolist()) if paired else None)}}
    ref = {"alignment": {"refusal-rate": MetricValue(float(sigmoid(a).mean()), 0.02, n,
                                                     "lower")}}
    result = detect_round(ref, None, reports, round=1, config=DetectorConfig(alpha=ALPHA))
    flagged = result.flagged_clients
    return 0 in flagged, bool(flagged - {0})


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=400)
    ap.add_argument("--items", default="10,20,40")
    ap.add_argument("--multiples", default="1,1.5,2,3")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    print("python bench/power.py " + " ".join(argv or sys.argv[1:]))
    print(f"tolerance {TOL}, alpha per evidence stream {ALPHA:.4f}, {args.runs} runs per cell")
    print("| items | degradation | level: paired | level: unpaired | client flagged: paired "
          "| unpaired | honest flagged: paired | unpaired |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for n in (int(x) for x in args.items.split(",")):
        for mult in (float(x) for x in args.multiples.split(",")):
            cells = []
            for paired in (True, False):
                rng = np.random.default_rng([args.seed, n, int(mult * 100), paired])
                cells.append(np.mean([level_run(rng, n, mult, paired)
                                      for _ in range(args.runs)]))
            client = {}
            for paired in (True, False):
                rng = np.random.default_rng([args.seed, n, int(mult * 100), paired, 7])
                runs = [client_run(rng, n, mult, paired) for _ in range(args.runs)]
                client[paired] = np.mean([r[0] for r in runs]), np.mean([r[1] for r in runs])
            print(f"| {n} | {mult:g}x tol | {cells[0]:.3f} | {cells[1]:.3f} | "
                  f"{client[True][0]:.3f} | {client[False][0]:.3f} | {client[True][1]:.3f} | "
                  f"{client[False][1]:.3f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
