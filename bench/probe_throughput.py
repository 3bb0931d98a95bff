"""Probe throughput: the scorer's tokens/s vs a raw batched forward pass over the same batches.

Run: `make bench` or `python bench/probe_throughput.py [--model default|tiny|PATH] [--repeats 3]`.
Both sides see exactly the same padded token batches (built by the scorer's own batch planner),
in one process, alternating, so machine noise hits both. Printed:

- scorer vs raw forward (full logits, what a plain `model(ids)` loop computes): the goal >= 0.9;
  the scorer shares each context's forward pass across its continuations, so it can exceed 1;
- the scorer without prefix sharing vs forward with `logits_to_keep` over the same batches: the
  per-token overhead of the scorer's own Python (batching, gathering), 1.0 = none;
- wall time of one default-suite pass (all six modes) through `profile_model`.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402

from flwr_trust import modes as registry  # noqa: E402
from flwr_trust.models import load_base_model  # noqa: E402
from flwr_trust.probes import default_suites  # noqa: E402
from flwr_trust.scoring.batching import plan_batches  # noqa: E402
from flwr_trust.scoring.encoding import cached_requests  # noqa: E402
from flwr_trust.scoring.engine import score_requests  # noqa: E402
from flwr_trust.scoring.placement import pick_placement  # noqa: E402
from flwr_trust.scoring.runner import profile_model  # noqa: E402


def _batches(requests, max_batch_tokens, pad_id):
    inputs = [list(r.context) + list(r.continuation[:-1]) for r in requests]
    out = []
    for batch in plan_batches([len(s) for s in inputs], max_batch_tokens):
        width = max(len(inputs[i]) for i in batch)
        keep = max(len(requests[i].continuation) for i in batch)
        ids = torch.full((len(batch), width), pad_id)
        mask = torch.zeros((len(batch), width), dtype=torch.long)
        for row, i in enumerate(batch):
            ids[row, width - len(inputs[i]):] = torch.tensor(inputs[i])
            mask[row, width - len(inputs[i]):] = 1
        out.append((ids, mask, (mask.cumsum(1) - 1).clamp(min=0), keep))
    return out


@torch.inference_mode()
def _raw(model, batches, precision, keep_only):
    for ids, mask, pos, keep in batches:
        with pick_placement(model, precision).context():
            kw = {"logits_to_keep": keep} if keep_only else {}
            model(input_ids=ids, attention_mask=mask, position_ids=pos, use_cache=False, **kw)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="default")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--precision", choices=("bf16", "fp32"), default="fp32")
    parser.add_argument("--max-batch-tokens", type=int, default=8192)
    parser.add_argument("--modes", default=",".join(registry.ids()),
                        help="comma-separated suites to score (default: all six)")
    args = parser.parse_args()
    torch.manual_seed(0)
    lm = load_base_model(args.model)
    suites = default_suites(tuple(m for m in args.modes.split(",") if m))
    requests = [r for mode, s in suites.items()
                for r in cached_requests(s, lm.tokenizer, registry.get(mode).requests)]
    pad = lm.tokenizer.pad_token_id
    batches = _batches(requests, args.max_batch_tokens, pad)
    n_tokens = sum(int(m.sum()) for _, m, _, _ in batches)
    print(f"model={lm.name} threads={torch.get_num_threads()} precision={args.precision} "
          f"requests={len(requests)} tokens={n_tokens} batches={len(batches)}")
    times = {"scorer": [], "scorer-unshared": [], "raw-full-logits": [], "raw-kept-logits": []}
    for _ in range(args.repeats):  # alternate so drift in machine load hits all three
        for name in times:
            start = time.perf_counter()
            if name.startswith("scorer"):
                score_requests(lm.model, requests, pad_id=pad, precision=args.precision,
                               max_batch_tokens=args.max_batch_tokens,
                               share_prefix=name == "scorer")
            else:
                _raw(lm.model, batches, args.precision, keep_only=name == "raw-kept-logits")
            times[name].append(time.perf_counter() - start)
    med = {k: statistics.median(v) for k, v in times.items()}
    for name, t in med.items():
        print(f"  {name:<16} {t:7.2f} s  {n_tokens / t:9.0f} tokens/s")
    print(f"RATIO scorer / raw forward (full logits):  {med['raw-full-logits'] / med['scorer']:.2f}"
          "  (goal >= 0.9)")
    print("RATIO unshared scorer / raw forward (kept logits): "
          f"{med['raw-kept-logits'] / med['scorer-unshared']:.2f}  (1.0 = no per-token overhead)")
    start = time.perf_counter()
    profile_model(lm.model, lm.tokenizer, suites, precision=args.precision)
    print(f"WALL one pass over {args.modes} ({args.precision}, tokenization cached): "
          f"{time.perf_counter() - start:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
