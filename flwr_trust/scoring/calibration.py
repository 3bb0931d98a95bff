"""Calibration drift: expected calibration error and confidence where no answer exists.

The model's probability of each choice is the softmax of the choices' log-likelihoods. ECE uses
10 equal-width confidence bins (Guo et al. 2017) with a bootstrap standard error. Overconfidence
on unanswerable items is the mean top-choice probability there (1/k would be honest).
"""

from __future__ import annotations

import numpy as np

from flwr_trust.probes.suite import ProbeSuite
from flwr_trust.scoring.choices import choice_rows
from flwr_trust.scoring.encoding import choice_requests
from flwr_trust.scoring.engine import Scores
from flwr_trust.scoring.profile import MetricValue
from flwr_trust.scoring.stats import bootstrap_metric, mean_metric, softmax_rows

MODE = "calibration"
BINS = 10
METRICS = {
    "ece": ("higher", f"expected calibration error over {BINS} confidence bins"),
    "overconfidence": ("higher", "mean confidence minus accuracy on answerable items"),
    "unanswerable-confidence": ("higher", "mean top-choice probability on unanswerable items"),
}
requests = choice_requests


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
                                len(conf_a), "higher"),
        "overconfidence": mean_metric(conf_a - correct_a, "higher"),
        "unanswerable-confidence": mean_metric(np.asarray(unanswerable), "higher"),
    }
