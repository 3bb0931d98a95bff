"""examples/flowertune_app: exactly the README's two-line diff makes a FlowerTune-style app
monitored by flwr-trust, and the result runs with `flwr run`.

The diff is read from the README (the main README shows the same one); removing it from the
example leaves an app with no trace of flwr-trust (except the offline model stand-ins in
models.py), and applying it again gives the example back. The `flwr run` tests run that
re-applied copy, isolated (own FLWR_HOME, free ports, offline, no dependency install), and stop
the SuperLink they started by pid.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import time
import tomllib
from pathlib import Path

import pytest
from flwr.common.config import flatten_dict

from flwr_trust.report.audit import read_log, verify_log
from tests.helpers.flower import BIN, ROOT, flower_env, free_ports, pids_listening_on, stop_tree

EXAMPLE = ROOT / "examples" / "flowertune_app"
APP_FILES = ("flowertune_app/client_app.py", "flowertune_app/server_app.py")


def readme_diff(readme: Path) -> str:
    """The ```diff block of the "two lines" section."""
    blocks = re.findall(r"```diff\n(.*?)```", readme.read_text(encoding="utf-8"), re.DOTALL)
    assert len(blocks) == 1, f"{readme} should hold exactly one diff block"
    return blocks[0]


def git_apply(folder: Path, patch: str, *reverse: str) -> None:
    subprocess.run(["git", "apply", *reverse, "-"], input=patch, text=True, cwd=folder,
                   check=True, capture_output=True)


def pristine_and_patched(tmp_path: Path) -> tuple[Path, Path, str]:
    """(the example without the diff, the pristine copy with the diff applied again, diff)."""
    patch = readme_diff(EXAMPLE / "README.md")
    pristine = tmp_path / "pristine"
    shutil.copytree(EXAMPLE, pristine, ignore=shutil.ignore_patterns("__pycache__"))
    git_apply(pristine, patch, "-R")
    patched = tmp_path / "app"
    shutil.copytree(pristine, patched)
    git_apply(patched, patch)
    return pristine, patched, patch


def test_the_readme_diff_is_two_lines_on_a_pristine_flowertune_app(tmp_path):
    pristine, patched, patch = pristine_and_patched(tmp_path)
    for name in APP_FILES:
        text = (pristine / name).read_text()
        assert "flwr_trust" not in text and "flwr-trust" not in text, name
        assert (patched / name).read_text() == (EXAMPLE / name).read_text(), name
    added = [ln for ln in patch.splitlines() if ln.startswith("+") and not ln.startswith("+++")]
    assert len(added) == 4 and all(ln.endswith("# flwr-trust") for ln in added)
    statements = [ln for ln in added if "import" not in ln]
    assert [s.strip("+ ").split("  #")[0] for s in statements] == [
        "app = ClientApp(mods=[trust_mod])", "strategy = strategy_from_config(context.run_config)"]
    config = flatten_dict(tomllib.loads((pristine / "pyproject.toml").read_text())["tool"][
        "flwr"]["app"]["config"])
    assert not [k for k in config if k.startswith("trust")]  # it reads FlowerTune's own keys
    for key in ("model.name", "model.quantization", "model.gradient-checkpointing",
                "model.lora.peft-lora-r", "model.lora.peft-lora-alpha",
                "train.training-arguments.max-steps", "strategy.fraction-train",
                "strategy.fraction-evaluate", "num-server-rounds"):
        assert key in config, key
    assert patch in (ROOT / "README.md").read_text(), "the main README shows the same diff"


def _flwr_run(app: Path, tmp_path: Path, run_config: str, timeout: float
              ) -> tuple[subprocess.CompletedProcess, Path]:
    """`flwr run app --stream` with 2 simulated clients, from `tmp_path` (where the run folder
    goes); returns the process and the run folder the stream names."""
    http_port, control_port = free_ports(2)
    env = flower_env(tmp_path / "flwr-home", FLWR_LOCAL_SUPERLINK_HTTP_API_PORT=str(http_port),
                     FLWR_LOCAL_CONTROL_API_PORT=str(control_port),
                     FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION="1",
                     FLWR_DISABLE_UPDATE_CHECK="1")
    cmd = [str(BIN / "flwr"), "run", str(app), "--stream",
           "--federation-config", "num-supernodes=2 client-resources-num-cpus=1"]
    if run_config:
        cmd += ["--run-config", run_config]
    try:
        proc = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True,
                              timeout=timeout)
    finally:
        stop_tree(pids_listening_on(http_port, "flower-superlink"))
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output[-4000:]
    named = re.findall(r"TrustGuard: run folder (\S+) \(audit log", output)
    assert named, f"the stream names no run folder:\n{output[-4000:]}"
    return proc, Path(named[0])


def _check_monitored_training(output: str, run_dir: Path, tmp_path: Path, rounds: int,
                              server_items: set[int]) -> None:
    """The run folder holds a verified audit log with every round (the client probe budget the
    shipped default, the server's items per mode `server_items`); the clients trained (the
    checkpoint the app saved has a non-zero LoRA B, which starts at zero) and reported."""
    assert run_dir.parent == tmp_path / "runs" and (run_dir / "audit.jsonl").is_file()
    assert "model 'tiny' from model.name" in output or "model 'default'" in output
    assert "from model.lora.peft-lora-alpha" in output
    assert "fraction_train=0.5 from strategy.fraction-train" in output
    assert verify_log(run_dir / "audit.jsonl").ok
    records = read_log(run_dir / "audit.jsonl")
    kinds = [r["kind"] for r in records]
    assert kinds[:2] == ["run-start", "reference"] and kinds[-1] == "run-end"
    start = records[0]["payload"]
    assert start["client_probe_budget"] == 32
    assert set(start["server_items"].values()) == server_items
    train = [r["payload"] for r in records
             if r["kind"] == "round" and r["payload"]["phase"] == "train"]
    assert [r["round"] for r in train] == list(range(1, rounds + 1))
    for record in train:
        assert len(record["clients"]["valid"]) == 2, record["clients"]
        assert record["system"]["loss"] > 0  # the clients' train_loss, as FedAvg averaged it
        reports = record["client_metrics"].values()
        assert len(reports) == 2 and all("trust.alignment.refusal-rate" in r for r in reports)
    checkpoints = list((tmp_path / "results").glob(f"*/peft_{rounds}/adapter_model.safetensors"))
    assert len(checkpoints) == 1, list((tmp_path / "results").rglob("*"))
    from safetensors.torch import load_file

    weights = load_file(checkpoints[0])
    assert any("lora_B" in k and bool(v.abs().sum() > 0) for k, v in weights.items())


@pytest.mark.slow
def test_the_two_line_app_runs_with_flwr_run_on_the_tiny_model(tmp_path):
    _, app, _ = pristine_and_patched(tmp_path)
    start = time.monotonic()
    proc, run_dir = _flwr_run(app, tmp_path, "model.name='tiny'", timeout=400)
    # The shipped defaults: 100 items per mode, memorization's 30 canaries (its whole suite).
    _check_monitored_training(proc.stdout + proc.stderr, run_dir, tmp_path, rounds=2,
                              server_items={30, 100})
    assert read_log(run_dir / "audit.jsonl")[-1]["payload"]["status"] == "completed"
    assert time.monotonic() - start < 400


@pytest.mark.slow
@pytest.mark.embedded
def test_the_two_line_app_runs_with_flwr_run_on_the_embedded_model(tmp_path):
    """The example as shipped (model.name = "default": SmolLM2-135M-Instruct, the default
    client probe budget), for one round instead of its two (num-server-rounds=1) and with 30
    server items per mode instead of 100 (trust.server-probe-items = 30 in its pyproject).
    Both cuts keep what only this test checks (the real model through the two-line app, in
    Flower's processes); the tiny-model run checks both rounds and the default server budget.
    They save the suite 50 s (second round) and about 75 s (server items: the reference and
    candidate probes took 60 s and 50 s of a 178 s run) on 2 cores without AVX-512
    (2026-12-07/08). Converts the model once in this process first, so the Flower processes
    share one cache."""
    from flwr_trust.models.default_model import ensure_default_model

    ensure_default_model()
    _, app, _ = pristine_and_patched(tmp_path)
    # As a user tunes flwr-trust in a FlowerTune app: a trust.* key in the app's own config
    # (`flwr run --run-config` may only override keys the app declares).
    pyproject = app / "pyproject.toml"
    text = pyproject.read_text()
    assert text.count("num-server-rounds = 2\n") == 1
    pyproject.write_text(text.replace("num-server-rounds = 2\n",
                                      "num-server-rounds = 2\ntrust.server-probe-items = 30\n"))
    proc, run_dir = _flwr_run(app, tmp_path, "num-server-rounds=1", timeout=1800)
    _check_monitored_training(proc.stdout + proc.stderr, run_dir, tmp_path, rounds=1,
                              server_items={30})
