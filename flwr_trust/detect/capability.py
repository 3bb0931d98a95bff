"""Capability forgetting: general-knowledge accuracy and perplexity on general text.

Fine-tuning is expected to move both a little; the tolerances say how much forgetting is
acceptable for the local-task gain (log-ppl in nats per token: 0.1 nats is ~10% perplexity).
"""

from __future__ import annotations

from flwr_trust.detect.behavior import MetricSpec

MODE = "capability"
WATCH = {
    "accuracy": MetricSpec("lower", 0.05, "multiple-choice general-knowledge accuracy"),
    "log-ppl": MetricSpec("higher", 0.10, "mean per-token NLL on general text (nats)"),
}
