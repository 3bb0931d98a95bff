"""Isolated Flower processes for the `flwr run` and deployment tests of the baseline app.

`flwr run` starts a local SuperLink on fixed default ports and reuses any that already runs;
these helpers give a test its own FLWR_HOME and free ports, and stop what it started by pid
(with its children).
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
APP = ROOT / "baselines" / "silent-failures"
BIN = Path(sys.executable).parent
# The tiny two-round baseline run of both tests.
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
    """This environment with Flower's home at `home`, offline, this venv's bin first."""
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


def report_path(output: str) -> Path:
    lines = [ln for ln in output.splitlines() if ln.startswith("Report: ")]
    assert lines, f"no 'Report:' line in the output:\n{output[-3000:]}"
    return Path(lines[-1].removeprefix("Report: ").strip())
