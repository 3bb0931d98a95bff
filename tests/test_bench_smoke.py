"""The benchmark scripts run end to end on small inputs and print what the docs quote.

No speed is asserted here (speed targets live in the benchmarks' own output); these only keep
the scripts from rotting. bench/mod_overhead.py needs the embedded SmolLM2 and is left out.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _run(*args: str) -> str:
    env = dict(os.environ, HF_HUB_OFFLINE="1", PYTHONPATH=str(ROOT))
    done = subprocess.run([sys.executable, *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def test_guard_cost_prints_both_ratios_and_the_probe_time() -> None:
    out = _run("bench/guard_cost.py", "--params", "8192", "--clients", "5,30", "--repeats", "1")
    assert "N=30: FedAvg" in out and "0 update alarms" in out
    rows = [line.split() for line in out.splitlines() if line.strip().startswith(("5 ", "30 "))]
    assert [r[0] for r in rows] == ["5", "30"] and all(len(r) == 6 for r in rows)
    assert "server reference probe, model=tiny" in out and "1468 of 1468 items" in out


def test_guard_cost_exact_centre_option() -> None:
    out = _run("bench/guard_cost.py", "--params", "8192", "--clients", "70", "--repeats", "1",
               "--multikrum-max-n", "0", "--no-probe", "--exact-centre")
    assert "update-check centre: exact" in out and "N=70: FedAvg" in out


def test_guard_cost_wraps_a_stateful_inner() -> None:
    out = _run("bench/guard_cost.py", "--params", "8192", "--clients", "6", "--repeats", "1",
               "--multikrum-max-n", "0", "--no-probe", "--inner", "fedadam")
    assert "N=6: FedAdam" in out and "guard/FedAdam" in out  # same result as FedAdam alone


def test_update_checks_power_quick() -> None:
    out = _run("bench/update_checks_power.py", "--quick")
    assert out.count("rounds with a flag") == 2
    assert out.count("exact (all clients, all coordinates)") == 3  # 1 false-alarm + 2 power rows


def test_probe_throughput_on_the_tiny_model() -> None:
    out = _run("bench/probe_throughput.py", "--model", "tiny", "--repeats", "1", "--modes", "bias")
    assert "RATIO scorer / raw forward (full logits):" in out and "WALL one pass" in out


def test_probe_tokens_on_the_tiny_model() -> None:
    out = _run("bench/probe_tokens.py", "--model", "tiny", "--modes", "alignment,bias",
               "--budget", "8", "--agree-budget", "8")
    rows = [line.split() for line in out.splitlines() if line.startswith("alignment ")]
    assert len(rows) == 2, out  # the token table and the agreement table
    whole, before, after = (float(x) for x in rows[0][2:5])
    assert after < before < whole  # the system block is shared
    assert "client: engine input incl. padding" in out
    assert "(within one stderr)" in out


def test_integrity_audit_quick() -> None:
    out = _run("bench/integrity_audit.py", "--quick")
    assert out.startswith("command: python bench/integrity_audit.py --quick")
    honest = [line for line in out.splitlines() if line.strip().startswith("honest,")]
    assert len(honest) == 3 and all(" 0 / " in line for line in honest), out  # no false flag
    for kind in ("perfect", "shifted", "noise, pp=1", "noise, pp=0", "noise, consistent",
                 "stale"):
        row = next(line for line in out.splitlines() if line.strip().startswith(kind + " "))
        assert row.split()[len(kind.split()) + 3] == "1.000", row  # f = 1: always caught


def test_client_memory_prints_each_variants_peak_and_the_ratio() -> None:
    out = _run("bench/client_memory.py", "--model", "tiny", "--rounds", "1", "--steps", "1",
               "--budget", "2", "--variants", "app,mod")
    assert out.startswith("python bench/client_memory.py --model tiny")
    assert "app       peak RSS" in out and "mod       peak RSS" in out
    assert "ratio" in out and "(goal <= 1.10)" in out
    assert "too small for a second copy to show" in out  # the tiny model says so


def test_adversarial_replies_quick() -> None:
    out = _run("bench/adversarial_replies.py", "--rounds", "5", "--others", "1")
    rows = [line for line in out.splitlines() if line.startswith("| fed") or "krum |" in line]
    assert len(rows) == 9 and all(row.split("|")[8].strip() == "0" for row in rows), out
    assert "0 contaminated rounds" in out and "Refusals by reason" in out


def test_precision_items_quick() -> None:
    """A bf16 client and an fp32 server on the tiny model: every gap inside its allowance."""
    out = _run("bench/precision_items.py", "--model", "tiny", "--quick", "--threads", "1")
    last = out.strip().splitlines()[-1]
    assert last.startswith("largest item-gap ratio"), out
    ratios = [float(r) for r in re.findall(r"ratio ([0-9.]+)", last)]
    assert len(ratios) == 2 and max(ratios) < 1.0, last


def test_update_checks_small_n_quick() -> None:
    out = _run("bench/update_checks_small_n.py", "--trials", "2")
    # Table rows: a client count, then five shares in [0, 1]; the closing "N s" line is not one.
    share = re.compile(r"[01]\.\d{3}")
    rows = [r for r in (line.split() for line in out.splitlines())
            if len(r) == 6 and r[0].isdigit() and all(share.fullmatch(c) for c in r[1:])]
    assert [r[0] for r in rows] == ["4", "5", "6", "8", "10", "16"], out
    assert float(rows[0][4]) == 1.0 and float(rows[0][5]) == 0.0, rows[0]


def test_update_evidence_reads_an_audit_log(tmp_path: Path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    cosines = (-0.2, 0.3, 0.4, 0.5)  # median 0.35; margin 0.5: reference 0.175
    stats = {str(1001 + p): {"z_norm": z, "z_cosine": -z / 2, "max_layer_z": 3 * z,
                             "cosine": c}
             for p, (z, c) in enumerate(zip((40.5, 1.0, -2.0, 0.5), cosines, strict=True))}
    record = {"kind": "round", "payload": {"round": 2, "update_stats": stats}}
    (run / "audit.jsonl").write_text(json.dumps(record) + "\n")
    (run / "summary.json").write_text(json.dumps({"affected": [0]}))
    out = _run("bench/update_evidence.py", str(run))
    assert "client 1001: z norm +40.5, cosine -20.2 (share of median -0.57" in out
    assert "worst layer +121.5 (affected)" in out
    # unaffected: the affected client is left out; lowest share 0.3 / 0.35
    assert "unaffected clients, largest: z norm 1.0, -z cosine 0.5 (lowest share of the " \
           "median cosine 0.86)" in out
    # direction z of 0.3 at margin 0.5: (0.3 - 0.175) / (1.4826 * MAD 0.1) = +0.84
    assert "-z direction at margin 0.5 -0.8, worst-layer z 3.0" in out
    assert "affected clients, largest: z norm 40.5" in out
    assert "thresholds with 4 clients and 420 arrays at alpha 0.01: norm and cosine 40.0" in out
    strict = _run("bench/update_evidence.py", "--cosine-margin", "0", str(run))
    assert "-z direction at margin 0 " in strict


def test_federation_overhead_on_the_tiny_model(tiny_cache: Path) -> None:
    env = dict(os.environ, HF_HUB_OFFLINE="1", PYTHONPATH=str(ROOT),
               FLWR_TRUST_CACHE=str(tiny_cache))
    done = subprocess.run([sys.executable, "bench/federation_overhead.py", "--model", "tiny",
                           "--repeats", "1", "--rounds", "2", "--set", "local-steps=2"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    out = done.stdout
    assert "local_steps=2" in out.splitlines()[1] and "num_server_rounds=2" in out
    assert "repeat 1 none" in out and "repeat 1 trust-rollback" in out
    # the tiny model has no behaviour to erode, but the trust run says what it caught
    assert re.search(r"  trust-rollback: (no alarm from onset|first alarm in round \d) "
                     r"\(onset 2\); clients named .*, affected \[0\]; alarm before onset", out)
    assert re.search(r"ratio monitored / unmonitored: \d+\.\d{3}", out)


def test_federation_overhead_refuses_a_bad_setting_before_running() -> None:
    for bad, said in (("bogus=1", "Unknown baseline key"), ("local-steps=x", "local-steps"),
                      ("trust.alpha=0.1", "not trust.*"), ("local-steps", "KEY=VALUE")):
        done = subprocess.run([sys.executable, "bench/federation_overhead.py", "--model",
                               "tiny", "--set", bad], cwd=ROOT, capture_output=True, text=True,
                              timeout=120, env=dict(os.environ, PYTHONPATH=str(ROOT)))
        assert done.returncode != 0 and said in done.stderr, (bad, done.stderr[-500:])
        assert done.stdout == "" and "Traceback" not in done.stderr  # refused before running
