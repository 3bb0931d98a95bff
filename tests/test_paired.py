"""Paired per-item tests: the false-alarm bound at the least favourable nulls (uniform and
adversarially heterogeneous), the power the margin scale adds over the rate scale and over
independent stderrs, the statistics' edges, and the plumbing (items travel in reports)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from flwr_trust import protocol
from flwr_trust.config.server import guard_options
from flwr_trust.detect import DetectorConfig, detect_round
from flwr_trust.detect.margin import (
    LOGIT_BOUND,
    MarginChange,
    logits,
    margin_change,
    margin_clients,
    rate_change,
    shift_for,
)
from flwr_trust.detect.paired import PairedChange, paired_change, paired_clients
from flwr_trust.errors import TrustError
from flwr_trust.scoring.profile import MetricValue
from flwr_trust.scoring.stats import sigmoid
from tests.helpers.scripts import ROOT, load_script


@pytest.fixture(scope="module")
def power():
    return load_script(ROOT / "bench" / "power.py")


def _binomial_ceiling(rate: float, runs: int) -> float:
    """rate + 3 binomial standard errors: what an honest test stays under in `runs` draws."""
    return rate + 3.0 * math.sqrt(rate * (1.0 - rate) / runs)


# ------------------------------------------------------------------------ the false-alarm bound


def test_false_alarms_at_the_uniform_null_stay_under_alpha(power):
    """Every true degradation exactly at the tolerance (one shared logit shift): the shipped
    level and client tests alarm at most alpha of the time."""
    rng = np.random.default_rng(1)
    runs = 200
    level = np.mean([power.level_run(rng, 20, 1.0, "margin") for _ in range(runs)])
    client = [power.client_run(rng, 20, 1.0, "margin") for _ in range(runs)]
    assert level <= power.ALPHA
    assert np.mean([c[0] or c[1] for c in client]) <= power.ALPHA


@pytest.mark.parametrize(("kind", "items"), [("uniform", "bimodal"), ("tilted", "bimodal"),
                                             ("opposite", "bimodal"), ("saturated", "normal")])
def test_heterogeneous_nulls_keep_the_bound_the_margin_alone_would_break(power, kind, items):
    """The expected rate change is exactly the tolerance, the per-item shifts are uniform or
    adversarially heterogeneous. At a per-test level of 1% (where a rate is measurable in a few
    hundred draws) the shipped test stays within binomial error of 1%; at the tilted and
    opposite nulls the margin statistic alone alarms almost always: the rate guard is what
    keeps the bound there."""
    rng = np.random.default_rng([3, len(kind), len(items)])
    rows = np.concatenate([power.null_rows(rng, 20, kind, items, 25) for _ in range(16)])
    shipped_loose, margin_loose = rows[:, 5].mean(), rows[:, 6].mean()
    assert shipped_loose <= _binomial_ceiling(power.LOOSE, rows.shape[0])
    assert rows[:, 2].mean() <= _binomial_ceiling(4.05e-4, rows.shape[0])  # production level
    if kind in ("tilted", "opposite"):
        assert margin_loose >= 0.9


def test_client_null_keeps_the_bound(power):
    rng = np.random.default_rng(4)
    rows = np.asarray([power.client_null_run(rng, 20, "tilted") for _ in range(100)])
    assert rows[:, 0].mean() <= power.ALPHA and rows[:, 1].mean() <= power.ALPHA


# ------------------------------------------------------------------------------------- power


def test_the_margin_scale_finds_what_the_rate_scale_misses(power):
    """2x the tolerance on 20 items: the margin scale alarms far more often than the
    rate-scale paired test; independent stderrs see nothing."""
    rng = np.random.default_rng(2)
    runs = 100
    margin = np.mean([power.level_run(rng, 20, 2.0, "margin") for _ in range(runs)])
    rate = np.mean([power.level_run(rng, 20, 2.0, "rate") for _ in range(runs)])
    unpaired = np.mean([power.level_run(rng, 20, 2.0, "unpaired") for _ in range(30)])
    assert margin >= 0.3 and margin >= rate + 0.15 and unpaired <= 0.1
    forty = np.mean([power.level_run(rng, 40, 2.0, "margin") for _ in range(40)])
    assert forty >= 0.85


def test_one_degraded_client_of_four_is_named_on_the_margin_scale(power):
    rng = np.random.default_rng(5)
    runs = [power.client_run(rng, 40, 2.0, "margin") for _ in range(40)]
    rate = [power.client_run(rng, 40, 2.0, "rate") for _ in range(40)]
    assert np.mean([r[0] for r in runs]) >= 0.8 > np.mean([r[0] for r in rate]) + 0.2
    assert not any(r[1] for r in runs)


# ------------------------------------------------------------------------------- statistics


def test_the_tolerance_maps_to_a_logit_shift_through_the_reference_items():
    a = logits([0.5, 0.9, 0.99, 0.2])
    delta = shift_for(a, -1.0, 0.05)
    assert rate_change(a, -1.0, delta) == pytest.approx(0.05, abs=1e-9)
    assert shift_for(a, -1.0, 0.0) == pytest.approx(0.0, abs=1e-9)
    # a rate of 0.0001 cannot fall by 0.05: no shift reaches it
    assert shift_for(logits([1e-4] * 5), -1.0, 0.05) == math.inf
    assert logits([0.0, 1.0]).tolist() == pytest.approx([-LOGIT_BOUND, LOGIT_BOUND])
    # higher is worse (over-refusal): the worse way is up
    up = shift_for(a, 1.0, 0.05)
    assert up > 0 and rate_change(a, 1.0, up) == pytest.approx(0.05, abs=1e-9)
    rising = margin_change(sigmoid(a + 2 * up), sigmoid(a), 1.0, 0.05)
    assert rising.rate > 0.05 and rising.shift == pytest.approx(2 * up)
    assert rising.shift_tolerance == pytest.approx(up)


def test_a_shift_on_saturated_items_moves_the_margin_not_the_rate():
    """Half the items undecided (p = 0.5) move 0.2 logits, half saturated (p = 0.9999) move 3:
    the mean logit shift is far past its bound, the rate moves by half the tolerance, so the
    shipped (intersection-union) statistic stays low."""
    rng = np.random.default_rng(7)
    ref = np.r_[np.full(20, 0.5), np.full(20, 0.9999)]
    now = sigmoid(logits(ref) - np.r_[np.full(20, 0.2), np.full(20, 3.0)]
                  + rng.normal(0, 0.05, 40))
    change = margin_change(now, ref, -1.0, 0.05)
    assert change.z_margin > 5 and change.z_rate < 0 and change.z(0.05) == change.z_rate
    assert change.rate < 0.03 and change.df == len(ref) - 2


def test_margin_change_edges():
    assert margin_change([0.5, 0.6], [0.5, 0.6], 1.0, 0.05) is None  # too few items
    assert margin_change([0.5, 0.6, 0.7], [0.5, 0.6], 1.0, 0.05) is None  # different items
    assert margin_change([0.5, 2.0, 0.7], [0.5, 0.6, 0.7], 1.0, 0.05) is None  # not probabilities
    unreachable = margin_change([1e-4] * 4, [1e-4] * 4, -1.0, 0.05)
    assert unreachable.z(0.05) == -math.inf  # the rate cannot fall by the tolerance
    with pytest.raises(ValueError):
        unreachable.z(0.1)  # compared against another tolerance than its own
    same = margin_change([0.3, 0.6, 0.9], [0.3, 0.6, 0.9], 1.0, 0.05)
    assert same.rate == 0.0 and same.z(0.05) < 0


def test_paired_statistics_and_their_edges():
    change = paired_change([0.5, 0.6, 0.7], [0.6, 0.7, 0.8], sign=-1.0)  # lower is worse
    assert change.degradation == pytest.approx(0.1) and change.se == pytest.approx(1e-9)
    assert paired_change([0.5, 0.6], [0.5, 0.6], 1.0) is None  # too few items
    assert paired_change([0.5, 0.6, 0.7], [0.5, 0.6], 1.0) is None  # different items
    clients = paired_clients({1: [0.9] * 5, 2: [0.8] * 5, 3: [0.8] * 5}, sign=-1.0,
                             min_clients=3)
    assert clients.excess == pytest.approx((-0.1, 0.0, 0.0))
    assert paired_clients({1: [0.9] * 5, 2: [0.8] * 4, 3: [0.8] * 5}, -1.0, 3) is None
    margin = margin_clients({1: [0.9] * 5, 2: [0.8] * 5, 3: [0.8] * 5}, -1.0, 3)
    assert margin.nodes == (1, 2, 3) and margin.n_items == 5
    assert margin_clients({1: [0.9] * 5, 2: [0.8] * 5, 3: [1.5] * 5}, -1.0, 3) is None


# --------------------------------------------------------------------------------- the engine


def _profiles(ref: np.ndarray, now: np.ndarray) -> tuple[dict, dict]:
    def mv(p: np.ndarray) -> MetricValue:
        return MetricValue(float(p.mean()), float(p.std(ddof=1) / math.sqrt(p.size)), p.size,
                           "lower", tuple(p.tolist()))
    return {"alignment": {"refusal-rate": mv(ref)}}, {"alignment": {"refusal-rate": mv(now)}}


def test_the_engine_uses_the_margin_scale_by_default_and_the_switch_turns_it_off():
    rng = np.random.default_rng(6)
    a = rng.normal(1.5, 1.5, 40)
    ref, now = sigmoid(a), sigmoid(a - shift_for(a, -1.0, 0.15) - rng.normal(0, 0.2, 40))
    reference, candidate = _profiles(ref, now)
    margin = detect_round(reference, candidate, None, round=1)
    alarm = next(x for x in margin.alarms if x.metric == "refusal-rate")
    assert alarm.severity == "alarm" and alarm.evidence["scale"] == "margin"
    expected = margin_change(now, ref, -1.0, 0.05)
    assert isinstance(expected, MarginChange)
    assert alarm.evidence["z"] == pytest.approx(expected.z(0.05))
    assert alarm.evidence["df"] == 38 and alarm.evidence["logit_tolerance"] > 0
    rate = detect_round(reference, candidate, None, round=1,
                        config=DetectorConfig(paired_scale="rate"))
    found = [x for x in rate.alarms if x.metric == "refusal-rate"]
    assert all(x.evidence["scale"] == "rate" and x.evidence["df"] == 39 for x in found)
    assert isinstance(paired_change(now, ref, -1.0), PairedChange)


def test_metrics_that_are_not_rates_keep_the_rate_scale():
    """log-perplexity items are nats, not probabilities: paired differences as before."""
    ref = np.linspace(2.0, 3.0, 10)
    reference = {"capability": {"log-ppl": MetricValue(float(ref.mean()), 0.1, 10, "higher",
                                                       tuple(ref.tolist()))}}
    now = ref + 0.5
    candidate = {"capability": {"log-ppl": MetricValue(float(now.mean()), 0.1, 10, "higher",
                                                       tuple(now.tolist()))}}
    result = detect_round(reference, candidate, None, round=1)
    alarm = next(x for x in result.alarms if x.metric == "log-ppl")
    assert alarm.evidence["scale"] == "rate" and alarm.evidence["df"] == 9


def test_the_switch_is_a_run_config_key_and_bad_values_are_refused():
    cfg = guard_options({"trust.paired-scale": "rate"})["detector"]
    assert cfg.paired_scale == "rate"
    assert guard_options({})["detector"].paired_scale == "margin"
    with pytest.raises(TrustError):
        guard_options({"trust.paired-scale": "logit"})
    with pytest.raises(TrustError):
        DetectorConfig(paired_scale="logit")  # type: ignore[arg-type]


def test_items_travel_in_reports_only_for_clear_releases():
    flat = (protocol.entry("trust.alignment.refusal-rate", 0.8, 0.02, 3, items=[0.7, 0.8, 0.9])
            | protocol.entry("trust.bias.stereotype-pref", 0.6, 0.05, 3, 0.4, items=[1, 2, 3]))
    assert flat["trust.alignment.refusal-rate.items"] == [0.7, 0.8, 0.9]
    assert "trust.bias.stereotype-pref.items" not in flat  # noised: no per-item values
    obs = protocol.observations(flat)
    assert obs["alignment"]["refusal-rate"].items == (0.7, 0.8, 0.9)


def test_margin_spread_reads_the_logit_spread_from_audit_logs(tmp_path, capsys):
    """bench/margin_spread.py: sd = logit_se * sqrt(items), per run and as a median."""
    row = {"scale": "margin", "paired_items": 16, "logit_se": 0.05, "logit_shift": 0.4,
           "logit_tolerance": 0.3, "degradation": 0.06, "z_margin": 2.0, "z_rate": 1.5}
    records = [{"kind": "run-start", "payload": {}},
               {"kind": "round", "payload": {"phase": "train", "round": 1, "behavior": {
                   "alignment": {"refusal-rate": row, "refusal-rate-hard": {"value": 0.5}}}}},
               {"kind": "round", "payload": {"phase": "evaluate", "round": 1, "behavior": {}}}]
    run = tmp_path / "scenario" / "trust-off-seed0"
    run.mkdir(parents=True)
    (run / "audit.jsonl").write_text("\n".join(json.dumps(r) for r in records) + "\n")
    spread = load_script(ROOT / "bench" / "margin_spread.py")
    assert spread.main([str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "| alignment.refusal-rate | 1 | 0.200 | 0.200 |" in out
    assert spread.main([str(tmp_path / "missing")]) == 2


def test_round_evidence_prints_the_server_probe_client_reports_and_alarms(tmp_path, capsys):
    """bench/round_evidence.py: one mode's per-round evidence, read from an audit log."""
    behavior = {"capability": {"log-ppl": {"value": 3.9, "reference": 4.9, "degradation": -1.0,
                                           "tolerance": 0.1, "stderr": 0.11, "paired_items": 4,
                                           "scale": "rate"}}}
    clients = {"1001": {"trust.capability.log-ppl": 5.68, "trust.capability.log-ppl.n": 4,
                        "trust.alignment.refusal-rate": 0.8}}
    alarm = {"mode": "capability", "severity": "warning", "message": "log-ppl may be degrading"}
    records = [{"kind": "round", "payload": {"phase": "train", "round": 2, "behavior": behavior,
                                             "client_metrics": clients, "alarms": [alarm]}},
               {"kind": "round", "payload": {"phase": "evaluate", "round": 2}}]
    run = tmp_path / "run"
    run.mkdir()
    (run / "audit.jsonl").write_text("\n".join(json.dumps(r) for r in records) + "\n")
    evidence = load_script(ROOT / "bench" / "round_evidence.py")
    assert evidence.main([str(run), "--mode", "capability"]) == 0
    out = capsys.readouterr().out
    assert "| log-ppl | 3.900 | 4.900 | -1.000 | 0.100 | 0.110 | - | 4 |" in out
    assert "| 1001 | log-ppl 5.680 |" in out and "refusal" not in out
    assert "- warning: log-ppl may be degrading" in out and out.count("## Round") == 1
    with pytest.raises(SystemExit, match="no audit log"):
        evidence.main([str(tmp_path / "missing"), "--mode", "capability"])


def _client_obs(items: np.ndarray) -> dict:
    p = np.asarray(items, dtype=np.float64)
    return {"alignment": {"refusal-rate": protocol.Observation(
        float(p.mean()), float(p.std(ddof=1) / math.sqrt(p.size)), p.size, 0.0,
        tuple(p.tolist()))}}


@pytest.mark.parametrize("n_clients", [3, 4, 5])
def test_one_reply_cannot_get_honest_clients_named(n_clients):
    """One client reporting perfect per-item values (it "refuses everything") must not become
    the reference of the others: with three clients the median of the other two was their
    mean, and both honest clients were named. A degraded client is still named."""
    rng = np.random.default_rng(n_clients)
    base = rng.normal(1.0, 1.5, 32)
    honest = {n: sigmoid(base + rng.normal(0.0, 0.1, 32)) for n in range(1, n_clients)}
    steering = {**{n: _client_obs(p) for n, p in honest.items()},
                n_clients: _client_obs(np.ones(32))}
    assert not detect_round(None, None, steering, round=1).flagged_clients
    degraded = {**{n: _client_obs(p) for n, p in honest.items()},
                n_clients: _client_obs(sigmoid(base - 2.0))}
    assert detect_round(None, None, degraded, round=1).flagged_clients == {n_clients}


@pytest.mark.parametrize("odd", ["no items", "tiny noise", "other length"])
def test_one_reply_without_items_does_not_switch_the_others_to_the_unpaired_test(odd):
    """The paired per-client test ran only when every client sent usable items: one reply
    leaving them out (or declaring any noise, which drops them, or sending another number of
    them) hid a client whose refusal logits fell by 0.6. The paired test now runs over those
    that sent items of the common length."""
    rng = np.random.default_rng(9)
    base = rng.normal(1.0, 1.5, 32)
    reports = {n: _client_obs(sigmoid(base + rng.normal(0.0, 0.05, 32))) for n in range(2, 7)}
    reports[1] = _client_obs(sigmoid(base - 0.6 + rng.normal(0.0, 0.05, 32)))
    plain = reports[6]["alignment"]["refusal-rate"]
    odd_one = {"no items": plain._replace(items=None),
               "tiny noise": plain._replace(noise_std=1e-9),
               "other length": plain._replace(items=plain.items[:20], n=20)}[odd]
    reports[6] = {"alignment": {"refusal-rate": odd_one}}
    result = detect_round(None, None, reports, round=1)
    assert result.flagged_clients == {1}
    (hit,) = [a for a in result.alarms if a.clients]
    assert hit.evidence["scale"] == "margin" and hit.evidence["paired_items"] == 32


def test_colluding_item_senders_among_noised_clients_cannot_get_an_honest_one_named():
    """Clients with a private model send no items, so the paired subset may be small: two
    colluders reporting perfect items were the majority of three item-senders among ten and
    set the honest one's reference. A paired hit also needs the value itself beyond the
    margin from every client's median."""
    rng = np.random.default_rng(21)
    base = rng.normal(1.0, 1.5, 32)
    honest = sigmoid(base + rng.normal(0.0, 0.05, 32))
    reports = {1: _client_obs(honest), 2: _client_obs(np.ones(32)), 3: _client_obs(np.ones(32))}
    for n in range(4, 11):  # DP-noised: a value and its noise, no items
        reports[n] = {"alignment": {"refusal-rate": protocol.Observation(
            float(honest.mean() + rng.normal(0.0, 0.02)), 0.02, 32, 0.05)}}
    assert not detect_round(None, None, reports, round=1).flagged_clients
