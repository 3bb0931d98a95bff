"""`flwr-trust` command line: probe a model, list suites."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from flwr_trust.errors import TrustError
from flwr_trust.probes.suite import MODES


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="flwr-trust", description="Behavioral trust checks for federated LLM fine-tuning.")
    sub = parser.add_subparsers(dest="command", required=True)

    probe = sub.add_parser("probe", help="score a model on the behavior probe suites",
                           description="Score a model (optionally with a peft adapter) on the "
                           "probe suites of the six silent-failure modes and print its profile.")
    probe.add_argument("--model", default="default",
                       help="'default' (embedded SmolLM2-135M-Instruct), 'tiny' (test model), "
                       "or a local Hugging Face model folder")
    probe.add_argument("--adapter", help="a peft adapter folder (save_pretrained output)")
    probe.add_argument("--suite", default="default",
                       help="'default', a suite .json file, or a folder of suite files")
    probe.add_argument("--modes", default=",".join(MODES),
                       help=f"comma-separated modes to score (default: all of {','.join(MODES)})")
    probe.add_argument("--precision", choices=("bf16", "fp32"), default="bf16",
                       help="bf16 autocast (default, ~2.5x faster on CPU) or exact fp32")
    probe.add_argument("--generate", action="store_true",
                       help="also greedy-generate alignment replies and judge refusals (slower)")
    probe.add_argument("--json", type=Path, help="write the profile as JSON to this file")

    sub.add_parser("suites",
                   help="list the default probe suites: sizes, hashes, detectable effects")
    return parser


def _modes(text: str) -> tuple[str, ...]:
    modes = tuple(m.strip() for m in text.split(",") if m.strip())
    bad = [m for m in modes if m not in MODES]
    if bad or not modes:
        raise TrustError(f"Unknown mode(s) {bad or text!r}.", f"Use some of {', '.join(MODES)}.")
    return modes


def cmd_probe(args: argparse.Namespace) -> int:
    from flwr_trust.models import adapter_config_from_dir, get_bridge
    from flwr_trust.probes import load_suites
    from flwr_trust.scoring.runner import profile_model

    modes = _modes(args.modes)
    suites = load_suites(args.suite, modes)
    if not suites:
        raise TrustError(f"{args.suite} holds no suite for modes {', '.join(modes)}.",
                         "Pass a suite of one of these modes or choose --modes accordingly.")
    peft_config = adapter_config_from_dir(args.adapter) if args.adapter else None
    bridge = get_bridge(args.model, peft_config)
    if args.adapter:
        bridge.load_adapter_dir(args.adapter)
    name = bridge.base.name + (f" + {Path(args.adapter).name}" if args.adapter else "")
    start = time.perf_counter()
    profile = profile_model(bridge.model, bridge.tokenizer, suites, name=name,
                            precision=args.precision)
    if args.generate and "alignment" in suites:
        from flwr_trust.scoring.generation import generated_alignment_metrics

        profile.metrics["alignment"].update(
            generated_alignment_metrics(bridge.model, bridge.tokenizer, suites["alignment"]))
    elapsed = time.perf_counter() - start
    print(f"model: {name}   suites: {profile.suite_hash[:12]}   "
          f"{profile.extra['tokens']:,} tokens in {elapsed:.1f} s ({args.precision})")
    print(profile.format_table())
    if args.json:
        profile.extra["seconds"] = round(elapsed, 2)
        profile.save_json(args.json)
        print(f"wrote {args.json}")
    return 0


def cmd_suites(args: argparse.Namespace) -> int:
    from flwr_trust.probes import default_suites
    from flwr_trust.scoring.stats import minimum_detectable_effect

    print(f"{'mode':<13} {'name':<22} {'items':>5}  {'hash':<12}  groups / MDE (95%, 80% power)")
    for mode, suite in default_suites().items():
        n = len(suite.items)
        print(f"{mode:<13} {suite.name:<22} {n:>5}  {suite.short_hash}  "
              f"{len(suite.groups())} groups, MDE of a rate at p=0.5: "
              f"{minimum_detectable_effect(n):.3f}")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return {"probe": cmd_probe, "suites": cmd_suites}[args.command](args)
    except TrustError as exc:
        print(f"flwr-trust: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
