"""Paired per-item tests: the false-alarm bound at the least favourable null, the power they
add over independent stderrs, and the plumbing (items travel in reports and profiles)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from flwr_trust import protocol
from flwr_trust.detect.paired import paired_change, paired_clients

BENCH = Path(__file__).resolve().parents[1] / "bench" / "power.py"


def _power():
    spec = importlib.util.spec_from_file_location("power_bench", BENCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def power():
    return _power()


def test_false_alarms_at_the_least_favourable_null_stay_under_alpha(power):
    """Every true degradation exactly at the tolerance: the level and the client tests alarm
    at most alpha of the time (they are conservative: Bonferroni + alpha spending)."""
    rng = np.random.default_rng(1)
    runs = 300
    level = np.mean([power.level_run(rng, 20, 1.0, True) for _ in range(runs)])
    client = [power.client_run(rng, 20, 1.0, True) for _ in range(runs)]
    assert level <= power.ALPHA
    assert np.mean([c[0] or c[1] for c in client]) <= power.ALPHA


def test_pairing_finds_what_independent_stderrs_miss(power):
    rng = np.random.default_rng(2)
    paired = np.mean([power.level_run(rng, 20, 3.0, True) for _ in range(60)])
    unpaired = np.mean([power.level_run(rng, 20, 3.0, False) for _ in range(60)])
    assert paired >= 0.8 and unpaired <= 0.2
    flagged = np.mean([power.client_run(rng, 40, 3.0, True)[0] for _ in range(40)])
    assert flagged >= 0.8  # one degraded client among four is named


def test_paired_statistics_and_their_edges():
    change = paired_change([0.5, 0.6, 0.7], [0.6, 0.7, 0.8], sign=-1.0)  # lower is worse
    assert change.degradation == pytest.approx(0.1) and change.se == pytest.approx(1e-9)
    assert paired_change([0.5, 0.6], [0.5, 0.6], 1.0) is None  # too few items
    assert paired_change([0.5, 0.6, 0.7], [0.5, 0.6], 1.0) is None  # different items
    clients = paired_clients({1: [0.9] * 5, 2: [0.8] * 5, 3: [0.8] * 5}, sign=-1.0,
                             min_clients=3)
    assert clients.excess == pytest.approx((-0.1, 0.0, 0.0))
    assert paired_clients({1: [0.9] * 5, 2: [0.8] * 4, 3: [0.8] * 5}, -1.0, 3) is None


def test_items_travel_in_reports_only_for_clear_releases():
    flat = (protocol.entry("trust.alignment.refusal-rate", 0.8, 0.02, 3, items=[0.7, 0.8, 0.9])
            | protocol.entry("trust.bias.stereotype-pref", 0.6, 0.05, 3, 0.4, items=[1, 2, 3]))
    assert flat["trust.alignment.refusal-rate.items"] == [0.7, 0.8, 0.9]
    assert "trust.bias.stereotype-pref.items" not in flat  # noised: no per-item values
    obs = protocol.observations(flat)
    assert obs["alignment"]["refusal-rate"].items == (0.7, 0.8, 0.9)
