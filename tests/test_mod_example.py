"""A real `flwr run` of examples/trust_mod_app: every mode's trust.* metrics reach the server.

The test starts its own SuperLink (own FLWR_HOME, own ports, runtime dependency installation
off: the app runs in this environment), runs the app for two rounds, reads the aggregated
metrics the ServerApp wrote, and stops the processes it started, by pid.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from flwr_trust.modes import MODES

APP = Path(__file__).resolve().parents[1] / "examples" / "trust_mod_app"
BIN = Path(sys.executable).parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _descendants(pid: int) -> list[int]:
    """Processes started (transitively) by `pid`: the SuperExec and its simulation runner."""
    parent_of = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            parent_of[int(stat.parent.name)] = int(stat.read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
    out, frontier = [], [pid]
    while frontier:
        kids = [p for p, parent in parent_of.items() if parent in frontier]
        out += kids
        frontier = kids
    return out


@pytest.fixture
def superlink(tmp_path):
    port, control = _free_port(), _free_port()
    env = os.environ | {"FLWR_HOME": str(tmp_path / "flwr-home"), "HF_HUB_OFFLINE": "1",
                        "FLWR_LOCAL_SUPERLINK_HTTP_API_PORT": str(port),
                        "FLWR_LOCAL_CONTROL_API_PORT": str(control),
                        "FLWR_DISABLE_UPDATE_CHECK": "1", "TOKENIZERS_PARALLELISM": "false",
                        "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
    log = open(tmp_path / "superlink.log", "w")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(
        [str(BIN / "flower-superlink"), "--insecure", "--simulation", "--isolation",
         "subprocess", "--host", "127.0.0.1", "--port", str(port), "--control-api-address",
         f"127.0.0.1:{control}", "--disable-runtime-dependency-installation"],
        env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health", timeout=0.5).is_success:
                    break
            except httpx.HTTPError:
                pass
            assert proc.poll() is None, (tmp_path / "superlink.log").read_text()[-2000:]
            time.sleep(0.3)
        yield env
    finally:
        children = _descendants(proc.pid)
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        for pid in children:  # what it spawned: SuperExec, flwr-simulation (by pid)
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, 15)
        log.close()


@pytest.mark.slow
def test_flwr_run_of_the_example_app_reports_every_mode(superlink, tmp_path):
    results = tmp_path / "results.json"
    run = subprocess.run(
        [str(BIN / "flwr"), "run", str(APP), "--stream", "--run-config",
         f"results-path='{results}' num-server-rounds=2", "--federation-config",
         "num-supernodes=2 client-resources-num-cpus=1"],
        env=superlink, capture_output=True, text=True, timeout=420)
    assert results.is_file(), run.stdout[-3000:] + run.stderr[-3000:]
    data = json.loads(results.read_text())
    for phase in ("train", "evaluate"):
        assert sorted(data[phase]) == ["1", "2"], phase
        for rnd, metrics in data[phase].items():
            for mode in MODES:
                assert any(k.startswith(f"trust.{mode}.") for k in metrics), (phase, rnd, mode)
            assert metrics["trust.fairness.local-loss.n"] > 0  # private, from local data
            assert metrics["trust.fairness.local-loss.noise"] > 0
            assert metrics["trust.privacy.epsilon"] > 0
    train = data["train"]["2"]
    assert train["trust.shift.from-earlier.n"] > 0 and train["trust.shift.from-reference.n"] > 0
    assert train["trust.public-post-processing"] == 1
    assert any(k.startswith("trust.delta.") for k in train)
