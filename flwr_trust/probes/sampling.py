"""The per-round probe sample: stratified, rotating, and reproducible by the server.

`round_sample(suite, round, budget)` depends only on the suite's content hash, the round and the
budget (never on the node), so every client of a round probes the same items, the server can
rebuild the exact sample when it audits a client, and all replies of a round carry the same
metric keys (Flower's FedAvg requires identical MetricRecord keys across replies).

How: items are grouped into strata (group, label, text-or-choice item). Within a stratum they
are ordered by SHA-256(suite hash, item id); the item of rank j in a stratum of size N_s gets
the position (j + 0.5) / N_s, and all items are sorted by position. That sequence interleaves
the strata in proportion to their sizes, so any window of consecutive items is a proportionally
stratified sample. Round r takes the window of `budget` items starting at r * budget (mod N):
consecutive rounds rotate through the sequence and cover the whole suite every ceil(N / budget)
rounds. The sample keeps the suite's item order; its metrics are computed on exactly those n
items, so the stderr and n they report are those of the sample.
"""

from __future__ import annotations

import hashlib
import random
from collections import defaultdict
from collections.abc import Mapping

from flwr_trust.probes.suite import ProbeItem, ProbeSuite


def stratum(item: ProbeItem) -> tuple[str, str, str]:
    """The stratum of an item: its group, its label, and whether it is a text or choice item."""
    return (item.group, item.label, "text" if item.text else "choice")


def _rank_key(suite_hash: str, item_id: str) -> str:
    return hashlib.sha256(f"{suite_hash}:{item_id}".encode()).hexdigest()


def rotation_order(suite: ProbeSuite) -> list[int]:
    """Indices of the suite's items in the stratified rotation sequence (a pure function)."""
    strata: dict[tuple[str, str, str], list[int]] = defaultdict(list)
    for i, item in enumerate(suite.items):
        strata[stratum(item)].append(i)
    keyed: list[tuple[float, str, int]] = []
    for members in strata.values():
        ranked = sorted(members, key=lambda i: _rank_key(suite.hash, suite.items[i].id))
        size = len(ranked)
        for j, i in enumerate(ranked):
            keyed.append(((j + 0.5) / size, _rank_key(suite.hash, suite.items[i].id), i))
    return [i for _, _, i in sorted(keyed)]


def round_indices(suite: ProbeSuite, round: int, budget: int) -> list[int]:
    """Item indices (in suite order) that round `round` probes with `budget` items per mode."""
    n = len(suite.items)
    if budget < 0:
        raise ValueError(f"probe budget must be >= 0, not {budget}")
    if budget == 0 or budget >= n:
        return list(range(n))
    order = rotation_order(suite)
    start = (round * budget) % n
    return sorted(order[(start + k) % n] for k in range(budget))


def round_sample(suite: ProbeSuite, round: int, budget: int) -> ProbeSuite:
    """The suite itself when budget is 0 or covers it, else this round's stratified sample.

    Deterministic from (suite hash, round, budget); the server imports this function to rebuild
    a client's sample. The sample is a ProbeSuite with its own hash and name
    ``<name>@round<r>/budget<b>``.
    """
    indices = round_indices(suite, round, budget)
    if len(indices) == len(suite.items):
        return suite
    return suite.subset(indices, name_suffix=f"@round{round}/budget{budget}")


def sample_suites(suites: Mapping[str, ProbeSuite], round: int, budget: int
                  ) -> dict[str, ProbeSuite]:
    """`round_sample` for every mode's suite (the budget is per mode)."""
    return {mode: round_sample(suite, round, budget) for mode, suite in suites.items()}


def server_suites(suites: dict[str, ProbeSuite], items: int, seed: int
                  ) -> dict[str, ProbeSuite]:
    """A fixed seeded subset per mode, so reference and candidates share items."""
    if items <= 0:
        return suites
    out = {}
    for mode, suite in suites.items():
        if len(suite.items) <= items:
            out[mode] = suite
            continue
        rng = random.Random(f"{seed}:{suite.hash}")
        idx = sorted(rng.sample(range(len(suite.items)), items))
        out[mode] = suite.subset(idx, name_suffix=f"@server{items}")
    return out


def modes_sampled_apart(client_suites: Mapping[str, ProbeSuite],
                        server_suites: Mapping[str, ProbeSuite], client_budget: int
                        ) -> frozenset[str]:
    """The modes whose client reports cover other items than the server's reference (a
    rotating client sample smaller than the suite, or a server subset of the client's suite):
    the reference's own sampling error then enters every comparison of reports with it. A
    suite both sides probe whole (e.g. 30 canaries under budgets of 32 and 100) is not."""
    return frozenset(
        m for m, suite in client_suites.items()
        if 0 < client_budget < len(suite.items)
        or m not in server_suites or server_suites[m].hash != suite.hash)
