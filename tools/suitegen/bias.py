"""bias: minimal pairs. A frame is (template with {X}, [(stereotyped word, other word), ...],
number of pairs to draw); only the {X} word differs between the two sentences of an item."""

from __future__ import annotations

import random
from typing import Any

from flwr_trust.probes.suite import ProbeItem, ProbeSuite

from .common import SEEDS, balanced_positions, make_suite, source

Frame = tuple[str, list[tuple[str, str]], int]

# Built in this order, from one random stream.
BIAS_TYPES = ("gender", "age", "nationality", "religion", "disability", "socioeconomic")


def pair_frames(spec: dict[str, Any]) -> list[Frame]:
    """The frame segments of a bias type, in order. Segments naming the same pairs in the same
    direction share one pool (one list object), whose pairs `bias_items` uses in turn;
    'swap' turns the pairs round (the second word is then the stereotyped one)."""
    pools: dict[tuple[str, bool], list[tuple[str, str]]] = {}
    frames: list[Frame] = []
    for segment in spec["frames"]:
        key = (segment["pairs"], bool(segment.get("swap", False)))
        if key not in pools:
            pairs = [(a, b) for a, b in spec["pairs"][key[0]]]
            pools[key] = [(b, a) for a, b in pairs] if key[1] else pairs
        frames += [(template, pools[key], spec["uses"]) for template in segment["templates"]]
    return frames


def gender_frames(rng: random.Random, spec: dict[str, Any]) -> list[Frame]:
    """A job sentence per job (a random template; the pronoun stereotyped for the job, against
    the other one), then the pair frames."""
    frames: list[Frame] = []
    for group in spec["jobs"]:
        pronouns = (group["pronouns"][0], group["pronouns"][1])
        for job in group["jobs"]:
            template = rng.choice(spec["job_templates"]).format(job=job)
            frames.append((template, [pronouns], spec["uses"]))
    return frames + pair_frames(spec)


def contrast_frames(rng: random.Random, frames: list[list[Any]], uses: int) -> list[Frame]:
    """Frames whose contrast word is another group that does not share the stereotype.

    `frames` are [template, [stereotyped group, groups sharing the stereotype]]. Contrast groups
    are the groups that are stereotyped elsewhere in the same list, chosen so that every group
    word appears about as often in stereotyping as in contrasting sentences (a word's overall
    frequency then cancels out instead of posing as bias).
    """
    groups = list(dict.fromkeys(shared[0] for _, shared in frames))
    balance = {g: 0 for g in groups}  # stereotyped uses minus contrast uses
    for _, shared in frames:
        balance[shared[0]] += uses
    out: list[Frame] = []
    for template, shared in frames:
        chosen: list[tuple[str, str]] = []
        for _ in range(uses):
            eligible = [g for g in groups if g not in shared and g not in (c for _, c in chosen)]
            top = max(balance[g] for g in eligible)
            pick = rng.choice([g for g in eligible if balance[g] == top])
            balance[pick] -= 1
            chosen.append((shared[0], pick))
        out.append((template, chosen, uses))
    return out


def bias_items(rng: random.Random, bias_type: str, frames: list[Frame]) -> list[ProbeItem]:
    """Two-sentence items; each pool's word pairs are used in turn, so all about equally often."""
    pairs: list[tuple[str, str]] = []
    turn: dict[int, int] = {}  # id(pool) -> how many of its pairs have been used
    for template, pool, uses in frames:
        start = turn.get(id(pool), 0)
        turn[id(pool)] = start + uses
        for k in range(uses):
            stereo, other = pool[(start + k) % len(pool)]
            pairs.append((template.format(X=stereo), template.format(X=other)))
    items = []
    for n, ((stereo, other), pos) in enumerate(
            zip(pairs, balanced_positions(rng, len(pairs)), strict=True), start=1):
        choices = (stereo, other) if pos == 0 else (other, stereo)
        items.append(ProbeItem(id=f"bias-{bias_type}-{n:03d}", group=bias_type,
                               choices=choices, answer=pos))
    return items


def build() -> ProbeSuite:
    src = source("bias")
    rng = random.Random(SEEDS["bias"])
    items: list[ProbeItem] = []
    for bias_type in BIAS_TYPES:
        spec = src[bias_type]
        if "jobs" in spec:
            frames = gender_frames(rng, spec)
        elif "pairs" in spec:
            frames = pair_frames(spec)
        else:
            frames = contrast_frames(rng, spec["frames"], spec["uses"])
        items += bias_items(rng, bias_type, frames)
    return make_suite("bias", items)
