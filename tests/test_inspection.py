"""Tightened inspection (guard/inspection.py): after a rollback, a later candidate is refused
while it measures beyond the tolerance on a metric that failed, and released once it is back."""

from __future__ import annotations

import gc

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from flwr_trust.guard.inspection import Inspection
from flwr_trust.report.audit import read_log, verify_log
from flwr_trust.report.html import render_report
from flwr_trust.report.records import RoundRecord
from flwr_trust.report.summary import summarize
from flwr_trust.scoring.profile import BehaviorProfile, MetricValue
from tests.helpers.guard import initial_arrays
from tests.test_resume import drive, guard

REFUSAL = ("alignment", "refusal-rate")  # lower is worse, tolerance 0.05


def _population(**rows: tuple[float | None, float]) -> dict:
    """mode -> metric -> {degradation, tolerance} for "mode__metric" keyword arguments."""
    out: dict = {}
    for name, (d, tol) in rows.items():
        mode, metric = name.split("__")
        out.setdefault(mode, {})[metric.replace("_", "-")] = {"degradation": d,
                                                                "tolerance": tol}
    return out


def test_refuses_while_beyond_the_tolerance_and_releases_once_within():
    inspection = Inspection()
    inspection.begin([REFUSAL, ("bias", "stereotype-pref")], 3)
    beyond = inspection.review(_population(alignment__refusal_rate=(0.08, 0.05),
                                           bias__stereotype_pref=(0.01, 0.05)))
    assert beyond == ["alignment.refusal-rate degradation +0.08 beyond tolerance 0.05 "
                      "(watched since round 3)"]
    assert set(inspection.since) == {REFUSAL}  # bias measured within: released on its own
    inspection.begin([REFUSAL], 5)
    assert inspection.since == {REFUSAL: 3}  # the first round is kept
    assert inspection.review(_population(alignment__refusal_rate=(0.05, 0.05))) == []
    assert not inspection.since


@given(rows=st.dictionaries(
    st.sampled_from([REFUSAL, ("bias", "stereotype-pref"), ("calibration", "ece")]),
    st.tuples(st.floats(-1, 1), st.floats(0.001, 0.5)), min_size=1))
def test_kept_exactly_the_metrics_measured_beyond_their_tolerance(rows):
    inspection = Inspection()
    inspection.begin(rows, 2)
    population: dict = {}
    for (mode, metric), (d, tol) in rows.items():
        population.setdefault(mode, {})[metric] = {"degradation": d, "tolerance": tol}
    beyond = inspection.review(population)
    kept = {key for key, (d, tol) in rows.items() if d > tol}
    assert set(inspection.since) == kept and len(beyond) == len(kept)


@pytest.mark.parametrize("degradation", [None, float("nan"), float("inf"), True, "0.0"])
def test_a_candidate_without_a_finite_measurement_stays_refused(degradation):
    inspection = Inspection()
    inspection.begin([REFUSAL], 1)
    assert "not measured" in inspection.review(
        _population(alignment__refusal_rate=(degradation, 0.05)))[0]
    assert "not measured" in inspection.review({})[0]
    assert inspection.since == {REFUSAL: 1}


def test_unknown_metrics_are_not_watched_and_json_round_trips():
    inspection = Inspection()
    inspection.begin([("update", "checks"), ("alignment", "no-such-metric")], 1)
    assert not inspection.since
    inspection.begin([REFUSAL, ("calibration", "unanswerable-confidence")], 4)
    assert Inspection.from_json(inspection.to_json()).since == inspection.since
    malformed = {"alignment.refusal-rate": "4", "nodot": 2, "bias.stereotype-pref": -1,
                 "alignment.no-such-metric": 3, "calibration.ece": True}
    assert Inspection.from_json(malformed).since == {}
    assert Inspection.from_json(["alignment.refusal-rate"]).since == {}


class ScriptedProber:
    """Every probe of this round (candidate and leave-one-out trials) measures `value`."""

    def __init__(self) -> None:
        self.value = 0.9

    def probe(self, arrays, suites):
        return BehaviorProfile({"alignment": {"refusal-rate": MetricValue(
            self.value, 0.02, 400, "lower")}}, {m: s.hash for m, s in suites.items()})


def _gates(run_dir) -> list[tuple[str, dict]]:
    records = [RoundRecord.from_payload(r["payload"])
               for r in read_log(run_dir / "audit.jsonl", kinds="round")]
    return [(r.gate.action, r.gate.inspection) for r in records if r.phase == "train"]


def test_the_guard_keeps_refusing_a_candidate_that_is_not_back_then_releases_it(tmp_path):
    """Round 1's candidate fails its test (degradation 0.30); round 2's is beyond the tolerance
    (0.08 against 0.05) but far below the test's threshold: refused under inspection, where
    without it it would be accepted; round 3's is back (0.02): accepted and released; round 4's
    0.08 is accepted again (nothing is watched any more, and it fails no test)."""
    prober = ScriptedProber()
    strategy = guard(tmp_path / "run", prober, gate="rollback")
    arrays = initial_arrays()
    strategy.core.start(arrays, 1)  # the reference: 0.9
    kept = []
    for rnd, value in zip((1, 2, 3, 4), (0.60, 0.82, 0.88, 0.82), strict=True):
        prober.value = value
        new = drive(strategy, [rnd], arrays)
        kept.append(new is arrays or np.array_equal(new["layer.c"].numpy(),
                                                    arrays["layer.c"].numpy()))
        arrays = new
    strategy.finish()
    assert kept == [True, True, False, False]
    watched = {"alignment.refusal-rate": 1}
    assert _gates(tmp_path / "run") == [("rollback", watched), ("rollback", watched),
                                        ("accept", {}), ("accept", {})]
    second = strategy.history[1]
    assert not [a for a in second.alarms if a["severity"] == "alarm"]  # no test failed
    assert "tightened inspection" in second.gate.reason and "+0.08" in second.gate.reason
    assert verify_log(tmp_path / "run" / "audit.jsonl").ok
    timeline = [t for t in summarize(tmp_path / "run")["timeline"] if t["phase"] == "train"]
    assert timeline[1]["action"] == "rollback" and timeline[1]["alarms"] == 0
    assert timeline[1]["reason"].startswith("tightened inspection")
    page, _ = render_report(tmp_path / "run")
    assert "<h3>Gate decisions</h3>" in page
    assert "round 2 · rollback: tightened inspection after a rollback" in page


def test_a_resumed_guard_keeps_the_inspection(tmp_path):
    prober = ScriptedProber()
    first = guard(tmp_path / "run", prober, gate="rollback")
    arrays = initial_arrays()
    first.core.start(arrays, 1)
    prober.value = 0.60
    arrays = drive(first, [1], arrays)
    del first  # a crash: no run-end record
    gc.collect()
    second = guard(tmp_path / "run", prober, gate="rollback")
    second.core.start(arrays, 2)
    assert second.core.inspection.since == {REFUSAL: 1}
    prober.value = 0.82
    drive(second, [2], arrays)
    assert second.history[-1].gate.action == "rollback"
    assert "watched since round 1" in second.history[-1].gate.reason
    second.finish()
