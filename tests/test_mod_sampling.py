"""round_sample: deterministic from (suite hash, round), stratified, rotating, honest about n."""

from __future__ import annotations

import math
from collections import Counter

import pytest

from flwr_trust.probes.sampling import round_indices, round_sample, stratum
from flwr_trust.probes.suite import ProbeItem, ProbeSuite
from tests.helpers.mods import SUITES, single_thread


@pytest.fixture(autouse=True)
def _one_thread():
    with single_thread():
        yield



def _suite(n_a: int = 60, n_b: int = 30, n_c: int = 10) -> ProbeSuite:
    items = []
    for group, n in (("a", n_a), ("b", n_b), ("c", n_c)):
        items += [ProbeItem(id=f"{group}{i}", group=group, choices=("x", "y"), answer=0)
                  for i in range(n)]
    return ProbeSuite("fairness", "strata", "1", tuple(items))


def test_same_suite_round_budget_same_sample_and_rounds_differ():
    suite = _suite()
    a = round_sample(suite, 3, 10)
    b = round_sample(_suite(), 3, 10)  # rebuilt elsewhere (e.g. the server): same items
    assert [i.id for i in a.items] == [i.id for i in b.items]
    assert a.hash == b.hash and a.name.endswith("@round3/budget10")
    assert [i.id for i in round_sample(suite, 4, 10).items] != [i.id for i in a.items]
    assert len(a.items) == 10


def test_budget_zero_or_larger_than_suite_is_the_whole_suite():
    suite = _suite()
    assert round_sample(suite, 5, 0) is suite
    assert round_sample(suite, 5, 1000) is suite
    with pytest.raises(ValueError):
        round_indices(suite, 1, -1)


@pytest.mark.parametrize("budget", [7, 10, 33])
def test_rounds_rotate_through_the_whole_suite(budget):
    suite = _suite()
    n = len(suite.items)
    rounds = math.ceil(n / budget)
    seen = set()
    for r in range(1, rounds + 1):
        seen |= set(round_indices(suite, r, budget))
    assert seen == set(range(n))


@pytest.mark.parametrize("rnd", range(1, 8))
def test_each_sample_is_proportionally_stratified(rnd):
    suite = _suite()
    budget = 10
    counts = Counter(stratum(i) for i in round_sample(suite, rnd, budget).items)
    sizes = Counter(stratum(i) for i in suite.items)
    for key, size in sizes.items():
        expected = budget * size / len(suite.items)
        assert abs(counts.get(key, 0) - expected) <= 1.0


def test_the_sample_does_not_depend_on_anything_but_content():
    suite = _suite()
    renamed = ProbeSuite(suite.mode, suite.name, "2", suite.items)  # another version: new hash
    assert renamed.hash != suite.hash
    ids = [i.id for i in round_sample(suite, 2, 10).items]
    assert ids != [i.id for i in round_sample(renamed, 2, 10).items]


def test_profile_of_a_sample_reports_the_sample_size(tiny):
    from flwr_trust.scoring.runner import profile_model

    sample = round_sample(SUITES["alignment"], 1, 4)
    profile = profile_model(tiny.model, tiny.tokenizer, {"alignment": sample}, precision="fp32")
    harmful = sum(1 for i in sample.items if i.label == "harmful")
    assert profile.get("alignment", "refusal-rate").n == harmful
    assert len(sample.items) == 4
