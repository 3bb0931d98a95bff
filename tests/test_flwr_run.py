"""A real `flwr run baselines/silent-failures` (simulation engine, tiny model), isolated.

`flwr run` starts a local SuperLink on fixed default ports and reuses any that already runs;
this test gives it its own FLWR_HOME and free ports (FLWR_LOCAL_SUPERLINK_HTTP_API_PORT and
FLWR_LOCAL_CONTROL_API_PORT, read by flwr.cli.constant), and afterwards stops the SuperLink it
started, found by that unique port, by pid (with its children).
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
APP = ROOT / "baselines" / "silent-failures"
BIN = Path(sys.executable).parent
RUN_CONFIG = ("model='tiny' num-server-rounds=2 onset-round=2 local-steps=2 batch-size=2 "
              "probe-items=8 eval-items=40")


def free_ports(n: int) -> list[int]:
    """n distinct free TCP ports on loopback (bound together, then released)."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def flower_env(home: Path, **extra: str) -> dict[str, str]:
    env = os.environ.copy()
    env.update({"FLWR_HOME": str(home), "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false",
                "PATH": f"{BIN}{os.pathsep}{env.get('PATH', '')}"})
    env.update(extra)
    return env


def stop_tree(pids: list[int], timeout: float = 20.0) -> None:
    """SIGTERM each pid and its descendants (collected first), then SIGKILL what remains."""
    import psutil

    procs = []
    for pid in pids:
        try:
            parent = psutil.Process(pid)
            procs += [parent, *parent.children(recursive=True)]
        except psutil.NoSuchProcess:
            continue
    for p in procs:
        with contextlib.suppress(psutil.NoSuchProcess):
            p.send_signal(signal.SIGTERM)
    _, alive = psutil.wait_procs(procs, timeout=timeout)
    for p in alive:
        with contextlib.suppress(psutil.NoSuchProcess):
            p.kill()
    psutil.wait_procs(alive, timeout=5)


def pids_listening_on(port: int, name: str) -> list[int]:
    """Processes named `name` whose command line has `--port <port>` (the one we chose)."""
    import psutil

    out = []
    for p in psutil.process_iter(["pid", "cmdline"]):
        cmd = p.info["cmdline"] or []
        if any(name in part for part in cmd) and str(port) in cmd:
            out.append(p.info["pid"])
    return out


@pytest.fixture(scope="session")
def tiny_cache(tmp_path_factory) -> Path:
    """A flwr-trust cache with the tiny aligned adapter built once, for the Flower processes
    of both slow tests (each would otherwise build it inside its timed run)."""
    from silent_failures.aligned import ensure_aligned_adapter

    root = tmp_path_factory.mktemp("flwr-trust-cache-shared")
    ensure_aligned_adapter("tiny", cache_dir=root / "aligned", progress=None)
    return root


def report_path(output: str) -> Path:
    lines = [ln for ln in output.splitlines() if ln.startswith("Report: ")]
    assert lines, f"no 'Report:' line in the output:\n{output[-3000:]}"
    return Path(lines[-1].removeprefix("Report: ").strip())


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
