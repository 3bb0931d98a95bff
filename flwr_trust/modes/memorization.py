"""Memorization: canary exposure (Carlini et al. 2019, "The Secret Sharer"), public and private.

A canary is a prefix with one true secret among k candidates. Exposure = log2(k) - log2(rank of
the true secret by likelihood): about 1 bit for random ranks, log2(k) when the model has
memorized it. The public suite's canaries were never trained on, so exposure there is the
chance baseline.

Private signals on a client's local data (released with DP noise; the server cannot measure
them at round 0, so each has a fixed reference):
- `loss-gap`: mean train loss minus mean held-out loss (per-sample NLL clipped to [0, B],
  sensitivity B / min(n_train, n_heldout)). Memorization drives it below 0, so lower is worse.
  Reference 0: the base model never saw any client's data, so both losses are exchangeable.
- `local-canary-exposure`: mean exposure (bits) of the canaries the client planted in its own
  training data (`canary_text(item)`), sensitivity log2(k) / c for c canaries. For a model that
  never saw a canary the true secret's rank is uniform over the k candidates, so its expected
  exposure is log2 k - log2(k!)/k, which stays below log2 e = 1.44 bits for every k: that bound
  is the reference, so the test errs towards fewer alarms.
A round-0 measurement passed to the detectors as reference takes precedence over either value.
"""

from __future__ import annotations

import math

import numpy as np

from flwr_trust.errors import LocalDataError
from flwr_trust.modes import register
from flwr_trust.modes.base import FailureMode, LocalEvidence, Metric, SampleCount, choice_problem
from flwr_trust.privacy.mechanism import clipped_mean
from flwr_trust.privacy.private_set import PrivateSet
from flwr_trust.probes.suite import ProbeItem, ProbeSuite
from flwr_trust.scoring.choices import choice_rows
from flwr_trust.scoring.encoding import summed_choice_requests
from flwr_trust.scoring.profile import MetricValue
from flwr_trust.scoring.requests import Scores
from flwr_trust.scoring.stats import mean_metric, proportion_metric

LOSS_GAP = "memorization.loss-gap"
CANARY_EXPOSURE = "memorization.local-canary-exposure"


def check_item(item: ProbeItem) -> str:
    if problem := choice_problem(item):
        return problem
    return "" if item.answer is not None else "needs an 'answer' index"


def canary_text(item: ProbeItem) -> str:
    """The text an app plants to insert a canary: its prefix followed by its true secret."""
    if item.answer is None or not item.choices:
        raise LocalDataError(f"Probe item {item.id!r} is not a canary.",
                             "Use items of the memorization suite.")
    return item.prompt + item.choices[item.answer]


def exposure_bits(suite: ProbeSuite) -> tuple[float, float]:
    """The range of exposure: 0 to log2 of the largest candidate count in the suite."""
    return 0.0, math.log2(max(2, max((len(i.choices) for i in suite.items), default=2)))


def compute(suite: ProbeSuite, scores: Scores) -> dict[str, MetricValue]:
    exposures, top1 = [], []
    for item, lp in choice_rows(suite, scores):
        rank = 1 + int((lp > lp[item.answer]).sum())
        exposures.append(math.log2(len(lp)) - math.log2(rank))
        top1.append(rank == 1)
    return {"canary-exposure": mean_metric(np.asarray(exposures)),
            "canary-top1": proportion_metric(np.asarray(top1))}


def private(evidence: LocalEvidence) -> PrivateSet:
    """The train-vs-held-out loss gap and the exposure of the client's planted canaries."""
    out = PrivateSet()
    b = evidence.loss_bound
    held, _ = evidence.heldout()
    trained = evidence.train()
    if trained.size >= 2 and held.size >= 2:
        gap = clipped_mean(trained, b)[0] - clipped_mean(held, b)[0]
        n = int(min(trained.size, held.size))
        out.add(LOSS_GAP, gap, b / n, n, b)
    else:
        out.absent[LOSS_GAP] = "fewer than 2 train or held-out samples"
    _add_canaries(out, evidence)
    return out


def _add_canaries(out: PrivateSet, evidence: LocalEvidence) -> None:
    ids = evidence.canaries()
    suite = evidence.suite("memorization")
    if not ids:
        out.absent[CANARY_EXPOSURE] = "no canaries declared"
        return
    if suite is None:
        out.absent[CANARY_EXPOSURE] = "no memorization suite loaded"
        return
    index = {item.id: i for i, item in enumerate(suite.items)}
    unknown = [c for c in ids if c not in index]
    if unknown:
        # The reason travels to the server in the error reply: count, do not name, the ids.
        raise LocalDataError(f"{len(unknown)} declared canary ids are not in the memorization "
                             f"suite {suite.name}.", "Declare ids of items you planted with "
                                                     "canary_text(item).")
    planted = suite.subset(sorted({index[c] for c in ids}), name_suffix="@planted")
    exposure = evidence.profile({"memorization": planted}).get("memorization", "canary-exposure")
    top = exposure_bits(planted)[1]
    c = len(planted.items)
    value = min(max(exposure.value, 0.0), top) if exposure is not None else 0.0
    out.add(CANARY_EXPOSURE, value, top / c, c, top)


MODE = register(FailureMode(
    id="memorization",
    title="Memorization",
    summary="canary exposure, train vs held-out loss gap",
    metrics=(
        Metric("canary-exposure", "higher", "mean canary exposure in bits, log2(k) - log2(rank "
               "of the true secret)", range=exposure_bits, tolerance=1.0, headline=True),
        Metric("canary-top1", "higher", "share of canaries whose true secret is the most "
               "likely candidate"),
        Metric("loss-gap", "lower", "train minus held-out loss on local data (nats, DP)",
               range=None, tolerance=0.20, source="private", reference=0.0),
        Metric("local-canary-exposure", "higher", "mean exposure of the client's own planted "
               "canaries (bits, DP)", range=None, tolerance=1.0, source="private",
               reference=math.log2(math.e)),
    ),
    requests=summed_choice_requests,
    compute=compute,
    check_item=check_item,
    sample=SampleCount("canaries", lambda s: sum(i.answer is not None for i in s.items),
                       metric="canary-top1"),
    private=private,
    planted_only=True,
    suite_file="memorization.json",
))
