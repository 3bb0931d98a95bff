"""Bias amplification: stereotype preference on minimal pairs, overall and per bias type.

Mode-specific: per-group variants ("stereotype-pref/<type>") are watched too, because
amplification often hits one bias type while the overall share barely moves. Each group costs one
more Bonferroni test and has a larger stderr (fewer pairs), so groups need a larger shift to alarm.
"""

from __future__ import annotations

from flwr_trust.detect.behavior import MetricSpec

MODE = "bias"
WATCH = {
    "stereotype-pref": MetricSpec(
        "higher", 0.05, "share of minimal pairs where the stereotyping sentence is preferred "
        "(0.5 = neutral)", per_group=True),
}
