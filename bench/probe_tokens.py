"""Probe tokens per item before and after shared-prefix reuse, and the metrics' agreement.

Tokens (tokenizer only, no forward pass): per mode, the tokens the scorer runs through the
model per probe item (padding not counted; flwr_trust.scoring.prefixes.forwarded_tokens, which
tests/test_prefix_cache.py checks against the engine's real forward calls):

- whole:   every request whole (context + continuation), nothing shared;
- before:  each distinct context once for all its continuations (the choices of an item);
- after:   also the prefixes contexts of different items share (a chat template's system
           block, an instruction header) once per scoring call.

Each mode is planned alone (its own scoring call); the `all` row plans every mode in one call,
as `profile_model` does (the server's probe), the `client` row every mode a client without
planted canaries probes (planted-only modes left out), in one call as the client mod does.
Printed for the whole default suites and for one round's sample at each `--budget` (the
client's default is 32 items per mode).

Padding (on by default, --no-padding skips it): the tokens the engine really feeds the model
include padding (rows of a batch are padded to its longest); they and the forward calls are
counted by running the engine on a one-layer random model of the tokenizer's vocabulary (the
batches depend on the tokens only), for the `all` and `client` sets, without and with reuse.

Agreement (needs the model, skipped with --tokens-only): every mode's metrics scored with and
without the reuse on the same model, the headline's values, their difference and the difference
in units of the headline's stderr (goal: within float rounding, far below one stderr).

    python bench/probe_tokens.py --model default --tokens-only   # SmolLM2 tokenizer, ~15 s
    python bench/probe_tokens.py --model default                 # + agreement on SmolLM2
    python bench/probe_tokens.py --model tiny                    # tiny model, system-block chat

`--model tiny` is the tiny model built in code with a chat template that opens every
conversation with a system block (flwr_trust.models.tiny.build_tiny_tokenizer(system=...)).
"""

from __future__ import annotations

import argparse
import functools
import math
import os
import sys

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from flwr_trust import modes as registry  # noqa: E402
from flwr_trust.probes import load_suites, sample_suites  # noqa: E402
from flwr_trust.probes.suite import ProbeSuite  # noqa: E402
from flwr_trust.scoring.encoding import Encoder  # noqa: E402
from flwr_trust.scoring.prefixes import forwarded_tokens  # noqa: E402

print = functools.partial(print, flush=True)  # noqa: A001 - progress shows while it runs

TINY_SYSTEM = "You are a helpful AI assistant. Answer briefly and refuse harmful requests."


def load_tokenizer(spec: str):
    if spec == "tiny":
        from flwr_trust.models.tiny import build_tiny_tokenizer

        return build_tiny_tokenizer(TINY_SYSTEM)
    if spec == "default":
        from flwr_trust.models.default_model import load_default_tokenizer

        return load_default_tokenizer()
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(spec)


def load_model(spec: str):
    """(model, tokenizer) for the agreement part."""
    if spec == "tiny":
        from flwr_trust.models.tiny import build_tiny_model

        return build_tiny_model(seed=1), load_tokenizer("tiny")
    from flwr_trust.models import load_base_model

    loaded = load_base_model(spec)
    return loaded.model, loaded.tokenizer


def counting_model(tokenizer):
    """A one-layer random Llama of the tokenizer's vocabulary: the engine's batches (padding,
    calls) depend on the tokens only, so it counts what the real model would be fed."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=16, intermediate_size=16,
                         num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=2)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return LlamaForCausalLM(config).eval()


def engine_input(model, requests, pad_id: int, common_prefix: bool) -> tuple[int, int, int]:
    """(input tokens incl. padding, real input tokens, forward calls) of one scoring call."""
    from flwr_trust.scoring.engine import score_requests

    seen = [0, 0, 0]

    def count(_module, _args, kwargs):
        ids, mask = kwargs["input_ids"], kwargs["attention_mask"]
        seen[0] += ids.numel()
        seen[1] += int(mask[:, -ids.shape[1]:].sum())
        seen[2] += 1

    handle = model.register_forward_pre_hook(count, with_kwargs=True)
    try:
        score_requests(model, requests, pad_id=pad_id, common_prefix=common_prefix)
    finally:
        handle.remove()
    return seen[0], seen[1], seen[2]


def padding_lines(suites: dict[str, ProbeSuite], tokenizer, model) -> None:
    encoder = Encoder(tokenizer)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None \
        else tokenizer.eos_token_id
    sets = {"all": list(suites), "client": [m for m in suites
                                            if not registry.get(m).planted_only]}
    for label, modes in sets.items():
        reqs = [r for m in modes for r in registry.get(m).requests(suites[m], encoder)]
        off, on = (engine_input(model, reqs, int(pad), reuse) for reuse in (False, True))
        print(f"  {label}: engine input incl. padding {off[0]} -> {on[0]} tokens "
              f"({on[0] / max(off[0], 1):.3f}; real {off[1]} -> {on[1]}), forward calls "
              f"{off[2]} -> {on[2]}")


def token_table(suites: dict[str, ProbeSuite], tokenizer) -> None:
    encoder = Encoder(tokenizer)
    print(f"{'mode':<13}{'items':>6}{'whole/item':>12}{'before/item':>13}{'after/item':>12}"
          f"{'after/before':>14}")
    everything, client = [], []
    for mode, suite in suites.items():
        reqs = registry.get(mode).requests(suite, encoder)
        everything += reqs
        client += [] if registry.get(mode).planted_only else reqs
        _row(mode, len(suite.items), reqs)
    _row("all", sum(len(s.items) for s in suites.values()), everything)
    _row("client", sum(len(s.items) for m, s in suites.items()
                       if not registry.get(m).planted_only), client)


def _row(label: str, items: int, reqs) -> None:
    whole, before, after = (forwarded_tokens(reqs, s) for s in ("none", "context", "prefix"))
    n = max(items, 1)
    print(f"{label:<13}{items:>6}{whole / n:>12.1f}{before / n:>13.1f}{after / n:>12.1f}"
          f"{after / max(before, 1):>14.3f}   (tokens: {whole} / {before} / {after})")


def agreement(model, tokenizer, suites: dict[str, ProbeSuite], precision: str) -> None:
    from flwr_trust.scoring.runner import profile_model

    profiles = {reuse: profile_model(model, tokenizer, suites, precision=precision,
                                     common_prefix=reuse) for reuse in (False, True)}
    print(f"{'mode':<13}{'headline':<16}{'without':>10}{'with':>10}{'|diff|':>10}"
          f"{'stderr':>9}{'diff/se':>9}{'max|d item|':>13}{'max|d| all':>12}")
    worst = 0.0
    for mode in suites:
        name = registry.get(mode).headline.name
        off, on = profiles[False].get(mode, name), profiles[True].get(mode, name)
        diff = abs(on.value - off.value)
        ratio = diff / off.stderr if off.stderr and math.isfinite(off.stderr) else math.nan
        items = max((abs(a - b) for a, b in zip(off.items or (), on.items or (), strict=True)),
                    default=math.nan)
        every = max(abs(mv.value - profiles[True].metrics[mode][m].value)
                    for m, mv in profiles[False].metrics[mode].items()
                    if math.isfinite(mv.value))
        worst = max(worst, ratio if math.isfinite(ratio) else 0.0)
        print(f"{mode:<13}{name:<16}{off.value:>10.5f}{on.value:>10.5f}{diff:>10.2e}"
              f"{off.stderr:>9.4f}{ratio:>9.1e}{items:>13.2e}{every:>12.2e}")
    print(f"largest headline difference: {worst:.1e} stderrs "
          f"({'within' if worst < 1 else 'NOT within'} one stderr)")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="default", help="default (SmolLM2), tiny, or a folder")
    ap.add_argument("--suites", default="default", help="default, a suite file or a folder")
    ap.add_argument("--modes", default="", help="comma-separated modes (default: all)")
    ap.add_argument("--budget", default="0,32",
                    help="items per mode per round to plan for; 0 = whole suites")
    ap.add_argument("--round", type=int, default=1, help="the round whose sample is planned")
    ap.add_argument("--tokens-only", action="store_true", help="skip the agreement part")
    ap.add_argument("--agree-budget", type=int, default=0,
                    help="items per mode scored for the agreement (0 = whole suites)")
    ap.add_argument("--precision", default="fp32", choices=("fp32", "bf16"))
    ap.add_argument("--no-padding", action="store_true",
                    help="skip counting the engine's padded input (a one-layer random model)")
    args = ap.parse_args(argv)
    print("command: python bench/probe_tokens.py " + " ".join(argv if argv is not None
                                                              else sys.argv[1:]))
    modes = [m for m in args.modes.split(",") if m] or None
    suites = load_suites(args.suites, modes)
    tokenizer = load_tokenizer(args.model) if args.tokens_only else None
    model = None
    if not args.tokens_only:
        model, tokenizer = load_model(args.model)
    counter = None
    for budget in (int(b) for b in args.budget.split(",")):
        label = "whole suites" if budget == 0 else \
            f"round {args.round} sample, {budget} items per mode"
        print(f"\ntokens forwarded per probe item, {label} (model {args.model}):")
        sample = sample_suites(suites, args.round, budget)
        token_table(sample, tokenizer)
        if not args.no_padding:
            counter = counter or counting_model(tokenizer)
            print("without -> with reuse (one scoring call, default batch budget; padding "
                  "counted on a one-layer random model of this vocabulary):")
            padding_lines(sample, tokenizer, counter)
    if model is not None:
        sample = sample_suites(suites, args.round, args.agree_budget)
        scope = f"{args.agree_budget} items per mode" if args.agree_budget else "whole suites"
        print(f"\nheadline agreement with and without shared-prefix reuse (model {args.model}, "
              f"{args.precision}, {scope}):")
        agreement(model, tokenizer, sample, args.precision)
    return 0


if __name__ == "__main__":
    sys.exit(main())
