"""A real `flwr run baselines/silent-failures` (simulation engine, tiny model), isolated.

`flwr run` starts a local SuperLink on fixed default ports and reuses any that already runs;
this test gives it its own FLWR_HOME and free ports (FLWR_LOCAL_SUPERLINK_HTTP_API_PORT and
FLWR_LOCAL_CONTROL_API_PORT, read by flwr.cli.constant), and afterwards stops the SuperLink it
started, found by that unique port, by pid (with its children).
"""

from __future__ import annotations

import subprocess
import time

import pytest

from tests.helpers.flower import (
    APP,
    BIN,
    RUN_CONFIG,
    flower_env,
    free_ports,
    pids_listening_on,
    report_path,
    stop_tree,
)


@pytest.mark.slow
def test_flwr_run_simulation_end_to_end(tmp_path, tiny_cache):
    http_port, control_port = free_ports(2)
    env = flower_env(tmp_path / "flwr-home", FLWR_LOCAL_SUPERLINK_HTTP_API_PORT=str(http_port),
                     FLWR_LOCAL_CONTROL_API_PORT=str(control_port),
                     FLWR_TRUST_CACHE=str(tiny_cache))
    runs = tmp_path / "runs"
    cmd = [str(BIN / "flwr"), "run", str(APP), "--stream",
           "--federation-config", "num-supernodes=3 client-resources-num-cpus=1",
           "--run-config", f"{RUN_CONFIG} run-dir='{runs}'"]
    start = time.monotonic()
    try:
        proc = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True,
                              timeout=170)
    finally:
        stop_tree(pids_listening_on(http_port, "flower-superlink"))
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output[-3000:]
    report = report_path(output)
    assert report.is_file() and report.suffix == ".html" and runs in report.parents
    summary = (report.parent / "summary.md").read_text()
    assert "3 clients, 2 rounds" in summary and "Wall time" in output
    assert not (APP / "pyproject.toml").read_text().count("# [tool.flwr.federations]")
    assert time.monotonic() - start < 170
