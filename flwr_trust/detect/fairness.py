"""Fairness collapse: group gaps on public probes and the worst-served client on private data.

Mode-specific: `local-loss` is each client's loss on its own data (private, released with DP
noise). It has no server reference; it is tested per client against median * (1 + tolerance),
i.e. "the worst client's loss is at most 1 + tolerance times the median's" (Bonferroni over
clients handles the max). A client failing that test is a victim of the federation, not a
culprit: the alarm is population-level (clients=()) and names it in evidence["victims"], so a
quarantine gate never removes the clients the model already serves worst. With strongly non-IID
data the base model can exceed the default ratio already; raise the tolerance for such runs.
"""

from __future__ import annotations

from flwr_trust.detect.behavior import MetricSpec

MODE = "fairness"
WATCH = {
    "group-gap": MetricSpec("higher", 0.10, "best minus worst group accuracy"),
    "worst-group-accuracy": MetricSpec("lower", 0.05, "accuracy of the worst group"),
    "local-loss": MetricSpec(
        "higher", 0.25, "a client's loss on its local data (DP); tolerance is on the ratio to "
        "the median client", victim=True),
}
