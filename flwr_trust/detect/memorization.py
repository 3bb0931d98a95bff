"""Memorization: canary exposure on public canaries, plus two private signals on local data.

Mode-specific references for the private metrics (the server cannot measure them at round 0):
- `loss-gap` is the client's train loss minus its held-out loss (nats, released with DP noise).
  Memorization drives it below 0, so lower is worse. Its reference is 0: the base model never
  saw any client's data, so its train and held-out losses are exchangeable.
- `local-canary-exposure` is the mean exposure (bits) of canaries the client planted in its own
  training data. For a model that never saw a canary the true secret's rank is uniform over the
  k candidates, so its expected exposure is log2 k - log2(k!)/k, which stays below log2 e =
  1.44 bits for every k. That bound is the reference, so the test errs towards fewer alarms.
A round-0 measurement passed in `reference` takes precedence over either value.
"""

from __future__ import annotations

import math

from flwr_trust.detect.behavior import MetricSpec

MODE = "memorization"
WATCH = {
    "canary-exposure": MetricSpec("higher", 1.0, "mean canary exposure (bits)"),
    "loss-gap": MetricSpec(
        "lower", 0.20, "train minus held-out loss on local data (nats, DP)", reference=0.0),
    "local-canary-exposure": MetricSpec(
        "higher", 1.0, "mean exposure of the client's own planted canaries (bits, DP)",
        reference=math.log2(math.e)),
}
