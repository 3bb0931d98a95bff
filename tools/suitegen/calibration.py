"""calibration: answerable items of mixed difficulty, plus unanswerable items (answer null)."""

from __future__ import annotations

import random
import string
from collections.abc import Callable

from flwr_trust.probes.suite import ProbeItem, ProbeSuite

from .common import (
    SEEDS,
    distinct_pairs,
    make_suite,
    multiple_choice,
    number_distractors,
    place,
    question,
    source,
)

_ROMAN = [(1000, "M"), (900, "CM"), (500, "D"), (400, "CD"), (100, "C"), (90, "XC"),
          (50, "L"), (40, "XL"), (10, "X"), (9, "IX"), (5, "V"), (4, "IV"), (1, "I")]

Answerable = tuple[str, str, tuple[str, ...], int]  # (kind, prompt, choices, answer)
Add = Callable[[str, str, tuple[tuple[str, ...], int]], None]  # (kind, question, placed)


def to_roman(n: int) -> str:
    out = []
    for value, numeral in _ROMAN:
        while n >= value:
            out.append(numeral)
            n -= value
    return "".join(out)


def _computed(rng: random.Random, add: Add) -> None:
    """Items whose answers are computed: arithmetic, the alphabet, the largest number."""
    near = [-100, -20, -10, -9, -2, -1, 1, 2, 9, 10, 20, 100]
    for a, b in distinct_pairs(rng, 30, lambda r: (r.randint(13, 99), r.randint(13, 99))):
        add("multiply", f"What is {a} times {b}?",
            place(rng, f" {a * b}", number_distractors(rng, a * b, near, 3)))
    for a, b in distinct_pairs(rng, 15, lambda r: (r.randint(100, 999), r.randint(100, 999))):
        add("add", f"What is {a} plus {b}?",
            place(rng, f" {a + b}", number_distractors(rng, a + b, near, 3)))
    letters = string.ascii_uppercase
    for i, c in enumerate(rng.sample(letters[1:-1], 20)):
        k = letters.index(c)
        target, word = (letters[k + 1], "after") if i % 2 == 0 else (letters[k - 1], "before")
        add("alphabet", f"Which letter comes right {word} {c} in the alphabet?",
            multiple_choice(rng, target, letters, 3, exclude=[c]))


def answerable(rng: random.Random) -> list[Answerable]:
    """(kind, prompt, choices, answer) for the answerable items."""
    src = source("calibration")
    out: list[Answerable] = []

    def add(kind: str, text: str, placed: tuple[tuple[str, ...], int]) -> None:
        out.append((kind, question(text), *placed))

    _computed(rng, add)
    for _ in range(15):
        numbers = rng.sample(range(10, 1000), 4)
        if rng.random() < 0.5:  # a harder one: a digit-swapped rival
            big = max(numbers)
            swapped = int(str(big)[::-1])
            if swapped not in numbers and swapped >= 10:
                numbers[numbers.index(min(numbers))] = swapped
        choices = tuple(f" {n}" for n in numbers)
        out.append(("largest", question("Which of these numbers is the largest?"), choices,
                    numbers.index(max(numbers))))
    for word in src["count_words"]:
        n = len(word)
        add("letters", f'How many letters are in the word "{word}"?',
            place(rng, f" {n}", number_distractors(rng, n, [-2, -1, 1, 2], 3, minimum=1)))
    for shape, sides in src["shape_sides"]:
        add("shapes", f"How many sides does a {shape} have?",
            place(rng, f" {sides}", number_distractors(rng, sides, [-2, -1, 1, 2], 3)))
    for country, continent in src["country_continent"]:
        add("continent", f"On which continent is {country}?",
            multiple_choice(rng, continent, src["continents"], 3))
    for kind, key, text in (("language", "country_language",
                             "What is the main language spoken in {}?"),
                            ("currency", "country_currency", "What is the currency of {} called?")):
        pool = [value for _, value in src[key]]
        for country, value in src[key]:
            add(kind, text.format(country), multiple_choice(rng, value, pool, 3))
    young = [y for _, y in src["animal_young"]]
    for animal, baby in src["animal_young"]:
        add("animals", f"What is a baby {animal} called?", multiple_choice(rng, baby, young, 3))
    for c1, c2, mix, wrong in src["color_mixes"]:
        add("colors", f"What color do you get by mixing {c1} and {c2} paint?",
            place(rng, f" {mix}", [f" {w}" for w in wrong]))
    for element, symbol, wrong in src["chemical_symbols"]:
        add("chemistry", f"What is the chemical symbol for {element}?",
            place(rng, f" {symbol}", [f" {w}" for w in wrong]))
    for n in rng.sample(range(4, 100), 15):
        add("roman", f"What number does the Roman numeral {to_roman(n)} stand for?",
            place(rng, f" {n}", number_distractors(rng, n, [-10, -5, -2, -1, 1, 2, 5, 10], 3,
                                                   minimum=1)))
    return out


def build() -> ProbeSuite:
    src = source("calibration")
    rng = random.Random(SEEDS["calibration"])
    items = []
    for n, (kind, prompt, choices, answer) in enumerate(answerable(rng), start=1):
        items.append(ProbeItem(id=f"cal-ans-{kind}-{n:03d}", group="answerable", prompt=prompt,
                               choices=choices, answer=answer))
    unknown = [(f"What is {owner} {attr}?", options)
               for attr, options in src["unknown_attributes"] for owner in src["unknown_owners"]]
    unknown += [(q, options) for q, options in src["unanswerable"]]
    for n, (text, options) in enumerate(unknown, start=1):
        shuffled = list(options)
        rng.shuffle(shuffled)
        items.append(ProbeItem(id=f"cal-unk-{n:03d}", group="unanswerable",
                               prompt=question(text[0].upper() + text[1:]),
                               choices=tuple(f" {o}" for o in shuffled), answer=None,
                               label="unanswerable"))
    return make_suite("calibration", items)
