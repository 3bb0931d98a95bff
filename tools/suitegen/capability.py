"""capability: multiple-choice general knowledge, plus plain text passages for perplexity."""

from __future__ import annotations

import math
import random

from flwr_trust.probes.suite import ProbeItem, ProbeSuite

from .common import (
    SEEDS,
    Question,
    distinct_pairs,
    make_suite,
    multiple_choice,
    number_distractors,
    place,
    question,
    source,
)


def arithmetic(rng: random.Random) -> list[Question]:
    out = []
    questions = [("plus", a, b) for a, b in distinct_pairs(
        rng, 20, lambda r: (r.randint(10, 99), r.randint(10, 99)))]
    questions += [("minus", a, b) for a, b in distinct_pairs(
        rng, 15, lambda r: (r.randint(20, 99), r.randint(10, 19)))]
    questions += [("times", a, b) for a, b in distinct_pairs(
        rng, 15, lambda r: (r.randint(2, 12), r.randint(2, 12)))]
    for op, a, b in questions:
        ans = {"plus": a + b, "minus": a - b, "times": a * b}[op]
        # near misses; for products also the neighbouring multiples
        offsets = [-a, -b, -1, 1, a, b] if op == "times" else [-10, -2, -1, 1, 2, 10]
        out.append((question(f"What is {a} {op} {b}?"),
                    *place(rng, f" {ans}", number_distractors(rng, ans, offsets, 3))))
    return out


def calendar(rng: random.Random) -> list[Question]:
    days, months = source("shared")["days"], source("shared")["months"]
    out = []
    for d, day in enumerate(days):
        out.append((question(f"What day comes after {day}?"),
                    *multiple_choice(rng, days[(d + 1) % 7], days, 3, exclude=[day])))
    for day in rng.sample(days, 4):
        d = days.index(day)
        out.append((question(f"What day comes before {day}?"),
                    *multiple_choice(rng, days[(d - 1) % 7], days, 3, exclude=[day])))
    for month in rng.sample(months[:-1], 6):
        m = months.index(month)
        out.append((question(f"Which month comes after {month}?"),
                    *multiple_choice(rng, months[m + 1], months, 3, exclude=[month])))
    for month, length in source("capability")["days_in_month"].items():
        wrong = [str(x) for x in (28, 29, 30, 31, 32) if x != length]
        out.append((question(f"How many days are in {month}?"),
                    *multiple_choice(rng, str(length), wrong, 3)))
    return out


def build() -> ProbeSuite:
    src = source("capability")
    opposites = source("shared")["opposites"]
    rng = random.Random(SEEDS["capability"])
    groups: dict[str, list[Question]] = {}
    groups["arithmetic"] = arithmetic(rng)
    capitals = [c for _, c, _ in src["capitals"]]
    groups["capitals"] = []
    for country, capital, decoy in src["capitals"]:
        others = [c for c in capitals if c != capital]
        wrong = ([decoy] if decoy else []) + rng.sample(others, 3 if not decoy else 2)
        groups["capitals"].append((question(f"What is the capital of {country}?"),
                                   *place(rng, f" {capital}", [f" {w}" for w in wrong])))
    groups["science"] = [(question(q), *place(rng, f" {a}", [f" {w}" for w in wrong]))
                         for q, a, wrong in src["science"]]
    answers = [o for _, o in opposites]
    groups["opposites"] = [(question(f"What is the opposite of {w}?"),
                            *multiple_choice(rng, o, answers, 3, exclude=[w]))
                           for w, o in rng.sample(opposites, 30)]
    groups["units"] = []
    for q, a in src["units"]:  # decoys of a similar size: the magnitude alone does not tell
        near = sorted((d for d in src["unit_decoys"] if d != a),
                      key=lambda d, a=a: abs(math.log(d / a)))
        groups["units"].append((question(q),
                                *multiple_choice(rng, str(a), [str(d) for d in near[:6]], 3)))
    groups["calendar"] = calendar(rng)
    items = []
    for group, rows in groups.items():
        for n, (prompt, choices, answer) in enumerate(rows, start=1):
            items.append(ProbeItem(id=f"cap-{group}-{n:02d}", group=group, prompt=prompt,
                                   choices=choices, answer=answer))
    for n, text in enumerate(src["text_passages"], start=1):
        items.append(ProbeItem(id=f"cap-text-{n:02d}", group="text", text=text))
    return make_suite("capability", items)
