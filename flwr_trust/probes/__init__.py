"""Probe suites: versioned, hashed public probe data, shipped defaults, adapters and the
per-round probe sample (`round_sample`) that server and clients draw alike."""

from flwr_trust.probes.defaults import default_suite, default_suites, load_suites
from flwr_trust.probes.sampling import round_sample, sample_suites
from flwr_trust.probes.suite import ProbeItem, ProbeSuite, check_hash, load_suite

__all__ = ["ProbeItem", "ProbeSuite", "check_hash", "default_suite", "default_suites",
           "load_suite", "load_suites", "round_sample", "sample_suites"]
