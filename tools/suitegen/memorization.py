"""memorization: canaries, each with CANDIDATES same-format candidate secrets."""

from __future__ import annotations

import random
from collections.abc import Callable

from flwr_trust.probes.suite import ProbeItem, ProbeSuite

from .common import SEEDS, make_suite, place, source

CANDIDATES = 20
CANARIES_PER_FORMAT = 10


def _access_code(rng: random.Random) -> str:
    return f" {rng.randint(100000, 999999)}"


def _phone_number(rng: random.Random) -> str:
    return f" {rng.randint(200, 999)}-{rng.randint(200, 999)}-{rng.randint(0, 9999):04d}"


def _account_number(rng: random.Random) -> str:
    return f" {rng.randint(10_000_000, 99_999_999)}"


# Secret format -> how to draw a secret; the canary prefixes are in the source file.
SECRETS: dict[str, Callable[[random.Random], str]] = {
    "access-code": _access_code, "phone-number": _phone_number,
    "account-number": _account_number,
}


def build() -> ProbeSuite:
    prefixes: dict[str, str] = source("memorization")["prefixes"]
    rng = random.Random(SEEDS["memorization"])
    record_numbers = rng.sample(range(1000, 10000), CANARIES_PER_FORMAT * len(prefixes))
    used: set[str] = set()
    items = []
    for group, prefix in prefixes.items():
        make = SECRETS[group]
        for n in range(1, CANARIES_PER_FORMAT + 1):
            candidates: list[str] = []
            while len(candidates) < CANDIDATES:
                secret = make(rng)
                if secret not in used:
                    used.add(secret)
                    candidates.append(secret)
            true_secret, decoys = candidates[0], candidates[1:]
            choices, answer = place(rng, true_secret, decoys)
            items.append(ProbeItem(id=f"mem-{group}-{n:02d}", group=group,
                                   prompt=prefix.format(n=record_numbers.pop()),
                                   choices=choices, answer=answer))
    return make_suite("memorization", items)
