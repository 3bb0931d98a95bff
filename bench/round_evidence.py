"""What did the monitors see, round by round? One failure mode's evidence from a run's audit log.

    python bench/round_evidence.py runs/matrix/<grid>/<scenario>/<monitor>-seed0 --mode capability

A detection-matrix row says whether an alarm came; this says why or why not. For every training
round it prints, for each metric of the mode, the server's probe of the candidate against the
round-0 reference (value, reference, degradation in the metric's units, tolerance, stderr, the
test statistic z where the paired test ran, and the number of paired items), then each client's
own reported value of that metric (its locally trained model on the same probe items; private
metrics carry DP noise), and the round's alarms and warnings for the mode. Nothing is re-scored:
it only reads the log that bench/detection_matrix.py wrote (`<run>/audit.jsonl`).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

_SUFFIXES = (".items", ".n", ".stderr", ".noise")


def train_rounds(audit: Path) -> list[dict[str, Any]]:
    """The payloads of the training rounds of one audit log, in order."""
    out = []
    for line in audit.read_text(encoding="utf-8").splitlines():
        record = json.loads(line)
        if record.get("kind") == "round" and record["payload"].get("phase") == "train":
            out.append(record["payload"])
    return out


def _num(x: Any, spec: str = ".3f") -> str:
    return "-" if not isinstance(x, (int, float)) else format(x, spec)


def server_rows(payload: dict[str, Any], mode: str) -> list[str]:
    rows = []
    for metric, b in payload.get("behavior", {}).get(mode, {}).items():
        z = b.get("z_margin") if b.get("scale") == "margin" else None
        rows.append(f"| {metric} | {_num(b.get('value'))} | {_num(b.get('reference'))} | "
                    f"{_num(b.get('degradation'), '+.3f')} | {_num(b.get('tolerance'))} | "
                    f"{_num(b.get('stderr'))} | {_num(z, '.2f')} | "
                    f"{b.get('paired_items', '-')} |")
    return rows


def client_rows(payload: dict[str, Any], mode: str) -> list[str]:
    prefix = f"trust.{mode}."
    rows = []
    for node, metrics in sorted(payload.get("client_metrics", {}).items()):
        shown = {k.removeprefix(prefix): v for k, v in metrics.items()
                 if k.startswith(prefix) and not k.endswith(_SUFFIXES)
                 and isinstance(v, (int, float))}
        if shown:
            rows.append(f"| {node} | " + ", ".join(f"{k} {v:.3f}" for k, v in sorted(
                shown.items())) + " |")
    return rows


def alarm_lines(payload: dict[str, Any], mode: str) -> list[str]:
    return [f"- {a.get('severity', 'alarm')}: {a.get('message', '')}"
            for a in payload.get("alarms", []) if a.get("mode") == mode]


def render(run: Path, mode: str) -> str:
    audit = run / "audit.jsonl" if run.is_dir() else run
    if not audit.is_file():
        raise SystemExit(f"round_evidence: no audit log at {audit}; pass a run folder written "
                         "by bench/detection_matrix.py (it holds audit.jsonl)")
    payloads = train_rounds(audit)
    if not payloads:
        raise SystemExit(f"round_evidence: {audit} has no training rounds")
    out = [f"# {mode} evidence: {audit.parent}", ""]
    for p in payloads:
        out += [f"## Round {p.get('round')}", "",
                "| server: candidate metric | value | reference | degradation | tolerance | "
                "stderr | z (margin) | paired items |", "| --- | --- | --- | --- | --- | --- | "
                "--- | --- |", *server_rows(p, mode), "",
                "| client | its own model's reports |", "| --- | --- |", *client_rows(p, mode),
                ""]
        out += alarm_lines(p, mode) or ["- no alarm or warning for this mode"]
        out.append("")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run", type=Path, help="a run folder (or its audit.jsonl)")
    ap.add_argument("--mode", required=True, help="failure mode, e.g. capability")
    args = ap.parse_args(argv)
    sys.stdout.write(render(args.run, args.mode) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
