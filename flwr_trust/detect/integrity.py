"""Integrity audit: compare a client's report with the server's own measurement of its model.

The server holds each client's update in the clear (no secure aggregation), so it can score the
client's model on exactly the probes the client scored: the same suites and, under a per-round
probe budget, the same (suite hash, round)-seeded sample (`client_suites`). A report is then
judged only against what the server measured and what the client's declared privacy parameters
imply, never against the client's own claims of uncertainty (a spoofer could claim any stderr
or noise). Per audited report:

- `round`, `budget`: the echoed ``trust.round`` / ``trust.probe-budget`` must be this round's
  (a stale or differently sampled report is not about the model it came with);
- absent metrics (``.n = 0``) are skipped: a private outgoing model releases only headlines;
- `n`: ``.n`` must equal the items the server scored for that metric;
- clear metrics (``trust.public-post-processing`` not 0): ``.noise`` must be 0, and value and
  ``.stderr`` must equal the server's up to a numerical tolerance (`numeric_tolerance`), and
  their per-item values (``.items``, which the paired per-client test reads) must be within
  that tolerance plus a per-item drift (`item_drift`) of the server's on average (`items`);
- hidden outgoing model (post-processing 0): only each mode's headline may be present
  (`headline-only`); its ``.noise`` must be noise-multiplier x span and its ``.stderr`` span /
  (2 sqrt(n)), as `flwr_trust.reporter.entries` releases it (`noise`, `stderr`); its value must
  lie within z_crit x that noise (+ tolerance) of the server's clipped value (`value`), and the
  gaps, in units of that noise, must not be implausibly small (`noise-added`: a lower-tail
  chi-square test, which catches a client that declares noise it never added).

z_crit is Bonferroni-corrected over audited clients x checks. Honest fp32 clear reports equal
the server's measurement exactly, and honest noised ones differ by exactly the declared noise,
so the false-flag rate on honest clients is at most alpha by construction. docs/detection.md
explains the maths and shows the benchmark (bench/integrity_audit.py).
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from statistics import NormalDist
from typing import Any

from flwr_trust import modes as registry
from flwr_trust import protocol
from flwr_trust.detect.alarm import Alarm
from flwr_trust.probes.sampling import sample_suites
from flwr_trust.probes.suite import ProbeSuite
from flwr_trust.scoring.profile import BehaviorProfile, MetricValue

NUMERIC_FLOOR = 1e-3  # absolute slack on every comparison (float summation order)
NUMERIC_ITEMS = 2  # bf16 vs fp32 may flip this many items of a bounded metric (an ECE bin
NUMERIC_SHARE = 0.01  # move counts twice), or this share of them when more
NUMERIC_REL = 0.05  # ... and move an unbounded one by this share of its scale (a bf16 client
# vs an fp32 server on SmolLM2 moved bias.stereotype-margin, a log-likelihood margin of short
# sentences, by 1.8% of its scale at 32 items: bench/precision_items.py)
NUMERIC_ITEM_DRIFT = 0.02  # ... and every item of a bounded one by this share of its span
NUMERIC_ITEM_DRIFT_REL = 0.05  # ... and of an unbounded one by this share of its scale
EXACT_REL = 1e-6  # numbers fixed by a formula (the noise and stderr of a noised metric)

Probe = Callable[[Any, Mapping[str, ProbeSuite]], BehaviorProfile]


def client_suites(suites: Mapping[str, ProbeSuite], server_round: int, budget: int
                  ) -> dict[str, ProbeSuite]:
    """The suites a client probed in `server_round` under `budget` items per mode."""
    return sample_suites(suites, server_round, budget)


def unprobeable(node: int, server_round: int, error: Exception) -> Alarm:
    return Alarm("integrity", "unprobeable", "alarm", server_round, (node,),
                 {"check": "unprobeable", "error": str(error)[:300]},
                 f"Node {node}'s model could not be probed for the audit: {error}")


@dataclass(frozen=True)
class AuditScope:
    """What every report audited in one round is held to.

    suites: the sample the clients scored (`client_suites`); budget: the probe budget the
    server sent; n_audited: clients audited this round (Bonferroni); alpha: the audit's
    false-flag budget per round.
    """

    round: int
    budget: int
    suites: Mapping[str, ProbeSuite]
    n_audited: int = 1
    alpha: float = 0.01


@dataclass
class AuditResult:
    """The clients audited in a round and the alarms their reports raised."""

    audited: tuple[int, ...] = ()
    alarms: list[Alarm] = field(default_factory=list)

    @property
    def flagged(self) -> set[int]:
        return {c for a in self.alarms for c in a.clients}


def audit_round(replies: Sequence[tuple[int, Mapping[str, Any], Any]], probe: Probe, *,
                suites: Mapping[str, ProbeSuite], server_round: int, budget: int,
                fraction: float, rng: random.Random, alpha: float,
                always: Collection[int] = ()) -> AuditResult:
    """Audit a random `fraction` (at least one, when > 0) of the (node, report, model)
    replies, plus every reply from a node in `always` (e.g. clients on probation).

    `rng` is the server's own generator, so clients cannot choose to be audited or not.
    """
    forced = [r for r in replies if r[0] in always]
    rest = [r for r in replies if r[0] not in always]
    k = min(len(rest), max(1, round(fraction * len(rest)))) if fraction > 0 and rest else 0
    chosen = forced + (rng.sample(rest, k) if k else [])
    if not chosen:
        return AuditResult()
    scope = AuditScope(server_round, budget, client_suites(suites, server_round, budget),
                       len(chosen), alpha)
    result = AuditResult()
    for node, report, model in chosen:
        result.audited += (node,)
        try:
            measured = probe(model, scope.suites)
        except Exception as exc:  # replies were screened; still, never crash aggregation
            result.alarms.append(unprobeable(node, server_round, exc))
            continue
        result.alarms += audit_report(measured, report, node=node, scope=scope)
    return result


# ------------------------------------------------------------------------ one report


@dataclass(frozen=True)
class _Claim:
    """One reported metric, parsed."""

    value: float
    stderr: float
    n: int
    noise: float


def _number(report: Mapping[str, Any], key: str, default: float = math.nan) -> float:
    try:
        return float(report.get(key, default))
    except (TypeError, ValueError, OverflowError):
        return math.nan


def _claim(report: Mapping[str, Any], key: str) -> _Claim | None:
    """The four numbers of `key`; None when malformed (non-numeric, non-finite, bad n)."""
    numbers = [_number(report, key + s, 0.0) for s in ("", protocol.STDERR, protocol.NOISE)]
    n = _number(report, key + protocol.N, 0.0)
    if not all(math.isfinite(x) for x in [*numbers, n]) or n < 0 or not n.is_integer():
        return None
    return _Claim(numbers[0], numbers[1], int(n), numbers[2])


def numeric_tolerance(mv: MetricValue, span: float, n_items: int) -> tuple[float, float]:
    """(value, stderr) slack for scoring differences (bf16 vs fp32, kernels), from the server's
    own measurement. A bounded metric may move by k items of `n_items`, k = max(NUMERIC_ITEMS,
    ceil(NUMERIC_SHARE x n)): bf16 flips near-tie items, and their number grows with n (2 of
    300 on the tiny model). An unbounded one may move by `NUMERIC_REL` of its scale (max of 1,
    |value| and the per-item spread); moving every item by at most e moves the stderr by at
    most e / sqrt(n - 1)."""
    if math.isfinite(span):
        n = max(1, n_items)
        slack = span * max(NUMERIC_ITEMS, math.ceil(NUMERIC_SHARE * n)) / n
        return slack + NUMERIC_FLOOR, slack + NUMERIC_FLOOR
    scale = max(1.0, abs(mv.value), mv.stderr * math.sqrt(max(1, mv.n)))
    slack = NUMERIC_REL * scale
    return slack + NUMERIC_FLOOR, slack / math.sqrt(max(1, mv.n - 1)) + NUMERIC_FLOOR


def _item_count(metrics: Mapping[str, MetricValue], name: str) -> int:
    """The n whose items' flips move `name` by span/n. A mode's metric without per-group
    variants in a mode that reports some (fairness.group-gap) may be a function of group
    results: a flip in the smallest group moves it by span/n_group."""
    grouped = {k.partition("/")[0] for k in metrics if "/" in k}
    if grouped and "/" not in name and name not in grouped:
        sizes = [mv.n for k, mv in metrics.items() if "/" in k and mv.n > 0]
        if sizes:
            return min(sizes)
    return metrics[name].n


def _range(mode: str, name: str, suite: ProbeSuite | None) -> tuple[float, float]:
    """The declared (low, high) of a metric; (-inf, inf) when undeclared or unbounded."""
    declared = registry.metric(mode, name)
    try:
        return declared.span(suite) if declared is not None else (-math.inf, math.inf)
    except (ValueError, TypeError):
        return -math.inf, math.inf


def _chi2_cdf(x: float, k: int) -> float:
    """P(chi-square with k degrees of freedom <= x) (series of the lower incomplete gamma)."""
    if x <= 0:
        return 0.0
    a, z = k / 2, x / 2
    if z > a + 40 * math.sqrt(a) + 40:
        return 1.0
    term = total = 1.0 / a
    i = 1
    while term > total * 1e-15:
        term *= z / (a + i)
        total += term
        i += 1
    return min(1.0, math.exp(a * math.log(z) - z - math.lgamma(a)) * total)


def audit_report(measured: BehaviorProfile, report: Mapping[str, Any], *, node: int,
                 scope: AuditScope) -> list[Alarm]:
    """Alarms for every way the report disagrees with the server's measurement of the model
    or with its own declared privacy parameters (see the module docstring)."""
    alarm = _Alarms(node, scope.round)
    for key, expected in ((protocol.ROUND, scope.round), (protocol.PROBE_BUDGET, scope.budget)):
        echoed = _number(report, key)
        if echoed != expected:
            alarm.add(key.removeprefix(protocol.PREFIX), None,
                      {"reported": echoed if math.isfinite(echoed) else None,
                       "expected": expected},
                      f"echoes {key} = {report.get(key)!r:.40}, not {expected}: the report is not "
                      "about this round's sample")
    hidden = _number(report, protocol.PUBLIC_POST_PROCESSING, 1.0) == 0
    multiplier = _number(report, protocol.PRIVACY_NOISE_MULTIPLIER)
    compared, noised, unscored = [], [], []
    for mode, metrics in measured.metrics.items():
        headline = registry.find(mode)
        for name, mv in metrics.items():
            key = protocol.metric_key(mode, name)
            if key in report and mv.n > 0 and not math.isfinite(mv.value):
                unscored.append(key)
                continue
            if key not in report or mv.n <= 0:
                continue  # not probed by the client, or nothing to compare with
            claim = _claim(report, key)
            if claim is None:
                alarm.add("malformed", key, {k: str(report.get(key + s))[:40] for k, s in
                                             (("value", ""), ("stderr", protocol.STDERR),
                                              ("n", protocol.N), ("noise", protocol.NOISE))},
                          "sends numbers that are not finite, or a non-integer n")
                continue
            if claim.n == 0:
                continue  # absent: nothing claimed
            compared.append(key)
            if claim.n != mv.n:
                alarm.add("n", key, {"reported": claim.n, "measured": mv.n},
                          f"claims n = {claim.n} items, the sample has {mv.n}")
            lo, hi = _range(mode, name, scope.suites.get(mode))
            span = hi - lo
            value_tol, se_tol, items_tol = allowances(metrics, mode, name, scope.suites.get(mode))
            if not hidden:
                _check_clear(alarm, key, claim, mv, value_tol, se_tol)
                _check_items(alarm, key, report.get(key + protocol.ITEMS), mv, items_tol)
            elif headline is None or name != headline.headline.name:
                alarm.add("headline-only", key, {"reported": claim.value, "n": claim.n},
                          "reports a non-headline metric of a hidden model (public post-"
                          "processing 0): only each mode's headline is released, noised")
            else:
                noise = multiplier * span if multiplier > 0 else math.nan
                _check_noised(alarm, key, claim, mv, span, noise, multiplier)
                gap = claim.value - min(max(mv.value, lo), hi)  # the client clips, then noises
                noised.append((key, gap, noise, value_tol))
    if unscored:  # one alarm per client: a broken model makes every metric NaN
        alarm.add("unscorable", unscored[0], {"metrics": unscored[:20], "count": len(unscored)},
                  f"sent a model the server's probe scores as no number on {len(unscored)} "
                  "metrics (broken outputs): what it reports about them cannot be verified")
    if not compared:
        return alarm.alarms
    tests = max(1, scope.n_audited) * (len(compared) + 1)
    z_crit = NormalDist().inv_cdf(1 - scope.alpha / (2 * tests))
    for key, gap, noise, value_tol in noised:
        allowance = z_crit * noise + value_tol if math.isfinite(noise) else value_tol
        if abs(gap) > allowance:
            alarm.add("value", key, {"gap": gap, "allowance": allowance, "noise": noise,
                                     "z_crit": z_crit},
                      f"is {gap:+.4f} from the server's measurement; the declared noise "
                      f"({noise:.4g}) allows {allowance:.4f}")
    _check_noise_added(alarm, noised, scope.alpha / tests)
    return alarm.alarms


def _check_clear(alarm: _Alarms, key: str, claim: _Claim, mv: MetricValue, value_tol: float,
                 se_tol: float) -> None:
    """A clear metric is post-processing: no noise, the server's value and stderr."""
    if claim.noise != 0:
        alarm.add("noise", key, {"reported": claim.noise, "expected": 0.0},
                  f"declares noise {claim.noise:.4g} on a metric released in the clear "
                  "(public post-processing): it must be 0")
    gap = claim.value - mv.value
    if abs(gap) > value_tol:
        alarm.add("value", key, {"reported": claim.value, "measured": mv.value, "gap": gap,
                                 "allowance": value_tol},
                  f"= {claim.value:.4f} but the model scores {mv.value:.4f} on the same items "
                  f"(allowed gap {value_tol:.4f})")
    if abs(claim.stderr - mv.stderr) > se_tol:
        alarm.add("stderr", key, {"reported": claim.stderr, "measured": mv.stderr,
                                  "allowance": se_tol},
                  f"declares stderr {claim.stderr:.4f}; the same items give {mv.stderr:.4f}")


def allowances(metrics: Mapping[str, MetricValue], mode: str, name: str,
               suite: ProbeSuite | None) -> tuple[float, float, float]:
    """(value, stderr, mean per-item gap) a clear report of metric `name` may differ from the
    server's measurement `metrics[name]` by (bench/precision_items.py measures them)."""
    mv = metrics[name]
    lo, hi = _range(mode, name, suite)
    value_tol, se_tol = numeric_tolerance(mv, hi - lo, _item_count(metrics, name))
    return value_tol, se_tol, value_tol + item_drift(mv, hi - lo)


def item_drift(mv: MetricValue, span: float) -> float:
    """What scoring differences (bf16 vs fp32) may move one item on average: a share of the
    span of a bounded metric, else of the scale of an unbounded one (1, |value| or the
    per-item spread, whichever is largest)."""
    if math.isfinite(span):
        return NUMERIC_ITEM_DRIFT * span
    return NUMERIC_ITEM_DRIFT_REL * max(1.0, abs(mv.value), mv.stderr * math.sqrt(max(1, mv.n)))


def _check_items(alarm: _Alarms, key: str, items: Any, mv: MetricValue, allowance: float
                 ) -> None:
    """Per-item values decide the paired per-client test, so they are claims too: on average
    each may differ from the server's score of the same item by what the value may plus the
    small drift bf16 gives every item (absolute gaps do not cancel as the value's signed ones
    do). The screening already holds their mean to the value, so only their pattern is left
    to check: reshaping the items of a degraded model to look ordinary moves many of them."""
    if not isinstance(items, list) or mv.items is None or len(items) != len(mv.items) \
            or not items:
        return
    try:
        gap = sum(abs(float(a) - b) for a, b in zip(items, mv.items, strict=True)) / len(items)
    except (TypeError, ValueError, OverflowError):
        gap = math.inf
    if not gap <= allowance:
        alarm.add("items", key, {"mean_abs_gap": gap, "allowance": allowance},
                  f"sends per-item values {gap:.4f} away from the model's scores of the same "
                  f"items on average (allowed {allowance:.4f})")


def _check_noised(alarm: _Alarms, key: str, claim: _Claim, mv: MetricValue, span: float,
                  noise: float, multiplier: float) -> None:
    """The noise and stderr a hidden model's headline is released with."""
    if not math.isclose(claim.noise, noise, rel_tol=EXACT_REL):
        alarm.add("noise", key, {"reported": claim.noise, "expected": noise,
                                 "noise_multiplier": multiplier, "span": span},
                  f"declares noise {claim.noise:.4g}; noise multiplier {multiplier:.4g} x "
                  f"span {span:.4g} gives {noise:.4g}")
    bound = span / (2 * math.sqrt(mv.n))
    if not math.isclose(claim.stderr, bound, rel_tol=EXACT_REL, abs_tol=1e-12):
        alarm.add("stderr", key, {"reported": claim.stderr, "expected": bound},
                  f"declares stderr {claim.stderr:.4g}; a noised metric's is span / "
                  f"(2 sqrt(n)) = {bound:.4g}")


def _check_noise_added(alarm: _Alarms, noised: list[tuple[str, float, float, float]],
                       level: float) -> None:
    """Honest gaps of noised values are N(0, noise^2) (plus scoring slack, which only makes
    them larger): sum (gap / noise)^2 ~ chi-square(k). A sum far below it means the declared
    noise was never added, so the report's uncertainty is fake."""
    usable = [(gap, noise) for _, gap, noise, _ in noised if math.isfinite(noise) and noise > 0]
    if not usable:
        return
    stat = sum((gap / noise) ** 2 for gap, noise in usable)
    p = _chi2_cdf(stat, len(usable))
    if p <= level:
        alarm.add("noise-added", None, {"chi2": stat, "df": len(usable), "p": p,
                                        "level": level},
                  f"noised values sit too close to the server's measurement (chi-square "
                  f"{stat:.3g} on {len(usable)} df, p = {p:.2g} <= {level:.2g}): the declared "
                  "noise was not added")


class _Alarms:
    """Collects one client's integrity alarms, each naming its check and numbers."""

    def __init__(self, node: int, server_round: int) -> None:
        self.node, self.round = node, server_round
        self.alarms: list[Alarm] = []

    def add(self, check: str, key: str | None, numbers: dict[str, Any], what: str) -> None:
        metric = key.removeprefix(protocol.PREFIX) if key else check
        subject = f"{metric}" if key else "its report"
        self.alarms.append(Alarm(
            "integrity", metric, "alarm", self.round, (self.node,),
            {"check": check, **numbers},
            f"Integrity check '{check}' failed for node {self.node}: {subject} {what}."))
