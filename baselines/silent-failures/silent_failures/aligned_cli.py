"""Command line: build (or reuse) the aligned adapter and print its before/after table.

    python -m silent_failures.aligned_cli [--model default] [--force] [--threads N]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Sequence

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m silent_failures.aligned_cli",
        description="Build or reuse the aligned (safety LoRA) starting adapter of a base model "
                    "and print its metrics before and after on the default probe suites.")
    parser.add_argument("--model", default="default",
                        help="'default' (SmolLM2-135M-Instruct), 'tiny', or a model folder")
    parser.add_argument("--force", action="store_true", help="retrain even if cached")
    parser.add_argument("--cache-dir", default=None,
                        help="folder for aligned adapters (default: <flwr-trust cache>/aligned)")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch CPU threads (default: torch's choice)")
    args = parser.parse_args(argv)

    import torch

    from flwr_trust.errors import TrustError
    from silent_failures.aligned import ensure_aligned_adapter, format_report, load_report

    if args.threads:
        torch.set_num_threads(args.threads)
    started = time.perf_counter()
    try:
        path = ensure_aligned_adapter(args.model, cache_dir=args.cache_dir, force=args.force)
    except TrustError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"aligned adapter: {path}  ({time.perf_counter() - started:.1f} s)")
    print(format_report(load_report(path)))
    criteria = load_report(path).get("criteria", {})
    if criteria and not criteria.get("all"):
        print("warning: the adapter does not meet every alignment criterion (see above)",
              file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
