"""Client peak memory with and without `trust_mod`: one FlowerTune-like client per fresh process.

    python bench/client_memory.py --model tiny                       # smoke (a tiny model)
    python bench/client_memory.py --model smollm2-shaped:10          # random, SmolLM2's shape
    python bench/client_memory.py --model default                    # SmolLM2 (goal <= 1.1)
    python bench/client_memory.py --model default --preset flowertune

Each variant runs in its own subprocess (so imports, allocator pools and model copies of one
cannot hide in another's numbers) and reports its own peak resident set size
(resource.getrusage ru_maxrss). The client handles `--rounds` train messages the way
FlowerTune's template does: build the model for the message (base + LoRA, `get_model`), load
the received adapter, train `--steps` AdamW steps on local texts, reply with the adapter.

    app        the ClientApp function alone
    mod        the same function inside trust_mod, which probes the app's model
               (`use_model(context, model, tokenizer)`, one added line): the goal variant
    own-copy   trust_mod without use_model: the mod loads its own copy of the base model

`--model smollm2-shaped:<layers>` builds a random-init model with SmolLM2-135M's widths and
49k vocabulary but only <layers> layers (seeded, saved to a temporary folder): the memory of
probing grows with the vocabulary and the layers, so it shows what a full model would, at a
fraction of the compute.

The mod runs with its defaults (probe budget, all modes, the shipped suites) and the app's
local data (shift sketch). Printed: each variant's peak RSS, the ratio to the app alone (goal
<= 1.1 for `mod`) and the size of one copy of the base model's weights, for scale.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import tempfile
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

VARIANTS = ("app", "mod", "own-copy")
PRESETS = {"small": {"steps": 3, "batch": 4, "seq": 64, "rank": 8},
           "flowertune": {"steps": 10, "batch": 16, "seq": 512, "rank": 32}}
TOPICS = ["tide pools", "sourdough", "bike repair", "bird song", "tax forms", "chess openings"]


def local_texts(n: int) -> list[str]:
    return [f"Note {i}: today I learned more about {TOPICS[i % len(TOPICS)]}. The details take "
            f"practice, patience and a teacher who explains each step slowly, example {i}."
            for i in range(n)]


# -- the child: one client process ---------------------------------------------------------------
def child(args: argparse.Namespace) -> dict:
    """Run the client rounds of one variant; return its measurements."""
    import resource

    import torch
    from flwr.app import (
        DEFAULT_TTL,
        ArrayRecord,
        ConfigRecord,
        Context,
        Message,
        Metadata,
        MetricRecord,
        RecordDict,
    )
    from peft import (
        LoraConfig,
        get_peft_model,
        get_peft_model_state_dict,
        set_peft_model_state_dict,
    )

    from flwr_trust.models.loader import load_uncached_model

    if args.threads:
        torch.set_num_threads(args.threads)
    texts = local_texts(64)

    def get_model():
        """FlowerTune's get_model: a fresh base model with a LoRA adapter, per message."""
        loaded = load_uncached_model(args.model)
        lora = LoraConfig(r=args.rank, lora_alpha=2 * args.rank, lora_dropout=0.05,
                          target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM")
        return get_peft_model(loaded.model, lora), loaded.tokenizer

    def train(msg: Message, context: Context) -> Message:
        model, tokenizer = get_model()
        set_peft_model_state_dict(model, msg.content["arrays"].to_torch_state_dict())
        if args.variant == "mod":
            from flwr_trust.mods import use_model

            use_model(context, model, tokenizer)
        if args.variant != "app":
            from flwr_trust.mods import provide_local_data

            provide_local_data(context, train=texts[:32], heldout=texts[32:])
        params = [p for p in model.parameters() if p.requires_grad]
        optimizer = torch.optim.AdamW(params, lr=1e-4)
        model.train()
        for step in range(args.steps):
            batch = [texts[(step * args.batch + j) % len(texts)] for j in range(args.batch)]
            enc = tokenizer(batch, return_tensors="pt", padding="max_length", truncation=True,
                            max_length=args.seq)
            labels = enc["input_ids"].masked_fill(enc["attention_mask"] == 0, -100)
            model(**enc, labels=labels).loss.backward()
            optimizer.step()
            optimizer.zero_grad()
        content = RecordDict({"arrays": ArrayRecord(get_peft_model_state_dict(model)),
                              "metrics": MetricRecord({"num-examples": args.steps * args.batch})})
        return Message(content, reply_to=msg)

    model, _ = get_model()
    arrays = ArrayRecord(get_peft_model_state_dict(model))
    weight_bytes = sum(p.numel() * p.element_size() for p in model.get_base_model().parameters())
    del model
    handler = train
    if args.variant != "app":
        from flwr_trust.mods import make_trust_mod

        defaults = {"trust.model": args.model, "trust.lora.r": args.rank,
                    "trust.lora.alpha": 2 * args.rank, "trust.lora.target-modules": "q_proj,v_proj"}
        if args.budget is not None:
            defaults["trust.probe-budget"] = args.budget
        mod = make_trust_mod(defaults=defaults)

        def handler(msg: Message, context: Context) -> Message:
            return mod(msg, context, train)

    context = Context(run_id=1, node_id=1, node_config={}, state=RecordDict(), run_config={})
    start = time.perf_counter()
    for rnd in range(1, args.rounds + 1):
        meta = Metadata(run_id=1, message_id=f"m{rnd}", src_node_id=0, dst_node_id=1,
                        reply_to_message_id="", group_id=str(rnd), created_at=time.time(),
                        ttl=DEFAULT_TTL, message_type="train")
        msg = Message(RecordDict({"arrays": arrays, "config": ConfigRecord({"server-round": rnd})}),
                      metadata=meta)
        reply = handler(msg, context)
        if reply.has_error():
            raise SystemExit(f"round {rnd}: {reply.error.reason}")
        arrays = reply.content["arrays"]
    seconds = time.perf_counter() - start
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    return {"variant": args.variant, "peak_mib": peak_kib / 1024, "seconds": seconds,
            "weights_mib": weight_bytes / 2**20}


# -- the parent: one fresh process per variant -----------------------------------------------------
SHAPED = "smollm2-shaped:"


def materialize(spec: str, folder: str) -> str:
    """A model folder for `spec`: smollm2-shaped:<layers> is built (random, seeded) and saved
    into `folder`; any other spec is returned as it is."""
    if not spec.startswith(SHAPED):
        return spec
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from flwr_trust.models.tiny import build_tiny_tokenizer

    layers = int(spec[len(SHAPED):])
    tok = build_tiny_tokenizer()  # token ids stay < 258; the logits span the 49k vocabulary
    config = LlamaConfig(vocab_size=49152, hidden_size=576, intermediate_size=1536,
                         num_hidden_layers=layers, num_attention_heads=9, num_key_value_heads=3,
                         max_position_embeddings=2048, tie_word_embeddings=True,
                         bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                         pad_token_id=tok.pad_token_id)
    torch.manual_seed(0)
    LlamaForCausalLM(config).save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


def run_variant(variant: str, argv: list[str]) -> dict:
    cmd = [sys.executable, os.path.abspath(__file__), *argv, "--variant", variant]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"variant {variant} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="tiny", help="tiny, default (SmolLM2), smollm2-shaped:"
                    "<layers> or a model folder")
    ap.add_argument("--preset", choices=sorted(PRESETS), default="small")
    ap.add_argument("--steps", type=int, default=None)
    ap.add_argument("--batch", type=int, default=None)
    ap.add_argument("--seq", type=int, default=None)
    ap.add_argument("--rank", type=int, default=None)
    ap.add_argument("--rounds", type=int, default=2, help="train messages per client process")
    ap.add_argument("--budget", type=int, default=None, help="probe items per mode (default: "
                    "the mod's default)")
    ap.add_argument("--variants", default=",".join(VARIANTS))
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    ap.add_argument("--variant", choices=VARIANTS, help=argparse.SUPPRESS)  # the child's
    args = ap.parse_args(argv)
    for key, value in PRESETS[args.preset].items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    if args.variant:
        print(json.dumps(child(args)))
        return 0
    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    unknown = sorted(set(variants) - set(VARIANTS))
    if unknown or "app" not in variants:
        ap.error(f"--variants takes 'app' and any of {', '.join(VARIANTS)}, got {unknown}")
    print("python bench/client_memory.py " + shlex.join(argv))
    print(f"model {args.model}; {args.rounds} train messages per client, each: get_model + "
          f"LoRA r={args.rank}, {args.steps} steps x batch {args.batch} x {args.seq} tokens"
          + ("" if args.budget is None else f"; probe budget {args.budget}/mode"))
    with tempfile.TemporaryDirectory() as tmp:
        model = materialize(args.model, tmp)
        child_argv = argv + ["--model", model]  # the last --model wins
        results = {v: run_variant(v, child_argv) for v in variants}
    base = results["app"]["peak_mib"]
    for variant, r in results.items():
        ratio = "" if variant == "app" else f"   ratio {r['peak_mib'] / base:.3f}"
        goal = "   (goal <= 1.10)" if variant == "mod" else ""
        print(f"  {variant:<9} peak RSS {r['peak_mib']:8.1f} MiB   {r['seconds']:7.1f} s"
              f"{ratio}{goal}")
    weights = results["app"]["weights_mib"]
    print(f"one copy of the base model's weights: {weights:.1f} MiB "
          f"({100 * weights / base:.1f}% of the app's peak)")
    if weights < 0.05 * base:
        print("note: the model is too small for a second copy to show in the ratio; run "
              "with --model default for the measurement the goal is about")
    return 0


if __name__ == "__main__":
    sys.exit(main())
