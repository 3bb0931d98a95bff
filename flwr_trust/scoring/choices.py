"""Shared helpers for multiple-choice modes: slice flat scores back into per-item choice rows."""

from __future__ import annotations

import numpy as np

from flwr_trust.probes.suite import ProbeItem, ProbeSuite
from flwr_trust.scoring.requests import Scores


def choice_rows(suite: ProbeSuite, scores: Scores, *, per_token: bool = False
                ) -> list[tuple[ProbeItem, np.ndarray]]:
    """(item, log-likelihood of each choice) for items with choices, in suite order.

    per_token=True divides by the continuation's token count (for choices of unequal length).
    """
    values = scores.mean_logprob if per_token else scores.logprob
    rows = []
    offset = 0
    for item in suite.items:
        if not item.choices:
            continue
        k = len(item.choices)
        rows.append((item, np.asarray(values[offset:offset + k], dtype=np.float64)))
        offset += k
    return rows
