"""Behavioral detectors: population, trend and per-client tests with a bounded false-alarm rate.

Three families of one-sided tests share the per-run false-alarm budget `alpha` (40/40/20):
  level:  per (mode, metric) and round, H0: degradation <= tolerance, on the server's exact probe
          of the candidate model or, when it has none, the median of the client reports;
  trend:  the same H0 for the mean degradation over the last W rounds (catches slow drifts);
  client: per client, H0: its report is worse than the clients' median by at most the tolerance.
Within a round a family is Bonferroni-corrected over its tests; across rounds its k-th look gets
an even share of alpha_family over the planned rounds (a remainder kept for later rounds), or
alpha_family * 6 / (pi^2 k^2) when open-ended (statistics.spend): both sum to <= alpha_family.
By the union bound (no independence needed) P(any false alarm in the run) <= alpha.
docs/detection.md has the math; each mode's declaration (flwr_trust.modes) says which metrics
are watched and how.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from flwr_trust import modes as registry
from flwr_trust.detect.alarm import Alarm, behavior_message
from flwr_trust.detect.config import DetectorConfig, Family
from flwr_trust.detect.margin import MarginChange, MarginClients, paired_client_test, paired_level
from flwr_trust.detect.monitor_state import MonitorState
from flwr_trust.detect.paired import PairedChange, PairedClients, items_of, same_length
from flwr_trust.detect.statistics import (
    ClientStats,
    capped_sampling,
    critical_z,
    spend,
    upper_p,
)
from flwr_trust.modes.base import Metric
from flwr_trust.protocol import Observation

WARN_Z = 1.645  # one-sided 5%, unadjusted: warnings are hints for people and never gate
SPREAD_FLOOR = 0.25  # client spread is floored at this fraction of the tolerance (no 0-division)
_TINY = 1e-12


# --------------------------------------------------------------------------------------------
# results and state


@dataclass
class DetectionResult:
    """Outcome of one round.

    alarms:          every Alarm and warning (severity says which); gates act on "alarm" only
    population:      mode -> metric -> value, stderr, source ("server" | "clients"), reference,
                     degradation (positive = worse, None without a reference), tolerance,
                     client_median, client_spread (1.4826 MAD), n_clients; with paired
                     items also scale ("margin" | "rate") and, on the margin scale,
                     logit_shift, logit_se, logit_tolerance, z_margin, z_rate, rate_se
    flagged_clients: nodes named by per-client alarms (quarantine candidates)
    ignored:         NaN/Inf (or negative-stderr) numbers that were skipped
    """

    round: int
    alarms: list[Alarm] = field(default_factory=list)
    population: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    flagged_clients: set[int] = field(default_factory=set)
    ignored: int = 0

    @property
    def alarmed(self) -> bool:
        return any(a.severity == "alarm" for a in self.alarms)

    def to_json(self) -> dict[str, Any]:
        return {"round": self.round, "alarms": [a.to_json() for a in self.alarms],
                "population": self.population, "flagged_clients": sorted(self.flagged_clients),
                "ignored": self.ignored}


# --------------------------------------------------------------------------------------------
# the engine


def detect_round(
    reference: Mapping[str, Mapping[str, Any]] | Any,
    global_now: Mapping[str, Mapping[str, Any]] | Any | None,
    client_reports: Mapping[int, Mapping[str, Mapping[str, Any]]] | None,
    *,
    round: int,
    config: DetectorConfig | None = None,
    state: MonitorState | None = None,
) -> DetectionResult:
    """Run the level, trend and per-client tests of one round.

    reference:      mode -> metric -> MetricValue (or a BehaviorProfile): the round-0 model
    global_now:     the server's exact probe of the aggregated candidate, if it has one
    client_reports: node -> mode -> metric -> Observation (MetricValue or a float also accepted)
    state:          sequential state, updated in place (BehaviorMonitor holds it). Without it
                    there is no trend test and the look index is the round number, which is
                    valid when detect_round is called at most once per round.
    """
    rnd = _Round(config or DetectorConfig(), round, state)
    ref, now = _as_modes(reference), _as_modes(global_now)
    reports = {n: _as_modes(r) for n, r in (client_reports or {}).items()}
    for mode in rnd.cfg.modes:
        by_metric: dict[Any, dict[int, Any]] = {}  # metric -> node -> report, in one pass
        for node, r in reports.items():
            for metric, o in r.get(mode, {}).items():
                by_metric.setdefault(metric, {})[node] = o
        mode_ref, mode_now = ref.get(mode, {}), now.get(mode, {})
        for metric in sorted(set(mode_ref) | set(mode_now) | set(by_metric), key=str):
            spec = registry.watched(mode, metric) if isinstance(metric, str) else None
            if spec is not None:
                rnd.metric(mode, metric, spec, mode_ref.get(metric), mode_now.get(metric),
                           by_metric.get(metric, {}))
    return rnd.finish()


class BehaviorMonitor:
    """The detectors of one run: the round-0 reference, the config and the sequential state."""

    def __init__(self, reference: Mapping[str, Mapping[str, Any]] | Any,
                 config: DetectorConfig | None = None) -> None:
        self.reference = {m: dict(ms) for m, ms in _as_modes(reference).items()}
        self.config = config or DetectorConfig()
        self.state = MonitorState()

    def observe(self, round: int, global_now: Mapping[str, Mapping[str, Any]] | Any | None = None,
                client_reports: Mapping[int, Mapping[str, Mapping[str, Any]]] | None = None,
                ) -> DetectionResult:
        """Test one round. Every call is a new look, so re-probing a round stays within alpha."""
        return detect_round(self.reference, global_now, client_reports, round=round,
                            config=self.config, state=self.state)

    def reset_trend(self) -> None:
        """Forget the trend history (e.g. after a rollback); spent alpha stays spent."""
        self.state.history.clear()


# --------------------------------------------------------------------------------------------
# internals


def _as_modes(x: Any) -> dict[str, Mapping[str, Any]]:
    """mode -> metric mapping from a mapping or anything with `.metrics` (BehaviorProfile)."""
    x = getattr(x, "metrics", x)
    if not isinstance(x, Mapping):
        return {}
    return {m: ms for m, ms in x.items() if type(ms) is dict or isinstance(ms, Mapping)}


def _triple(o: Any) -> tuple[float, float, float] | None:
    """(value, stderr, noise_std) of an Observation / MetricValue / number; None if unusable."""
    try:
        if type(o) is Observation:  # the common case first: a round has clients x metrics
            v, se, ns = o[0], o[1], o[3]
        elif isinstance(o, int | float):
            v, se, ns = o, 0.0, 0.0
        else:
            v = o.value
            se, ns = getattr(o, "stderr", 0.0) or 0.0, getattr(o, "noise_std", 0.0) or 0.0
        # unusable: NaN/Inf, a negative spread, or beyond any metric's scale (squares overflow)
        if max(abs(v), se, ns) <= 1e12 and se >= 0 and ns >= 0:
            return float(v), float(se), float(ns)
    except (AttributeError, TypeError, ValueError):
        pass
    return None


def _finite_value(o: Any) -> bool:
    """Is the measurement absent (None, or n = 0) or its value a number on any metric's scale
    (finite, |v| <= 1e12 as in `_triple`), its stderr aside?"""
    if getattr(o, "n", 1) == 0:
        return True
    v = o if o is None or isinstance(o, int | float) else \
        (o[0] if type(o) is Observation else getattr(o, "value", None))
    return v is None or (isinstance(v, int | float) and abs(v) <= 1e12)


@dataclass
class _Test:
    """A population-level test statistic waiting for the round's Bonferroni threshold."""

    mode: str
    metric: str
    z: float
    df: float
    evidence: dict[str, Any]


@dataclass
class _ClientBlock:
    """One metric's per-client tests: z_i, computed once the round's threshold is known."""

    mode: str
    metric: str
    spec: Metric
    tol: float
    stats: ClientStats
    sign: float
    margin: float
    paired: PairedClients | MarginClients | None = None  # the clients that sent items


class _Round:
    """Collects one round's tests, then thresholds each family at once (Bonferroni)."""

    def __init__(self, cfg: DetectorConfig, rnd: int, state: MonitorState | None) -> None:
        self.cfg, self.rnd, self.state = cfg, rnd, state
        self.tests: dict[str, list[_Test]] = {"level": [], "trend": []}
        self.blocks: list[_ClientBlock] = []
        self.result = DetectionResult(rnd)

    def _usable(self, o: Any) -> tuple[float, float, float] | None:
        t = _triple(o)
        if t is None and o is not None:
            self.result.ignored += 1
        return t

    def metric(self, mode: str, metric: str, spec: Metric, ref_obs: Any, now_obs: Any,
               client_obs: Mapping[int, Any]) -> None:
        tol = self.cfg.tolerance(mode, metric)
        sign = spec.sign
        ref_t, now_t = self._usable(ref_obs), self._usable(now_obs)
        if now_t is None and ref_t is not None and not _finite_value(now_obs):
            # The server's own measurement of the model is no number (e.g. an aggregate of
            # huge but finite updates scores NaN): a model that cannot be scored fails.
            ev = {"test": "unscorable", "value": None, "reference": ref_t[0]}
            self.result.alarms.append(Alarm(mode, metric, "alarm", self.rnd, (), ev,
                                            f"{mode}.{metric}: the model's probe gave no "
                                            "finite number (broken outputs)."))
            return
        nodes, xs, noise, sampling, dp = [], [], [], [], []
        items: dict[int, Any] = {}
        for node, o in client_obs.items():
            t = _triple(o)
            if t is None:
                self.result.ignored += o is not None
                continue
            nodes.append(node)
            xs.append(t[0])
            noise.append(math.hypot(t[1], t[2]))
            sampling.append(t[1])
            dp.append(t[2])
            if t[2] == 0 and (per_item := items_of(o)) is not None:
                items[node] = per_item
        sampling = capped_sampling(sampling, [n in items or dp[i] > 0
                                              for i, n in enumerate(nodes)])
        noise = [math.hypot(s, d) for s, d in zip(sampling, dp, strict=True)]
        stats = (ClientStats.of(nodes, xs, noise, SPREAD_FLOOR * tol, sampling)
                 if len(xs) >= self.cfg.min_clients else None)
        paired: PairedChange | MarginChange | None = None
        margin_scale = self.cfg.paired_scale == "margin" and spec.unit_interval
        if now_t is not None:
            value, se, df, source = now_t[0], math.hypot(now_t[1], now_t[2]), math.inf, "server"
            paired = paired_level(items_of(now_obs), items_of(ref_obs), sign, tol,
                                  margin_scale)
            if paired is not None:  # the same items on both models: the paired stderr
                se, df = paired.se, paired.df
        elif stats is not None:
            value, se, df, source = stats.median, stats.median_se, stats.df, "clients"
        else:
            return
        # other items than the reference's: its sampling error is part of every comparison
        ref_se = ref_t[1] if (mode in self.cfg.reference_sampled and source == "clients"
                              and ref_t is not None) else 0.0
        reference = ref_t[0] if ref_t is not None else spec.reference
        d = None if reference is None else sign * (value - reference)
        self.result.population.setdefault(mode, {})[metric] = {
            "value": value, "stderr": se, "source": source, "reference": reference,
            "degradation": d, "tolerance": tol,
            "client_median": stats.median if stats else None,
            "client_spread": stats.spread if stats else None,
            "n_clients": len(xs),
        } | ({} if paired is None else paired.evidence(tol))  # per-item evidence, e.g. logits
        if stats is not None:  # margin: the tolerance, relative to the median for victims
            margin = tol * abs(stats.median) if spec.victim else tol
            # The paired test over the clients that sent usable items, the unpaired one for
            # the rest: one reply without items cannot switch everyone to the weaker test.
            pc = None if spec.victim else \
                paired_client_test(same_length(items), sign, self.cfg.min_clients,
                                   margin_scale)
            self.blocks.append(_ClientBlock(mode, metric, spec, tol, stats, sign, margin, pc))
        if d is None or spec.victim:
            return
        se_level = math.hypot(se, ref_se)
        ev = {"test": "level", "value": value, "reference": reference, "degradation": d,
              "tolerance": tol, "se": se_level, "source": source, "df": _json_df(df),
              "paired_items": paired.n if paired is not None else 0}
        if ref_se:
            ev["reference_se"] = ref_se
        z = (d - tol) / max(se_level, _TINY)
        if paired is not None:  # on the margin scale: both statistics must exceed the threshold
            z = min(z, paired.z(tol))
            ev |= paired.evidence(tol)
        self.tests["level"].append(_Test(mode, metric, z, df, ev))
        if self.state is not None:
            self._trend(mode, metric, d, se, df, tol, ref_se)

    def _trend(self, mode: str, metric: str, d: float, se: float, df: float, tol: float,
               ref_se: float = 0.0) -> None:
        hist = self.state.history.setdefault((mode, metric), [])  # type: ignore[union-attr]
        hist.append((self.rnd, d, se, df))
        w = self.cfg.trend_window
        del hist[:-w]
        if len(hist) < w:
            return
        ses = [h[2] for h in hist]
        rho = self.cfg.trend_rho
        se_w = math.sqrt((1 - rho) * sum(s * s for s in ses) + rho * sum(ses) ** 2) / w
        se_w = math.hypot(se_w, ref_se)  # one reference for every round of the window
        mean = sum(h[1] for h in hist) / w
        ev = {"test": "trend", "window": [hist[0][0], hist[-1][0]], "mean_degradation": mean,
              "degradation": d, "tolerance": tol, "se": se_w}
        df_w = min(h[3] for h in hist)  # the least certain round's df: the safe side
        ev["df"] = _json_df(df_w)
        self.tests["trend"].append(_Test(mode, metric, (mean - tol) / max(se_w, _TINY), df_w, ev))

    def _look(self, family: Family) -> int:
        if self.state is None:
            return max(self.rnd, 1)
        self.state.looks[family] += 1
        return self.state.looks[family]

    def finish(self) -> DetectionResult:
        for family in ("level", "trend"):
            tests = self.tests[family]
            if tests:
                self._population_family(family, tests)  # type: ignore[arg-type]
        if self.blocks:
            self._client_family()
        return self.result

    def _budget(self, family: Family, m: int) -> dict[str, Any]:
        look = self._look(family)
        alpha_t = spend(self.cfg.family_alpha(family), look, self.cfg.horizon or 0)
        return {"family_alpha": self.cfg.family_alpha(family), "alpha_t": alpha_t,
                "look": look, "n_tests": m, "level": alpha_t / m}

    def _p_adj(self, p: float, b: dict[str, Any]) -> float:
        """Bonferroni- and spending-adjusted p: alarm iff p_adj <= family_alpha."""
        return min(1.0, p * b["n_tests"] * b["family_alpha"] / b["alpha_t"])

    def _population_family(self, family: Family, tests: list[_Test]) -> None:
        b = self._budget(family, len(tests))
        z_normal = critical_z(b["level"])  # t quantiles are never below it: a cheap pre-filter
        for t in tests:
            warn = family == "level" and t.z > WARN_Z
            if t.z <= z_normal and not warn:
                continue
            p = upper_p(t.z, t.df)
            alarm = p <= b["level"]
            if not (alarm or warn):
                continue
            ev = t.evidence | {"z": t.z, "z_crit": critical_z(b["level"], t.df),
                               "p_value": self._p_adj(p, b)} | _public(b)
            sev = "alarm" if alarm else "warning"
            self.result.alarms.append(Alarm(t.mode, t.metric, sev, self.rnd, (), ev,
                                            behavior_message(t.mode, t.metric, ev, sev)))

    def _client_family(self) -> None:
        b = self._budget("client", sum(len(blk.stats.x) for blk in self.blocks))
        for blk in self.blocks:
            s = blk.stats
            z_df = [(z, math.inf) for z in s.outlier_z(blk.sign, blk.margin)]
            if blk.paired is not None:  # per-item excess over the clients' per-item median
                zs = dict(zip(blk.paired.nodes, blk.paired.z(blk.margin), strict=True))
                # ... over those that sent items, who may be few: a paired hit also needs the
                # value itself beyond the margin from every client's median (two colluding
                # item-senders among DP-noised clients otherwise set the others' reference)
                z_df = [((zs[n] if blk.sign * (s.x[i] - s.median) > blk.margin else -math.inf),
                         blk.paired.df) if n in zs else z_df[i] for i, n in enumerate(s.nodes)]
            crit = {df: critical_z(b["level"], df) for df in {d for _, d in z_df}}
            hits = sorted(((z, i) for i, (z, df) in enumerate(z_df) if z > crit[df]),
                          reverse=True)
            for z, i in hits:
                df = z_df[i][1]
                z_crit = crit[df]
                node = s.nodes[i]
                paired = blk.paired is not None and node in blk.paired.nodes
                ev = {"test": "victim" if blk.spec.victim else "client", "client": node,
                      "value": s.x[i], "client_median": s.median, "client_spread": s.spread,
                      "noise": s.noise[i], "margin": blk.margin, "tolerance": blk.tol,
                      "n_clients": len(s.nodes), "z": z, "z_crit": z_crit,
                      "paired_items": blk.paired.n_items if paired else 0,
                      "scale": _scale(blk.paired if paired else None),
                      "p_value": self._p_adj(upper_p(z, df), b)} | _public(b)
                if blk.spec.victim:  # a fairness victim: population finding, nobody quarantined
                    ev["victims"] = [s.nodes[h[1]] for h in hits]
                    clients: tuple[int, ...] = ()
                else:
                    clients = (node,)
                    self.result.flagged_clients.add(node)
                message = behavior_message(blk.mode, blk.metric, ev, "alarm")
                self.result.alarms.append(Alarm(blk.mode, blk.metric, "alarm", self.rnd, clients,
                                                ev, message))
                if blk.spec.victim:
                    break  # one population alarm per metric names all victims


def _public(b: dict[str, Any]) -> dict[str, Any]:
    return {k: b[k] for k in ("alpha_t", "family_alpha", "look", "n_tests")}


def _scale(paired: PairedClients | MarginClients | None) -> str | None:
    """Which paired statistic a per-client test used (None: unpaired)."""
    return None if paired is None else "margin" if isinstance(paired, MarginClients) else "rate"


def _json_df(df: float) -> float | None:
    return None if math.isinf(df) else float(df)
