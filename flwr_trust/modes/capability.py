"""Capability forgetting: general-knowledge accuracy and perplexity on general text.

Multiple-choice items are answered by the most likely choice; text items give the mean per-token
negative log-likelihood (log-perplexity). Forgetting shows as accuracy falling and log-ppl
rising. Fine-tuning is expected to move both a little; the tolerances say how much forgetting
is acceptable for the local-task gain (0.1 nats of log-ppl is ~10% perplexity).
"""

from __future__ import annotations

import numpy as np

from flwr_trust.modes import register
from flwr_trust.modes.base import FailureMode, Metric, SampleCount, choice_problem
from flwr_trust.probes.suite import ProbeItem, ProbeSuite
from flwr_trust.scoring.choices import choice_rows
from flwr_trust.scoring.encoding import Encoder, summed_choice_requests
from flwr_trust.scoring.profile import MetricValue
from flwr_trust.scoring.requests import Request, Scores
from flwr_trust.scoring.stats import mean_metric, proportion_metric


def check_item(item: ProbeItem) -> str:
    if item.text:
        return "has both 'text' and 'choices'" if item.choices else ""
    if problem := choice_problem(item):
        return problem
    return "" if item.answer is not None else "needs an 'answer' index"


def requests(suite: ProbeSuite, encoder: Encoder) -> list[Request]:
    """Choice requests first, then one request per text item."""
    texts = [Request(encoder.start, encoder.ids(item.text)) for item in suite.items if item.text]
    return summed_choice_requests(suite, encoder) + texts


def compute(suite: ProbeSuite, scores: Scores) -> dict[str, MetricValue]:
    rows = choice_rows(suite, scores)
    correct = [int(np.argmax(lp)) == item.answer for item, lp in rows]
    n_choice = sum(len(item.choices) for item, _ in rows)
    nll = -scores.mean_logprob[n_choice:]
    out = {"accuracy": proportion_metric(correct)}
    if nll.size:
        out["log-ppl"] = mean_metric(nll)
    return out


MODE = register(FailureMode(
    id="capability",
    title="Capability forgetting",
    summary="general-knowledge accuracy and perplexity",
    metrics=(
        Metric("accuracy", "lower", "multiple-choice general-knowledge accuracy",
               tolerance=0.05, headline=True),
        Metric("log-ppl", "higher", "mean per-token negative log-likelihood on general text "
               "(nats)", range=None, tolerance=0.10),
    ),
    requests=requests,
    compute=compute,
    check_item=check_item,
    sample=SampleCount("multiple-choice items", lambda s: sum(
        bool(i.choices) and i.answer is not None for i in s.items)),
    suite_file="capability.json",
))
