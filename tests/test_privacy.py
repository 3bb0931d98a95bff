"""Privacy: noise scale, RDP accounting vs an independent closed form, budget, shift sketch."""

from __future__ import annotations

import logging
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flwr_trust.privacy import (
    Budget,
    ClientAccountant,
    MemoryState,
    Statistic,
    clipped_mean,
    effective_noise_multiplier,
    gaussian_release,
    load_accountant,
    release_within_budget,
    save_accountant,
)
from flwr_trust.privacy.shift import ShiftHistory, sketch, squared_distance, token_histograms

# Opacus RDPAccountant.DEFAULT_ALPHAS, written out here so the reference does not import it.
ALPHAS = np.array([1 + x / 10.0 for x in range(1, 100)] + list(range(12, 64)), dtype=float)


def closed_form_epsilon(sigma: float, k: int, delta: float) -> float:
    """k Gaussian releases (sensitivity 1, noise sigma): RDP(a) = k a / (2 sigma^2), converted
    with the Balle et al. 2020 bound Opacus uses: eps = min_a RDP(a) - (log delta + log a) /
    (a - 1) + log((a - 1) / a), over Opacus's grid of orders."""
    rdp = k * ALPHAS / (2 * sigma**2)
    eps = rdp - (np.log(delta) + np.log(ALPHAS)) / (ALPHAS - 1) + np.log((ALPHAS - 1) / ALPHAS)
    return float(eps.min())


def classic_epsilon(sigma: float, k: int, delta: float) -> float:
    """The older (looser) conversion eps = min_a RDP(a) + log(1/delta) / (a - 1)."""
    rdp = k * ALPHAS / (2 * sigma**2)
    return float((rdp + math.log(1 / delta) / (ALPHAS - 1)).min())


@pytest.mark.parametrize("sigma", [1.0, 2.5, 5.0])
@pytest.mark.parametrize("k", [1, 4, 20])
def test_accountant_epsilon_after_k_rounds_matches_closed_form(sigma, k):
    delta = 1e-5
    state = MemoryState()
    for _ in range(k):  # one release per round, state saved and reloaded as across rounds
        acc, exhausted = load_accountant(state)
        acc.step(sigma)
        save_accountant(state, acc, exhausted)
    acc, _ = load_accountant(state)
    assert acc.releases == k
    expected = closed_form_epsilon(sigma, k, delta)
    assert acc.epsilon(delta) == pytest.approx(expected, rel=1e-9)
    assert expected < classic_epsilon(sigma, k, delta)  # the improved conversion is in use


def test_joint_release_of_m_statistics_costs_m_gaussian_releases():
    sigma, m, delta = 3.0, 4, 1e-6
    joint = ClientAccountant()
    joint.step(effective_noise_multiplier(sigma, m))
    assert joint.epsilon(delta) == pytest.approx(closed_form_epsilon(sigma, m, delta), rel=1e-9)
    assert effective_noise_multiplier(sigma, m) == pytest.approx(sigma / 2)


def test_gaussian_noise_has_the_stated_scale():
    rng = np.random.default_rng(0)
    stat = Statistic("x", np.zeros(1), 0.25)
    draws = np.array([gaussian_release([stat], 3.0, rng)["x"].scalar for _ in range(20000)])
    assert gaussian_release([stat], 3.0, rng)["x"].noise_std[0] == pytest.approx(0.75)
    assert draws.std() == pytest.approx(0.75, rel=0.03)
    assert abs(draws.mean()) < 0.03
    block = Statistic("g", np.zeros(2), np.array([0.1, 1.0]))  # per-coordinate scales
    out = np.array([gaussian_release([block], 2.0, rng)["g"].value for _ in range(20000)])
    np.testing.assert_allclose(out.std(axis=0), [0.2, 2.0], rtol=0.03)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.floats(-5, 50, allow_nan=False), min_size=1, max_size=30),
       st.floats(-5, 50, allow_nan=False), st.integers(0, 29), st.floats(0.5, 20))
def test_clipped_mean_sensitivity_bounds_one_substitution(values, new, index, bound):
    mean, sens = clipped_mean(values, bound)
    assert sens == pytest.approx(bound / len(values))
    changed = list(values)
    changed[index % len(values)] = new
    assert abs(clipped_mean(changed, bound)[0] - mean) <= sens + 1e-12
    assert 0.0 <= mean <= bound


def _budget_between(sigma: float, k: int, delta: float) -> Budget:
    lo, hi = closed_form_epsilon(sigma, k, delta), closed_form_epsilon(sigma, k + 1, delta)
    return Budget((lo + hi) / 2, delta)


def test_budget_stops_releases_before_it_is_exceeded_and_logs_once(caplog):
    sigma, delta = 2.0, 1e-5
    stats = [Statistic.scalar("a", 1.0, 0.1), Statistic.scalar("b", 2.0, 0.1)]
    eff = sigma / math.sqrt(2)
    budget = _budget_between(eff, 3, delta)
    state = MemoryState()
    rng = np.random.default_rng(1)
    caplog.set_level(logging.WARNING, logger="flwr")
    outcomes = [release_within_budget(stats, noise_multiplier=sigma, budget=budget, state=state,
                                      rng=rng) for _ in range(5)]
    assert [bool(o.released) for o in outcomes] == [True, True, True, False, False]
    assert all(o.epsilon <= budget.epsilon for o in outcomes)
    assert outcomes[2].epsilon == pytest.approx(closed_form_epsilon(eff, 3, delta), rel=1e-9)
    assert outcomes[4].epsilon == outcomes[2].epsilon and outcomes[4].exhausted
    assert outcomes[0].released["a"].noise_std[0] == pytest.approx(sigma * 0.1)
    lines = [r for r in caplog.records if "privacy budget exhausted" in r.getMessage()]
    assert len(lines) == 1
    # The flag survives in the node state: a new round still refuses.
    again = release_within_budget(stats, noise_multiplier=sigma, budget=budget, state=state)
    assert not again.released and again.exhausted


def test_budget_validation():
    with pytest.raises(ValueError, match="delta"):
        Budget(1.0, 0.0)
    with pytest.raises(ValueError, match="epsilon"):
        Budget(-1.0, 1e-5)
    with pytest.raises(ValueError, match="not finite"):
        Statistic.scalar("x", math.nan, 1.0)
    with pytest.raises(ValueError, match="positive"):
        Statistic.scalar("x", 1.0, 0.0)


token_lists = st.lists(st.lists(st.integers(0, 50000), min_size=1, max_size=40), min_size=1,
                       max_size=12)


@settings(max_examples=60, deadline=None)
@given(token_lists, st.lists(st.integers(0, 50000), min_size=1, max_size=40), st.integers(0, 11))
def test_shift_sketch_sensitivity(samples, replacement, index):
    buckets = 16
    base, n = sketch(samples, buckets)
    changed = list(samples)
    changed[index % len(samples)] = replacement
    moved, _ = sketch(changed, buckets)
    assert np.linalg.norm(moved - base) <= math.sqrt(2) / n + 1e-12
    assert base.sum() == pytest.approx(1.0)
    assert token_histograms([[]], buckets).shape == (0, buckets)


def test_shift_distance_is_unbiased_under_noise():
    rng = np.random.default_rng(3)
    a = rng.dirichlet(np.ones(32))
    b = rng.dirichlet(np.ones(32))
    true = float(np.sum((a - b) ** 2))
    va, vb = 1e-3, 4e-4
    ests, stds = [], []
    for _ in range(4000):
        est, std = squared_distance(a + rng.normal(0, va**0.5, 32), va,
                                    b + rng.normal(0, vb**0.5, 32), vb)
        ests.append(est)
        stds.append(std)
    assert np.mean(ests) == pytest.approx(true, abs=3 * np.std(ests) / np.sqrt(len(ests)))
    # The reported std (4 d^2 v + 2 K v^2 at the estimate) matches the estimate's spread.
    assert np.sqrt(np.mean(np.square(stds))) == pytest.approx(np.std(ests), rel=0.1)


def test_shift_history_round_trips_through_state():
    state = MemoryState()
    hist = ShiftHistory.from_state(state, 8)
    assert hist.count == 0
    hist.add(np.full(8, 0.125), 0.01)
    hist.add(np.full(8, 0.25), 0.03)
    hist.save(state)
    again = ShiftHistory.from_state(state, 8)
    mean, var = again.mean()
    np.testing.assert_allclose(mean, 0.1875)
    assert var == pytest.approx(0.04 / 4)
    assert ShiftHistory.from_state(state, 16).count == 0  # another bucket count: fresh
