"""How well the linearized screen predicts each client's exact behaviour change (issue 16, item 4).

    python bench/linear_screen.py --model default                      # packaged scale
    python bench/linear_screen.py --model default --set local-steps=30 # large local steps
    python bench/linear_screen.py --model default --start fresh        # B = 0 first round
    python bench/linear_screen.py --model tiny --scenarios clean,alignment-erosion-malicious

One federated round of `baselines/silent-failures`, client by client: every scenario's clients
train from the same global adapter (the aligned adapter, or with --start fresh a new LoRA
adapter whose B is 0) on their round-`onset-round` data, as the baseline's ClientApp does. The
server's screen (flwr_trust.scoring.linear) takes, once, the gradient of every scenario's target
metric at the global adapter; each client's change is then predicted by a dot product with its
update and compared with the client's exact probe on the same probe set. Printed: per target
metric the Pearson correlation and sign agreement of predicted vs exact change over all
clients; per scenario whether the most degraded client by prediction is an affected one (and
by the exact probe); the seconds of the screen vs an exact probe per client. `--out` writes the
rows as JSON (bench/results/linear-screen/ holds the committed runs).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

sys.path.insert(0, str(Path(__file__).resolve().parent))
from detection_matrix import _value  # noqa: E402


def parse_set(items: list[str]) -> dict[str, object]:
    """--set KEY=VALUE pairs as parse_config overrides (local-steps -> local_steps)."""
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise SystemExit(f"linear_screen: --set needs KEY=VALUE, got {item!r}")
        out[key.strip().replace("-", "_")] = _value(value.strip())
    return out


def train_clients(cfg, scenario: str, bridge, global_arrays, num_clients: int) -> list[dict]:
    """Each client's reply to one train round of `scenario` (arrays, affected), from the global
    adapter, as the baseline's ClientApp trains it."""
    from silent_failures.sim.client import as_examples
    from silent_failures.sim.scenarios import client_data, poison_update
    from silent_failures.training import train_lora

    params = cfg.params
    out = []
    for partition in range(num_clients):
        data = client_data(scenario, partition, num_clients, cfg.onset_round, params,
                           n_train=max(cfg.batch_size * cfg.local_steps, 8))
        bridge.load_arrays(global_arrays)
        train_lora(bridge.model, bridge.tokenizer, as_examples(data.train),
                   steps=cfg.local_steps * data.steps_factor, batch_size=cfg.batch_size,
                   lr=cfg.lr, max_length=cfg.max_length, precision=cfg.precision,
                   seed=cfg.seed * 100_003 + partition * 1_009 + cfg.onset_round)
        sent = {k: v.detach().cpu().numpy().copy() for k, v in bridge.state_dict().items()}
        if scenario == "poisoned-update" and data.affected:
            received = {k: v.numpy() for k, v in global_arrays.items()}
            sent = poison_update(sent, received, cfg.poison, cfg.poison_factor)
        out.append({"partition": partition, "affected": data.affected, "arrays": sent})
    return out


def screened_target(scenario: str) -> tuple[str, str]:
    """The scenario's target metric if the public probe computes it, else its mode's headline
    (fairness-collapse's target is measured on the clients' own data only)."""
    from flwr_trust import modes as registry
    from silent_failures.sim.scenarios import SCENARIOS

    mode, metric = SCENARIOS[scenario].target
    declared = registry.get(mode).metric(metric)
    if declared is None or declared.source != "public":
        return mode, registry.get(mode).headline.name
    return mode, metric


def pearson(x: list[float], y: list[float]) -> float:
    if len(x) < 3 or np.std(x) == 0 or np.std(y) == 0:
        return float("nan")
    return float(np.corrcoef(x, y)[0, 1])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="default")
    ap.add_argument("--scenarios", default="", help="comma list (default: all)")
    ap.add_argument("--clients", type=int, default=4)
    ap.add_argument("--start", choices=("aligned", "fresh"), default="aligned")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="baseline key, e.g. local-steps=30 (repeatable)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default="", help="write rows and summary to this JSON file")
    ap.add_argument("--summarize", default="", metavar="JSON",
                    help="print the tables of a saved run (its rows) without running anything")
    args = ap.parse_args(argv)
    if args.summarize:
        from silent_failures.sim.scenarios import SCENARIOS

        saved = json.loads(Path(args.summarize).read_text(encoding="utf-8"))
        print(saved["command"])
        seconds = saved["seconds"]
        print_table(summarize(saved["rows"], SCENARIOS), seconds["screen"],
                    seconds["exact_probe"], seconds["predict_median"])
        return 0
    import torch

    torch.set_num_threads(args.threads)
    from flwr_trust.scoring.linear import linear_screen
    from flwr_trust.scoring.runner import profile_arrays
    from silent_failures.sim.config import parse_config
    from silent_failures.sim.probeset import probe_set
    from silent_failures.sim.scenarios import SCENARIOS
    from silent_failures.sim.server import initial_adapter

    print("python bench/linear_screen.py " + shlex.join(argv if argv is not None
                                                         else sys.argv[1:]))
    overrides = parse_set(args.set)
    cfg = parse_config({}, **({"model": args.model, "onset_round": 2, "num_server_rounds": 3,
                                "probe_items": 20} | overrides))
    names = [s for s in args.scenarios.split(",") if s] or list(SCENARIOS)
    unknown = [s for s in names if s not in SCENARIOS]
    if unknown:
        ap.error(f"unknown scenario(s) {unknown}; choose from {', '.join(SCENARIOS)}")
    suites = probe_set(cfg.probe_items)
    bridge, global_arrays = initial_adapter(cfg)
    if args.start == "fresh":  # a new LoRA adapter: B = 0, A random (peft's default init)
        global_arrays = {k: (torch.zeros_like(v) if "lora_B" in k else v.clone())
                         for k, v in bridge.state_dict().items()}
        for k, v in global_arrays.items():
            if "lora_A" in k:
                torch.nn.init.kaiming_uniform_(v, a=5 ** 0.5,
                                               generator=torch.Generator().manual_seed(0))
    else:
        global_arrays = {k: torch.from_numpy(v.numpy().copy()) for k, v in global_arrays.items()}
    targets: dict[str, list[str]] = {}
    for s in names:
        mode, metric = screened_target(s)
        if metric not in targets.setdefault(mode, []):
            targets[mode].append(metric)
    t0 = time.perf_counter()
    screen = linear_screen(bridge, global_arrays, suites, metrics=targets,
                           precision=cfg.precision)
    screen_seconds = time.perf_counter() - t0
    t0 = time.perf_counter()
    reference = profile_arrays(bridge, global_arrays, suites, precision=cfg.precision)
    probe_seconds = time.perf_counter() - t0
    print(f"screen built in {screen_seconds:.1f} s ({len(screen.gradients)} gradients; blind: "
          f"{', '.join(screen.blind) or 'none'}); one exact probe {probe_seconds:.1f} s")
    rows, predict_seconds = [], []
    for s in names:
        mode, metric = screened_target(s)
        key = f"{mode}.{metric}"
        clients = train_clients(cfg, s, bridge, global_arrays, args.clients)
        mean = {k: np.mean([c["arrays"][k] for c in clients], axis=0) for k in global_arrays}
        for who, arrays, affected in ([(c["partition"], c["arrays"], c["affected"])
                                       for c in clients] + [("fedavg", mean, None)]):
            t0 = time.perf_counter()
            predicted = screen.predict(arrays).get(key)
            predict_seconds.append(time.perf_counter() - t0)
            exact = profile_arrays(bridge, arrays, {mode: suites[mode]},
                                   precision=cfg.precision).metrics[mode][metric].value
            rows.append({"scenario": s, "client": who, "affected": affected, "metric": key,
                         "exact": exact - reference.metrics[mode][metric].value,
                         "predicted": predicted})
        print(f"  {s}: " + "; ".join(
            f"{r['client']}{'*' if r['affected'] else ''} exact {r['exact']:+.4f} "
            f"pred {r['predicted'] if r['predicted'] is None else format(r['predicted'], '+.4f')}"
            for r in rows if r["scenario"] == s), flush=True)
    summary = summarize(rows, SCENARIOS)
    print_table(summary, screen_seconds, probe_seconds, float(np.median(predict_seconds)))
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps({
            "command": "python bench/linear_screen.py " + shlex.join(
                argv if argv is not None else sys.argv[1:]),
            "settings": {"model": args.model, "start": args.start, "clients": args.clients,
                         "local-steps": cfg.local_steps, "probe-items": cfg.probe_items,
                         "precision": cfg.precision},
            "seconds": {"screen": screen_seconds, "exact_probe": probe_seconds,
                        "predict_median": float(np.median(predict_seconds))},
            "blind": screen.blind, "rows": rows, "summary": summary}, indent=1) + "\n")
    return 0


def summarize(rows: list[dict], scenarios) -> dict:
    """Per metric: correlation and sign agreement over the clients' rows; per scenario with
    affected clients: is the top predicted (and top exact) degradation an affected client."""
    from flwr_trust import modes as registry

    per_metric, per_scenario = {}, {}
    for key in sorted({r["metric"] for r in rows}):
        mine = [r for r in rows if r["metric"] == key and r["client"] != "fedavg"
                and r["predicted"] is not None]
        x, y = [r["predicted"] for r in mine], [r["exact"] for r in mine]
        per_metric[key] = {"clients": len(mine), "pearson": pearson(x, y),
                           "sign_agreement": float(np.mean([np.sign(a) == np.sign(b)
                                                            for a, b in zip(x, y, strict=True)]))
                           if mine else float("nan")}
    for s in sorted({r["scenario"] for r in rows}):
        mine = [r for r in rows if r["scenario"] == s and r["client"] != "fedavg"]
        if mine[0]["predicted"] is None:
            continue
        mode, metric = mine[0]["metric"].split(".", 1)
        sign = registry.get(mode).metric(metric).sign

        def worst(field: str, mine: list[dict] = mine, sign: float = sign) -> dict:
            return max(mine, key=lambda row: sign * row[field])
        fedavg = next(r for r in rows if r["scenario"] == s and r["client"] == "fedavg")
        has_affected = any(r["affected"] for r in mine)
        per_scenario[s] = {"metric": mine[0]["metric"],
                           "same_worst_client": worst("predicted")["client"]
                           == worst("exact")["client"],
                           "top_predicted_affected": bool(worst("predicted")["affected"])
                           if has_affected else None,
                           "top_exact_affected": bool(worst("exact")["affected"])
                           if has_affected else None,
                           "fedavg_exact": fedavg["exact"], "fedavg_predicted": fedavg["predicted"]}
    return {"per_metric": per_metric, "per_scenario": per_scenario}


def print_table(summary: dict, screen_s: float, probe_s: float, predict_s: float) -> None:
    print("\n| target metric | clients | Pearson r (predicted vs exact) | sign agreement |")
    print("| --- | --- | --- | --- |")
    for key, m in summary["per_metric"].items():
        print(f"| {key} | {m['clients']} | {m['pearson']:.2f} | {m['sign_agreement']:.2f} |")
    def yes(value: bool | None) -> str:
        return "-" if value is None else "yes" if value else "no"
    print("\n| scenario | target | same worst client | affected first (screen) | "
          "affected first (exact) | FedAvg change exact | FedAvg change predicted |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for s, m in summary["per_scenario"].items():
        print(f"| {s} | {m['metric']} | {yes(m['same_worst_client'])} | "
              f"{yes(m['top_predicted_affected'])} | {yes(m['top_exact_affected'])} | "
              f"{m['fedavg_exact']:+.4f} | {m['fedavg_predicted']:+.4f} |")
    print(f"\nseconds: screen (all gradients, once per round) {screen_s:.1f}; exact probe of "
          f"one model {probe_s:.1f}; prediction per client {predict_s * 1e3:.1f} ms")


if __name__ == "__main__":
    raise SystemExit(main())
