"""guard/culprits.py: rollback trials are judged by the candidate test as it was before the
failed candidate, so that candidate's own rise cannot fail a trial that leaves the culprits out."""

from __future__ import annotations

import copy

from flwr_trust.detect.behavior import BehaviorMonitor
from flwr_trust.detect.config import DetectorConfig
from flwr_trust.guard.culprits import leave_group_out, trial_test
from flwr_trust.scoring.profile import BehaviorProfile, MetricValue


def _profile(refusal: float) -> BehaviorProfile:
    return BehaviorProfile({"alignment": {"refusal-rate": MetricValue(refusal, 0.02, 400,
                                                                      "lower")}},
                           {"alignment": "0" * 64})


def _monitor_after_round_1() -> BehaviorMonitor:
    """Round 1 degraded 0.10 (below the level threshold); the trend window is two rounds."""
    cfg = DetectorConfig(alpha=0.05, trend_window=2, trend_rho=1.0, horizon=3)
    monitor = BehaviorMonitor(_profile(0.9), cfg)
    monitor.observe(1, _profile(0.80))
    return monitor


def test_a_trial_without_the_culprits_is_not_failed_by_the_candidates_own_rise():
    monitor = _monitor_after_round_1()
    before = copy.deepcopy(monitor)
    candidate = _profile(0.70)  # round 2: degraded 0.20, fails level and trend tests
    assert monitor.observe(2, candidate).alarms
    trial = _profile(0.84)  # the candidate without its culprits: back near round 1
    assert not trial_test(before, 2, candidate)(trial)
    # judged on the monitor that has seen the failed candidate, the trial's trend window is
    # (candidate, trial): it fails, and rollback would name nobody
    assert trial_test(monitor, 2, candidate)(trial)


def test_trials_spend_no_alpha_and_leave_the_monitor_unchanged():
    monitor = _monitor_after_round_1()
    state = copy.deepcopy(monitor.state)
    fails = trial_test(monitor, 2, _profile(0.70))
    assert fails(_profile(0.70)) and fails(_profile(0.70))  # same answer twice
    assert monitor.state == state


def test_trial_keeps_the_candidates_numbers_for_modes_it_did_not_reprobe():
    monitor = _monitor_after_round_1()
    candidate = BehaviorProfile(
        {"alignment": {"refusal-rate": MetricValue(0.70, 0.02, 400, "lower")},
         "capability": {"log-ppl": MetricValue(2.0, 0.01, 400, "lower")}},
        {"alignment": "0" * 64, "capability": "1" * 64})
    fails = trial_test(monitor, 2, candidate)
    assert not fails(_profile(0.86)) and fails(_profile(0.70))


class _Trials:
    """Aggregation stand-in: a trial's arrays are the set of clients kept."""

    def __init__(self, fail: Exception | None = None) -> None:
        self.fail = fail

    def trial(self, checkpoint, keep):
        if self.fail is not None:
            raise self.fail
        return frozenset(keep)


def _group_case(bad: set[int], nodes=(1, 2, 3, 4), fail: Exception | None = None,
                hidden: frozenset[int] = frozenset()):
    """Client models are their node ids; a model or trial fails when it holds a bad client
    (a `hidden` one fails only in the average: its own model passes)."""
    models = {n: frozenset([n]) for n in nodes}

    def probe(arrays):
        own = len(arrays) == 1 and next(iter(arrays)) in models
        return _profile(0.6 if arrays & bad or (not own and arrays & hidden) else 0.9)

    def fails(profile):
        return profile.metrics["alignment"]["refusal-rate"].value < 0.8

    return leave_group_out(_Trials(fail), None, list(nodes), models, probe, fails)


def test_leave_group_out_names_the_group_and_says_why():
    assert _group_case({2, 4}) == ([2, 4], "own models failing: [2, 4]; the candidate "
                                           "without them passes")
    named, why = _group_case({1, 2, 4})
    assert named == [] and "more than half of 4" in why
    assert "federation's own fine-tuning" in why and "trust.tolerance." in why  # what to do
    named, why = _group_case(set())
    assert named == [] and why == "own models failing: none"
    named, why = _group_case({2}, hidden=frozenset({3}))
    assert named == [] and why.endswith("the candidate without them still fails")
    named, why = _group_case({2}, fail=ValueError("shapes differ"))
    assert named == [] and "failed to aggregate (shapes differ)" in why


def test_each_own_model_is_probed_once_across_confirmation_and_group_step():
    """Leave-one-out names clients 1 and 3 (the candidate fails only with both in), their own
    models pass, so confirmation drops them and the group step probes every own model: models
    1 and 3 are then not probed a second time."""
    from flwr_trust.guard.culprits import small_round_culprits

    nodes = (1, 2, 3, 4)
    models = {n: frozenset([n]) for n in nodes}
    calls: list[frozenset] = []

    def probe(arrays):
        calls.append(arrays)
        own = len(arrays) == 1
        failing = arrays & {2, 4} if own else {1, 3} <= arrays
        return _profile(0.6 if failing else 0.9)

    def fails(profile):
        return profile.metrics["alignment"]["refusal-rate"].value < 0.8

    named, why = small_round_culprits(_Trials(), None, list(nodes), models, probe, fails)
    assert named == [] and why.endswith("the candidate without them still fails")
    # the reason keeps what leave-one-out found before the confirmation dropped it
    assert why.startswith("leave-one-out named [1, 3], whose own models pass; own models")
    own = sorted((a for a in calls if len(a) == 1), key=min)
    assert own == [frozenset([n]) for n in nodes]  # once each
