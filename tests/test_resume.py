"""A guard restarted mid-run resumes from its log (flwr_trust/guard/resume.py): no second
reference probe, the monitors' alpha spending and trend histories go on, the round history
and count continue; a run that ended, or one on other suites, is refused with a clear error."""

from __future__ import annotations

import gc
import json
import math

import numpy as np
import pytest
from flwr.app import ArrayRecord, ConfigRecord
from flwr.serverapp.strategy import FedAvg

from flwr_trust.cli import main as cli
from flwr_trust.detect.monitor_state import MonitorState
from flwr_trust.errors import TrustError
from flwr_trust.report.audit import AuditLog, read_log, verify_log
from flwr_trust.report.records import RoundRecord, RunResume
from flwr_trust.scoring.profile import BehaviorProfile, MetricValue
from flwr_trust.strategies import TrustGuard
from tests.helpers.guard import FakeGrid, honest_update, initial_arrays, reply

MODES = ("alignment",)


class CountingProber:
    """The core's Prober seam: a steady refusal rate near 0.9; `calls` counts the probes."""

    def __init__(self) -> None:
        self.calls = 0

    def probe(self, arrays, suites):
        self.calls += 1
        value = 0.9 + 0.001 * float(np.asarray(arrays["layer.c"].numpy()).ravel()[0] % 1)
        return BehaviorProfile({"alignment": {"refusal-rate": MetricValue(value, 0.02, 400,
                                                                          "lower")}},
                               {m: s.hash for m, s in suites.items()})


def client(msg, node, rnd, arrays):
    """Honest clients that report their refusal rate (so the per-client tests look) and echo
    the trust.round they were sent, as trust_mod does."""
    rng = np.random.default_rng(node * 100 + rnd)
    metrics = {"num-examples": 10, "train_loss": 1.0 / rnd,
               "trust.round": msg.content.config_records["config"]["trust.round"],
               "trust.alignment.refusal-rate": 0.9 + 0.01 * rng.normal(),
               "trust.alignment.refusal-rate.stderr": 0.02,
               "trust.alignment.refusal-rate.n": 400}
    return reply(msg, honest_update(arrays, node, rnd), metrics)


def guard(run_dir, prober, **kw) -> TrustGuard:
    return TrustGuard(FedAvg(), model=None, modes=kw.pop("modes", MODES), prober=prober,
                      run_dir=run_dir, tensorboard=False, **kw)


def drive(strategy: TrustGuard, rounds, arrays: ArrayRecord, n_nodes: int = 6) -> ArrayRecord:
    """configure/aggregate as Flower's loop does, with the caller's own round numbers."""
    grid = FakeGrid(n_nodes)
    for rnd in rounds:
        msgs = strategy.configure_train(rnd, arrays, ConfigRecord(), grid)
        new, _ = strategy.aggregate_train(rnd, [client(m, m.metadata.dst_node_id, rnd, arrays)
                                                for m in msgs])
        arrays = new if new is not None else arrays
    return arrays


def collect() -> None:
    """After `del guard` (a crash: no close, no run-end record): collect it, so its log file is
    closed as the OS closes a killed server's files."""
    gc.collect()


def looks(strategy: TrustGuard) -> dict[str, dict[str, int]]:
    return {name: dict(m.state.looks) for name, m in strategy.core._monitors.items()}


def kinds(run_dir) -> list[str]:
    return [r["kind"] for r in read_log(run_dir / "audit.jsonl")]


def resume_record(run_dir) -> RunResume:
    (record,) = read_log(run_dir / "audit.jsonl", kinds="run-resume")
    return RunResume.from_payload(record["payload"])


def test_restarted_guard_resumes_reference_monitors_history(tmp_path):
    run = tmp_path / "run"
    first_prober = CountingProber()
    first = guard(run, first_prober)
    arrays = drive(first, [1, 2], initial_arrays())
    assert first_prober.calls == 3  # the reference, then one candidate per round
    reference, before = first.reference.to_json(), looks(first)
    history = first.core.monitor("candidate").state.history[("alignment", "refusal-rate")]
    assert [h[0] for h in history] == [1, 2] and before["candidate"]["trend"] == 0
    del first
    collect()

    prober = CountingProber()
    second = guard(run, prober)
    second.core.start(arrays, 3)
    assert prober.calls == 0 and second.reference.to_json() == reference  # not probed again
    # one look per family skipped on resume: the crashed round may have spent it
    skipped = {m: {f: k + 1 for f, k in fs.items()} for m, fs in before.items()}
    assert looks(second) == skipped | {"evaluate": dict.fromkeys(before["reports"], 1)}
    drive(second, [3, 4], arrays)
    assert prober.calls == 2  # candidates only
    after = looks(second)
    assert after["candidate"]["level"] == before["candidate"]["level"] + 1 + 2
    assert after["reports"]["client"] == before["reports"]["client"] + 1 + 2
    # the trend history went on across the restart: round 4 completes a 4-round window
    assert after["candidate"]["trend"] == 1 + 1
    assert [h.round for h in second.history] == [1, 2, 3, 4]

    record = resume_record(run)
    assert (record.after_round, record.round_offset, record.resumes) == (2, 0, 1)
    assert (record.reference, record.monitors, record.changed) == ("log", "log", {})
    assert {m: record.looks[m] for m in before} == skipped
    second.finish()
    assert verify_log(run / "audit.jsonl").ok
    assert kinds(run) == ["run-start", "reference", "round", "round", "run-resume", "round",
                          "round", "run-end"]
    last = RoundRecord.from_payload(read_log(run / "audit.jsonl", kinds="round")[-1]["payload"])
    assert last.version == 2 and MonitorState.from_json(last.monitors["candidate"]) is not None


def test_report_of_a_resumed_run_shows_every_round(tmp_path, capsys):
    run = tmp_path / "run"
    first = guard(run, CountingProber())
    arrays = drive(first, [1, 2], initial_arrays())
    del first
    collect()
    second = guard(run, CountingProber())
    drive(second, [3, 4], arrays)
    second.finish()
    out = tmp_path / "summary.json"
    assert cli(["report", str(run), "--json", str(out)]) == 0
    summary = json.loads(out.read_text())
    assert summary["run"]["rounds"] == 4 and summary["run"]["status"] == "completed"
    assert [t["round"] for t in summary["timeline"]] == [1, 2, 3, 4]
    assert "intact" in capsys.readouterr().out


def test_flower_counting_from_1_again_is_numbered_after_the_log(tmp_path):
    """Strategy.start after a restart counts rounds from 1: the guard records them as 3 and 4
    and sends trust.round 3 and 4 (the clients' probe sample follows it)."""
    run = tmp_path / "run"
    first = guard(run, CountingProber())
    arrays = drive(first, [1, 2], initial_arrays())
    del first
    collect()
    sent = []

    def answer(msg, node, rnd):
        sent.append((rnd, msg.content.config_records["config"]["trust.round"]))
        return client(msg, node, rnd, msg.content.array_records["arrays"])

    second = guard(run, CountingProber())
    result = second.start(FakeGrid(6, answer), arrays, num_rounds=2)
    assert sorted(set(sent)) == [(1, 3), (2, 4)]  # train and evaluate messages
    assert all(len(h.clients.valid) == 6 and not h.clients.refused for h in second.history
               if h.phase == "train")  # the echoed trust.round 3, 4 is this round's
    assert [(h.round, h.phase) for h in second.history] == [
        (1, "train"), (2, "train"), (3, "train"), (3, "evaluate"), (4, "train"),
        (4, "evaluate")]
    assert sorted(result.train_metrics_clientapp) == [1, 2]  # Flower's own numbering
    record = resume_record(run)
    assert (record.after_round, record.round_offset) == (2, 2)
    assert verify_log(run / "audit.jsonl").ok and kinds(run)[-1] == "run-end"


def test_a_run_that_ended_is_refused_with_a_clear_error(tmp_path):
    run = tmp_path / "run"
    first = guard(run, CountingProber())
    arrays = drive(first, [1, 2], initial_arrays())
    first.finish()
    before = (run / "audit.jsonl").read_bytes()
    second = guard(run, CountingProber())
    with pytest.raises(TrustError) as info:
        drive(second, [1], arrays)
    text = str(info.value)
    assert str(run) in text and "already ended (completed after round 2" in text
    assert "Fix: Pass a new run_dir" in text and "reference=BehaviorProfile.from_json" in text
    assert (run / "audit.jsonl").read_bytes() == before  # nothing written
    AuditLog(run / "audit.jsonl").close()  # and the lock was released
    with pytest.raises(TrustError, match="already ended"):  # a retry says the same
        second.core.start(arrays, 1)


def test_other_suites_or_modes_are_refused(tmp_path):
    run = tmp_path / "run"
    first = guard(run, CountingProber())
    arrays = drive(first, [1], initial_arrays())
    del first
    collect()
    second = guard(run, CountingProber(), modes=("alignment", "bias"))
    with pytest.raises(TrustError, match="other suites or modes.*modes: logged"):
        drive(second, [2], arrays)


def test_other_server_items_are_refused_with_the_logged_number(tmp_path):
    """A run that crashed with other server items per mode (e.g. before the default went from
    32 to 100) is not continued; the error says which number to set."""
    run = tmp_path / "run"
    first = guard(run, CountingProber(), server_probe_items=32)
    arrays = drive(first, [1], initial_arrays())
    del first
    collect()
    second = guard(run, CountingProber())
    with pytest.raises(TrustError) as info:
        drive(second, [2], arrays)
    text = str(info.value)
    assert "server's items per mode differ" in text and "'alignment': 32" in text
    assert "trust.server-probe-items" in text


def test_changed_settings_are_recorded_and_the_given_reference_ignored(tmp_path, caplog):
    run = tmp_path / "run"
    first = guard(run, CountingProber())
    arrays = drive(first, [1], initial_arrays())
    reference = first.reference
    del first
    collect()
    other = BehaviorProfile({"alignment": {"refusal-rate": MetricValue(0.5, 0.02, 400,
                                                                       "lower")}}, {})
    second = guard(run, CountingProber(), gate="quarantine", reference=other)
    drive(second, [2], arrays)
    assert second.reference.to_json() == reference.to_json()
    assert resume_record(run).changed == {"gate": ["off", "quarantine"]}
    assert "reference passed in is ignored" in caplog.text and "gate='off'" in caplog.text


def test_crash_before_the_reference_was_recorded_probes_it_then(tmp_path):
    """A log with only the run-start record (the server died during the reference probe):
    the reference has never been recorded, so the resumed guard measures it, once."""
    run = tmp_path / "run"
    first = guard(run, CountingProber())
    first.core.recorder.open()
    del first
    collect()
    prober = CountingProber()
    second = guard(run, prober)
    drive(second, [1], initial_arrays())
    assert prober.calls == 2  # reference + candidate
    assert kinds(run) == ["run-start", "run-resume", "reference", "round"]
    assert resume_record(run).reference == "new"


def test_a_version_1_log_resumes_with_conservative_look_counters(tmp_path):
    """Round records written before monitors were logged: every look counter becomes the
    number of round records (an upper bound on the looks spent) plus the skipped one."""
    run = tmp_path / "run"
    first = guard(run, CountingProber())
    arrays = drive(first, [1, 2, 3], initial_arrays())
    del first
    collect()
    old = tmp_path / "old"
    old.mkdir()
    with AuditLog(old / "audit.jsonl") as log:
        for r in read_log(run / "audit.jsonl"):
            payload = dict(r["payload"])
            if r["kind"] == "round":
                del payload["monitors"]
                payload["version"] = 1
            log.append(r["kind"], payload)
    second = guard(old, CountingProber())
    second.core.start(arrays, 4)
    assert resume_record(old).monitors == "rebuilt"
    assert all(k == 3 + 1 for fs in looks(second).values() for k in fs.values())
    assert not any(m.state.history for m in second.core._monitors.values())


def test_a_torn_tail_is_recovered_and_named_in_the_resume_record(tmp_path):
    run = tmp_path / "run"
    first = guard(run, CountingProber())
    arrays = drive(first, [1, 2], initial_arrays())
    del first
    collect()
    with (run / "audit.jsonl").open("ab") as file:
        file.write(b'{"hash":"12')  # the round-3 record, cut short
    second = guard(run, CountingProber())
    drive(second, [3], arrays)
    (torn,) = resume_record(run).torn_tails
    assert (torn["record"], torn["length"], torn["moved_to"]) == (4, 11, "audit.jsonl.torn-4")
    assert kinds(run)[4:] == ["torn-tail", "run-resume", "round"]
    assert verify_log(run / "audit.jsonl").ok


def test_monitor_state_round_trip_and_malformed_states(tmp_path):
    state = MonitorState({"level": 3, "trend": 1, "client": 2},
                         {("alignment", "refusal-rate"): [(1, 0.01, 0.02, math.inf),
                                                          (2, -0.03, 0.02, 7.5)],
                          ("bias", "stereotype-pref/age"): [(2, 0.1, 0.05, math.inf)]})
    with AuditLog(tmp_path / "audit.jsonl") as log:  # stored as the log stores it
        stored = log.append("round", {"monitors": {"candidate": state.to_json()}})
    assert MonitorState.from_json(stored["payload"]["monitors"]["candidate"]) == state
    good = state.to_json()
    row = (lambda *r: {**good, "history": {"alignment": {"refusal-rate": [list(r)]}}})  # noqa: E731
    for bad in (None, [], {"looks": {}}, {"looks": good["looks"]},
                {**good, "looks": {**good["looks"], "level": -1}},
                {**good, "looks": {**good["looks"], "trend": True}},
                {**good, "history": {"alignment": []}},
                row(1, 0.1, 0.02), row(1, "x", 0.02, 1), row(1, 0.1, -1, 1),
                row(1.0, 0.1, 0.02, 1), row(1, 0.1, 0.02, True), row(1, 0.1, 0.02, "NaN")):
        assert MonitorState.from_json(bad) is None, bad


def run_start(run_dir) -> dict:
    (record,) = read_log(run_dir / "audit.jsonl", kinds="run-start")
    return record["payload"]


def test_the_planned_rounds_set_the_alpha_horizon_and_a_resume_keeps_it(tmp_path, caplog):
    """trust.horizon = auto (DetectorConfig.horizon None): the rounds the strategy is started
    with. A restarted run keeps the horizon its first looks spent alpha under, whatever the
    new start says (a larger one would spend more than alpha in total)."""
    run = tmp_path / "run"
    first = guard(run, CountingProber())
    first.plan(5)
    arrays = drive(first, [1, 2], initial_arrays())
    assert run_start(run)["horizon"] == 5 and first.detector.horizon == 5
    assert first.core.monitor("candidate").config.horizon == 5
    del first
    collect()

    second = guard(run, CountingProber())
    second.plan(10)  # Flower counts again from 1 with the remaining rounds
    with caplog.at_level("WARNING", logger="flwr.trust"):
        drive(second, [3], arrays)
    assert second.detector.horizon == 5
    assert second.core.monitor("candidate").config.horizon == 5
    assert "horizon 5" in caplog.text


def test_the_horizon_is_open_ended_without_a_plan_and_explicit_values_win(tmp_path):
    from flwr_trust.detect.config import DetectorConfig

    unplanned = guard(tmp_path / "a", CountingProber())
    drive(unplanned, [1], initial_arrays())
    assert run_start(tmp_path / "a")["horizon"] == 0

    explicit = guard(tmp_path / "b", CountingProber(),
                     detector=DetectorConfig(modes=MODES, horizon=2))
    explicit.plan(7)
    drive(explicit, [1], initial_arrays())
    assert run_start(tmp_path / "b")["horizon"] == 2

    started_late = guard(tmp_path / "c", CountingProber())
    drive(started_late, [1], initial_arrays())
    started_late.plan(9)  # after the first look: too late to change how alpha is spent
    assert started_late.detector.horizon == 0
