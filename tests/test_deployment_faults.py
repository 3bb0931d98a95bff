"""Clients that drop never cost a round, over Flower's Deployment Engine.

A SuperLink and three SuperNodes as processes (insecure, own ports, own FLWR_HOME), the test
app tests/apps/dropout (TrustGuard(FedAvg) with no server model; clients sleep in round 2),
and one SuperNode killed with SIGKILL, by pid, in the middle of round 2. The SuperLink answers
the lost node's message with a "Node Unavailable" error reply once the node has missed its
heartbeats (two intervals), the guard names the lost node in the round record (lost_nodes.py),
and the round aggregates the two other replies as FedAvg alone would. Every process the test
started is stopped by pid in a finally.

The SuperNodes declare a 10 s heartbeat interval (Flower's minimum, HEARTBEAT_MIN_INTERVAL)
instead of the default 30 s, through a sitecustomize on their PYTHONPATH: the loss is then
noticed 16-20 s after the kill instead of 36-60 s, which keeps the test near a minute.
"""

from __future__ import annotations

import contextlib
import json
import signal
import subprocess
import time
from pathlib import Path

import psutil
import pytest

from flwr_trust.report.audit import read_log, verify_log
from flwr_trust.report.records import RoundRecord, RunEnd
from flwr_trust.report.summary import summarize
from tests.helpers.flower import BIN, ROOT, flower_env, free_ports, stop_tree

APP = ROOT / "tests" / "apps" / "dropout"
CONNECTION = "dropout-deploy"
VICTIM = 2  # partition id of the SuperNode that is killed


def _wait(what: str, done, timeout: float, procs: list[subprocess.Popen], logs: list[Path]):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = done()
        if result:
            return result
        dead = [p.args for p in procs if p.poll() is not None]
        if dead:
            raise AssertionError(f"exited early: {dead}\n{_tails(logs)}")
        time.sleep(0.2)
    raise AssertionError(f"no {what} after {timeout} s\n{_tails(logs)}")


def _tails(logs: list[Path]) -> str:
    return "\n".join(f"--- {p.name}\n{p.read_text(errors='replace')[-1500:]}" for p in logs
                     if p.is_file())


def _kill_node(proc: subprocess.Popen) -> None:
    """SIGKILL the SuperNode and the ClientApp process it started (a machine that dies)."""
    children = psutil.Process(proc.pid).children(recursive=True)
    proc.send_signal(signal.SIGKILL)
    for child in children:
        with contextlib.suppress(psutil.NoSuchProcess):
            child.send_signal(signal.SIGKILL)
    proc.wait(timeout=10)


@pytest.mark.slow
def test_a_supernode_killed_mid_round_costs_no_round(tmp_path):
    link_port, health_port, *node_ports = free_ports(5)
    home = tmp_path / "flwr-home"
    home.mkdir()
    (home / "config.toml").write_text(
        f'[superlink]\ndefault = "{CONNECTION}"\n\n[superlink.{CONNECTION}]\n'
        f'address = "127.0.0.1:{link_port}"\ninsecure = true\n')
    fast = tmp_path / "fast-heartbeat"
    fast.mkdir()
    (fast / "sitecustomize.py").write_text("import flwr.common.constant as c\n"
                                           "c.HEARTBEAT_DEFAULT_INTERVAL = 10  # the minimum\n")
    env = flower_env(home, PYTHONPATH=str(fast))
    markers, run_dir = tmp_path / "markers", tmp_path / "run"
    markers.mkdir()
    started: list[subprocess.Popen] = []
    logs: list[Path] = []

    def launch(name: str, *args: str) -> subprocess.Popen:
        log = tmp_path / f"{name}.log"
        logs.append(log)
        started.append(subprocess.Popen([str(BIN / args[0]), *args[1:]], cwd=tmp_path, env=env,
                                        stdout=log.open("w"), stderr=subprocess.STDOUT))
        return started[-1]

    t0 = time.monotonic()
    try:
        launch("superlink", "flower-superlink", "--insecure", "--isolation", "subprocess",
               "--host", "127.0.0.1", "--port", str(link_port),
               "--health-server-address", f"127.0.0.1:{health_port}")
        nodes = [launch(f"supernode{i}", "flower-supernode", "--insecure", "--superlink",
                        f"127.0.0.1:{link_port}", "--port", str(port), "--node-config",
                        f"partition-id={i} marker-dir='{markers}'")
                 for i, port in enumerate(node_ports)]
        _wait("three activated nodes", lambda: logs[0].read_text().count("Activated node_id")
              >= 3, 60, started, logs)
        run = launch("flwr-run", "flwr", "run", str(APP), CONNECTION, "--stream",
                     "--run-config", f"run-dir='{run_dir}'")
        victim_marker = markers / f"round2-partition{VICTIM}"
        _wait("round 2 at the victim", victim_marker.is_file, 90, started, logs)
        victim_id = int(victim_marker.read_text())
        _kill_node(nodes[VICTIM])
        started.remove(nodes[VICTIM])
        killed_at = time.monotonic()
        # flwr run streams the ServerApp's logs until the run ends
        _wait("end of the run", lambda: run.poll() is not None, 120, [], logs)
        waited = time.monotonic() - killed_at
        output = logs[-1].read_text(errors="replace")
        assert run.returncode == 0 and "Traceback" not in output, _tails(logs)
    finally:
        stop_tree([p.pid for p in started])
        for p in started:
            p.wait(timeout=30)
    print(f"\nkill -> run end {waited:.0f} s, whole test {time.monotonic() - t0:.0f} s")

    # every round ran; round 2 was aggregated from the two remaining clients
    rounds = [json.loads(line) for line in (run_dir / "global.jsonl").read_text().splitlines()]
    assert [r["round"] for r in rounds] == [0, 1, 2, 3]
    digests = [r["sha256"] for r in rounds]
    assert len(set(digests)) == 4, "a round left the global arrays unchanged"
    log = run_dir / "guard" / "audit.jsonl"
    assert verify_log(log).ok
    records = [RoundRecord.from_payload(r["payload"]) for r in read_log(log, kinds="round")]
    first, second, third = [r for r in records if r is not None and r.phase == "train"]
    assert len(first.clients.valid) == 3 and not first.clients.failed
    assert len(second.clients.valid) == 2 and victim_id not in second.clients.valid
    assert "Node Unavailable" in second.clients.failed[str(victim_id)]
    assert second.gate.action == "accept" and victim_id not in third.clients.valid
    (end,) = read_log(log, kinds="run-end")
    assert RunEnd.from_payload(end["payload"]).status == "completed"
    # the report lists the lost node among the failed replies of round 2
    summary = summarize(run_dir / "guard")
    failed = summary["replies"]["failed"]
    assert {"round": 2, "phase": "train", "node": str(victim_id)} == {
        k: failed[0][k] for k in ("round", "phase", "node")}
    assert summary["run"]["rounds"] == 3


# --- the same rule in-process, for every inner strategy ----------------------------------------


def _pushed(messages) -> list:
    """Give instructions their message ids, as the grid does when it pushes them."""
    out = list(messages)
    for m in out:
        m.metadata.__dict__["_message_id"] = m.object_id
    return out


def test_the_superlinks_error_reply_names_the_lost_node(tmp_path):
    from flwr.app import ConfigRecord
    from flwr.server.superlink.linkstate.utils import (
        create_message_error_unavailable_res_message,
    )
    from flwr.serverapp.strategy import FedAvg

    from flwr_trust.strategies import TrustGuard
    from tests.helpers.guard import FakeGrid, default_client, initial_arrays, same_arrays

    arrays = initial_arrays()
    guard = TrustGuard(FedAvg(), model=None, tensorboard=False, run_dir=tmp_path / "run")
    msgs = _pushed(guard.configure_train(1, arrays, ConfigRecord(), FakeGrid(3)))
    lost = msgs[2].metadata.dst_node_id
    unavailable = create_message_error_unavailable_res_message(msgs[2].metadata, "node_unavail")
    assert unavailable.metadata.src_node_id == 1  # the SuperLink's, not the lost node's
    honest = [default_client(m, m.metadata.dst_node_id, 1, arrays) for m in msgs[:2]]
    new, metrics = guard.aggregate_train(1, [*honest, unavailable])
    (record,) = guard.history
    assert list(record.clients.failed) == [str(lost)]
    assert "Node Unavailable" in record.clients.failed[str(lost)]
    assert metrics["trust.replies-failed"] == 1 and metrics["trust.replies-valid"] == 2
    expected, _ = FedAvg().aggregate_train(1, [*honest, unavailable])  # FedAvg alone
    assert same_arrays(new, expected)


INNERS = ["fedavg", "fedprox", "fedadam", "fedmedian", "fedtrimmedavg", "krum", "multikrum"]


def _failing_client(failing: int = 102, dropped: int = 104):
    """From round 2, node `failing` answers with an error and node `dropped` never answers."""
    from flwr.app import Error, Message

    from tests.helpers.guard import default_client

    def client(msg, node, rnd, arrays):
        if rnd >= 2 and node == failing:
            return Message(Error(code=0, reason="CUDA out of memory"), reply_to=msg)
        if rnd >= 2 and node == dropped:
            return None
        return default_client(msg, node, rnd, arrays)
    return client


def _alone_and_guarded(name: str, tmp_path: Path):
    from flwr_trust.strategies import TrustGuard
    from tests.helpers.guard import run_rounds
    from tests.test_trust_guard import INNERS as STRATEGIES

    alone = run_rounds(STRATEGIES[name](), n_rounds=3, client=_failing_client())
    guard = TrustGuard(STRATEGIES[name](), model=None, tensorboard=False,
                       run_dir=tmp_path / "run")
    return alone, run_rounds(guard, n_rounds=3, client=_failing_client()), guard


@pytest.mark.parametrize("name", INNERS)
def test_failed_and_dropped_clients_cost_no_round(name, tmp_path):
    """Every round aggregates the rest, exactly as the inner strategy alone does, and the
    failure is logged."""
    from tests.helpers.guard import same_arrays

    alone, guarded, guard = _alone_and_guarded(name, tmp_path)
    assert all(same_arrays(a, b) for a, b in zip(alone, guarded, strict=True))
    assert len({g["layer.a"].numpy().tobytes() for g in guarded}) == 3  # every round moved
    assert [sorted(r.clients.failed) for r in guard.history] == [[], ["102"], ["102"]]
    assert "CUDA out of memory" in guard.history[-1].clients.failed["102"]


@pytest.mark.parametrize("name", ["dp-server-fixed", "dp-client-fixed"])
def test_a_dp_wrapper_keeps_its_own_failure_rule(name, tmp_path):
    """Flower's DP wrappers skip a round with a failed reply (their noise is calibrated to the
    sampled clients): under the guard they do the same, bit for bit."""
    from tests.helpers.guard import same_arrays

    alone, guarded, guard = _alone_and_guarded(name, tmp_path)
    assert all(same_arrays(a, b) for a, b in zip(alone, guarded, strict=True))
    assert same_arrays(guarded[0], guarded[1]) and same_arrays(guarded[1], guarded[2])
    assert "102" in guard.history[-1].clients.failed
