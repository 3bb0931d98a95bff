"""Tests for the behavioral detectors (flwr_trust.detect.behavior and the six mode modules).

All numbers are synthetic and seeded: no models. The clean-run study simulates the least
favorable null (every true degradation exactly at its tolerance, one client exactly at the
per-client margin) so that the measured false-alarm rate is a meaningful check of the bound.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from flwr_trust import modes
from flwr_trust.detect import (
    BehaviorMonitor,
    DetectorConfig,
    MonitorState,
    Observation,
    detect_round,
    spend,
)
from flwr_trust.errors import TrustError
from flwr_trust.modes import tolerance_keys
from flwr_trust.modes import watched as spec_for
from flwr_trust.protocol import observations as observations_from_metrics
from flwr_trust.scoring.profile import MetricValue

ALPHA = 0.05
N_CLIENTS = 10
# (mode, metric) -> (reference value, stderr of one probe run)
PUBLIC = {
    ("bias", "stereotype-pref"): (0.60, 0.03),
    ("bias", "stereotype-pref/gender"): (0.62, 0.06),
    ("fairness", "group-gap"): (0.10, 0.04),
    ("fairness", "worst-group-accuracy"): (0.55, 0.04),
    ("alignment", "refusal-rate"): (0.90, 0.03),
    ("alignment", "over-refusal"): (0.10, 0.03),
    ("capability", "accuracy"): (0.45, 0.03),
    ("capability", "log-ppl"): (2.50, 0.05),
    ("calibration", "ece"): (0.08, 0.02),
    ("calibration", "unanswerable-confidence"): (0.50, 0.03),
    ("memorization", "canary-exposure"): (1.50, 0.30),
}
# private metrics, measured by clients only: (centre, stderr, DP noise std)
PRIVATE = {
    ("fairness", "local-loss"): (2.00, 0.05, 0.10),
    ("memorization", "loss-gap"): (0.00, 0.03, 0.05),
    ("memorization", "local-canary-exposure"): (1.20, 0.30, 0.30),
}


def reference() -> dict[str, dict[str, MetricValue]]:
    out: dict[str, dict[str, MetricValue]] = {}
    for (mode, metric), (value, se) in PUBLIC.items():
        out.setdefault(mode, {})[metric] = MetricValue(value, se, 400, spec_for(mode, metric).worse)
    return out


def sign(mode: str, metric: str) -> float:
    return 1.0 if spec_for(mode, metric).worse == "higher" else -1.0


def put(d: dict, mode: str, metric: str, value: object) -> None:
    d.setdefault(mode, {})[metric] = value


def alarms_of(result, test: str | None = None, severity: str = "alarm") -> list:
    return [a for a in result.alarms if a.severity == severity
            and (test is None or a.evidence["test"] == test)]


# --------------------------------------------------------------------------------------------
# clean runs: the false-alarm bound


def clean_run(seed: int, server: bool, rounds: int = 20, horizon: int = 0) -> set[str]:
    """One run at the least favorable null; returns the test families that raised an alarm.

    Every true degradation equals its tolerance. Clients carry fixed heterogeneity (within half
    a tolerance of the median) and client 0 sits exactly `tolerance` on the worse side of the
    median (the per-client null's boundary; for the fairness victim test, at 1 + tolerance
    times the median). server=False is the secure-aggregation path: no server probe, and the
    clients add DP noise (std = stderr) to public metrics too.
    """
    rng = np.random.default_rng(seed)
    keys = list(PUBLIC) + list(PRIVATE)
    truths, ses, dps = [], [], []
    for mode, metric in keys:
        spec = spec_for(mode, metric)
        if (mode, metric) in PUBLIC:
            ref, se = PUBLIC[mode, metric]
            dp = 0.0 if server else se
        else:
            ref, se, dp = PRIVATE[mode, metric]
            ref = spec.reference if spec.reference is not None else ref
        boundary = ref if spec.victim else ref + sign(mode, metric) * spec.tolerance
        truths.append(boundary)
        ses.append(se)
        dps.append(dp)
    truths, ses, dps = np.array(truths), np.array(ses), np.array(dps)
    tols = np.array([spec_for(*k).tolerance for k in keys])
    signs = np.array([sign(*k) for k in keys])
    victim = np.array([spec_for(*k).victim for k in keys])

    # fixed client truths: others within tol/2 of the median, client 0 at the null's boundary
    off = np.clip(0.25 * tols[:, None] * rng.standard_normal((len(keys), N_CLIENTS - 1)),
                  -0.5 * tols[:, None], 0.5 * tols[:, None])
    srt = np.sort(off, axis=1)
    mid = 0.5 * (srt[:, 3] + srt[:, 4])  # median of all 10 once client 0 is on top
    off -= mid[:, None]
    margin = np.where(victim, tols * np.abs(truths), tols)
    client_truth = truths[:, None] + signs[:, None] * np.hstack([margin[:, None], off])

    meas = rng.standard_normal((rounds, len(keys), N_CLIENTS + 1))
    dpn = rng.standard_normal((rounds, len(keys), N_CLIENTS))
    server_vals = (truths[None, :] + ses[None, :] * meas[:, :, 0]).tolist()
    client_vals = (client_truth[None] + ses[None, :, None] * meas[:, :, 1:]
                   + dps[None, :, None] * dpn).tolist()

    by_mode: dict[str, list[tuple[int, str, float, float]]] = {}
    for j, (mode, metric) in enumerate(keys):
        by_mode.setdefault(mode, []).append((j, metric, float(ses[j]), float(dps[j])))
    monitor = BehaviorMonitor(reference(), DetectorConfig(alpha=ALPHA, horizon=horizon))
    fired: set[str] = set()
    for r in range(rounds):
        sv, cv = server_vals[r], client_vals[r]
        now = {mode: {metric: MetricValue(sv[j], se, 400) for j, metric, se, _ in items
                      if (mode, metric) in PUBLIC}
               for mode, items in by_mode.items()} if server else None
        reports = {n: {mode: {metric: Observation(cv[j][n], se, 400, dp)
                              for j, metric, se, dp in items}
                       for mode, items in by_mode.items()}
                   for n in range(N_CLIENTS)}
        result = monitor.observe(r + 1, now, reports)
        fired |= {a.evidence["test"] for a in alarms_of(result)}
    return fired


def test_clean_runs_stay_within_the_false_alarm_budget() -> None:
    runs = 500
    families = [clean_run(seed, server=seed % 2 == 0) for seed in range(runs)]
    rate = sum(bool(f) for f in families) / runs
    bound = ALPHA + 3 * math.sqrt(ALPHA * (1 - ALPHA) / runs)
    by_family = {t: sum(t in f for f in families) / runs for t in ("level", "trend", "client",
                                                                    "victim")}
    print(f"clean per-run false-alarm rate {rate:.4f} (bound {bound:.4f}); by family {by_family}")
    assert rate <= bound


def test_clean_runs_with_a_horizon_stay_within_the_budget() -> None:
    """trust.horizon spends alpha evenly over the planned rounds: the same per-run bound, here
    with the plan overrun (25 rounds of a 20-round plan use the tail share)."""
    runs = 500
    rate = sum(bool(clean_run(seed, server=seed % 2 == 0, rounds=25, horizon=20))
               for seed in range(runs)) / runs
    assert rate <= ALPHA + 3 * math.sqrt(ALPHA * (1 - ALPHA) / runs)


# --------------------------------------------------------------------------------------------
# planted failures


PLANTED = {  # mode: (metric, planted value of the candidate model on the server's probe)
    "bias": ("stereotype-pref", 0.80),
    "fairness": ("group-gap", 0.40),
    "alignment": ("refusal-rate", 0.60),
    "capability": ("accuracy", 0.25),
    "calibration": ("ece", 0.25),
    "memorization": ("canary-exposure", 4.50),
}


def server_probe(rng: np.random.Generator, planted: dict | None = None) -> dict:
    now: dict = {}
    for (mode, metric), (value, se) in PUBLIC.items():
        value = (planted or {}).get((mode, metric), value + se * rng.standard_normal())
        put(now, mode, metric, MetricValue(value, se, 400))
    return now


def clean_reports(rng: np.random.Generator) -> dict[int, dict]:
    reports: dict[int, dict] = {n: {} for n in range(N_CLIENTS)}
    for (mode, metric), (value, se) in PUBLIC.items():
        for n in range(N_CLIENTS):
            put(reports[n], mode, metric, Observation(value + se * rng.standard_normal(), se))
    for (mode, metric), (value, se, dp) in PRIVATE.items():
        for n in range(N_CLIENTS):
            v = value + math.hypot(se, dp) * rng.standard_normal()
            put(reports[n], mode, metric, Observation(v, se, 100, dp))
    return reports


@pytest.mark.parametrize("mode", sorted(PLANTED))
def test_planted_degradation_alarms_in_its_round(mode: str) -> None:
    metric, value = PLANTED[mode]
    rng = np.random.default_rng(7)
    monitor = BehaviorMonitor(reference())
    for r in range(1, 5):
        assert not monitor.observe(r, server_probe(rng), clean_reports(rng)).alarmed
    result = monitor.observe(5, server_probe(rng, {(mode, metric): value}), clean_reports(rng))
    hits = [a for a in alarms_of(result, "level") if (a.mode, a.metric) == (mode, metric)]
    assert len(hits) == 1 and hits[0].round == 5 and hits[0].clients == ()
    ev = hits[0].evidence
    assert ev["z"] > ev["z_crit"] and ev["p_value"] <= ev["family_alpha"]
    assert ev["degradation"] == pytest.approx(sign(mode, metric) * (value - PUBLIC[mode,
                                                                                   metric][0]))
    assert {(a.mode, a.metric) for a in alarms_of(result)} == {(mode, metric)}
    assert not result.flagged_clients


def test_refusal_drop_from_clients_alone_under_secure_aggregation() -> None:
    """No server probe: the population value is the client median, with DP noise."""
    rng = np.random.default_rng(3)
    reports = clean_reports(rng)
    for n in range(N_CLIENTS):
        v = 0.60 + math.hypot(0.03, 0.03) * rng.standard_normal()
        reports[n]["alignment"]["refusal-rate"] = Observation(v, 0.03, 400, 0.03)
    result = detect_round(reference(), None, reports, round=1)
    (hit,) = [a for a in alarms_of(result, "level") if a.metric == "refusal-rate"]
    assert hit.evidence["source"] == "clients" and hit.evidence["df"] == 2 * (N_CLIENTS - 1)
    pop = result.population["alignment"]["refusal-rate"]
    assert pop["n_clients"] == N_CLIENTS and pop["client_median"] == pytest.approx(0.6, abs=0.05)


def test_memorization_loss_gap_uses_its_fixed_reference() -> None:
    rng = np.random.default_rng(4)
    reports = clean_reports(rng)
    for n in range(N_CLIENTS):
        v = -0.8 + 0.06 * rng.standard_normal()
        reports[n]["memorization"]["loss-gap"] = Observation(v, 0.03, 100, 0.05)
    result = detect_round(reference(), server_probe(rng), reports, round=1)
    (hit,) = [a for a in alarms_of(result, "level") if a.metric == "loss-gap"]
    assert hit.evidence["reference"] == 0.0 and hit.evidence["degradation"] > 0.5


def test_bias_per_group_metric_is_watched() -> None:
    rng = np.random.default_rng(5)
    now = server_probe(rng, {("bias", "stereotype-pref/gender"): 0.95})
    result = detect_round(reference(), now, None, round=1)
    assert [a.metric for a in alarms_of(result)] == ["stereotype-pref/gender"]


def drift_first_alarms(seed: int, slope: float = 0.02, rounds: int = 16) -> dict[str, int]:
    """Refusal rate drifts down by `slope` per round (stderr 0.03); first alarm per family."""
    rng = np.random.default_rng(seed)
    monitor = BehaviorMonitor(reference())
    first: dict[str, int] = {}
    for r in range(1, rounds + 1):
        now = server_probe(rng)
        now["alignment"]["refusal-rate"] = MetricValue(
            0.90 - slope * r + 0.03 * rng.standard_normal(), 0.03, 400)
        for a in alarms_of(monitor.observe(r, now, None)):
            first.setdefault(a.evidence["test"], r)
    return first


def test_slow_drift_is_caught_by_the_trend_test() -> None:
    runs = [drift_first_alarms(seed) for seed in range(40)]
    trend = np.array([f.get("trend", 99) for f in runs])
    level = np.array([f.get("level", 99) for f in runs])
    print(f"rounds to detect a 0.02/round drift: trend median {np.median(trend)} "
          f"(max {trend.max()}), per-round test median {np.median(level)} (max {level.max()})")
    assert trend.max() <= 10  # every run caught within 10 rounds (W = 5)
    assert np.median(trend) < np.median(level)
    # at round 7 (degradation 0.14 vs tolerance 0.05) the trend test has caught most runs,
    # the per-round test alone few
    assert np.mean(trend <= 7) >= 0.5 > np.mean(level <= 7)


# --------------------------------------------------------------------------------------------
# per-client tests


def test_outlying_client_is_named_for_quarantine() -> None:
    rng = np.random.default_rng(11)
    reports = clean_reports(rng)
    reports[7]["alignment"]["refusal-rate"] = Observation(0.50, 0.03, 400)
    result = detect_round(reference(), server_probe(rng), reports, round=3)
    assert result.flagged_clients == {7}
    (hit,) = alarms_of(result, "client")
    assert hit.clients == (7,) and hit.metric == "refusal-rate" and hit.round == 3
    assert hit.evidence["value"] == 0.5 and hit.evidence["z"] > hit.evidence["z_crit"]


def test_fairness_victim_raises_a_population_alarm_and_is_not_quarantined() -> None:
    rng = np.random.default_rng(12)
    reports = clean_reports(rng)
    reports[4]["fairness"]["local-loss"] = Observation(3.4, 0.05, 100, 0.10)  # 1.7x the median
    result = detect_round(reference(), server_probe(rng), reports, round=2)
    (hit,) = alarms_of(result, "victim")
    assert hit.clients == () and hit.evidence["victims"] == [4] and not result.flagged_clients
    assert "client 4" in hit.message


def test_per_client_test_needs_three_clients() -> None:
    reports = {1: {"alignment": {"refusal-rate": Observation(0.9, 0.03)}},
               2: {"alignment": {"refusal-rate": Observation(0.1, 0.03)}}}
    result = detect_round(reference(), None, reports, round=1)
    assert not result.alarms and not result.population  # no median of 2, no server probe


def test_noisy_client_is_not_blamed_for_its_noise() -> None:
    """A client far from the median but with matching DP noise is not an outlier."""
    rng = np.random.default_rng(13)
    reports = clean_reports(rng)
    reports[2]["alignment"]["refusal-rate"] = Observation(0.6, 0.03, 400, 0.3)
    result = detect_round(reference(), server_probe(rng), reports, round=1)
    assert not result.flagged_clients


@pytest.mark.parametrize(("noise", "stderr"), [(1.0, 0.03), (1e5, 0.03), (0.0, 1.0)])
def test_one_client_declaring_huge_noise_does_not_hide_another(noise: float,
                                                               stderr: float) -> None:
    """Every client's declared noise used to be averaged into the median's stderr, which
    enters every client's test: one reply with `.noise` 1.0 (an ordinary DP setting on a rate)
    or a huge `.stderr` hid a degraded client. The median of the declared noise is used."""
    rng = np.random.default_rng(14)
    reports = clean_reports(rng)
    reports[7]["alignment"]["refusal-rate"] = Observation(0.50, 0.03, 400)
    reports[3]["alignment"]["refusal-rate"] = Observation(0.90, stderr, 400, noise)
    result = detect_round(reference(), server_probe(rng), reports, round=3)
    assert result.flagged_clients == {7}


# --------------------------------------------------------------------------------------------
# directions, bad input, configuration


def test_improvements_never_alarm_or_warn() -> None:
    rng = np.random.default_rng(21)
    better = {k: v - sign(*k) * 0.3 for k, (v, _) in PUBLIC.items()}
    reports = clean_reports(rng)
    for (mode, metric), value in better.items():
        for n in range(N_CLIENTS):
            reports[n][mode][metric] = Observation(value, 0.03)
    for mode, metric in list(PUBLIC) + list(PRIVATE):  # client 0 is far better still
        value = reports[0][mode][metric].value - sign(mode, metric) * 1.0
        reports[0][mode][metric] = Observation(value, 0.0)
    monitor = BehaviorMonitor(reference())
    for r in range(1, 8):
        result = monitor.observe(r, server_probe(rng, better), reports)
        assert result.alarms == []
        assert all(p["degradation"] is None or p["degradation"] <= 0.05
                   for ms in result.population.values() for p in ms.values())


def test_nan_and_inf_inputs_are_ignored_and_counted() -> None:
    rng = np.random.default_rng(22)
    ref = reference()
    ref["capability"]["accuracy"] = MetricValue(math.nan, 0.03, 400)
    now = server_probe(rng)
    now["alignment"]["refusal-rate"] = MetricValue(math.inf, 0.03, 400)
    reports = clean_reports(rng)
    reports[0]["calibration"]["ece"] = Observation(math.nan, 0.02)
    reports[1]["calibration"]["ece"] = Observation(0.08, -1.0)  # negative stderr is invalid
    reports[2]["bias"]["stereotype-pref"] = Observation(0.6, math.inf)
    result = detect_round(ref, now, reports, round=1)
    assert result.ignored == 5
    assert result.population["capability"]["accuracy"]["degradation"] is None
    assert result.population["calibration"]["ece"]["n_clients"] == N_CLIENTS - 2
    # the server's own measurement of the model is no number: that model fails (before
    # 2026-12-07 it was skipped and a candidate scoring NaN everywhere passed every test)
    assert [(a.metric, a.severity, a.evidence["test"]) for a in result.alarms] == [
        ("refusal-rate", "alarm", "unscorable")]
    now["alignment"]["refusal-rate"] = MetricValue(0.9, math.inf, 400)  # its stderr alone:
    result = detect_round(ref, now, reports, round=1)  # skipped, the clients' median tested
    assert result.population["alignment"]["refusal-rate"]["source"] == "clients"
    assert not result.alarmed


def test_huge_finite_reports_are_ignored_not_a_crash() -> None:
    """Reports beyond any metric's scale (finite, but their squares overflow a float) are
    unusable input like NaN: a majority of them must not crash the guard's core, which can be
    driven without the adapter's reply screen."""
    rng = np.random.default_rng(23)
    reports = clean_reports(rng)
    for n in range(N_CLIENTS - 2):
        reports[n]["alignment"]["refusal-rate"] = Observation(1e200, 0.03)
    reports[N_CLIENTS - 1]["bias"]["stereotype-pref"] = Observation(0.6, 1e300)
    result = detect_round(reference(), None, reports, round=1)
    assert result.ignored == N_CLIENTS - 1
    assert not result.alarmed


def test_unknown_modes_metrics_and_junk_are_skipped() -> None:
    reports = {
        1: {"alignment": {"no-such-metric": Observation(5.0)}, "no-such-mode": {"x": 1.0}},
        2: {"alignment": None, "bias": {"stereotype-pref": "high"}},
        3: "not a mapping",
    }
    result = detect_round({"weird": 3}, {"alignment": {"refusal-rate/x": 0.1}}, reports,
                          round=1)  # refusal-rate has no per-group variants: skipped
    assert result.alarms == [] and result.ignored == 1  # the string "high"


def test_unknown_tolerance_key_raises_with_the_valid_keys() -> None:
    with pytest.raises(TrustError, match="alignment.refusal-rate") as err:
        DetectorConfig(tolerances={"alignment.refusal_rate": 0.1})
    assert "Unknown tolerance key" in str(err.value)
    with pytest.raises(TrustError):
        DetectorConfig(tolerances={"capability.log-ppl/x": 0.1})  # not a per-group metric
    with pytest.raises(TrustError):
        DetectorConfig(tolerances={"alignment.refusal-rate": -0.1})
    with pytest.raises(TrustError, match=r"\['bias.stereotype-pref'\] set for modes that are "
                                         "not monitored"):  # was ignored silently
        DetectorConfig(modes=("alignment",), tolerances={"bias.stereotype-pref": 0.1,
                                                         "alignment.refusal-rate": 0.1})
    with pytest.raises(TrustError):
        DetectorConfig(modes=("alignment", "honesty"))
    with pytest.raises(TrustError):
        DetectorConfig(alpha=1.5)
    with pytest.raises(TrustError):
        DetectorConfig(split=(0.5, 0.5, 0.5))


def test_config_tolerances_and_run_config() -> None:
    from flwr_trust.config.server import guard_options

    cfg = guard_options({"trust.alpha": 0.01, "trust.modes": "alignment, bias",
                         "trust.trend-window": 4,
                         "trust.tolerance.bias.stereotype-pref": 0.1,
                         "trust.tolerance.bias.stereotype-pref/gender": 0.2})["detector"]
    assert cfg.alpha == 0.01 and cfg.modes == ("alignment", "bias") and cfg.trend_window == 4
    assert cfg.tolerance("bias", "stereotype-pref") == 0.1
    assert cfg.tolerance("bias", "stereotype-pref/gender") == 0.2
    assert cfg.tolerance("bias", "stereotype-pref/race") == 0.1
    assert cfg.tolerance("alignment", "refusal-rate") == 0.05
    assert sum(cfg.family_alpha(f) for f in ("level", "trend", "client")) <= cfg.alpha + 1e-12


def test_disabled_modes_are_not_tested() -> None:
    rng = np.random.default_rng(23)
    now = server_probe(rng, {("alignment", "refusal-rate"): 0.2})
    result = detect_round(reference(), now, None, round=1,
                          config=DetectorConfig(modes=("bias",)))
    assert not result.alarms and set(result.population) == {"bias"}


# --------------------------------------------------------------------------------------------
# the statistics and the plumbing


def test_alpha_spending_sums_to_at_most_alpha() -> None:
    assert spend(0.05, 1) == pytest.approx(0.05 * 6 / math.pi**2)
    assert sum(spend(0.05, k) for k in range(1, 20_000)) <= 0.05
    assert spend(0.05, 10) < spend(0.05, 9)
    for horizon in (1, 3, 5, 100):
        assert sum(spend(0.05, k, horizon) for k in range(1, 20_000)) <= 0.05
        assert spend(0.05, 1, horizon) == spend(0.05, horizon, horizon)
        assert spend(0.05, 1, horizon) == pytest.approx(0.045 / horizon)
    # a late look of a 5-round plan gets more than the open-ended share: 0.009 vs 0.0019
    assert spend(0.05, 4, 5) > 4 * spend(0.05, 4)
    with pytest.raises(TrustError, match="horizon"):
        DetectorConfig(horizon=-1)


def test_p_values_match_decisions_and_evidence_is_json() -> None:
    rng = np.random.default_rng(31)
    reports = clean_reports(rng)
    reports[5]["capability"]["accuracy"] = Observation(0.05, 0.03)
    reports[6]["fairness"]["local-loss"] = Observation(4.0, 0.05, 100, 0.1)
    now = server_probe(rng, {("alignment", "refusal-rate"): 0.6,
                             ("alignment", "over-refusal"): 0.2})  # a warning, not an alarm
    result = detect_round(reference(), now, reports, round=2)
    kinds = {(a.severity, a.evidence["test"]) for a in result.alarms}
    assert {("alarm", "level"), ("warning", "level"), ("alarm", "client"),
            ("alarm", "victim")} <= kinds
    for a in result.alarms:
        assert (a.evidence["p_value"] <= a.evidence["family_alpha"]) == (a.severity == "alarm")
        assert a.message
    json.dumps(result.to_json(), allow_nan=False)


def test_monitor_state_trend_and_reset() -> None:
    rng = np.random.default_rng(32)
    monitor = BehaviorMonitor(reference(), DetectorConfig(trend_window=3))
    for r in range(1, 4):
        monitor.observe(r, server_probe(rng), clean_reports(rng))
    assert monitor.state.looks == {"level": 3, "trend": 1, "client": 3}
    assert len(monitor.state.history["alignment", "refusal-rate"]) == 3
    monitor.reset_trend()
    assert not monitor.state.history and monitor.state.looks["trend"] == 1
    # stateless calls: no trend test, the look index is the round number
    result = detect_round(reference(), server_probe(rng), None, round=4)
    assert not alarms_of(result, "trend")
    state = MonitorState()
    detect_round(reference(), server_probe(rng), None, round=9, state=state)
    assert state.looks["level"] == 1


def test_observations_from_flat_metrics() -> None:
    flat = {"trust.alignment.refusal-rate": 0.8, "trust.alignment.refusal-rate.stderr": 0.02,
            "trust.alignment.refusal-rate.n": 300, "trust.alignment.refusal-rate.noise": 0.1,
            "trust.fairness.local-loss": 2.1, "trust.suite-hash": 123, "train_loss": 1.0,
            "trust.bias.stereotype-pref": "junk", "trust.privacy.epsilon": 1.0,
            # absent, as the client mod sends it: value 0 with n 0 is no observation
            "trust.memorization.loss-gap": 0.0, "trust.memorization.loss-gap.stderr": 0.0,
            "trust.memorization.loss-gap.n": 0}
    obs = observations_from_metrics(flat, noise_std=0.05)
    assert obs["alignment"]["refusal-rate"] == Observation(0.8, 0.02, 300, 0.1)
    assert obs["fairness"]["local-loss"] == Observation(2.1, 0.0, 0, 0.05)
    assert "bias" not in obs and "memorization" not in obs


def test_registry_declares_each_metric_once_with_its_direction() -> None:
    """The six built-in modes declare their watched metrics (tolerance > 0) in one registry,
    the scorers' values carry the declared direction (stamped), and the private metrics are the
    three the client mod computes on local data."""
    assert modes.ids()[:6] == ("bias", "fairness", "alignment", "capability", "calibration",
                               "memorization")
    private = set()
    for mode_id in modes.MODES:
        mode = modes.get(mode_id)
        watched = [m for m in mode.metrics if m.watched]
        assert watched and all(m.tolerance > 0 for m in watched), mode_id
        private |= {m.name for m in mode.private_metrics()}
        stamped = mode.stamp({m.name: MetricValue(0.5, 0.1, 10) for m in mode.metrics})
        assert all(stamped[m.name].worse == m.worse for m in mode.metrics)
    assert private == {"local-loss", "loss-gap", "local-canary-exposure"}
    assert len(tolerance_keys()) == sum(len([m for m in modes.get(x).metrics if m.watched])
                                        for x in modes.ids())


def test_clients_scoring_the_same_items_share_their_sampling_error() -> None:
    """Ten clients that all score the same 7 safe prompts and all refuse 2 of them: a 2-of-7
    sample, not 70 independent prompts. The population test must not treat it as certain (it
    did, and raised a false alarm on a clean tiny-model run with ten clients)."""
    from flwr_trust.scoring.stats import proportion_metric

    two_of_seven = proportion_metric(np.array([1, 1, 0, 0, 0, 0, 0]))
    reports = {n: {"alignment": {"over-refusal": Observation(
        two_of_seven.value, two_of_seven.stderr, 7, 0.0)}} for n in range(10)}
    result = detect_round({"alignment": {"over-refusal": 0.0}}, None, reports, round=1)
    assert not [a for a in result.alarms if a.severity == "alarm"]
    pop = result.population["alignment"]["over-refusal"]
    assert pop["stderr"] >= two_of_seven.stderr  # the shared part does not shrink with n
    # The same share over 700 prompts is a real degradation.
    many = {n: {"alignment": {"over-refusal": Observation(2 / 7, 0.017, 700, 0.0)}}
            for n in range(10)}
    result = detect_round({"alignment": {"over-refusal": 0.0}}, None, many, round=1)
    assert any(a.severity == "alarm" and a.metric == "over-refusal" for a in result.alarms)


def sampled_reference_run(seed: int, reference_sampled: bool, rounds: int = 10) -> bool:
    """One clean run where the clients score other items than the reference, at the least
    favourable null: the reference is one draw of item-sampling error (fixed for the run), each
    round every client scores the same fresh sample (a shared error) and the true degradation
    equals the tolerance. True if any population test (level or trend) alarmed."""
    rng = np.random.default_rng(seed)
    ref = {}
    for (mode, metric), (value, se) in PUBLIC.items():
        ref.setdefault(mode, {})[metric] = MetricValue(value + se * rng.standard_normal(), se,
                                                       400, spec_for(mode, metric).worse)
    monitor = BehaviorMonitor(ref, DetectorConfig(alpha=ALPHA, horizon=rounds,
                                                  reference_sampled=reference_sampled))
    fired = False
    for r in range(rounds):
        reports: dict[int, dict] = {n: {} for n in range(N_CLIENTS)}
        for (mode, metric), (value, se) in PUBLIC.items():
            truth = value + sign(mode, metric) * spec_for(mode, metric).tolerance
            shared = se * rng.standard_normal()  # this round's items, scored by every client
            for n in range(N_CLIENTS):
                x = truth + shared + 0.1 * se * rng.standard_normal()
                put(reports[n], mode, metric, Observation(x, se, 400, 0.0))
        result = monitor.observe(r + 1, None, reports)
        fired |= any(a.evidence["test"] in ("level", "trend") for a in alarms_of(result))
    return fired


def test_clients_scoring_other_items_than_the_reference_stay_within_the_budget() -> None:
    """With a rotating client sample (trust.client-probe-budget) or a server subset, client
    medians are compared with a reference scored on other items: its sampling error is one
    fixed draw for the whole run. Counted once per test, the budget holds; treated as exact
    (as it was), the same runs alarm far more often."""
    runs = 300
    bound = ALPHA + 3 * math.sqrt(ALPHA * (1 - ALPHA) / runs)
    rate = sum(sampled_reference_run(seed, True) for seed in range(runs)) / runs
    exact = sum(sampled_reference_run(seed, False) for seed in range(runs)) / runs
    print(f"sampled reference: false-alarm rate {rate:.3f} counted, {exact:.3f} as exact "
          f"(bound {bound:.3f})")
    assert rate <= bound < exact
