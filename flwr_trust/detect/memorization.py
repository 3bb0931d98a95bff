"""Memorization: canary exposure on public canaries, train-vs-held-out loss gap on local data.

Mode-specific: `loss-gap` is the client's train loss minus its held-out loss (nats, released with
DP noise). Memorization drives it below 0, so lower is worse. Its reference is fixed at 0: the
base model never saw any client's data, so its train and held-out losses are exchangeable. A
round-0 measurement passed in `reference` takes precedence.
"""

from __future__ import annotations

from flwr_trust.detect.behavior import MetricSpec

MODE = "memorization"
WATCH = {
    "canary-exposure": MetricSpec("higher", 1.0, "mean canary exposure (bits)"),
    "loss-gap": MetricSpec(
        "lower", 0.20, "train minus held-out loss on local data (nats, DP)", reference=0.0),
}
