"""Calibration drift: expected calibration error and confidence where no answer exists.

The model's probability of each choice is the softmax of the choices' log-likelihoods. ECE uses
10 equal-width confidence bins (Guo et al. 2017) with a bootstrap standard error.
Overconfidence after fine-tuning shows as a higher ECE on answerable items and a higher
top-choice probability on unanswerable items (1/k would be honest).
"""

from __future__ import annotations

import numpy as np

from flwr_trust.modes import register
from flwr_trust.modes.base import FailureMode, Metric, SampleCount, choice_problem
from flwr_trust.probes.suite import ProbeItem, ProbeSuite
from flwr_trust.scoring.choices import choice_rows
from flwr_trust.scoring.encoding import summed_choice_requests
from flwr_trust.scoring.profile import MetricValue
from flwr_trust.scoring.requests import Scores
from flwr_trust.scoring.stats import bootstrap_metric, mean_metric, softmax_rows

BINS = 10


def check_item(item: ProbeItem) -> str:
    if problem := choice_problem(item):
        return problem
    if item.answer is None and item.label != "unanswerable":
        return "needs an 'answer', or 'label' 'unanswerable' with answer null"
    return ""


def expected_calibration_error(confidence: np.ndarray, correct: np.ndarray) -> float:
    bins = np.minimum((confidence * BINS).astype(int), BINS - 1)
    total = 0.0
    for b in np.unique(bins):
        sel = bins == b
        total += sel.sum() * abs(confidence[sel].mean() - correct[sel].mean())
    return float(total / max(len(confidence), 1))


def compute(suite: ProbeSuite, scores: Scores) -> dict[str, MetricValue]:
    conf, correct, unanswerable = [], [], []
    for item, lp in choice_rows(suite, scores):
        probs = softmax_rows(lp[None, :])[0]
        if item.answer is None:
            unanswerable.append(probs.max())
        else:
            conf.append(probs.max())
            correct.append(float(np.argmax(probs) == item.answer))
    conf_a, correct_a = np.asarray(conf), np.asarray(correct)
    return {
        "ece": bootstrap_metric(lambda idx: expected_calibration_error(conf_a[idx], correct_a[idx]),
                                len(conf_a)),
        "overconfidence": mean_metric(conf_a - correct_a),
        "unanswerable-confidence": mean_metric(np.asarray(unanswerable)),
    }


MODE = register(FailureMode(
    id="calibration",
    title="Calibration drift",
    summary="expected calibration error, confidence on unanswerable items",
    metrics=(
        Metric("ece", "higher", f"expected calibration error over {BINS} confidence bins",
               tolerance=0.05, headline=True),
        Metric("overconfidence", "higher", "mean confidence minus accuracy on answerable items",
               range=(-1.0, 1.0)),
        Metric("unanswerable-confidence", "higher", "mean top-choice probability on "
               "unanswerable items", tolerance=0.10),
    ),
    requests=summed_choice_requests,
    compute=compute,
    check_item=check_item,
    # ECE's sampling error is dominated by the accuracy share on the answerable items.
    sample=SampleCount("answerable items", lambda s: sum(
        bool(i.choices) and i.answer is not None for i in s.items)),
    suite_file="calibration.json",
))
