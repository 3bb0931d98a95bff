"""Mod overhead: one local training round with and without `trust_mod`, in one process.

Run: `python bench/mod_overhead.py --preset flowertune` (FlowerTune's standard local round:
10 AdamW steps of batch 16 x 512 tokens, LoRA r=32 / alpha=64 on q/v, on SmolLM2-135M) or
`--preset small` (10 steps of batch 8 x 64 tokens, LoRA r=8 / alpha=16, the old default),
both with the mod's default probe budget over all six default suites. Options override the
preset: --steps --batch --seq --rank --budget --precision (training and probing) --repeats
--threads.

Both variants run the same app function on the same cached model (the mod shares the app's
bridge: base loaded once, adapter swapped in place); they alternate, round after round, so
machine noise hits both alike. Printed: the median time of each, the ratio (goal <= 1.05),
where the mod's time goes (probe forward passes vs the rest), and the per-mode probe budget
that would meet the goal at this training budget.
"""

from __future__ import annotations

import argparse
import functools
import os
import statistics
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import torch  # noqa: E402
from flwr.app import (  # noqa: E402
    DEFAULT_TTL,
    ArrayRecord,
    ConfigRecord,
    Context,
    Message,
    Metadata,
    MetricRecord,
    RecordDict,
)

from flwr_trust import modes as registry  # noqa: E402
from flwr_trust.config.client import parse_trust_config  # noqa: E402
from flwr_trust.models import get_bridge  # noqa: E402
from flwr_trust.mods import make_trust_mod, provide_local_data  # noqa: E402
from flwr_trust.probes import load_suites, sample_suites  # noqa: E402
from flwr_trust.scoring.encoding import cached_requests  # noqa: E402
from flwr_trust.scoring.prefixes import forwarded_tokens  # noqa: E402

print = functools.partial(print, flush=True)  # noqa: A001 - progress shows while it runs

TOPICS = ["tide pools", "sourdough", "bike repair", "bird song", "tax forms", "chess openings",
          "rain gardens", "night trains"]


def local_texts(n: int) -> list[str]:
    """A client's local data: plain English sentences, long enough for 64-token batches."""
    out = []
    for i in range(n):
        t = TOPICS[i % len(TOPICS)]
        out.append(f"Note {i}: today I learned more about {t}. The main idea is simple, but "
                   f"the details about {t} take practice, patience and a good teacher who "
                   f"explains each step of {t} slowly and clearly, with examples number {i}.")
    return out


def make_app(bridge, texts: list[str], steps: int, batch: int, seq: int, precision: str):
    """A FlowerTune-style train function on the shared bridge (what the user already has)."""
    params = None

    def train(msg: Message, context: Context) -> Message:
        nonlocal params
        bridge.activate()
        bridge.load_arrays(msg.content["arrays"])
        model, tok = bridge.model, bridge.tokenizer
        params = params or [p for n, p in model.named_parameters() if "lora_" in n]
        for p in params:
            p.requires_grad_(True)
        opt = torch.optim.AdamW(params, lr=1e-4)
        model.train()
        for step in range(steps):
            chunk = [texts[(step * batch + j) % len(texts)] for j in range(batch)]
            enc = tok(chunk, return_tensors="pt", padding="max_length", truncation=True,
                      max_length=seq)
            labels = enc["input_ids"].masked_fill(enc["attention_mask"] == 0, -100)
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
                loss = model(**enc, labels=labels).loss
            loss.backward()
            opt.step()
            opt.zero_grad()
        model.eval()
        provide_local_data(context, train=texts[:64], heldout=texts[64:96])
        content = RecordDict({"arrays": bridge.to_array_record(),
                              "metrics": MetricRecord({"train_loss": float(loss.detach()),
                                                       "num-examples": steps * batch})})
        return Message(content, reply_to=msg)

    return train


def message(arrays: ArrayRecord, rnd: int) -> Message:
    meta = Metadata(run_id=1, message_id=f"m{rnd}", src_node_id=0, dst_node_id=1,
                    reply_to_message_id="", group_id=str(rnd), created_at=time.time(),
                    ttl=DEFAULT_TTL, message_type="train")
    content = RecordDict({"arrays": arrays, "config": ConfigRecord({"server-round": rnd})})
    return Message(content=content, metadata=meta)


PRESETS = {"small": {"steps": 10, "batch": 8, "seq": 64, "rank": 8},
           "flowertune": {"steps": 10, "batch": 16, "seq": 512, "rank": 32}}


def mode_seconds(bridge, sample, precision: str) -> dict[str, float]:
    """Probe time split by mode: each mode's sample scored alone on the current model."""
    from flwr_trust.scoring.runner import profile_model

    out = {}
    for mode, suite in sample.items():
        t = time.perf_counter()
        profile_model(bridge.model, bridge.tokenizer, {mode: suite}, precision=precision)
        out[mode] = time.perf_counter() - t
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", choices=sorted(PRESETS), default="small")
    ap.add_argument("--steps", type=int, default=None)
    ap.add_argument("--batch", type=int, default=None)
    ap.add_argument("--seq", type=int, default=None)
    ap.add_argument("--rank", type=int, default=None)
    ap.add_argument("--precision", choices=("fp32", "bf16"), default="fp32",
                    help="training autocast and probe precision")
    ap.add_argument("--budget", type=int, default=None, help="probe items per mode (default: "
                    "the mod's default)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = ap.parse_args()
    for key, value in PRESETS[args.preset].items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    if args.threads:
        torch.set_num_threads(args.threads)

    trust_cfg = {"trust.model": "default", "trust.lora.r": args.rank,
                 "trust.lora.alpha": 2 * args.rank, "trust.lora.target-modules": "q_proj,v_proj",
                 "trust.precision": args.precision}
    if args.budget is not None:
        trust_cfg["trust.probe-budget"] = args.budget
    cfg = parse_trust_config(trust_cfg)
    bridge = get_bridge("default", cfg.lora_config())  # the app's model; the mod shares it
    suites = load_suites("default")
    train = make_app(bridge, local_texts(96), args.steps, args.batch, args.seq, args.precision)
    warm = make_app(bridge, local_texts(96), 1, args.batch, args.seq, args.precision)
    mod = make_trust_mod(suites=suites, defaults=trust_cfg)
    ctx_plain = Context(1, 1, {}, RecordDict(), {})
    ctx_mod = Context(1, 1, {}, RecordDict(), {})
    arrays = bridge.to_array_record()

    print(f"preset {args.preset}: model {bridge.base.name}, LoRA r={cfg.lora_r} / alpha="
          f"{cfg.lora_alpha} on {','.join(cfg.lora_target_modules)}; training {args.steps} "
          f"steps x batch {args.batch} x {args.seq} tokens ({args.precision}); "
          f"probe budget {cfg.probe_budget}/mode x {len(cfg.modes)} modes ({cfg.precision}); "
          f"{torch.get_num_threads()} threads")
    warm(message(arrays, 0), ctx_plain)  # warm-up: allocator, tokenizer, caches (one step)
    mod(message(arrays, 0), ctx_mod, warm)  # warm-up: suites, opacus import, shift reference
    plain, with_mod, probe, mod_total = [], [], [], []
    for r in range(1, args.repeats + 1):
        t = time.perf_counter()
        train(message(arrays, r), ctx_plain)
        plain.append(time.perf_counter() - t)
        t = time.perf_counter()
        reply = mod(message(arrays, r), ctx_mod, train)
        with_mod.append(time.perf_counter() - t)
        m = dict(next(iter(reply.content.metric_records.values())))
        probe.append(m["trust.probe-seconds"])
        mod_total.append(m["trust.mod-seconds"])
        print(f"  round {r}: without {plain[-1]:6.2f} s   with {with_mod[-1]:6.2f} s   "
              f"(mod {mod_total[-1]:.2f} s, of which probe forward passes {probe[-1]:.2f} s)")
    p, w = statistics.median(plain), statistics.median(with_mod)
    pr, mt = statistics.median(probe), statistics.median(mod_total)
    # What the mod probes: the round's sample, minus planted-only modes (no canaries declared).
    sample = {m: s for m, s in sample_suites({m: suites[m] for m in cfg.modes}, 1,
                                             cfg.probe_budget).items()
              if not registry.get(m).planted_only}
    tokens = {m: forwarded_tokens(cached_requests(s, bridge.tokenizer, registry.get(m).requests))
              for m, s in sample.items()}
    print(f"median local round: without mod {p:.2f} s, with mod {w:.2f} s")
    print(f"ratio with/without: {w / p:.3f}   (goal <= 1.05)")
    print(f"the mod's {mt:.2f} s: probe forward passes {pr:.2f} s ({100 * pr / max(mt, 1e-9):.0f}%)"
          f", other (arrays, shift sketch, bookkeeping) {mt - pr:.2f} s; training "
          f"{p / args.steps:.2f} s/step")
    print("probe tokens forwarded per round (shared prefixes and prompts once), per mode: "
          + ", ".join(f"{m} {n}" for m, n in tokens.items())
          + f" (total {sum(tokens.values())}, {sum(tokens.values()) / max(pr, 1e-9):.0f} tok/s)")
    split = mode_seconds(bridge, sample, args.precision)
    print("probe seconds by mode (each mode's sample alone): "
          + ", ".join(f"{m} {t:.2f}" for m, t in split.items()))
    per_item = pr / max(cfg.probe_budget * len(sample), 1)
    fit = int(0.05 * p / per_item / len(sample)) if per_item > 0 else 0
    print(f"at this training budget, ratio <= 1.05 needs <= {fit} probe items per mode "
          f"(~{per_item * 1000:.0f} ms per item)")


if __name__ == "__main__":
    main()
