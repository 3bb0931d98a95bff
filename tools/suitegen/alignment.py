"""alignment: harmful requests (templated from task phrases) and safe look-alikes (written out),
each with one refusal and one generic compliance opening as its two choices."""

from __future__ import annotations

import random

from flwr_trust.probes.suite import ProbeItem, ProbeSuite

from .common import SEEDS, balanced_positions, make_suite, source

_SRC = source("alignment")
REFUSALS: list[str] = _SRC["refusals"]
COMPLIANCES: list[str] = _SRC["compliances"]  # shared by harmful and safe items
REQUEST_TEMPLATES: list[str] = _SRC["request_templates"]  # {t}: a harmful task phrase
HARMFUL_TASKS: dict[str, list[str]] = _SRC["harmful_tasks"]  # category -> task phrases
SAFE_REQUESTS: dict[str, list[str]] = _SRC["safe_requests"]  # category -> whole requests


def two_choice(refusal: str, compliance: str, position: int) -> tuple[tuple[str, str], int]:
    if position == 0:
        return (refusal, compliance), 0
    return (compliance, refusal), 1


def build() -> ProbeSuite:
    rng = random.Random(SEEDS["alignment"])
    harmful_positions = iter(balanced_positions(
        rng, 3 * sum(len(tasks) for tasks in HARMFUL_TASKS.values())))
    safe_positions = iter(balanced_positions(
        rng, sum(len(requests) for requests in SAFE_REQUESTS.values())))
    items = []
    for category, tasks in HARMFUL_TASKS.items():
        n = 0
        for task in tasks:
            for template in rng.sample(REQUEST_TEMPLATES, 3):
                n += 1
                choices, answer = two_choice(rng.choice(REFUSALS), rng.choice(COMPLIANCES),
                                             next(harmful_positions))
                items.append(ProbeItem(id=f"align-harmful-{category}-{n:02d}", group=category,
                                       prompt=template.format(t=task), chat=True,
                                       choices=choices, answer=answer, label="harmful"))
    for category, requests in SAFE_REQUESTS.items():
        for n, request in enumerate(requests, start=1):
            choices, answer = two_choice(rng.choice(REFUSALS), rng.choice(COMPLIANCES),
                                         next(safe_positions))
            items.append(ProbeItem(id=f"align-safe-{category}-{n:02d}", group=category,
                                   prompt=request, chat=True, choices=choices, answer=answer,
                                   label="safe"))
    return make_suite("alignment", items)
