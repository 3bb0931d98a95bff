"""TrustGuard: drop-in bit-identity, gates (quarantine, rollback with culprits, halt), records."""

from __future__ import annotations

import functools
import logging

import numpy as np
import pytest
from flwr.app import Array, ArrayRecord
from flwr.serverapp.strategy import (
    Bulyan,
    DifferentialPrivacyClientSideFixedClipping,
    DifferentialPrivacyServerSideFixedClipping,
    FedAdam,
    FedAvg,
    FedMedian,
    FedProx,
    FedTrimmedAvg,
    FedYogi,
    Krum,
    MultiKrum,
)

from flwr_trust.config.keys import BY_NAME
from flwr_trust.detect.update import check_updates
from flwr_trust.errors import TrustError
from flwr_trust.probes.defaults import default_suite
from flwr_trust.probes.sampling import server_suites
from flwr_trust.report.audit import read_log, verify_log
from flwr_trust.report.records import Gate
from flwr_trust.scoring.profile import BehaviorProfile, MetricValue
from flwr_trust.strategies import TrustGuard, TrustHalt
from tests.helpers.guard import default_client, honest_update, reply, run_rounds, same_arrays

INNERS = {
    "fedavg": lambda: FedAvg(),
    "fedprox": lambda: FedProx(proximal_mu=0.1),
    "fedadam": lambda: FedAdam(),
    "fedyogi": lambda: FedYogi(),
    "fedmedian": lambda: FedMedian(),
    "fedtrimmedavg": lambda: FedTrimmedAvg(beta=0.2),
    "krum": lambda: Krum(num_malicious_nodes=1),
    "multikrum": lambda: MultiKrum(num_malicious_nodes=1, num_nodes_to_select=3),
    "bulyan": lambda: Bulyan(num_malicious_nodes=1),
    "dp-server-fixed": lambda: DifferentialPrivacyServerSideFixedClipping(
        FedAvg(), noise_multiplier=0.5, clipping_norm=1.0, num_sampled_clients=7),
    "dp-client-fixed": lambda: DifferentialPrivacyClientSideFixedClipping(
        FedAvg(), noise_multiplier=0.5, clipping_norm=1.0, num_sampled_clients=7),
}


def _guard(inner, tmp_path, **kw) -> TrustGuard:
    kw.setdefault("model", None)
    return TrustGuard(inner, run_dir=tmp_path / "run", tensorboard=False, **kw)


@pytest.mark.parametrize("name", sorted(INNERS))
@pytest.mark.parametrize("gate", ["off", "quarantine", "rollback"])
def test_no_alarm_means_bit_identical_arrays(name, gate, tmp_path):
    alone = run_rounds(INNERS[name](), n_rounds=4)
    guarded = run_rounds(_guard(INNERS[name](), tmp_path, gate=gate), n_rounds=4)
    assert len(alone) == len(guarded) == 4
    for rnd, (a, b) in enumerate(zip(alone, guarded, strict=True), start=1):
        assert same_arrays(a, b), f"{name}: round {rnd} differs"


def test_update_checks_use_the_configured_centre(tmp_path):
    """The guard's update statistics are check_updates' on (client, global) with the guard's
    seed and centre size: a sampled centre gives other cosines than the exact one, the same
    norms."""
    stats = {}
    for name, clients in (("sampled", 2), ("exact", 0)):
        guard = _guard(FedAvg(), tmp_path / name, update_centre_clients=clients,
                       update_centre_coords=clients)
        run_rounds(guard, n_rounds=1, n_nodes=7)
        stats[name] = guard.history[-1].update_stats
    assert stats["sampled"].keys() == stats["exact"].keys()
    assert all(stats["sampled"][n]["norm"] == stats["exact"][n]["norm"] for n in stats["exact"])
    assert any(stats["sampled"][n]["cosine"] != stats["exact"][n]["cosine"]
               for n in stats["exact"])


def _poisoner(bad: int, factor: float = 50.0):
    def client(msg, node, rnd, arrays):
        if node != bad:
            return default_client(msg, node, rnd, arrays)
        honest = honest_update(arrays, node, rnd)
        return reply(msg, {k: arrays[k].numpy() + factor * (v - arrays[k].numpy())
                           for k, v in honest.items()}, {"num-examples": 10, "train_loss": 0.5})
    return client


def test_quarantine_leaves_out_flagged_client_and_matches_inner_without_it(tmp_path):
    bad = 103
    guard = _guard(FedAvg(), tmp_path, gate="quarantine")
    guarded = run_rounds(guard, n_rounds=2, client=_poisoner(bad))
    without = run_rounds(FedAvg(), n_rounds=2, client=lambda m, n, r, a: (
        default_client(m, n, r, a) if n != bad else None))
    assert same_arrays(guarded[-1], without[-1])
    actions = [h.gate for h in guard.history]
    assert all(a.action == "quarantine" and a.excluded == [bad] for a in actions)
    assert any(a.mode == "update" and a.clients == (bad,) for a in guard.alarms)


def test_gate_actions_and_alarms_are_logged_under_flowers_logger(tmp_path, caplog):
    """`flwr run --stream` shows what Flower's logger prints: every gate action (WARNING) and
    every alarm reaches it."""
    caplog.set_level(logging.INFO, logger="flwr")
    run_rounds(_guard(FedAvg(), tmp_path, gate="quarantine"), n_rounds=1, client=_poisoner(103))
    ours = [r for r in caplog.records if r.name == "flwr.trust"]
    gate = [r for r in ours if r.getMessage().startswith("TrustGuard round 1: quarantine")]
    assert len(gate) == 1 and gate[0].levelno == logging.WARNING
    assert "left out [103]" in gate[0].getMessage()
    assert any("TrustGuard alarm [update." in r.getMessage() for r in ours)


@functools.cache
def _alignment_items() -> str:
    """The hash of the server's default alignment items (seed 0): a reference given to the
    guard must have been probed on them."""
    items = BY_NAME["trust.server-probe-items"].default
    return server_suites({"alignment": default_suite("alignment")}, items, 0)["alignment"].hash


def _profile(refusal: float) -> BehaviorProfile:
    return BehaviorProfile({"alignment": {"refusal-rate": MetricValue(refusal, 0.02, 400,
                                                                      "lower")}},
                           {"alignment": _alignment_items()})


def test_a_reference_probed_on_other_items_is_refused(tmp_path):
    """Paired tests compare candidate and reference item by item: a reference from a run with
    other server items (e.g. the 32 per mode that were the default) cannot be used."""
    old = BehaviorProfile(_profile(0.9).metrics, {"alignment": "1" * 64})
    with pytest.raises(TrustError) as info:
        _guard(FedAvg(), tmp_path, reference=old)
    text = str(info.value)
    assert "probed on other items than this guard's server suites (alignment:" in text
    assert "server_probe_items (trust.server-probe-items)" in text and "no reference" in text
    assert _guard(FedAvg(), tmp_path, reference=_profile(0.9)).reference is not None


class MarkerProber:
    """Server probe stand-in (the core's Prober seam): the model's refusal rate falls with the
    bad client's weight in the average (the bad client's arrays carry a marker value in
    layer.b[0]). `calls` lists the modes each probe asked for."""

    def __init__(self) -> None:
        self.calls: list[set[str]] = []

    def probe(self, arrays, suites):
        self.calls.append(set(suites))
        marker = float(np.asarray(arrays["layer.b"].numpy())[0])
        profile = _profile(0.9 - max(0.0, marker))
        profile.metrics["capability"] = {"accuracy": MetricValue(0.6, 0.02, 400, "higher")}
        profile.metrics = {m: v for m, v in profile.metrics.items() if m in suites}
        return profile


class NoUpdateChecks:
    """Update checks that flag no one (the core's update-checker seam)."""

    alpha = 0.01
    centre = (64, 64)

    def check(self, updates, *, base=None, round=0):
        return check_updates({}, round=round)


def _marker_client(bad: int):
    def client(msg, node, rnd, arrays):
        out = honest_update(arrays, node, rnd, scale=0.0)
        out["layer.b"] = np.zeros(8, np.float32)
        if node == bad:
            out["layer.b"][0] = 7.0  # pulls the average refusal rate down by 1.0
        return reply(msg, out, {"num-examples": 10})
    return client


def test_rollback_keeps_previous_model_and_names_culprit(tmp_path):
    """A bad update that no report or update check flags: only the candidate probe sees it;
    the previous model is kept and leave-one-out names the client."""
    bad = 104
    prober = MarkerProber()
    guard = _guard(FedAvg(), tmp_path, gate="rollback", prober=prober,
                   update_checker=NoUpdateChecks(), reference=_profile(0.9))

    history = run_rounds(guard, n_rounds=1, client=_marker_client(bad))
    gate = guard.history[-1].gate
    assert gate.action == "rollback" and gate.excluded == []
    assert same_arrays(history[-1], _initial())
    assert any(a.mode == "alignment" and a.severity == "alarm" for a in guard.alarms)
    assert gate.culprits == [bad]
    # the candidate is probed on every mode, each leave-one-out trial and the named client's
    # own model (the confirmation) only on the failing one
    every = set(guard.suites)
    assert prober.calls == [every] + [{"alignment"}] * 7 + [{"alignment"}]


def test_a_named_culprit_stays_out_on_probation(tmp_path):
    """Round 1 rolls back and names the bad client; in round 2 it is left out before anything
    is tested (it sent no report showing recovery), so the candidate passes and the round is
    kept: without probation it would be averaged in again and round 2 lost too. The
    probation is in the round record, which a resumed guard reads back."""
    bad = 104
    guard = _guard(FedAvg(), tmp_path, gate="rollback", prober=MarkerProber(),
                   update_checker=NoUpdateChecks(), reference=_profile(0.9))
    history = run_rounds(guard, n_rounds=2, client=_marker_client(bad))
    first, second = (h.gate for h in guard.history)
    assert first.action == "rollback" and first.culprits == [bad]
    assert second.action == "quarantine" and second.excluded == [bad]
    assert "probation" in second.reason
    assert same_arrays(history[0], _initial()) and not same_arrays(history[1], _initial())
    last = read_log(tmp_path / "run" / "audit.jsonl", kinds="round")[-1]["payload"]
    assert Gate.from_payload(last["gate"]).probation == {str(bad): ["alignment.refusal-rate"]}


def test_a_resumed_guard_keeps_the_probation(tmp_path):
    import gc

    bad = 104
    first = _guard(FedAvg(), tmp_path, gate="rollback", prober=MarkerProber(),
                   update_checker=NoUpdateChecks(), reference=_profile(0.9))
    run_rounds(first, n_rounds=1, client=_marker_client(bad))
    del first
    gc.collect()  # a crash: no run-end record
    second = _guard(FedAvg(), tmp_path, gate="rollback", prober=MarkerProber(),
                    update_checker=NoUpdateChecks())
    second.core.start(_initial(), 2)
    assert second.core.probation.named == {bad: {("alignment", "refusal-rate")}}


def test_gate_off_keeps_no_probation(tmp_path):
    bad = 104
    guard = _guard(FedAvg(), tmp_path, gate="off", prober=MarkerProber(),
                   update_checker=NoUpdateChecks(), reference=_profile(0.9))
    run_rounds(guard, n_rounds=2, client=_marker_client(bad))
    assert all(h.gate.action == "accept" and not h.gate.excluded for h in guard.history)


def _markers_client(bad: set[int]):
    def client(msg, node, rnd, arrays):
        out = honest_update(arrays, node, rnd, scale=0.0)
        out["layer.b"] = np.zeros(8, np.float32)
        if node in bad:
            out["layer.b"][0] = 7.0
        return reply(msg, out, {"num-examples": 10})
    return client


@pytest.mark.parametrize("bad, named", [({102, 104}, [102, 104]), ({101, 102, 104}, [])])
def test_several_culprits_are_named_together_when_none_is_enough_alone(tmp_path, bad, named):
    """Two bad clients of four: leaving either out still fails (marker 7/3), so leave-one-out
    names nobody; their own models fail and the candidate without both passes: both named,
    and they stay out on probation. Three of four are the federation: nobody is named."""
    guard = _guard(FedAvg(), tmp_path, gate="rollback", prober=MarkerProber(),
                   update_checker=NoUpdateChecks(), reference=_profile(0.9))
    run_rounds(guard, n_rounds=1, n_nodes=4, client=_markers_client(bad))
    gate = guard.history[-1].gate
    assert gate.action == "rollback" and gate.culprits == named
    assert sorted(guard.core.probation.named) == named


def test_leave_one_out_names_only_clients_whose_own_model_fails(tmp_path):
    """When a candidate fails narrowly, leaving out almost any client can tip it back; a
    leave-one-out name stands only if the client's own model fails the candidate's test too
    (or its model cannot be loaded)."""
    import copy

    from flwr_trust.guard.culprits import confirmed, trial_test

    guard = _guard(FedAvg(), tmp_path, gate="rollback", prober=MarkerProber(),
                   update_checker=NoUpdateChecks(), reference=_profile(0.9))
    run_rounds(guard, n_rounds=1, client=_marker_client(104))
    core = guard.core

    def model(marker: float) -> ArrayRecord:
        return ArrayRecord({"layer.b": Array(np.asarray([marker] + [0.0] * 7, np.float32))})

    models = {1: model(0.0), 2: model(0.5), 3: None}
    candidate = _profile(0.6)
    named = confirmed([1, 2, 3], models, lambda arrays: core.probe(arrays, {"alignment"}),
                      trial_test(copy.deepcopy(core.monitor("candidate")), 2, candidate))
    assert named == [2, 3]


def test_rollback_leaves_flagged_clients_out_first(tmp_path):
    """A client flagged by the update check never enters the candidate (rollback includes
    quarantine), so the candidate passes and the round is not lost."""
    bad = 104
    guard = _guard(FedAvg(), tmp_path, gate="rollback", prober=MarkerProber(),
                   reference=_profile(0.9))
    guarded = run_rounds(guard, n_rounds=1, client=_marker_client(bad))
    without = run_rounds(FedAvg(), n_rounds=1, client=lambda m, n, r, a: (
        _marker_client(bad)(m, n, r, a) if n != bad else None))
    gate = guard.history[-1].gate
    assert gate.action == "quarantine" and gate.excluded == [bad]
    assert same_arrays(guarded[-1], without[-1])
    assert not any(a.mode == "alignment" for a in guard.alarms)


def _initial() -> ArrayRecord:
    from tests.helpers.guard import initial_arrays
    return initial_arrays()


def test_halt_stops_with_clear_error_and_closed_log(tmp_path):
    guard = _guard(FedAvg(), tmp_path, gate="halt")
    with pytest.raises(TrustHalt, match="halted the run in round 1"):
        run_rounds(guard, n_rounds=2, client=_poisoner(102))
    result = verify_log(tmp_path / "run" / "audit.jsonl")
    assert result.ok
    kinds = [r["kind"] for r in read_log(tmp_path / "run" / "audit.jsonl")]
    assert kinds[0] == "run-start" and kinds[-1] == "run-end"


def test_on_alarm_callback_and_trust_metrics(tmp_path):
    seen = []
    guard = _guard(FedAvg(), tmp_path, on_alarm=seen.append)
    run_rounds(guard, n_rounds=2, client=_poisoner(105))
    assert seen and all(a.mode == "update" for a in seen)
    assert guard.history[0].gate.action == "accept"  # gate off: alarms only


def test_bad_construction_is_a_clear_error(tmp_path):
    with pytest.raises(TrustError, match="Unknown gate"):
        _guard(FedAvg(), tmp_path, gate="block")
    with pytest.raises(TrustError, match="wraps a Flower Strategy"):
        TrustGuard(object(), model=None)  # type: ignore[arg-type]
    with pytest.raises(TrustError, match="audit_fraction"):
        _guard(FedAvg(), tmp_path, audit_fraction=2.0)
    # found in review: both were accepted and failed only in round 1, with an error naming
    # neither setting (numpy refuses a negative seed; a file where the run folder goes)
    with pytest.raises(TrustError, match="seed must be an integer >= 0, got -1"):
        _guard(FedAvg(), tmp_path, seed=-1)
    a_file = tmp_path / "afile"
    a_file.write_text("not a folder")
    for run_dir in (a_file, a_file / "sub"):
        with pytest.raises(TrustError, match="trust.run-dir .* is a file"):
            TrustGuard(FedAvg(), model=None, run_dir=run_dir, tensorboard=False)


class ScreeningMarkerProber(MarkerProber):
    """MarkerProber that can also screen: the predicted refusal change of an update is minus
    its marker over the number of clients (what the average would lose)."""

    def __init__(self, n: int) -> None:
        super().__init__()
        self.n = n
        self.screened: list[dict] = []

    def screen(self, arrays, suites, metrics):
        self.screened.append({m: list(v) for m, v in metrics.items()})
        n = self.n

        class Linear:
            def predict(self, update):
                return {"alignment.refusal-rate": -float(update["layer.b"][0]) / n}
        return Linear()


def test_rollback_above_the_leave_one_out_limit_screens_then_probes_the_worst(tmp_path):
    """Ten clients (> LOO_MAX_CLIENTS): no leave-one-out trials; the screen ranks the clients on
    the failing metric, only the worst-predicted ones are probed exactly, and the culprit is
    the one whose own model fails."""
    from flwr_trust.guard.core import LOO_MAX_CLIENTS
    from flwr_trust.guard.screened import SCREEN_TOP

    bad, n = 105, 10
    assert n > LOO_MAX_CLIENTS
    prober = ScreeningMarkerProber(n)
    guard = _guard(FedAvg(), tmp_path, gate="rollback", prober=prober,
                   update_checker=NoUpdateChecks(), reference=_profile(0.9))
    run_rounds(guard, n_rounds=1, n_nodes=n, client=_marker_client(bad))
    gate = guard.history[-1].gate
    assert gate.action == "rollback" and gate.culprits == [bad]
    assert "screened 10 clients" in gate.reason
    assert prober.screened == [{"alignment": ["refusal-rate"]}]
    # the candidate on every mode, then only the one client predicted worse than no change
    # (the others' markers are 0), on the failing mode
    assert prober.calls == [set(guard.suites), {"alignment"}]
    assert SCREEN_TOP >= 1


def test_without_a_screen_a_large_round_names_no_culprit(tmp_path):
    guard = _guard(FedAvg(), tmp_path, gate="rollback", prober=MarkerProber(),
                   update_checker=NoUpdateChecks(), reference=_profile(0.9))
    run_rounds(guard, n_rounds=1, n_nodes=10, client=_marker_client(105))
    gate = guard.history[-1].gate
    assert gate.action == "rollback" and gate.culprits == []
    assert "no screen available" in gate.reason


def _poisoner_by_round(bad: int, factors: tuple[float, ...]):
    """The bad client sends factor x its honest update, with the round's factor."""
    def client(msg, node, rnd, arrays):
        if node != bad:
            return default_client(msg, node, rnd, arrays)
        honest = honest_update(arrays, node, rnd)
        return reply(msg, {k: arrays[k].numpy() + factors[rnd - 1] * (v - arrays[k].numpy())
                           for k, v in honest.items()}, {"num-examples": 10, "train_loss": 0.5})
    return client


@pytest.mark.parametrize(("factors", "out_in_rounds_2_3"), [
    ((50.0, 1.0, 1.0), [[], []]),  # honest again: its next update is ordinary, released
    ((50.0, -2.0, -2.0), [[103], [103]]),  # still poisoning, too mildly to be flagged anew
])
def test_a_client_the_update_checks_named_stays_out_until_its_update_is_ordinary(
        factors, out_in_rounds_2_3, tmp_path):
    """On SmolLM2 a 1-of-4 poisoner flagged in the onset round was averaged in the round after:
    its norm z fell from 43-58 to 12-16, under the threshold of 40. Now the update checks put
    a flagged client on probation, released by an unremarkable update of its own."""
    guard = _guard(FedAvg(), tmp_path, gate="quarantine")
    run_rounds(guard, n_rounds=3, client=_poisoner_by_round(103, factors))
    first, *later = (h.gate for h in guard.history)
    assert first.excluded == [103]
    assert [g.excluded for g in later] == out_in_rounds_2_3
    if out_in_rounds_2_3[0]:  # kept out by the probation, not by a new flag
        assert "probation" in later[0].reason and "probation" in later[1].reason
        assert not [a for a in guard.alarms if a.round > 1], "flagged anew: not the case tested"


@pytest.mark.parametrize(("budget", "server_items", "apart"), [
    (0, 0, ""),  # every party scores the whole suites: the reference is on the same items
    (8, 0, "all"),  # a rotating client sample
    (0, 8, "all"),  # a server subset of the clients' suites
    # the defaults: 30 canaries are probed whole on both sides, the other suites are sampled
    (32, 100, "all but memorization"),
])
def test_reports_count_the_reference_error_when_clients_score_other_items(
        tmp_path, budget, server_items, apart):
    guard = _guard(FedAvg(), tmp_path, client_probe_budget=budget,
                   server_probe_items=server_items)
    core = guard.core
    every = set(guard.modes)
    expected = every if apart == "all" else every - {"memorization"} if apart else set()
    assert "memorization" in every and len(guard.client_suites["memorization"].items) == 30
    assert core.monitor("reports").config.reference_sampled == expected
    assert core.monitor("evaluate").config.reference_sampled == expected
    assert core.monitor("candidate").config.reference_sampled == set()  # same items, paired
