"""Turn profiles and private releases into the flat ``trust.*`` numbers of a reply.

Every reply of a round must carry the same MetricRecord keys (Flower's FedAvg refuses to
aggregate otherwise), so a metric that is not available this round is still reported, with
``.n = 0`` (value, stderr and noise 0) - "absent" - and a ``trust.status.*`` code says why.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from flwr_trust.privacy.mechanism import Noised, Statistic
from flwr_trust.probes.suite import ProbeSuite
from flwr_trust.scoring.profile import BehaviorProfile

Number = int | float

# trust.status.<part> codes (docs/protocol.md).
STATUS = {"ok": 0, "not-configured": 1, "no-local-data": 2, "budget-exhausted": 3,
          "too-few-samples": 4, "model-unavailable": 5}

# The one metric per mode released when the model is hidden from the server, with its range
# (the sensitivity of a hidden model's metric is its whole range). None: log2(#candidates).
HEADLINE: dict[str, tuple[str, float, float | None]] = {
    "bias": ("stereotype-pref", 0.0, 1.0),
    "fairness": ("group-gap", 0.0, 1.0),
    "alignment": ("refusal-rate", 0.0, 1.0),
    "capability": ("accuracy", 0.0, 1.0),
    "calibration": ("ece", 0.0, 1.0),
    "memorization": ("canary-exposure", 0.0, None),
}


@dataclass(frozen=True)
class PrivateMetric:
    """One reported private metric: coordinate `index` of the statistic named `stat`."""

    key: str  # reported as trust.<key>
    n: int
    stderr_bound: float  # a public bound on its sampling stderr: range / (2 sqrt(n))
    stat: str
    index: int = 0


def entry(key: str, value: float, stderr: float, n: int, noise: float = 0.0
          ) -> dict[str, Number]:
    """The four numbers of one metric; a non-finite value is reported absent (n = 0)."""
    if not math.isfinite(value) or n <= 0:
        return absent(key)
    return {key: float(value), f"{key}.stderr": float(stderr) if math.isfinite(stderr) else 0.0,
            f"{key}.n": int(n), f"{key}.noise": float(noise)}


def absent(key: str) -> dict[str, Number]:
    return {key: 0.0, f"{key}.stderr": 0.0, f"{key}.n": 0, f"{key}.noise": 0.0}


def metric_names(profile: BehaviorProfile) -> list[tuple[str, str]]:
    return [(mode, name) for mode, ms in profile.metrics.items() for name in ms]


def clear_metrics(profile: BehaviorProfile, prefix: str = "trust.") -> dict[str, Number]:
    """Every metric of a profile as released post-processing (noise 0)."""
    out: dict[str, Number] = {}
    for mode, name in metric_names(profile):
        mv = profile.metrics[mode][name]
        out |= entry(f"{prefix}{mode}.{name}", mv.value, mv.stderr, mv.n)
    return out


def delta_metrics(outgoing: BehaviorProfile, incoming: BehaviorProfile,
                  released: Mapping[str, Number] | None = None) -> dict[str, Number]:
    """trust.delta.<mode>.<metric>: outgoing minus incoming value (0 when either is absent).

    `released`: the outgoing values as reported (noised ones when the outgoing model is private),
    so the delta is post-processing of what was released.
    """
    out: dict[str, Number] = {}
    for mode, name in metric_names(outgoing):
        key = f"{mode}.{name}"
        inc = incoming.get(mode, name)
        if released is not None:
            n_out = released.get(f"trust.{key}.n", 0)
            val_out = float(released.get(f"trust.{key}", math.nan)) if n_out else math.nan
        else:
            mv = outgoing.metrics[mode][name]
            val_out = mv.value if mv.n > 0 else math.nan
        ok = inc is not None and inc.n > 0 and math.isfinite(inc.value) and math.isfinite(val_out)
        out[f"trust.delta.{key}"] = float(val_out - inc.value) if ok else 0.0
    return out


def hidden_statistics(profile: BehaviorProfile, suites: Mapping[str, ProbeSuite],
                      prefix: str = "") -> tuple[list[PrivateMetric], list[Statistic]]:
    """The headline metric of each mode of a model the server does not see, clipped to its
    range, as a private statistic whose sensitivity is that whole range (one per mode: a
    hidden model may move all of them at once)."""
    metrics, stats = [], []
    for mode, (name, lo, hi) in HEADLINE.items():
        mv = profile.get(mode, name)
        if mv is None or mv.n <= 0 or not math.isfinite(mv.value):
            continue
        if hi is None:
            k = max((len(i.choices) for i in suites[mode].items), default=2)
            hi = math.log2(max(k, 2))
        span = hi - lo
        key = f"{prefix}{mode}.{name}"
        stats.append(Statistic.scalar(key, min(max(mv.value, lo), hi), span))
        metrics.append(PrivateMetric(key, mv.n, span / (2 * math.sqrt(mv.n)), key))
    return metrics, stats


def private_metrics(keys: Iterable[str], metrics: Iterable[PrivateMetric],
                    released: Mapping[str, Noised]) -> dict[str, Number]:
    """trust.<key> entries for every expected key: noised when released, else absent."""
    by_key = {m.key: m for m in metrics}
    out: dict[str, Number] = {}
    for key in keys:
        metric = by_key.get(key)
        noised = released.get(metric.stat) if metric is not None else None
        if metric is None or noised is None:
            out |= absent(f"trust.{key}")
        else:
            out |= entry(f"trust.{key}", float(noised.value[metric.index]), metric.stderr_bound,
                         metric.n, float(noised.noise_std[metric.index]))
    return out
