"""Probe suites: versioned, hashed public probe data, shipped defaults and benchmark adapters."""

from flwr_trust.probes.defaults import default_suite, default_suites, load_suites
from flwr_trust.probes.suite import MODES, ProbeItem, ProbeSuite, check_hash, load_suite

__all__ = ["MODES", "ProbeItem", "ProbeSuite", "check_hash", "default_suite", "default_suites",
           "load_suite", "load_suites"]
