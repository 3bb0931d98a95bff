"""The integrity audit (flwr_trust.detect.integrity, run by Guard._audit): honest reports from
the real client mod are never flagged, whether the outgoing model is clear or private; lies
about values, noise, stderr, n or the round are, and bad input never crashes the server."""

from __future__ import annotations

import math
import random
from typing import Any

import numpy as np
import pytest
from flwr.app import ArrayRecord, Message, MetricRecord, RecordDict

from flwr_trust import modes as registry
from flwr_trust import protocol
from flwr_trust.detect.config import DetectorConfig
from flwr_trust.detect.integrity import (
    AuditScope,
    _chi2_cdf,
    audit_report,
    audit_round,
    client_suites,
)
from flwr_trust.detect.update import UpdateCheckResult
from flwr_trust.guard.core import Guard, GuardSettings, _observations
from flwr_trust.guard.evidence import Reply, RoundEvidence
from flwr_trust.guard.gates import Gate
from flwr_trust.models.prober import BridgeProber
from flwr_trust.mods import make_trust_mod
from flwr_trust.scoring.profile import BehaviorProfile, MetricValue
from tests.helpers.mods import (
    LORA,
    SUITES,
    TINY_DEFAULTS,
    context,
    lora_arrays,
    message,
    single_thread,
)

BUDGET = 4


@pytest.fixture(autouse=True)
def _one_thread():
    with single_thread():
        yield


def _guard(prober: Any, budget: int = BUDGET, gate: Gate | None = None,
           fraction: float = 1.0) -> Guard:
    settings = GuardSettings(gate or Gate(), DetectorConfig(), dict(SUITES), dict(SUITES),
                             budget, audit_fraction=fraction)
    return Guard(settings, recorder=None, prober=prober)  # type: ignore[arg-type]


def _audit(replies: list[tuple[int, dict, Any]], rnd: int, prober: Any = None,
           budget: int = BUDGET) -> list:
    """Guard._audit's alarms over (node, trust numbers, arrays) replies, every client audited."""
    guard = _guard(prober or BridgeProber("tiny", LORA, "fp32"), budget)
    ev = RoundEvidence(rnd, "train", [Reply(n, dict(t), model=m) for n, t, m in replies])
    return guard._audit(ev).alarms


def _report(outgoing: ArrayRecord, rnd: int, *, node: int = 1, budget: int = BUDGET,
            **node_config: Any) -> dict[str, Any]:
    """The real client mod's trust.* numbers for a client that sends `outgoing`."""
    mod = make_trust_mod(suites=SUITES, defaults=TINY_DEFAULTS | {"trust.privacy.epsilon": 1e9},
                         rng=np.random.default_rng(node * 100 + rnd))

    def app(msg: Message, _ctx: Any) -> Message:
        return Message(RecordDict({"arrays": outgoing,
                                   "metrics": MetricRecord({"num-examples": 1})}), reply_to=msg)

    reply = mod(message("train", lora_arrays(0), round=rnd,
                        extra_config={"trust.probe-budget": budget}),
                context(node_config=node_config, node_id=node), app)
    assert not reply.has_error(), reply.error.reason
    return protocol.split_trust(dict(reply.content["metrics"]))[0]


def _checks(alarms: list) -> set[str]:
    return {a.evidence["check"] for a in alarms}


def _shift(report: dict[str, Any], by: float) -> dict[str, Any]:
    out = dict(report)
    for key in _present(report):
        out[key] = report[key] + by
    return out


def _present(report: dict[str, Any]) -> list[str]:
    """The public behaviour metrics a report carries with n > 0."""
    out = []
    for key in report:
        mode, _, name = key.removeprefix(protocol.PREFIX).partition(".")
        declared = registry.metric(mode, name) if registry.find(mode) else None
        if (declared is not None and declared.source == "public"
                and not key.endswith(protocol.SUFFIXES) and report.get(key + protocol.N, 0) > 0):
            out.append(key)
    return out


# ---------------------------------------------------------------- honest clients


@pytest.mark.parametrize("outgoing", ["private", "clear"])
def test_honest_clients_are_never_flagged(outgoing):
    """Private: every non-headline metric is sent absent (0, n = 0) and the headlines are
    noised; before the fix the audit compared those zeros with the server's values."""
    replies = []
    for rnd in (1, 2, 3):
        for node in (1, 2, 3):
            arrays = lora_arrays(10 * node + rnd)
            report = _report(arrays, rnd, node=node, **{
                "trust.privacy.outgoing": outgoing, "trust.privacy.noise-multiplier": 0.5})
            assert report[protocol.PUBLIC_POST_PROCESSING] == int(outgoing == "clear")
            replies.append((node, report, arrays))
        assert _audit([r for r in replies if r[1][protocol.ROUND] == rnd], rnd) == []
    private = replies[0][1]
    if outgoing == "private":  # the case that was flagged: absent metrics next to noised ones
        assert private["trust.capability.log-ppl.n"] == 0
        assert private["trust.alignment.refusal-rate.noise"] > 0


def test_absent_metrics_are_skipped():
    measured = _profile({"alignment": {"refusal-rate": MetricValue(0.8, 0.1, 9),
                                       "refusal-margin": MetricValue(0.4, 0.05, 9)}})
    report = {protocol.ROUND: 2, protocol.PROBE_BUDGET: BUDGET,
              protocol.PUBLIC_POST_PROCESSING: 0, protocol.PRIVACY_NOISE_MULTIPLIER: 1.0}
    report |= protocol.absent("trust.alignment.refusal-rate")
    report |= protocol.absent("trust.alignment.refusal-margin")
    assert _audit([(5, report, None)], 2, prober=_Fixed(measured)) == []


# ---------------------------------------------------------------- spoofers


@pytest.fixture(scope="module")
def honest() -> tuple[dict[str, Any], ArrayRecord]:
    arrays = lora_arrays(42)
    return _report(arrays, 2, node=7, **{"trust.privacy.outgoing": "clear"}), arrays


@pytest.mark.parametrize("post_processing", [1, 0])
def test_inflated_noise_is_flagged(honest, post_processing):
    """Values shifted by 0.6 (beyond two flipped items of 4 and 5% of an unbounded metric's
    scale) hidden under a declared noise of 0.5: before the fix the allowance
    z * sqrt(stderr^2 + noise^2) came from these very claims."""
    report, arrays = honest
    fake = _shift(report, 0.6) | {protocol.PUBLIC_POST_PROCESSING: post_processing}
    for key in _present(report):
        fake[key + protocol.NOISE] = 0.5
    alarms = _audit([(7, fake, arrays)], 2)
    assert alarms and all(a.clients == (7,) and a.mode == "integrity" for a in alarms)
    assert "noise" in _checks(alarms)
    expected = {"value"} if post_processing else {"headline-only"}
    assert expected <= _checks(alarms)
    noise = next(a for a in alarms if a.evidence["check"] == "noise")
    assert noise.evidence["reported"] == 0.5 and "noise" in noise.message


def test_noise_claimed_consistently_but_never_added_is_flagged(honest):
    """A hidden-model report whose noise and stderr fit a declared multiplier of 20, values
    shifted, no noise added: only the lower-tail chi-square test can see it."""
    report, arrays = honest
    suites = client_suites(SUITES, 2, BUDGET)
    fake = dict(report) | {protocol.PUBLIC_POST_PROCESSING: 0,
                           protocol.PRIVACY_NOISE_MULTIPLIER: 20.0}
    for key in _present(report):
        mode, _, name = key.removeprefix(protocol.PREFIX).partition(".")
        headline = registry.get(mode).headline
        if name != headline.name:
            fake |= protocol.absent(key)
            continue
        lo, hi = headline.span(suites[mode])
        n = report[key + protocol.N]
        fake |= {key: report[key] - headline.sign * 0.05, key + protocol.NOISE: 20 * (hi - lo),
                 key + protocol.STDERR: (hi - lo) / (2 * math.sqrt(n))}
    alarms = _audit([(7, fake, arrays)], 2)
    assert _checks(alarms) == {"noise-added"}
    assert alarms[0].evidence["p"] <= alarms[0].evidence["level"]


def test_stale_report_is_flagged(honest):
    """Last round's report of the very same model (whole suites, so the numbers still match):
    only the round it echoes gives it away."""
    _, arrays = honest
    last = _report(arrays, 1, node=7, budget=0, **{"trust.privacy.outgoing": "clear"})
    assert _audit([(7, last, arrays)], 1, budget=0) == []  # it was true last round
    alarms = _audit([(7, last, arrays)], 2, budget=0)
    assert _checks(alarms) == {"round"}
    assert alarms[0].evidence == {"check": "round", "reported": 1, "expected": 2}


def test_a_relabelled_or_shifted_report_is_caught_by_its_numbers(honest):
    report, arrays = honest
    assert _audit([(7, report, arrays)], 2) == []
    alarms = _audit([(7, _shift(report, 0.6), arrays)], 2)
    assert _checks(alarms) == {"value"}
    inflated = dict(report)
    key = "trust.alignment.refusal-margin"  # unbounded: a tight stderr tolerance at small n
    inflated[key + protocol.STDERR] = report[key + protocol.STDERR] + 0.1
    inflated[key + protocol.N] = report[key + protocol.N] + 1
    alarms = _audit([(7, inflated, arrays)], 2)
    assert _checks(alarms) == {"stderr", "n"}
    assert {a.metric for a in alarms} == {"alignment.refusal-margin"}
    wrong_budget = dict(report) | {protocol.PROBE_BUDGET: BUDGET + 1}
    assert _checks(_audit([(7, wrong_budget, arrays)], 2)) == {"probe-budget"}


# ---------------------------------------------------------------- pure checks


class _Fixed:
    """A prober that returns one profile, whatever it is given."""

    def __init__(self, profile: BehaviorProfile) -> None:
        self.profile = profile

    def probe(self, arrays: Any, suites: Any) -> BehaviorProfile:
        return self.profile


def _profile(metrics: dict[str, dict[str, MetricValue]]) -> BehaviorProfile:
    return BehaviorProfile(metrics, {m: "0" * 64 for m in metrics})


def _scope(**kw: Any) -> AuditScope:
    return AuditScope(kw.pop("round", 3), kw.pop("budget", 0), dict(SUITES), **kw)


CLEAR = {protocol.ROUND: 3, protocol.PROBE_BUDGET: 0, protocol.PUBLIC_POST_PROCESSING: 1,
         protocol.PRIVACY_NOISE_MULTIPLIER: 1.0}


@pytest.mark.parametrize("bad", [
    {"trust.alignment.refusal-rate": "lots"},
    {"trust.alignment.refusal-rate": math.nan},
    {"trust.alignment.refusal-rate.n": 2.5},
    {"trust.alignment.refusal-rate.stderr": math.inf},
    {"trust.alignment.refusal-rate.noise": None},
    {"trust.round": "three", "trust.probe-budget": None, "trust.public-post-processing": "x",
     "trust.privacy.noise-multiplier": [1]},
])
def test_malformed_reports_are_flagged_never_crash(bad):
    measured = _profile({"alignment": {"refusal-rate": MetricValue(0.5, 0.1, 25)}})
    report = CLEAR | protocol.entry("trust.alignment.refusal-rate", 0.5, 0.1, 25) | bad
    alarms = audit_report(measured, report, node=3, scope=_scope())
    assert alarms and all(a.clients == (3,) for a in alarms)


def test_clear_tolerance_is_one_item_of_n_for_rates_and_relative_otherwise():
    measured = _profile({"alignment": {"refusal-rate": MetricValue(0.5, 0.1, 25),
                                       "refusal-margin": MetricValue(-2.0, 0.05, 25)}})

    def flagged(rate: float, margin: float) -> set[str]:
        report = CLEAR | protocol.entry("trust.alignment.refusal-rate", rate, 0.1, 25) \
            | protocol.entry("trust.alignment.refusal-margin", margin, 0.05, 25)
        return {a.metric for a in audit_report(measured, report, node=1, scope=_scope())}

    assert flagged(0.5 + 2 / 25, -2.0 + 0.10) == set()  # two items flipped; 5% of |-2|
    assert flagged(0.5 + 3 / 25, -2.0 + 0.12) == {"alignment.refusal-rate",
                                                  "alignment.refusal-margin"}
    many = _profile({"alignment": {"refusal-rate": MetricValue(0.5, 0.03, 300)}})
    report = CLEAR | protocol.entry("trust.alignment.refusal-rate", 0.5 + 3 / 300, 0.03, 300)
    assert audit_report(many, report, node=1, scope=_scope()) == []  # 1% of 300 items


def test_group_derived_metrics_allow_flips_in_the_smallest_group():
    measured = _profile({"fairness": {"group-gap": MetricValue(0.2, 0.1, 100),
                                      "accuracy": MetricValue(0.5, 0.05, 100),
                                      "accuracy/a": MetricValue(0.6, 0.1, 20),
                                      "accuracy/b": MetricValue(0.4, 0.1, 80)}})
    report = CLEAR | protocol.entry("trust.fairness.group-gap", 0.2 + 2 / 20, 0.1, 100) \
        | protocol.entry("trust.fairness.accuracy", 0.5 + 2 / 20, 0.05, 100)
    alarms = audit_report(measured, report, node=1, scope=_scope())
    assert {a.metric for a in alarms} == {"fairness.accuracy"}  # its own n is 100


def test_noised_headline_value_allowance_comes_from_the_declared_multiplier():
    measured = _profile({"alignment": {"refusal-rate": MetricValue(0.5, 0.1, 25)}})
    hidden = CLEAR | {protocol.PUBLIC_POST_PROCESSING: 0, protocol.PRIVACY_NOISE_MULTIPLIER: 0.1}

    def checks(value: float) -> set[str]:
        report = hidden | protocol.entry("trust.alignment.refusal-rate", value, 0.1, 25, 0.1)
        return _checks(audit_report(measured, report, node=1, scope=_scope(n_audited=4)))

    # 4 audited x (1 metric + 1 noise test) at alpha 0.01: z_crit 3.23; allowance
    # 3.23 x 0.1 + 2/25 + 0.001 = 0.40
    assert checks(0.5 + 0.35) == set()
    assert checks(0.5 + 0.45) == {"value"}
    assert checks(0.5 + 1e-6) == {"noise-added"}  # a value this close was never noised


def test_audit_round_samples_with_the_servers_rng_and_reports_who_it_audited():
    measured = _profile({"alignment": {"refusal-rate": MetricValue(0.5, 0.1, 25)}})
    honest = CLEAR | protocol.entry("trust.alignment.refusal-rate", 0.5, 0.1, 25)
    liar = CLEAR | protocol.entry("trust.alignment.refusal-rate", 0.9, 0.1, 25)
    replies = [(n, liar if n == 4 else honest, n) for n in range(1, 9)]

    def run(seed: int, fraction: float):
        return audit_round(replies, lambda m, s: measured, suites=SUITES, server_round=3,
                           budget=0, fraction=fraction, rng=random.Random(seed), alpha=0.01)

    full = run(0, 1.0)
    assert sorted(full.audited) == list(range(1, 9)) and full.flagged == {4}
    quarter = [run(seed, 0.25) for seed in range(40)]
    assert all(len(r.audited) == 2 for r in quarter)
    assert all(r.flagged == ({4} if 4 in r.audited else set()) for r in quarter)
    assert run(0, 0.0).audited == ()


def test_unprobeable_model_is_an_alarm_not_a_crash():
    class Broken:
        def probe(self, arrays: Any, suites: Any) -> BehaviorProfile:
            raise ValueError("arrays do not load")

    alarms = _audit([(9, CLEAR, None)], 3, prober=Broken())
    assert _checks(alarms) == {"unprobeable"} and alarms[0].clients == (9,)


def test_a_model_the_server_scores_as_no_number_is_not_verified():
    """Finite but huge arrays can score NaN: before, the audit skipped such metrics, so the
    client counted as verified (and could leave probation)."""
    measured = _profile({"alignment": {"refusal-rate": MetricValue(math.nan, math.nan, 9),
                                       "over-refusal": MetricValue(math.nan, math.nan, 9)}})
    report = CLEAR | protocol.entry("trust.alignment.refusal-rate", 0.9, 0.05, 9) \
        | protocol.entry("trust.alignment.over-refusal", 0.1, 0.05, 9)
    alarms = _audit([(4, report, None)], 3, prober=_Fixed(measured), budget=0)
    assert _checks(alarms) == {"unscorable"} and alarms[0].clients == (4,)
    assert len(alarms) == 1 and alarms[0].evidence["count"] == 2  # one per client


def test_chi2_cdf_matches_known_values():
    assert _chi2_cdf(1.0, 1) == pytest.approx(0.682689, abs=1e-6)
    assert _chi2_cdf(2.0, 2) == pytest.approx(1 - math.exp(-1), abs=1e-9)
    assert _chi2_cdf(0.0, 3) == 0.0 and _chi2_cdf(1e4, 6) == 1.0
    assert _chi2_cdf(12.5916, 6) == pytest.approx(0.95, abs=1e-4)


def test_per_item_values_are_audited_and_hang_together_with_the_value():
    """The paired per-client test reads `.items`: a client could report its true value with
    the items of a healthy model. The real mod's items average to the value (the screening
    holds every reply to that) and the audit compares them with the server's own scores."""
    arrays = lora_arrays(43)
    mod = make_trust_mod(suites=SUITES, defaults=TINY_DEFAULTS | {"trust.privacy.epsilon": 1e9},
                         rng=np.random.default_rng(5))

    def app(msg: Message, _ctx: Any) -> Message:
        return Message(RecordDict({"arrays": arrays,
                                   "metrics": MetricRecord({"num-examples": 1})}), reply_to=msg)

    reply = mod(message("train", lora_arrays(0), round=2,  # whole suites: a tight tolerance
                        extra_config={"trust.probe-budget": 0, protocol.REPORT_ITEMS: 1}),
                context(node_config={"trust.privacy.outgoing": "clear"}, node_id=7), app)
    report = protocol.split_trust(dict(reply.content["metrics"]))[0]
    listed = [k for k in report if k.endswith(protocol.ITEMS)]
    assert listed and protocol.report_shape_problem(report) == ""
    assert _audit([(7, report, arrays)], 2, budget=0) == []
    key = "trust.alignment.refusal-rate.items"
    mean, n = report[key.removesuffix(protocol.ITEMS)], len(report[key])
    spread = [mean + 0.45 * (-1) ** i for i in range(n)]  # same mean (n even), other items
    assert n % 2 == 0 and all(0.0 <= x <= 1.0 for x in spread)
    reshaped = dict(report) | {key: spread}
    assert protocol.report_shape_problem(reshaped) == ""
    alarms = _audit([(7, reshaped, arrays)], 2, budget=0)
    assert _checks(alarms) == {"items"} and alarms[0].metric == key.removeprefix(
        protocol.PREFIX).removesuffix(protocol.ITEMS)


# ---------------------------------------------------------------- clients on probation


def test_audit_round_always_audits_the_named_nodes_even_at_fraction_zero():
    replies = [(n, {"x": 1}, None) for n in (1, 2, 3, 4)]
    def probe(model, suites):
        raise RuntimeError("unprobeable")  # each audited node leaves one alarm

    kw = {"suites": {}, "server_round": 1, "budget": 0, "alpha": 0.01}
    assert audit_round(replies, probe, fraction=0.0, rng=random.Random(0), **kw).audited == ()
    forced = audit_round(replies, probe, fraction=0.0, rng=random.Random(0), always={3}, **kw)
    assert forced.audited == (3,) and forced.flagged == {3}
    both = audit_round(replies, probe, fraction=0.34, rng=random.Random(0), always={3}, **kw)
    assert both.audited[0] == 3 and len(both.audited) == 2 and 3 not in both.audited[1:]


def test_a_client_on_probation_that_reports_recovery_falsely_stays_out():
    """audit-fraction 0 audits nobody, except clients on probation: a named client that
    reports an ordinary refusal rate while its model is unchanged is contradicted by the
    server's own probe and stays out; the same client reporting honestly is released."""
    from flwr_trust.guard.gates import Quarantine

    rnd = 2
    replies = [(n, _report(lora_arrays(10 * n + rnd), rnd, node=n), lora_arrays(10 * n + rnd))
               for n in (1, 2, 3, 4)]
    key = next(k for k in _present(replies[0][1]) if ".alignment." in f".{k}")
    mode, metric = key.removeprefix(protocol.PREFIX).split(".", 1)
    for lie, expected in ((0.3, [1]), (0.0, [])):
        guard = _guard(BridgeProber("tiny", LORA, "fp32"), gate=Quarantine(), fraction=0.0)
        guard.probation.add([1], [(mode, metric)])
        sent = [(n, _shift(t, lie) if n == 1 else t, m) for n, t, m in replies]
        # the peers report the liar's claim: its report is "recovered", only the audit can tell
        sent = [(n, t | {key: sent[0][1][key]}, m) if n != 1 else (n, t, m) for n, t, m in sent]
        ev = RoundEvidence(rnd, "train", [Reply(n, dict(t), model=m) for n, t, m in sent])
        audit = guard._audit(ev)
        assert audit is not None and audit.audited == (1,)
        distrusted = audit.flagged
        verified = set(audit.audited) - distrusted
        observed = _observations({n: t for n, t, _ in sent})
        kept = guard._on_probation(rnd, observed, [1, 2, 3, 4], distrusted, verified,
                                   UpdateCheckResult())
        assert kept == expected, (lie, audit.alarms)
