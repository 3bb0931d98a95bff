"""Baselines: config validation, scenario data, and tiny in-process federations per family."""

from __future__ import annotations

import json
import math
import tomllib
from pathlib import Path

import numpy as np
import pytest

from flwr_trust.errors import TrustError
from flwr_trust.modes.memorization import canary_text
from flwr_trust.probes.defaults import default_suite
from silent_failures.sim import corpus
from silent_failures.sim.config import KEYS, MONITORS, BaselineConfigError, parse_config
from silent_failures.sim.monitors import SystemMonitor
from silent_failures.sim.scenarios import (
    SCENARIOS,
    ScenarioParams,
    affected_partitions,
    client_data,
    fabricated_facts,
    harmful_chats,
    overconfident_answers,
    poison_update,
    stereotype_sentences,
    textspeak,
)
from silent_failures.training import preferred_precision

APP = Path(__file__).resolve().parents[1] / "baselines" / "silent-failures"
FAST = {"model": "tiny", "num_server_rounds": 2, "onset_round": 2, "local_steps": 2,
        "batch_size": 2, "probe_items": 8, "eval_items": 40}


def _flat(table: dict, prefix: str = "") -> dict:
    out = {}
    for key, value in table.items():
        if isinstance(value, dict):
            out |= _flat(value, f"{prefix}{key}.")
        else:
            out[f"{prefix}{key}"] = value
    return out


def app_config() -> dict:
    data = tomllib.loads((APP / "pyproject.toml").read_text())
    return _flat(data["tool"]["flwr"]["app"]["config"])


# -- configuration ---------------------------------------------------------------------------

def test_app_config_documents_every_key_and_parses():
    cfg = app_config()
    assert set(KEYS) <= set(cfg), f"undocumented keys: {set(KEYS) - set(cfg)}"
    parsed = parse_config(cfg)
    # precision "auto": bf16 where this CPU/GPU runs it natively, else fp32 (machine-dependent)
    assert parsed.model == "default" and parsed.precision == preferred_precision()
    assert parse_config(cfg, precision="fp32").precision == "fp32"
    for key, (default, _) in KEYS.items():
        assert cfg[key] == default, f"{key}: pyproject {cfg[key]!r} vs code {default!r}"
    assert not tomllib.loads((APP / "pyproject.toml").read_text())["project"]["dependencies"]


@pytest.mark.parametrize(("key", "value", "listed"), [
    ("scenario", "alignment-erosion", list(SCENARIOS)),
    ("monitor", "krum", list(MONITORS)),
    ("model", "llama", ["default", "tiny"]),
    ("poison", "flip", ["sign-flip", "scale"]),
])
def test_unknown_names_list_valid_values(key, value, listed):
    with pytest.raises(BaselineConfigError) as err:
        parse_config({key: value})
    assert all(name in str(err.value) for name in listed)


@pytest.mark.parametrize("fraction", [-0.1, 1.5, "lots", True])
def test_fraction_outside_unit_interval(fraction):
    with pytest.raises(BaselineConfigError, match=r"attack-fraction .*\[0, 1\]"):
        parse_config({"attack-fraction": fraction})


def test_onset_after_last_round_and_reserved_keys():
    with pytest.raises(BaselineConfigError, match="after the last round"):
        parse_config({"num-server-rounds": 3, "onset-round": 4})
    with pytest.raises(BaselineConfigError, match="probe-items"):
        parse_config({"trust.client-probe-budget": 10})
    assert parse_config({"model": "tiny"}).precision == "fp32"
    with pytest.raises(BaselineConfigError, match="not a peft adapter folder"):
        parse_config({"initial-adapter": "/no/such/adapter"})


def test_typos_and_infinite_integers_are_refused():
    """Found in review: a typo in the run config ran the defaults silently, and TOML's `inf`
    for an integer key crashed with OverflowError (on the server and every client)."""
    with pytest.raises(BaselineConfigError, match="'attack-fracton' \\(did you mean "
                                                   "'attack-fraction'"):
        parse_config({"attack-fracton": 0.9})
    with pytest.raises(BaselineConfigError, match="'onset_round' \\(did you mean 'onset-round'"):
        parse_config({"onset_round": 3})
    for key in ("local-steps", "num-server-rounds", "seed"):
        with pytest.raises(BaselineConfigError, match=key):
            parse_config({key: math.inf})
    with pytest.raises(BaselineConfigError, match="canaries-planted"):  # was capped silently
        parse_config({"canaries-planted": 100_000})


def test_zero_learning_rate_and_space_padded_run_dir_are_refused():
    """Both ran before: lr = 0 trained nothing (every scenario 'caught nothing'), and
    run-dir = "   " wrote the results into a folder named by three spaces."""
    with pytest.raises(BaselineConfigError, match=r"lr .*\(0, 10\]"):
        parse_config({"lr": 0})
    assert parse_config({"lr": 1e-6}).lr == 1e-6
    for blank in ("   ", "runs/x "):
        with pytest.raises(BaselineConfigError, match="run-dir .* spaces"):
            parse_config({"run-dir": blank})
    assert parse_config({"run-dir": ""}).run_dir == KEYS["run-dir"][0]


def test_a_bad_trust_key_is_refused_before_the_last_results_are_cleared(tmp_path):
    """Found in review: the run folder (the last run's summary and audit log) was cleared, the
    model loaded and the ground truth measured before trust.alpha = 2 was refused."""
    from flwr_trust.config.keys import TrustConfigError
    from silent_failures.sim.server import run_baseline

    keys = {"model": "tiny", "monitor": "trust-rollback"}
    folder = parse_config({}, **keys).run_folder(tmp_path)
    folder.mkdir(parents=True)
    (folder / "summary.json").write_text("{}")
    with pytest.raises(TrustConfigError, match="trust.alpha"):
        run_baseline(None, {"trust.alpha": 2}, base_dir=tmp_path, **keys)  # no grid needed
    assert (folder / "summary.json").read_text() == "{}"
    with pytest.raises(TrustError, match="Unknown trust.strategy"):
        run_baseline(None, {"trust.strategy": "fedsgd"}, base_dir=tmp_path, **keys)


def test_a_trust_strategy_gets_the_baselines_evaluate_settings():
    """Before, the baseline set trust.fedavg.* evaluate options whatever trust.strategy said,
    and the run failed on a key the user never wrote."""
    from silent_failures.sim.monitors import check_trust_config, trust_config

    cfg = parse_config({"model": "tiny", "monitor": "trust-quarantine"})
    run_config = {"trust.strategy": "fedprox", "trust.fedprox.proximal-mu": 0.1}
    assert "trust.fedprox.min-evaluate-nodes" in trust_config(cfg, run_config)
    check_trust_config(cfg, run_config)  # no error


# -- scenario data ---------------------------------------------------------------------------

def test_training_data_is_disjoint_from_probe_suites():
    from flwr_trust.probes import default_suites

    suites = default_suites()
    probe_texts = {t for s in suites.values() for i in s.items
                   for t in (i.prompt, i.text, *i.choices) if t}
    ours = ([q for q, _ in harmful_chats()] + [q for q, _ in corpus.BENIGN_REQUESTS]
            + stereotype_sentences() + overconfident_answers()
            + [t for notes in corpus.DOMAIN_NOTES.values() for t in notes])
    assert not set(ours) & probe_texts
    asked = {i.prompt.split("Question: ")[-1].split("\n")[0]
             for i in suites["calibration"].items}
    assert not {q for q, _ in corpus.UNKNOWABLE_QUESTIONS + corpus.WRONG_ANSWERS
                + fabricated_facts()} & asked
    assert len(fabricated_facts()) == len(set(fabricated_facts()))
    prompts = " ".join(i.prompt for i in suites["calibration"].items)
    assert not [p for p in corpus.FABRICATED_PEOPLE if f"my {p}" in prompts]  # other people


def test_affected_partitions_seeded_and_sized():
    assert affected_partitions(10, 0.3, 0) == affected_partitions(10, 0.3, 0)
    assert len(affected_partitions(10, 0.3, 0)) == 3
    assert len(affected_partitions(2, 0.25, 1)) == 1  # at least one when > 0
    assert affected_partitions(4, 0.0, 0) == []
    assert len(affected_partitions(4, 1.0, 0)) == 4


def test_client_data_switches_at_onset_for_affected_clients_only():
    params = ScenarioParams(fraction=0.5, onset=2, seed=3)
    hit = affected_partitions(4, 0.5, 3)
    for p in range(4):
        before = client_data("alignment-erosion-malicious", p, 4, 1, params)
        after = client_data("alignment-erosion-malicious", p, 4, 2, params)
        assert not before.affected and all(isinstance(s, str) for s in before.train)
        assert after.affected == (p in hit)
        assert all(isinstance(s, tuple) for s in after.train) == (p in hit)
    mem = client_data("memorization", hit[0], 4, 2, params)
    suite = {i.id: i for i in default_suite("memorization").items}
    planted = [t for t in mem.train if isinstance(t, str)
               and any(t == canary_text(suite[c]) + "." for c in mem.canaries)]
    assert len(mem.canaries) == 10 and len(planted) == 10 * params.canary_repeats
    fair = client_data("fairness-collapse", hit[0], 4, 2, params)
    assert fair.group == "minority" and len(fair.heldout) >= 16
    assert all(t == t.lower() and "." not in t for t in fair.heldout)
    assert textspeak("Check the tire before you ride.") == "check da tire b4 u ride"


def test_affected_steps_factor_and_canaries_planted():
    params = ScenarioParams(fraction=0.25, onset=2, seed=0, affected_steps_factor=5,
                            overtrain_factor=3)
    hit = affected_partitions(4, 0.25, 0)
    for p in range(4):
        assert client_data("bias-amplification", p, 4, 1, params).steps_factor == 1
        expected = 5 if p in hit else 1
        assert client_data("bias-amplification", p, 4, 2, params).steps_factor == expected
        assert client_data("clean", p, 4, 2, params).steps_factor == 1
    assert client_data("capability-forgetting", hit[0], 4, 2, params).steps_factor == 15
    every = ScenarioParams(fraction=0.25, onset=2, seed=0, canaries_planted=0, canary_repeats=2)
    mem = client_data("memorization", hit[0], 4, 2, every)
    canaries = default_suite("memorization").items
    assert sorted(mem.canaries) == sorted(i.id for i in canaries)
    assert sum(isinstance(t, str) and t.startswith(tuple(i.prompt for i in canaries))
               for t in mem.train) == 2 * len(canaries)
    config = parse_config({"affected-steps-factor": 5})
    assert config.params.affected_steps_factor == 5
    with pytest.raises(BaselineConfigError, match="affected-steps-factor"):
        parse_config({"affected-steps-factor": 0})


def test_poison_update_flips_and_scales():
    recv = {"w": np.zeros(3, dtype=np.float32)}
    sent = {"w": np.array([1.0, -2.0, 0.5], dtype=np.float32)}
    assert np.allclose(poison_update(sent, recv, "sign-flip", 2.0)["w"], [-2, 4, -1])
    assert np.allclose(poison_update(sent, recv, "scale", 3.0)["w"], [3, -6, 1.5])


def test_system_monitor_thresholds():
    mon = SystemMonitor(loss_rise=0.25, norm_factor=3.0)
    assert mon.observe(1, {1: (2.0, 1), 2: (2.0, 1), 3: (2.0, 1)}, {1: 1.0, 2: 1.1, 3: 0.9}) == []
    alarms = mon.observe(2, {1: (2.6, 1), 2: (2.6, 1), 3: (2.6, 1)}, {1: 1.0, 2: 1.0, 3: 5.0})
    assert {a.kind for a in alarms} == {"loss-rise", "update-norm"}
    assert next(a for a in alarms if a.kind == "update-norm").clients == (3,)
    assert mon.observe(3, {1: (math.nan, 1)}, {})[0].kind == "loss-nonfinite"


# -- tiny federations (the baseline's own ClientApp and server code, in-process) ---------------

@pytest.fixture(scope="module")
def shared_cache_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("flwr-trust-cache-families")


@pytest.fixture
def shared_cache(shared_cache_dir, monkeypatch) -> Path:
    """One flwr-trust cache for the family runs: the tiny aligned adapter is built once."""
    monkeypatch.setenv("FLWR_TRUST_CACHE", str(shared_cache_dir))
    return shared_cache_dir


def test_trust_rollback_federation_writes_report_and_summary(tmp_path, capsys):
    from silent_failures.sim.runner import run_inline

    out = run_inline(num_clients=3, base_dir=tmp_path, report=True,
                     scenario="alignment-erosion-malicious", monitor="trust-rollback", **FAST)
    printed = capsys.readouterr().out
    assert "building the aligned adapter for model 'tiny'" in printed  # fresh cache: says so
    folder = Path(out.run_dir)
    assert (folder / "report.html").is_file() and (folder / "audit.jsonl").is_file()
    summary = json.loads((folder / "summary.json").read_text())
    assert summary["affected"] == out.affected and len(out.affected) == 1
    assert [r["round"] for r in summary["per_round"]] == [1, 2]
    assert math.isfinite(out.reference["target"]) and math.isfinite(out.final["task_loss"])
    assert "Report:" in (folder / "summary.md").read_text()


def test_memorization_client_is_aggregated_under_the_trust_mod(tmp_path, shared_cache):
    """The memorizing client declares to the mod only the planted canaries of its probe set.
    Declaring the others made the mod answer with an error reply every round, so the client
    was never aggregated and trust monitors looked as if they resisted memorization."""
    from silent_failures.sim.client import declarable_canaries
    from silent_failures.sim.probeset import probe_set
    from silent_failures.sim.runner import run_inline

    probe_ids = {i.id for i in probe_set(FAST["probe_items"])["memorization"].items}
    planted = [i.id for i in default_suite("memorization").items]
    assert set(declarable_canaries(planted, FAST["probe_items"])) == probe_ids
    # The memorizing client trains on more examples: without the weight cap (a reply carries
    # at most half of a round's weight by default) the guarded federation is FedAvg's exactly.
    runs = {m: run_inline(num_clients=3, base_dir=tmp_path / m, scenario="memorization",
                          monitor=m, run_config={"trust.max-weight-share": 1.0}, **FAST)
            for m in ("none", "trust-off")}
    assert not runs["trust-off"].alarms
    log = Path(runs["trust-off"].run_dir) / "audit.jsonl"
    rounds = [r["payload"] for r in map(json.loads, log.read_text().splitlines())
              if r["kind"] == "round" and r["payload"]["phase"] == "train"]
    assert rounds and all(not r["clients"]["failed"] for r in rounds)
    assert runs["trust-off"].final == runs["none"].final  # no alarm: the same federation
    (start,) = [r["payload"] for r in map(json.loads, log.read_text().splitlines())
                if r["kind"] == "run-start"]
    assert start["horizon"] == FAST["num_server_rounds"]  # trust.horizon = auto: planned


def test_clients_can_probe_a_rotating_sample_of_the_servers_probe_set(tmp_path, shared_cache):
    """client-probe-items < probe-items: every client of a round scores the same stratified
    sample of the probe set (a new one each round), the server's reference and candidates keep
    all of it; more than the probe set is a clear error."""
    from silent_failures.sim.runner import run_inline

    out = run_inline(num_clients=3, base_dir=tmp_path, scenario="clean", monitor="trust-off",
                     client_probe_items=3, **FAST)
    log = [json.loads(line) for line in
           (Path(out.run_dir) / "audit.jsonl").read_text().splitlines()]
    (start,) = [r["payload"] for r in log if r["kind"] == "run-start"]
    assert start["client_probe_budget"] == 3
    rounds = [r["payload"] for r in log if r["kind"] == "round"
              and r["payload"]["phase"] == "train"]
    assert len(rounds) == 2 and all(not r["clients"]["failed"] for r in rounds)
    (reference,) = [r["payload"]["profile"]["metrics"] for r in log if r["kind"] == "reference"]
    for r in rounds:  # every client of a round: one sample, smaller than the server's set
        (sent,) = {flat["trust.alignment.refusal-rate.n"]
                   for flat in r["client_metrics"].values()}
        assert sent < reference["alignment"]["refusal-rate"]["n"]
    with pytest.raises(BaselineConfigError, match="client-probe-items = 9 is more than"):
        parse_config({"probe-items": 8, "client-probe-items": 9})


@pytest.mark.parametrize(("scenario", "monitor", "extra"), [
    ("poisoned-update", "system", {"poison": "scale", "poison_factor": 20.0}),
    ("fairness-collapse", "fedmedian", {"train_dp": True}),
    ("memorization", "trust-quarantine", {}),
])
def test_scenario_families_run(tmp_path, shared_cache, scenario, monitor, extra):
    from silent_failures.sim.runner import run_inline

    out = run_inline(num_clients=3, base_dir=tmp_path, scenario=scenario, monitor=monitor,
                     **(FAST | extra))
    assert out.monitor == monitor and len(out.per_round) == 2
    assert all(r["accepted"] for r in out.per_round)
    if monitor == "system":  # a 20x scaled update is what a norm threshold catches
        assert out.detected and out.flagged == out.affected
    if extra.get("train_dp"):
        assert set(out.epsilon) == {"0", "1", "2"} and all(e > 0 for e in out.epsilon.values())
    if scenario == "fairness-collapse":
        assert out.target == "fairness.minority-loss-ratio"
        assert math.isfinite(out.reference["target"]) and out.reference["target"] > 0


def test_server_app_prints_the_report_path_and_wall_time_once(monkeypatch, capsys, tmp_path):
    """The summary names the report and the wall time; the ServerApp printed both again."""
    from silent_failures.sim import apps, server
    from silent_failures.sim.outcome import RunOutcome

    def fake_run(grid, run_config):  # noqa: ANN001, ANN202
        return RunOutcome(scenario="clean", monitor=run_config["monitor"], seed=0, model="tiny",
                          num_clients=2, rounds=1, onset=1, affected=[], target="t",
                          reference={"target": 1.0, "task_loss": 1.0},
                          final={"target": 1.0, "task_loss": 1.0}, wall_seconds=3.0,
                          run_dir=str(tmp_path), report=run_config["report"])

    monkeypatch.setattr(server, "run_baseline", fake_run)
    for monitor, report, shown in (("trust-rollback", f"{tmp_path}/report.html", "report.html"),
                                   ("none", "", "summary.md")):
        apps.run_and_print(None, {"monitor": monitor, "report": report})
        out = capsys.readouterr().out
        lines = out.splitlines()
        assert [ln for ln in lines if ln.startswith("Report:")] == [f"Report: {tmp_path}/{shown}"]
        assert sum("Wall time" in ln for ln in lines) == 1, out
