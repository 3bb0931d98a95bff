"""Deployment Engine: the baseline over Flower's real network transport on loopback.

(Flower 1.41 serves the Fleet and Control APIs over HTTP on one port; earlier releases used
gRPC. `flower-superlink --help` calls the gRPC address flags deprecated.) One
`flower-superlink` and two `flower-supernode` processes (insecure mode, free ports, their own
FLWR_HOME), `flwr run baselines/silent-failures <connection>` against that SuperLink, the report
checked, and every process this test started stopped by pid (children included) in a finally.
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest

from tests.helpers.flower import (
    APP,
    BIN,
    RUN_CONFIG,
    flower_env,
    free_ports,
    report_path,
    stop_tree,
)

CONNECTION = "baselines-deploy"


def _wait_for(path: Path, text: str, timeout: float, procs: list[subprocess.Popen]) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.is_file() and text in path.read_text(errors="replace"):
            return
        dead = [p.args for p in procs if p.poll() is not None]
        if dead:
            raise AssertionError(f"exited early: {dead}\n{path.read_text(errors='replace')}")
        time.sleep(0.5)
    raise AssertionError(f"{text!r} not in {path} after {timeout} s")


@pytest.mark.slow
def test_deployment_engine_superlink_two_supernodes(tmp_path, tiny_cache):
    link_port, health_port, node0_port, node1_port = free_ports(4)
    home = tmp_path / "flwr-home"
    home.mkdir()
    (home / "config.toml").write_text(
        f'[superlink]\ndefault = "{CONNECTION}"\n\n[superlink.{CONNECTION}]\n'
        f'address = "127.0.0.1:{link_port}"\ninsecure = true\n')
    env = flower_env(home, FLWR_TRUST_CACHE=str(tiny_cache))
    runs = tmp_path / "runs"
    started: list[subprocess.Popen] = []

    def launch(name: str, *args: str) -> Path:
        log = tmp_path / f"{name}.log"
        started.append(subprocess.Popen([str(BIN / args[0]), *args[1:]], cwd=tmp_path, env=env,
                                        stdout=log.open("w"), stderr=subprocess.STDOUT))
        return log

    try:
        link_log = launch("superlink", "flower-superlink", "--insecure", "--isolation",
                          "subprocess", "--host", "127.0.0.1", "--port", str(link_port),
                          "--health-server-address", f"127.0.0.1:{health_port}")
        for i, port in enumerate((node0_port, node1_port)):
            launch(f"supernode{i}", "flower-supernode", "--insecure", "--superlink",
                   f"127.0.0.1:{link_port}", "--port", str(port),
                   "--node-config", f"partition-id={i} num-partitions=2")
        _wait_for(link_log, "Activated node_id", 60, started)
        proc = subprocess.run(
            [str(BIN / "flwr"), "run", str(APP), CONNECTION, "--stream",
             "--run-config", f"{RUN_CONFIG} monitor='trust-quarantine' run-dir='{runs}'"],
            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=170)
        output = proc.stdout + proc.stderr
        assert proc.returncode == 0, output[-3000:]
        report = report_path(output)
        assert report.is_file() and runs in report.parents
        summary = (report.parent / "summary.md").read_text()
        assert "2 clients, 2 rounds" in summary and "trust-quarantine" in summary
    finally:
        stop_tree([p.pid for p in started])
        for p in started:
            p.wait(timeout=30)
