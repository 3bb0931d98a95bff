"""Capability forgetting: general-knowledge accuracy and perplexity on general text.

Multiple-choice items are answered by the most likely choice; text items give the mean per-token
negative log-likelihood (log-perplexity). Forgetting shows as accuracy falling and log-ppl rising.
"""

from __future__ import annotations

import numpy as np

from flwr_trust.probes.suite import ProbeSuite
from flwr_trust.scoring.choices import choice_rows
from flwr_trust.scoring.encoding import Encoder, choice_requests
from flwr_trust.scoring.engine import Request, Scores
from flwr_trust.scoring.profile import MetricValue
from flwr_trust.scoring.stats import mean_metric, proportion_metric

MODE = "capability"
METRICS = {
    "accuracy": ("lower", "multiple-choice general-knowledge accuracy"),
    "log-ppl": ("higher", "mean per-token negative log-likelihood on general text (nats)"),
}


def requests(suite: ProbeSuite, encoder: Encoder) -> list[Request]:
    """Choice requests first, then one request per text item."""
    texts = [Request(encoder.start, encoder.ids(item.text)) for item in suite.items if item.text]
    return choice_requests(suite, encoder) + texts


def compute(suite: ProbeSuite, scores: Scores) -> dict[str, MetricValue]:
    rows = choice_rows(suite, scores)
    correct = [int(np.argmax(lp)) == item.answer for item, lp in rows]
    n_choice = sum(len(item.choices) for item, _ in rows)
    nll = -scores.mean_logprob[n_choice:]
    out = {"accuracy": proportion_metric(correct, "lower")}
    if nll.size:
        out["log-ppl"] = mean_metric(nll, "higher")
    return out
