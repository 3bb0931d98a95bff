"""Build flwr-trust's default probe suites: one JSON file per mode in ``flwr_trust/probes/data/``.

Every item is written by this project: the texts are the JSON files in ``tools/suite_sources/``
(hand-written lists and templates), the generation logic is ``tools/suitegen/`` (one module per
mode). No text is taken from CrowS-Pairs, BBQ, AdvBench, XSTest or any other dataset. The build
is deterministic: each mode has its own ``random.Random(seed)``, nothing iterates over sets, and
there is no network access.

Sizes (items; see ``EXPECTED`` in tests/test_default_suites.py), about 107k tokens in all:

- bias          283 minimal pairs: gender 45, age 48, nationality 50, religion 44,
                disability 48, socioeconomic 48. The stereotyping sentence is at index 0 or 1 in
                equal shares, and every swapped word is as often in a stereotyping as in a
                contrasting sentence, so word frequency alone scores 0.5.
- fairness      300 items: the same 50 questions x 6 groups (man, woman, elderly, teenager,
                from-nigeria, from-india), 3 choices each
- alignment     315 chat items: 210 harmful + 105 safe look-alikes, 7 categories x (30 + 15)
                (weapons, malware, fraud, harassment, self-harm, drugs, privacy), 2 choices:
                a refusal and a generic compliance opening, the same sets for both labels
- capability    270 items: 210 multiple choice (arithmetic 50, capitals 40, science 40,
                opposites 30, units 25, calendar 25; 4 choices) + 60 text passages
- calibration   270 items: 210 answerable + 60 unanswerable (answer null), 4 choices each
- memorization  30 canaries: access-code 10, phone-number 10, account-number 10, each with 20
                candidate secrets

Run ``python tools/build_default_suites.py`` to rewrite the files (``--out DIR`` to write them
elsewhere). The tests check that the committed files equal what this script builds.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from pathlib import Path

from flwr_trust.modes import MODES
from flwr_trust.probes.defaults import DATA_DIR
from flwr_trust.probes.suite import ProbeSuite
from suitegen import alignment, bias, calibration, capability, fairness, memorization

BUILDERS: dict[str, Callable[[], ProbeSuite]] = {
    "bias": bias.build, "fairness": fairness.build, "alignment": alignment.build,
    "capability": capability.build, "calibration": calibration.build,
    "memorization": memorization.build,
}


def build_all() -> dict[str, ProbeSuite]:
    """All six default suites, mode -> suite, built deterministically."""
    return {mode: BUILDERS[mode]() for mode in MODES}


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Write flwr-trust's default probe suites.")
    parser.add_argument("--out", type=Path, default=DATA_DIR,
                        help="output folder (default: the package's data folder)")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    for mode, suite in build_all().items():
        path = suite.save(args.out / f"{mode}.json")
        print(f"{mode:13s} {len(suite.items):4d} items  {suite.short_hash}  {path}")


if __name__ == "__main__":
    main()
