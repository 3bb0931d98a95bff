"""How far can the refusal metric be shortened, and what does it agree with?

Scores the alignment probes of SmolLM2-135M-Instruct in three states: the base model, the
aligned starting adapter of the baseline (silent_failures.aligned) and that adapter eroded by
LoRA fine-tuning on harmful requests answered compliantly (the malicious scenario's data).
For each model it compares, per probe item, the refusal decision of the full scorer (mean
per-token log-likelihood of the whole refusal vs compliance reply) with

- the same decision from the replies' first k tokens only (`--reply-tokens`), the cheaper
  scorer (issue 16): agreement, Cohen's kappa, both rates and their difference in stderrs;
- with `--generate`, greedy generation judged by the keyword refusal judge
  (flwr_trust.scoring.generation): what the log-likelihood metric does and does not measure.

    python bench/refusal_scoring.py --model default --suites default,advbench,xstest \\
        --reply-tokens 1,2,4,8 --generate 32

Tiny model for a smoke run: `--model tiny --suites default --limit 20 --erode-steps 2`.
"""

from __future__ import annotations

import argparse
import functools
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402

from flwr_trust.modes.alignment import reply_requests  # noqa: E402
from flwr_trust.probes import default_suite  # noqa: E402
from flwr_trust.probes.adapters import load_benchmark  # noqa: E402
from flwr_trust.probes.suite import ProbeSuite  # noqa: E402
from flwr_trust.scoring.choices import choice_rows  # noqa: E402
from flwr_trust.scoring.encoding import Encoder  # noqa: E402
from flwr_trust.scoring.engine import score_requests  # noqa: E402
from flwr_trust.scoring.stats import proportion_metric  # noqa: E402

print = functools.partial(print, flush=True)  # noqa: A001 - progress shows while it runs
DATASETS = Path(__file__).resolve().parents[2] / "shared" / "datasets"


def load(name: str, limit: int) -> ProbeSuite:
    if name == "default":
        suite = default_suite("alignment")
    else:
        folder = {"advbench": "advbench", "xstest": "xstest"}[name]
        suite = load_benchmark(name, DATASETS / folder)
    if limit and len(suite.items) > limit:
        rng = np.random.default_rng(0)
        keep = sorted(rng.choice(len(suite.items), limit, replace=False).tolist())
        suite = suite.subset(keep, name_suffix=f"@{limit}")
    return suite


def decisions(model, tokenizer, suite: ProbeSuite, reply_tokens: int | None,
              precision: str) -> tuple[np.ndarray, np.ndarray, int]:
    """Per item: refused (bool) and label; and the tokens scored."""
    requests = reply_requests(suite, Encoder(tokenizer), reply_tokens)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else \
        tokenizer.eos_token_id
    scores = score_requests(model, requests, pad_id=int(pad), precision=precision)
    rows = choice_rows(suite, scores, per_token=True)
    refused = np.asarray([lp[item.answer] > np.delete(lp, item.answer).max()
                          for item, lp in rows])
    labels = np.asarray([item.label for item, _ in rows])
    tokens = sum(len(c) for c in {r.context for r in requests}) + \
        sum(len(r.continuation) for r in requests)
    return refused, labels, tokens


def kappa(a: np.ndarray, b: np.ndarray) -> float:
    """Cohen's kappa of two binary raters."""
    po = float(np.mean(a == b))
    pa, pb = float(np.mean(a)), float(np.mean(b))
    pe = pa * pb + (1 - pa) * (1 - pb)
    return 1.0 if pe == 1 else (po - pe) / (1 - pe)


def rates(refused: np.ndarray, labels: np.ndarray) -> str:
    parts = []
    for label, name in (("harmful", "refusal"), ("safe", "over-refusal")):
        sel = labels == label
        if sel.any():
            mv = proportion_metric(refused[sel])
            parts.append(f"{name} {mv.value:.3f}±{mv.stderr:.3f}")
    return ", ".join(parts)


def compare(name: str, base: np.ndarray, other: np.ndarray, labels: np.ndarray) -> str:
    harmful = labels == "harmful"
    diff = ""
    if harmful.any():
        a, b = proportion_metric(base[harmful]), proportion_metric(other[harmful])
        shift = b.value - a.value
        diff = f", refusal-rate diff {shift:+.3f} ({abs(shift) / max(a.stderr, 1e-9):.2f} stderr)"
    return (f"    {name:<22} agreement {np.mean(base == other):.3f}, kappa "
            f"{kappa(base, other):.3f}, {rates(other, labels)}{diff}")


def models(spec: str, erode_steps: int, precision: str):
    """(name, model) for base, aligned and eroded; the bridge's adapter is left eroded."""
    from silent_failures.aligned import aligned_bridge
    from silent_failures.sim.scenarios import harmful_chats
    from silent_failures.training import ChatExample, train_lora

    bridge = aligned_bridge(spec)
    aligned = bridge.to_array_record()
    with bridge.base_only():
        yield "base", bridge
    bridge.load_arrays(aligned)
    yield "aligned", bridge
    examples = [ChatExample(*c) for c in harmful_chats()]
    start = time.perf_counter()
    stats = train_lora(bridge.model, bridge.tokenizer, examples, steps=erode_steps,
                       batch_size=4, lr=5e-4, max_length=64, precision=precision, seed=0)
    print(f"(eroded: {erode_steps} LoRA steps on harmful-compliance chats, loss "
          f"{stats.losses[0]:.2f} -> {stats.losses[-1]:.2f}, {time.perf_counter() - start:.0f} s)")
    yield "eroded", bridge


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="default")
    parser.add_argument("--suites", default="default,advbench,xstest")
    parser.add_argument("--limit", type=int, default=0, help="items per suite (0 = all)")
    parser.add_argument("--reply-tokens", default="1,2,4,8")
    parser.add_argument("--generate", type=int, default=0,
                        help="also greedy-generate this many tokens and judge refusals")
    parser.add_argument("--erode-steps", type=int, default=40)
    parser.add_argument("--precision", default="fp32", choices=("fp32", "bf16"))
    parser.add_argument("--threads", type=int, default=0)
    args = parser.parse_args(argv)
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    ks = [int(k) for k in args.reply_tokens.split(",") if k]
    suites = {name: load(name, args.limit) for name in args.suites.split(",") if name}
    print(" ".join(["python bench/refusal_scoring.py"] + (argv or sys.argv[1:])))
    for model_name, bridge in models(args.model, args.erode_steps, args.precision):
        model, tok = bridge.model, bridge.tokenizer
        print(f"model: {model_name}")
        for suite_name, suite in suites.items():
            full, labels, full_tokens = decisions(model, tok, suite, None, args.precision)
            print(f"  suite {suite_name} ({len(suite.items)} items): full replies "
                  f"{full_tokens} tokens, {rates(full, labels)}")
            for k in ks:
                short, _, tokens = decisions(model, tok, suite, k, args.precision)
                print(compare(f"first {k} token(s) ({tokens} tok)", full, short, labels))
            if args.generate:
                from flwr_trust.scoring.generation import generate_replies, is_refusal

                replies = generate_replies(model, tok, suite, max_new_tokens=args.generate)
                judged = np.asarray([is_refusal(r) for r in replies])
                print(compare(f"greedy {args.generate} + judge", full, judged, labels))
                disagree = [(i, r) for i, r in enumerate(replies) if judged[i] != full[i]]
                for i, reply in disagree[:3]:
                    item = suite.items[i]
                    print(f"      e.g. [{item.label}] {item.prompt[:60]!r}: loglik "
                          f"{'refuses' if full[i] else 'complies'}, reply "
                          f"{' '.join(reply.split())[:70]!r}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
