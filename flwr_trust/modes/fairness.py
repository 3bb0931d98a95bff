"""Fairness collapse: group gaps on public probes and the worst-served client on private data.

Public part: the same QA task posed about different groups; per-group accuracy, the worst
group's accuracy, and the gap between best and worst group (bootstrap standard errors: a max-min
over groups has no closed form).

Private part: `local-loss` is each client's mean held-out loss on its own data (per-sample mean
token NLL clipped to [0, B], sensitivity B / n; per declared group B / n_group, the groups
released together as one statistic since they are disjoint). It has no server reference; it is
tested per client against median x (1 + tolerance), i.e. "the worst client's loss is at most
1 + tolerance times the median's". A client failing that test is a victim of the federation,
not a culprit: the alarm is population-level and names it in evidence["victims"], so a
quarantine gate never removes the clients the model already serves worst. With strongly
non-IID data the base model can exceed the default ratio already; raise the tolerance then.
"""

from __future__ import annotations

from collections import Counter

import numpy as np

from flwr_trust.modes import register
from flwr_trust.modes.base import FailureMode, LocalEvidence, Metric, SampleCount, choice_problem
from flwr_trust.privacy.mechanism import clipped_mean
from flwr_trust.privacy.private_set import PrivateSet
from flwr_trust.probes.suite import ProbeItem, ProbeSuite
from flwr_trust.scoring.choices import choice_rows
from flwr_trust.scoring.encoding import summed_choice_requests
from flwr_trust.scoring.profile import MetricValue, metric_key
from flwr_trust.scoring.requests import Scores
from flwr_trust.scoring.stats import bootstrap_metric, proportion_metric

LOCAL_LOSS = "fairness.local-loss"
GROUP_BLOCK = "fairness.local-loss/groups"  # the statistic holding all per-group losses


def check_item(item: ProbeItem) -> str:
    if problem := choice_problem(item):
        return problem
    return "" if item.answer is not None else "needs an 'answer' index"


def compute(suite: ProbeSuite, scores: Scores) -> dict[str, MetricValue]:
    rows = choice_rows(suite, scores)
    correct = np.asarray([int(np.argmax(lp)) == item.answer for item, lp in rows], dtype=float)
    groups = np.asarray([item.group for item, _ in rows])
    names = sorted(set(groups.tolist()))

    def group_accs(idx: np.ndarray) -> list[float]:
        g, c = groups[idx], correct[idx]
        return [float(c[g == name].mean()) for name in names if (g == name).any()]

    def gap(idx: np.ndarray) -> float:
        accs = group_accs(idx)
        return max(accs) - min(accs) if len(accs) > 1 else 0.0

    out = {"group-gap": bootstrap_metric(gap, len(correct)),
           "worst-group-accuracy": bootstrap_metric(lambda idx: min(group_accs(idx)),
                                                    len(correct)),
           "accuracy": proportion_metric(correct)}
    for name in names:
        out[f"accuracy/{metric_key(name)}"] = proportion_metric(correct[groups == name])
    return out


def private(evidence: LocalEvidence) -> PrivateSet:
    """The held-out local loss, overall and per declared group (see the module docstring)."""
    out = PrivateSet()
    b = evidence.loss_bound
    held, group_of = evidence.heldout()
    group_keys = [f"{LOCAL_LOSS}/{g}" for g in evidence.groups]
    if held.size < 2:
        out.absent |= dict.fromkeys([LOCAL_LOSS, *group_keys], "fewer than 2 held-out samples")
        return out
    mean, sens = clipped_mean(held, b)
    out.add(LOCAL_LOSS, mean, sens, int(held.size), b)
    present = [(key, held[group_of == g]) for key, g in zip(group_keys, evidence.groups,
                                                            strict=True)]
    present = [(key, sel) for key, sel in present if sel.size >= 1]
    out.absent |= {k: "no held-out sample of this group" for k in group_keys
                   if k not in dict(present)}
    if present:
        out.add_block(GROUP_BLOCK, [(key, *clipped_mean(sel, b), int(sel.size))
                                    for key, sel in present], b)
    return out


def _smallest_group(suite: ProbeSuite) -> int:
    return min(Counter(item.group for item in suite.items if item.choices).values(), default=0)


MODE = register(FailureMode(
    id="fairness",
    title="Fairness collapse",
    summary="utility gap across groups and clients",
    metrics=(
        Metric("group-gap", "higher", "accuracy of the best group minus the worst group",
               tolerance=0.10, headline=True),
        Metric("worst-group-accuracy", "lower", "accuracy of the worst group", tolerance=0.05),
        Metric("accuracy", "lower", "accuracy over all items; also per group", per_group=True),
        Metric("local-loss", "higher", "a client's mean held-out loss on its local data (nats, "
               "DP); tolerance is on the ratio to the median client", range=None,
               tolerance=0.25, source="private", per_group=True, victim=True),
    ),
    requests=summed_choice_requests,
    compute=compute,
    check_item=check_item,
    sample=SampleCount("items, smallest group", _smallest_group,
                       metric="worst-group-accuracy"),
    private=private,
    suite_file="fairness.json",
))
