"""Detection matrix: silent-failure scenarios x monitors x seeds, one table.

    python bench/detection_matrix.py --model tiny --seeds 3            # the CI-sized grid
    python bench/detection_matrix.py --model default --seeds 3 \\
        --scenarios alignment-erosion-malicious --resume                # SmolLM2, one scenario

Every cell is a federation run in this process (silent_failures.sim.runner.run_inline: the
baseline's own ClientApp and server code on an in-process Grid, no Ray), so the grid fits in
minutes.
Writes <out>/table.md (command, settings, wall time, table), <out>/table.json and each run's
summary.json under <out>/<scenario>/<monitor>-seed<k>/; prints the table. Column meanings:
baselines/silent-failures/silent_failures/sim/matrix.py and docs/detection_matrix.md.
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def _names(text: str, valid: tuple[str, ...], what: str) -> list[str]:
    if text == "all":
        return list(valid)
    names = [t.strip() for t in text.split(",") if t.strip()]
    bad = [n for n in names if n not in valid]
    if bad or not names:
        raise SystemExit(f"detection_matrix: unknown {what} {bad or text!r}; valid: "
                         f"{', '.join(valid)} (or 'all')")
    return names


def _value(text: str) -> object:
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return {"true": True, "false": False}.get(text.lower(), text)


def parse_sets(items: list[str], prog: str) -> dict[str, object]:
    """`--set KEY=VALUE` arguments as {key: int, float, bool or str}; exits naming a bad one."""
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise SystemExit(f"{prog}: --set needs KEY=VALUE, got {item!r}")
        out[key.strip()] = _value(value.strip())
    return out


APP_PYPROJECT = Path(__file__).resolve().parents[1] / "baselines" / "silent-failures" / \
    "pyproject.toml"


def app_trust_config() -> dict[str, object]:
    """The trust.* keys of the baseline app's [tool.flwr.app.config] (flattened dotted keys)."""
    import tomllib

    from flwr.common.config import flatten_dict

    table = tomllib.loads(APP_PYPROJECT.read_text(encoding="utf-8"))
    config = flatten_dict(table["tool"]["flwr"]["app"]["config"])
    return {k: v for k, v in config.items() if k.startswith("trust.")}


def main(argv: list[str] | None = None) -> int:
    from silent_failures.sim.config import MONITORS, BaselineConfigError, parse_config
    from silent_failures.sim.scenarios import SCENARIOS

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="tiny", choices=("tiny", "default"))
    p.add_argument("--seeds", type=int, default=3, help="seeds 0..N-1")
    p.add_argument("--scenarios", default="all", help="comma list or 'all'")
    p.add_argument("--monitors", default="all", help="comma list or 'all'")
    p.add_argument("--clients", type=int, default=4)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--onset", type=int, default=2)
    p.add_argument("--probe-items", type=int, default=20)
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="any other baseline or trust.* key (repeatable)")
    p.add_argument("--out", type=Path, default=None, help="default runs/matrix/<model>")
    p.add_argument("--resume", action="store_true", help="reuse runs whose summary.json exists")
    p.add_argument("--quiet", action="store_true", help="hide Flower's per-round log lines")
    p.add_argument("--threads", type=int, default=0,
                   help="torch intra-op threads (0 = torch's choice; the tiny model always 1)")
    argv = sys.argv[1:] if argv is None else list(argv)
    args = p.parse_args(argv)

    scenarios = _names(args.scenarios, tuple(SCENARIOS), "scenario")
    monitors = _names(args.monitors, MONITORS, "monitor")
    extra = parse_sets(args.set, "detection_matrix")
    keys = {"model": args.model, "num_server_rounds": args.rounds, "onset_round": args.onset,
            "probe_items": args.probe_items}
    # The app's own trust.* settings first, so every cell runs what `flwr run` runs.
    run_config = app_trust_config() | {k: v for k, v in extra.items() if k.startswith("trust.")}
    keys |= {k.replace("-", "_"): v for k, v in extra.items() if not k.startswith("trust.")}
    try:
        settings = parse_config(run_config, **keys).to_json()
    except BaselineConfigError as exc:
        raise SystemExit(f"detection_matrix: {exc}") from exc
    if args.threads > 0:
        import torch

        torch.set_num_threads(args.threads)
    if args.quiet:
        import logging

        logging.getLogger("flwr").setLevel(logging.WARNING)
    from silent_failures.sim.matrix import aggregate, cells, run_grid, to_markdown, write_table

    out = args.out or Path("runs") / "matrix" / args.model
    start = time.perf_counter()
    outcomes = run_grid(scenarios, monitors, list(range(args.seeds)), base_dir=out,
                        keys=keys, run_config=run_config, num_clients=args.clients,
                        resume=args.resume)
    seconds = time.perf_counter() - start
    rows = aggregate(outcomes)
    shown = {k: settings[k] for k in ("model", "num-server-rounds", "onset-round",
                                      "attack-fraction", "local-steps", "batch-size", "lr",
                                      "probe-items", "precision", "train-dp")}
    shown |= {k: settings[k] for k in extra if not k.startswith("trust.") and k in settings}
    meta = {"command": "python " + " ".join(shlex.quote(a) for a in
                                             ["bench/detection_matrix.py", *argv]),
            "settings": f"{args.clients} clients, seeds 0..{args.seeds - 1}, "
                        + ", ".join(f"{k}={v}" for k, v in shown.items())
                        + "".join(f", {k}={v}" for k, v in run_config.items()),
            # Each federation's own time, also for runs a --resume read back (a derived
            # `system` row shares its `none` run's folder and time).
            "seconds": sum({o.run_dir: o.wall_seconds for o in outcomes}.values()),
            "invocation_seconds": seconds,
            "runs": len(cells(scenarios, monitors, range(args.seeds)))}
    path = write_table(rows, out, meta)
    print()
    print(to_markdown(rows))
    print(f"{meta['runs']} federations, {meta['seconds']:.0f} s of federation time "
          f"({seconds:.0f} s in this invocation); table: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
