"""Culprits of a failed candidate in a small round: leave-one-out, confirmed by own models.

A client is named when leaving it out alone makes the candidate pass its probe and its own
model fails the same test: when a candidate fails narrowly, leaving out almost any client can
tip it back (SmolLM2: 5 honest of 6 named in a round of 8 before the confirmation). When that
names nobody, several clients may share the blame (leaving out either of two still fails):
then the clients whose own model fails are named together, if they are at most half and
leaving them out together makes the candidate pass. Every trial is judged by `trial_test`: the
candidate's test as it stood before the failed candidate was observed. Rounds above
LOO_MAX_CLIENTS go through the linear screen instead (screened.py).
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Callable, Collection, Mapping
from typing import Any

from flwr_trust.detect.alarm import Alarm
from flwr_trust.detect.behavior import BehaviorMonitor
from flwr_trust.guard.evidence import Aggregation, Prober, RoundEvidence
from flwr_trust.guard.gates import alarmed
from flwr_trust.guard.screened import screened_culprits
from flwr_trust.probes.suite import ProbeSuite
from flwr_trust.scoring.profile import BehaviorProfile

LOO_MAX_CLIENTS = 8  # rollback names culprits by leave-one-out up to this many clients

ProbeFailing = Callable[[Any], BehaviorProfile | None]  # arrays -> profile on the failing modes
Fails = Callable[[BehaviorProfile], bool]  # would the candidate's test alarm on this profile


def rollback_culprits(aggregation: Aggregation, checkpoint: Any, ev: RoundEvidence,
                      nodes: list[int], probe: ProbeFailing, fails: Fails,
                      screen: tuple[Prober | None, list[Alarm], Mapping[str, ProbeSuite]]
                      ) -> tuple[list[int], str]:
    """Who made a refused candidate fail, and the rollback's reason: leave-one-out over a
    round of 2..LOO_MAX_CLIENTS aggregated clients, above that the linear screen and exact
    probes (screened.py; `screen` = its prober, the candidate's alarms, the server suites).
    Leaves the inner strategy's state restored to `checkpoint`."""
    reason = "candidate failed its probe; previous model kept"
    culprits: list[int] = []
    if 1 < len(nodes) <= LOO_MAX_CLIENTS:
        models = {r.node: r.model for r in ev.replies}
        culprits, why = small_round_culprits(aggregation, checkpoint, nodes, models, probe,
                                             fails)
        reason += f" ({why})" if why else ""
    aggregation.restore(checkpoint)
    if len(nodes) > LOO_MAX_CLIENTS:
        prober, alarms, suites = screen
        culprits, how = screened_culprits(prober, ev, nodes, alarms, suites, fails)
        reason += f" (no leave-one-out search above {LOO_MAX_CLIENTS} clients; {how})"
    return culprits, reason


def small_round_culprits(aggregation: Aggregation, checkpoint: Any, nodes: Collection[int],
                         models: Mapping[int, Any], probe: ProbeFailing, fails: Fails
                         ) -> tuple[list[int], str]:
    """The culprits of a failed candidate in a round of at most LOO_MAX_CLIENTS clients, and
    why nobody was named ("" when leave-one-out named someone): leave-one-out confirmed by
    own models, else the group of own-model failures."""
    probe = _own_models_once(probe, models)
    alone = leave_one_out(aggregation, checkpoint, nodes, probe, fails)
    named = confirmed(alone, models, probe, fails)
    if named:
        return named, ""
    group, why = leave_group_out(aggregation, checkpoint, nodes, models, probe, fails)
    single = (f"leave-one-out named {alone}, whose own models pass" if alone
              else "no single culprit")
    return group, f"{single}; {why}"


def _own_models_once(probe: ProbeFailing, models: Mapping[int, Any]) -> ProbeFailing:
    """`probe`, scoring each client's own model at most once: the confirmation and the group
    step both ask for it. Trial aggregates are new arrays each time and are not cached."""
    own = {id(m): m for m in models.values() if m is not None}  # keeps the ids valid
    seen: dict[int, BehaviorProfile | None] = {}

    def once(arrays: Any) -> BehaviorProfile | None:
        key = id(arrays)
        if own.get(key) is not arrays:
            return probe(arrays)
        if key not in seen:
            seen[key] = probe(arrays)
        return seen[key]

    return once


def trial_test(before: BehaviorMonitor, rnd: int, candidate: BehaviorProfile) -> Fails:
    """Would the candidate's test alarm on a trial's profile (the candidate's numbers for the
    modes the trial did not re-probe)? Each trial observes a fresh copy of the candidate
    monitor as it was before this round's candidate: it spends no real alpha, and the failed
    candidate's own look and trend entry do not count against it (with them, a trial without
    the culprits could still fail on the candidate's rise; SmolLM2 memorization-strong seed 1
    named nobody that way)."""

    def fails(profile: BehaviorProfile) -> bool:
        merged = dataclasses.replace(
            candidate, metrics={**candidate.metrics, **profile.metrics},
            suite_hashes={**candidate.suite_hashes, **profile.suite_hashes})
        return alarmed(copy.deepcopy(before).observe(rnd, merged).alarms)

    return fails


def leave_one_out(aggregation: Aggregation, checkpoint: Any, nodes: Collection[int],
                  probe: ProbeFailing, fails: Fails) -> list[int]:
    """Aggregated clients whose removal alone makes the candidate pass its probe.

    One aggregation and one server probe per client, so only for rounds of at most
    LOO_MAX_CLIENTS clients; flagged clients were already left out. `probe` re-scores only the
    failing modes and `fails` keeps the candidate's numbers for the others: they passed with
    every client in, and the question is whose update made the failing ones fail. (Whole
    suites on SmolLM2 take about 150 s per probe on 2 CPU cores, so eight full trials would add
    20 minutes to the round.)
    """
    culprits = []
    for node in sorted(nodes):
        keep = [n for n in nodes if n != node]
        try:
            arrays = aggregation.trial(checkpoint, keep)
        except Exception:  # a failed trial names no culprit
            continue
        profile = probe(arrays)
        if profile is not None and not fails(profile):
            culprits.append(node)
    return culprits


def confirmed(named: Collection[int], models: Mapping[int, Any], probe: ProbeFailing,
              fails: Fails) -> list[int]:
    """The names whose own model also fails the candidate's test on the failing modes.
    A client with no loadable model keeps its name (the leave-one-out evidence stands)."""
    kept = []
    for node in named:
        own = probe(models[node]) if models.get(node) is not None else None
        if own is None or fails(own):
            kept.append(node)
    return kept


def leave_group_out(aggregation: Aggregation, checkpoint: Any, nodes: Collection[int],
                    models: Mapping[int, Any], probe: ProbeFailing, fails: Fails
                    ) -> tuple[list[int], str]:
    """The clients whose own model fails the candidate's test, named together when they are
    at most half of `nodes` (a majority is the federation, not a culprit) and the candidate
    without all of them passes; otherwise nobody. For when leave-one-out named nobody: one
    probe per client with a model, one aggregation and probe more. Also returns why, for the
    gate's reason in the audit log."""
    suspects = []
    for node in sorted(nodes):
        own = probe(models[node]) if models.get(node) is not None else None
        if own is not None and fails(own):
            suspects.append(node)
    found = f"own models failing: {suspects or 'none'}"
    if not suspects:
        return [], found
    if len(suspects) > len(nodes) // 2:
        return [], (f"{found}, more than half of {len(nodes)}: the federation's own "
                    "fine-tuning moves the failing metrics, not one client, and later rounds "
                    "will be refused alike until the local data or recipe changes, or the "
                    "drift is accepted by raising the metric's trust.tolerance.* key")
    try:
        arrays = aggregation.trial(checkpoint, [n for n in nodes if n not in suspects])
    except Exception as exc:  # a failed trial names no culprit
        return [], f"{found}; the trial without them failed to aggregate ({str(exc)[:200]})"
    profile = probe(arrays)
    if profile is None or fails(profile):
        return [], f"{found}; the candidate without them still fails"
    return suspects, f"{found}; the candidate without them passes"
