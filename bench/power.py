"""Detection power of paired per-item tests (margin and rate scales) vs independent ones, and
their false alarms at least favourable nulls, on synthetic probe items.

    python bench/power.py --runs 400 --items 20,40,100 --multiples 1,2,3

Item model (soft rates, e.g. the probability of refusing each harmful request; lower is worse):
item j of the reference has logit a_j ~ N(1.5, 1.5); a model that changed by delta has logit
a_j - delta - e_j with item-specific noise e_j ~ N(0, 0.3) (a fine-tune nudges every item the
same way, not exactly equally; --change-sd sets the 0.3). delta is calibrated on the drawn items
so that the uniform shift alone lowers the mean probability by a multiple of the tolerance
(0.05). Every run calls the real detectors (flwr_trust.detect.detect_round) with all watched
metrics of the six modes present (the others unchanged), so Bonferroni splits and alpha spending
are the production ones (alpha = 0.05 per run, a third per evidence stream as in TrustGuard).

Power table, per degradation (multiples of the tolerance) and n items per mode:
- level: P(alarm in the first round) on the server's probe of the candidate: paired on the
  margin scale (the default, `paired_scale="margin"`), paired on the rate scale
  (`paired_scale="rate"`), unpaired (the candidate's own stderr);
- client: 4 clients, one of them degraded by the multiple, three honest ones that differ from
  each other by a little (logit shifts N(0, 0.05)): P(the degraded client is flagged) and
  P(an honest client is flagged), on the same three scales.

Null table: the true expected rate change on the drawn items is exactly the tolerance (the
least favourable point of "rate change <= tolerance"), with per-item shifts and noise that are
uniform or adversarially heterogeneous (see NULLS). Printed: how far the mean logit shift is
past the margin test's bound, and P(alarm) of the shipped test (production alpha, via
detect_round), of its margin statistic alone and of its rate statistic alone, at the
production per-test level and at a per-test level of 1% (where rates can be resolved).
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from collections.abc import Callable

import numpy as np

from flwr_trust import modes
from flwr_trust.detect import DetectorConfig, detect_round
from flwr_trust.detect.margin import LOGIT_BOUND, margin_change, margin_clients, shift_for
from flwr_trust.detect.paired import paired_change
from flwr_trust.detect.statistics import critical_z, spend
from flwr_trust.protocol import Observation
from flwr_trust.scoring.profile import MetricValue
from flwr_trust.scoring.stats import sigmoid

TOL = 0.05
ALPHA = 0.05 / 3  # TrustGuard gives each evidence stream a third of the per-run alpha
ITEM_MEAN, ITEM_SD, CHANGE_SD, CLIENT_SD = 1.5, 1.5, 0.3, 0.05
SIGN = -1.0  # refusal-rate: lower is worse, so a degradation lowers the logits
SCALES = ("margin", "rate", "unpaired")
CLIENTS = 4
LOOSE = 0.01  # per-test level at which null rates can be resolved with a few thousand runs
_GH_X, _GH_W = np.polynomial.hermite_e.hermegauss(40)
_GH_W = _GH_W / _GH_W.sum()


# ------------------------------------------------------------------------------------ items


def normal_items(rng: np.random.Generator, n: int) -> np.ndarray:
    return rng.normal(ITEM_MEAN, ITEM_SD, n)


def bimodal_items(rng: np.random.Generator, n: int) -> np.ndarray:
    """Half the items undecided (p near 0.5), half saturated (p near 0.999): the most
    heterogeneous slopes, where the mean logit shift and the rate change part most."""
    k = n // 2
    return np.concatenate([rng.normal(0.0, 0.5, k), rng.normal(7.0, 0.5, n - k)])


ITEMS: dict[str, Callable[[np.random.Generator, int], np.ndarray]] = {
    "normal": normal_items, "bimodal": bimodal_items}


def candidate(rng: np.random.Generator, a: np.ndarray, shift: np.ndarray | float,
              sd: np.ndarray | float) -> np.ndarray:
    """Probabilities of a model whose item logits moved `shift` (+ N(0, sd)) the worse way."""
    return sigmoid(a + SIGN * (shift + sd * rng.standard_normal(a.size)))


def expected_change(a: np.ndarray, shift: np.ndarray, sd: np.ndarray) -> float:
    """The expected rate degradation on items `a` (over the per-item noise, Gauss-Hermite)."""
    p = sigmoid(a[:, None] + SIGN * (shift[:, None] + sd[:, None] * _GH_X[None, :])) @ _GH_W
    return float(SIGN * (p.mean() - sigmoid(a).mean()))


def at_tolerance(a: np.ndarray, base: np.ndarray, pattern: np.ndarray, sd: np.ndarray
                 ) -> np.ndarray:
    """base + c * pattern with c such that the expected rate degradation is exactly TOL."""
    lo, hi = -2 * LOGIT_BOUND, 2 * LOGIT_BOUND
    for _ in range(60):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if expected_change(a, base + mid * pattern, sd) < TOL else (lo, mid)
    return base + 0.5 * (lo + hi) * pattern


# ------------------------------------------------------------------------- the least favourable


def _null(a: np.ndarray, kind: str) -> tuple[np.ndarray, np.ndarray]:
    """Per-item systematic shift and noise sd with expected rate change exactly TOL.

    uniform:   one shift for every item, noise sd CHANGE_SD
    saturated: the whole shift on the least sensitive third of the items
    tilted:    items shift by m + 1 * t_j, t_j = (mean slope - slope_j) / sd(slopes): the flat
               items degrade more, the sensitive ones less (or improve); "tilted 0.5": 0.5 * t_j
    opposite:  the sensitive half improves by 0.5, the flat half degrades
    noisy:     noise sd 1.2 on the most sensitive quarter, 0.02 elsewhere (one shared shift);
               "noisy tilted", "noisy tilted 0.5": with the tilt as well
    """
    n = a.size
    slope = sigmoid(a) * (1 - sigmoid(a))
    order = np.argsort(slope)  # least sensitive (saturated) first
    sd, base, pattern = np.full(n, CHANGE_SD), np.zeros(n), np.ones(n)
    tilt = (slope.mean() - slope) / max(slope.std(), 1e-12)  # +: flat items, -: sensitive ones
    if "tilted" in kind:
        base = (0.5 if kind.endswith("0.5") else 1.0) * tilt
    if kind.startswith("noisy"):
        sd = np.full(n, 0.02)
        sd[order[-max(1, n // 4):]] = 1.2
    if kind == "saturated":
        pattern = np.zeros(n)
        pattern[order[: n // 3]] = 1.0
    elif kind == "opposite":
        base[order[n // 2:]] = -0.5
        pattern = np.zeros(n)
        pattern[order[: n // 2]] = 1.0
    return at_tolerance(a, base, pattern, sd), sd


NULLS = [("uniform", "normal"), ("saturated", "normal"), ("tilted", "normal"),
         ("opposite", "normal"), ("noisy", "normal"), ("noisy tilted 0.5", "normal"),
         ("uniform", "bimodal"), ("tilted", "bimodal"), ("tilted 0.5", "bimodal"),
         ("opposite", "bimodal"), ("noisy", "bimodal"), ("noisy tilted", "bimodal")]


# ---------------------------------------------------------------------------------- detectors


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


def config(scale: str) -> DetectorConfig:
    return DetectorConfig(alpha=ALPHA, paired_scale="rate" if scale == "rate" else "margin")


def level_alarm(ref: np.ndarray, now: np.ndarray, scale: str) -> bool:
    """Does the level test alarm on refusal-rate in round 1 (production budgets)?"""
    paired = scale != "unpaired"
    reference, cand = background(), background()
    reference.setdefault("alignment", {})["refusal-rate"] = mv(ref, paired)
    cand.setdefault("alignment", {})["refusal-rate"] = mv(now, paired)
    result = detect_round(reference, cand, None, round=1, config=config(scale))
    return any(a.severity == "alarm" and a.metric == "refusal-rate" for a in result.alarms)


def level_threshold(n: int, df: float) -> float:
    """The production level test's critical t at look 1 (with `df`): the budget of the level
    family split over the round's level tests (the watched public metrics)."""
    m = sum(len(ms) for ms in background().values()) + 1
    return critical_z(spend(ALPHA * config("margin").split[0], 1) / m, df)


def level_run(rng: np.random.Generator, n: int, multiple: float, scale: str,
              change_sd: float = CHANGE_SD) -> bool:
    a = normal_items(rng, n)
    delta = shift_for(a, SIGN, multiple * TOL)
    return level_alarm(sigmoid(a), candidate(rng, a, delta, change_sd), scale)


def client_reports(rng: np.random.Generator, a: np.ndarray, shift: np.ndarray | float,
                   sd: np.ndarray | float, paired: bool, honest_sd: float = CHANGE_SD
                   ) -> dict[int, dict]:
    """Client 0 moved `shift` (+ noise sd); the others are honest (N(0, CLIENT_SD) shifts,
    per-item noise honest_sd)."""
    reports = {}
    for node in range(CLIENTS):
        p = candidate(rng, a, shift, sd) if node == 0 else \
            candidate(rng, a, rng.normal(0, CLIENT_SD), honest_sd)
        reports[node] = {"alignment": {"refusal-rate": Observation(
            float(p.mean()), float(p.std(ddof=1) / np.sqrt(a.size)), a.size, 0.0,
            tuple(p.tolist()) if paired else None)}}
    return reports


def client_flags(a: np.ndarray, reports: dict[int, dict], scale: str) -> tuple[bool, bool]:
    ref = {"alignment": {"refusal-rate": MetricValue(float(sigmoid(a).mean()), 0.02, a.size,
                                                     "lower")}}
    flagged = detect_round(ref, None, reports, round=1, config=config(scale)).flagged_clients
    return 0 in flagged, bool(flagged - {0})


def client_run(rng: np.random.Generator, n: int, multiple: float, scale: str,
               change_sd: float = CHANGE_SD) -> tuple[bool, bool]:
    """(degraded client flagged, an honest client flagged) with 4 clients."""
    a = normal_items(rng, n)
    delta = shift_for(a, SIGN, multiple * TOL)
    reports = client_reports(rng, a, delta, change_sd, scale != "unpaired", change_sd)
    return client_flags(a, reports, scale)


# ---------------------------------------------------------------------------------- the tables


def null_rows(rng: np.random.Generator, n: int, kind: str, items: str, draws: int
              ) -> np.ndarray:
    """One item set at the null `kind`, `draws` noise draws: per draw (excess logit shift over
    the margin bound, then alarm at the production threshold of: the rate-scale paired test
    (before), the shipped margin-scale test, its margin statistic alone, its rate statistic
    alone, then the last three at the per-test level LOOSE)."""
    a = ITEMS[items](rng, n)
    shift, sd = _null(a, kind)
    excess = float(shift.mean() - shift_for(a, SIGN, TOL))
    ref = sigmoid(a)
    crit_before = level_threshold(n, n - 1)
    crit, loose = level_threshold(n, n - 2), critical_z(LOOSE, n - 2)  # MarginChange.df
    rows = []
    for _ in range(draws):
        now = candidate(rng, a, shift, sd)
        change = margin_change(now, ref, SIGN, TOL)
        before = paired_change(now.tolist(), ref.tolist(), SIGN)
        assert change is not None and before is not None and change.df == n - 2
        zs = (min(change.z_margin, change.z_rate), change.z_margin, change.z_rate)
        rows.append([excess, before.z(TOL) > crit_before, *(z > crit for z in zs),
                     *(z > loose for z in zs)])
    return np.asarray(rows, dtype=float)


def client_null_run(rng: np.random.Generator, n: int, kind: str) -> tuple[bool, bool, bool]:
    """Client 0 at exactly the tolerance (expected rate change TOL on the items), the others
    honest: (client 0 flagged, an honest client flagged, client 0's margin statistic alone
    past the production threshold)."""
    a = normal_items(rng, n)
    shift, sd = _null(a, kind)
    reports = client_reports(rng, a, shift, sd, True)
    flags = client_flags(a, reports, "margin")
    items = {node: r["alignment"]["refusal-rate"].items for node, r in reports.items()}
    test = margin_clients(items, SIGN, 3)
    assert test is not None
    crit = critical_z(spend(ALPHA * config("margin").split[2], 1) / CLIENTS, test.df)
    return flags[0], flags[1], test.changes(TOL)[0].z_margin > crit


def power_table(args: argparse.Namespace) -> None:
    print("| items | degradation | level: margin | level: rate | level: unpaired | client "
          "flagged: margin | rate | unpaired | honest flagged: margin | rate | unpaired |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for n in (int(x) for x in args.items.split(",")):
        for mult in (float(x) for x in args.multiples.split(",")):
            level, client, honest = [], [], []
            for k, scale in enumerate(SCALES):
                rng = np.random.default_rng([args.seed, n, int(mult * 100), k])
                level.append(np.mean([level_run(rng, n, mult, scale, args.change_sd)
                                      for _ in range(args.runs)]))
                rng = np.random.default_rng([args.seed, n, int(mult * 100), k, 7])
                runs = [client_run(rng, n, mult, scale, args.change_sd)
                        for _ in range(args.runs)]
                client.append(np.mean([r[0] for r in runs]))
                honest.append(np.mean([r[1] for r in runs]))
            cells = " | ".join(f"{x:.3f}" for x in level + client + honest)
            print(f"| {n} | {mult:g}x tol | {cells} |", flush=True)


def null_table(args: argparse.Namespace) -> None:
    sets, draws = args.null_sets, args.null_draws
    print(f"\nleast favourable nulls: expected rate change = tolerance on the drawn items; "
          f"{sets} item sets x {draws} noise draws per row; P(alarm) at the production "
          f"per-test level (n = 20: t(18) > {level_threshold(20, 18):.2f}) and at a per-test "
          f"level of {LOOSE}")
    print("| null | items | n | mean logit shift - margin bound | rate scale (before) | shipped | "
          "margin alone | rate alone | shipped at 1% | margin alone at 1% | rate alone at 1% |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for n in (int(x) for x in args.null_items.split(",")):
        for k, (kind, items) in enumerate(NULLS):
            rng = np.random.default_rng([args.seed, n, 11, k])
            rows = np.concatenate([null_rows(rng, n, kind, items, draws) for _ in range(sets)])
            rates = " | ".join(f"{x:.4f}" for x in rows[:, 1:].mean(axis=0))
            print(f"| {kind} | {items} | {n} | {rows[:, 0].mean():+.3f} | {rates} |",
                  flush=True)
    print("\nper-client test at the null (client 0 exactly at the tolerance against the "
          f"reference, 3 honest clients), {args.runs} runs per row")
    print("| null | n | client 0 flagged | honest flagged | client 0 margin alone |")
    print("| --- | --- | --- | --- | --- |")
    for n in (int(x) for x in args.null_items.split(",")):
        for k, kind in enumerate(("uniform", "saturated", "tilted")):
            rng = np.random.default_rng([args.seed, n, 13, k])
            rows = np.asarray([client_null_run(rng, n, kind) for _ in range(args.runs)])
            print(f"| {kind} | {n} | " + " | ".join(f"{x:.4f}" for x in rows.mean(axis=0))
                  + " |", flush=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=400)
    ap.add_argument("--items", default="20,40,100")
    ap.add_argument("--multiples", default="1,2,3")
    ap.add_argument("--change-sd", type=float, default=CHANGE_SD,
                    help="sd of the per-item logit change around the uniform shift")
    ap.add_argument("--null-sets", type=int, default=200, help="item sets per null row")
    ap.add_argument("--null-draws", type=int, default=50, help="noise draws per item set")
    ap.add_argument("--null-items", default="20,100")
    ap.add_argument("--skip-power", action="store_true")
    ap.add_argument("--skip-nulls", action="store_true")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    start = time.time()
    print("python bench/power.py " + " ".join(argv if argv is not None else sys.argv[1:]))
    print(f"tolerance {TOL}, alpha per evidence stream {ALPHA:.4f}, {args.runs} runs per cell, "
          f"per-item logit change sd {args.change_sd}")
    if not args.skip_power:
        power_table(args)
    if not args.skip_nulls:
        null_table(args)
    print(f"\nseconds: {math.ceil(time.time() - start)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
