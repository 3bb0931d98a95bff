"""Turn profiles and private releases into the flat ``trust.*`` numbers of a reply.

Every reply of a round must carry the same MetricRecord keys (Flower's FedAvg refuses to
aggregate otherwise), so a metric that is not available this round is still reported absent
(``.n = 0``, flwr_trust.protocol.absent) and a ``trust.status.*`` code says why.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping

from flwr_trust import modes as registry
from flwr_trust import protocol
from flwr_trust.privacy.mechanism import Noised, Statistic
from flwr_trust.privacy.private_set import PrivateMetric
from flwr_trust.probes.suite import ProbeSuite
from flwr_trust.protocol import Number, absent, entry
from flwr_trust.scoring.profile import BehaviorProfile


def metric_names(profile: BehaviorProfile) -> list[tuple[str, str]]:
    return [(mode, name) for mode, ms in profile.metrics.items() for name in ms]


def delta_metrics(outgoing: BehaviorProfile, incoming: BehaviorProfile,
                  released: Mapping[str, Number] | None = None) -> dict[str, Number]:
    """trust.delta.<mode>.<metric>: outgoing minus incoming value (0 when either is absent).

    `released`: the outgoing values as reported (noised ones when the outgoing model is private),
    so the delta is post-processing of what was released.
    """
    out: dict[str, Number] = {}
    for mode, name in metric_names(outgoing):
        key = protocol.metric_key(mode, name)
        inc = incoming.get(mode, name)
        if released is not None:
            n_out = released.get(key + protocol.N, 0)
            val_out = float(released.get(key, math.nan)) if n_out else math.nan
        else:
            mv = outgoing.metrics[mode][name]
            val_out = mv.value if mv.n > 0 else math.nan
        ok = inc is not None and inc.n > 0 and math.isfinite(inc.value) and math.isfinite(val_out)
        out[protocol.metric_key(mode, name, protocol.DELTA_PREFIX)] = \
            float(val_out - inc.value) if ok else 0.0
    return out


def hidden_statistics(profile: BehaviorProfile, suites: Mapping[str, ProbeSuite],
                      prefix: str = "") -> tuple[list[PrivateMetric], list[Statistic]]:
    """The headline metric of each mode of a model the server does not see, clipped to its
    declared range, as a private statistic whose sensitivity is that whole range (one per
    mode: a hidden model may move all of them at once)."""
    metrics, stats = [], []
    for mode_id in registry.ids():
        headline = registry.get(mode_id).headline
        mv = profile.get(mode_id, headline.name)
        if mv is None or mv.n <= 0 or not math.isfinite(mv.value):
            continue
        lo, hi = headline.span(suites.get(mode_id))
        span = hi - lo
        key = f"{prefix}{mode_id}.{headline.name}"
        stats.append(Statistic.scalar(key, min(max(mv.value, lo), hi), span))
        metrics.append(PrivateMetric(key, mv.n, span / (2 * math.sqrt(mv.n)), key))
    return metrics, stats


def personal_keys(modes: Iterable[str]) -> list[str]:
    """The keys of a personalized model's report: each probed mode's headline."""
    return [f"{protocol.PERSONAL}.{m}.{registry.get(m).headline.name}" for m in modes]


def private_metrics(keys: Iterable[str], metrics: Iterable[PrivateMetric],
                    released: Mapping[str, Noised]) -> dict[str, Number]:
    """trust.<key> entries for every expected key: noised when released, else absent."""
    by_key = {m.key: m for m in metrics}
    out: dict[str, Number] = {}
    for key in keys:
        metric = by_key.get(key)
        noised = released.get(metric.stat) if metric is not None else None
        if metric is None or noised is None:
            out |= absent(protocol.PREFIX + key)
        else:
            out |= entry(protocol.PREFIX + key, float(noised.value[metric.index]),
                         metric.stderr_bound, metric.n, float(noised.noise_std[metric.index]))
    return out
