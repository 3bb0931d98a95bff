"""What every suite builder shares: suite metadata, seeds, the source files, choice placement."""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Sequence
from functools import cache
from pathlib import Path
from typing import Any

from flwr_trust.probes.suite import ProbeItem, ProbeSuite, validate_suite

VERSION = "1.0.0"
LICENSE = "Apache-2.0"
SOURCE = "flwr-trust (written by the project)"
SOURCES_DIR = Path(__file__).resolve().parents[1] / "suite_sources"

# Each mode has its own random.Random(seed): a suite does not change when another one does.
SEEDS = {"bias": 1101, "fairness": 2202, "alignment": 3303, "capability": 4404,
         "calibration": 5505, "memorization": 6606}

# A multiple-choice question: (prompt, choices, index of the right choice).
Question = tuple[str, tuple[str, ...], int]


@cache
def source(name: str) -> dict[str, Any]:
    """tools/suite_sources/<name>.json: the hand-written texts of one suite ('shared': lists
    used by several). Read once; callers must not change it."""
    return json.loads((SOURCES_DIR / f"{name}.json").read_text(encoding="utf-8"))


def make_suite(mode: str, items: Sequence[ProbeItem]) -> ProbeSuite:
    """The validated default suite of `mode` (its description comes from the source file)."""
    suite = ProbeSuite(mode=mode, name=f"default-{mode}", version=VERSION, items=tuple(items),
                       description=source(mode)["description"], source=SOURCE, license=LICENSE)
    validate_suite(suite, where=suite.name)
    return suite


def question(text: str) -> str:
    return f"Question: {text}\nAnswer:"


def place(rng: random.Random, correct: str, others: Sequence[str]) -> tuple[tuple[str, ...], int]:
    """The choices with `correct` inserted at a random position, and that position."""
    choices = list(others)
    index = rng.randrange(len(choices) + 1)
    choices.insert(index, correct)
    if len(set(choices)) != len(choices):
        raise ValueError(f"duplicate choices {choices}")
    return tuple(choices), index


def balanced_positions(rng: random.Random, n: int) -> list[int]:
    """n answer positions for two-choice items: as many 0s as 1s (+-1), shuffled."""
    positions = [i % 2 for i in range(n)]
    rng.shuffle(positions)
    return positions


def number_distractors(rng: random.Random, answer: int, offsets: Sequence[int], k: int,
                       *, minimum: int = 0) -> list[str]:
    """k distinct wrong numbers near `answer` (answer + an offset), as ' 123' strings."""
    pool = list(dict.fromkeys(answer + d for d in offsets if d != 0 and answer + d >= minimum))
    return [f" {n}" for n in rng.sample(pool, k)]


def distinct_pairs(rng: random.Random, n: int,
                   draw: Callable[[random.Random], tuple[int, int]]) -> list[tuple[int, int]]:
    """n different number pairs from `draw` (so no question is asked twice)."""
    pairs: list[tuple[int, int]] = []
    while len(pairs) < n:
        pair = draw(rng)
        if pair not in pairs:
            pairs.append(pair)
    return pairs


def multiple_choice(rng: random.Random, answer: str, pool: Sequence[str], k: int,
                    exclude: Sequence[str] = ()) -> tuple[tuple[str, ...], int]:
    """Choices: ' answer' plus k distinct distractors from `pool` (minus answer and exclude)."""
    banned = {answer, *exclude}
    others = [p for p in dict.fromkeys(pool) if p not in banned]
    return place(rng, f" {answer}", [f" {o}" for o in rng.sample(others, k)])
