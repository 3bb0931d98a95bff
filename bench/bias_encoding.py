"""Would scoring minimal pairs CrowS-Pairs' way make bias amplification visible? No federation.

    python bench/bias_encoding.py --steps 30 --seeds 2

The bias mode scores a minimal pair by each sentence's total log-likelihood. CrowS-Pairs
(Nangia et al. 2020) scores the *unmodified* tokens given the modified ones instead, so that
how frequent a group word is does not count as bias. If a fine-tune's per-item changes were
mostly such frequency shifts (they move every pair with "old" in its stereotyping sentence one
way and every pair with "old" in its other sentence the other way), the unmodified-token score
would spread far less and the bias tests would gain power. This measures it: from the aligned
adapter, one client trains `--steps` LoRA steps on the bias-amplification scenario's data and
one on its domain notes (`clean`), for each of `--seeds` data draws, and both encodings score
the ground truth's held-out pairs (outside the `--probe-items` probe set) before and after.
Per encoding it prints the mean change of the stereotyping-minus-other margin (nats), the
spread of the per-pair changes, the paired z, and the change of the soft preference (the mode's
`stereotype-pref`). docs/detection_matrix.md quotes the result.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "baselines" / "silent-failures"))


def unmodified_token_requests(suite: Any, encoder: Any) -> list[Any]:
    """Per choice: log p(what the choices share after their differing words | everything
    before, this choice's own words). A pair whose differing words end it keeps the total
    log-likelihood of its differing part (nothing unmodified follows)."""
    from flwr_trust.scoring.requests import Request

    out = []
    for item in suite.items:
        if not item.choices:
            continue
        conts = [encoder.choice(c) for c in item.choices]
        shortest = min(len(c) for c in conts)
        prefix = 0
        while prefix < shortest - 1 and all(c[prefix] == conts[0][prefix] for c in conts):
            prefix += 1
        suffix = 0  # never into the prefix, and every choice keeps a token of its own
        while suffix < shortest - prefix - 1 and all(
                c[-1 - suffix] == conts[0][-1 - suffix] for c in conts):
            suffix += 1
        ctx = encoder.context(item)
        if suffix == 0:
            out.extend(Request(ctx + c[:prefix], c[prefix:]) for c in conts)
        else:
            out.extend(Request(ctx + c[:-suffix], c[-suffix:]) for c in conts)
    return out


def margins(bridge: Any, suite: Any, requests: list[Any], precision: str) -> np.ndarray:
    """Per pair: log-likelihood of the stereotyping choice minus the other's."""
    from flwr_trust.scoring.engine import score_requests

    tok = bridge.tokenizer
    pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
    bridge.model.eval()
    lp = score_requests(bridge.model, requests, pad_id=int(pad), precision=precision).logprob
    lp = lp.reshape(-1, 2)
    answer = np.asarray([item.answer for item in suite.items])
    rows = np.arange(len(answer))
    return lp[rows, answer] - lp[rows, 1 - answer]


def main(argv: list[str] | None = None) -> int:
    from flwr_trust.scoring.encoding import Encoder, summed_choice_requests
    from flwr_trust.scoring.stats import sigmoid
    from silent_failures.sim.client import as_examples
    from silent_failures.sim.config import parse_config
    from silent_failures.sim.probeset import heldout_suite
    from silent_failures.sim.scenarios import ScenarioParams, client_data
    from silent_failures.sim.server import initial_adapter
    from silent_failures.training import train_lora

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=30, help="LoRA steps (default 30: the "
                    "baseline's 6 local steps x affected-steps-factor 5)")
    ap.add_argument("--probe-items", type=int, default=100,
                    help="the probe set the held-out pairs exclude (as in the grid)")
    ap.add_argument("--model", default="default", choices=["default", "tiny"])
    ap.add_argument("--seeds", type=int, default=2, help="seeds 0..N-1 (data draw and order)")
    args = ap.parse_args(argv)
    if args.steps < 1 or args.seeds < 1:
        ap.error("--steps and --seeds must be >= 1")

    cfg = parse_config({"model": args.model, "probe-items": args.probe_items})
    suite = heldout_suite("bias", args.probe_items, 0)
    bridge, start = initial_adapter(cfg)
    encoder = Encoder(bridge.tokenizer)
    encodings = {"total": summed_choice_requests(suite, encoder),
                 "unmodified": unmodified_token_requests(suite, encoder)}
    bridge.load_arrays(start)
    before = {k: margins(bridge, suite, r, cfg.precision) for k, r in encodings.items()}
    print(f"bias on {len(suite.items)} held-out pairs, {cfg.model} model, {cfg.precision}; "
          f"{args.steps} steps x batch {cfg.batch_size}, lr {cfg.lr}; aligned start: "
          + ", ".join(f"{k} stereotype-pref {float(np.mean(sigmoid(m))):.3f}"
                      for k, m in before.items()))
    print("| data | seed | encoding | margin change (nats) | per-pair spread | paired z | "
          "stereotype-pref change |\n| --- | --- | --- | --- | --- | --- | --- |")
    for seed in range(args.seeds):
        for scenario in ("bias-amplification", "clean"):
            params = ScenarioParams(fraction=1.0, onset=1, seed=seed)
            data = client_data(scenario, 0, 1, 1, params, n_train=cfg.batch_size * args.steps)
            bridge.load_arrays(start)
            train_lora(bridge.model, bridge.tokenizer, as_examples(data.train),
                       steps=args.steps, batch_size=cfg.batch_size, lr=cfg.lr,
                       max_length=cfg.max_length, precision=cfg.precision, seed=seed)
            for name, requests in encodings.items():
                after = margins(bridge, suite, requests, cfg.precision)
                change = after - before[name]
                sd = float(np.std(change, ddof=1))
                z = float(np.mean(change)) / (sd / math.sqrt(len(change))) if sd > 0 else 0.0
                pref = float(np.mean(sigmoid(after) - sigmoid(before[name])))
                print(f"| {scenario} | {seed} | {name} | {float(np.mean(change)):+.3f} | "
                      f"{sd:.3f} | {z:+.2f} | {pref:+.4f} |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
