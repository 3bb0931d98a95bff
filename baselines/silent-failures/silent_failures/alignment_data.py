"""Safety-tuning data written by this project: refusals for harmful requests, help for the rest.

Three kinds of (prompt, reply) pairs, all hand-written for this project (no external dataset);
the texts are in ``data/alignment_data.json``, this module only combines them:

- ``harmful``: requests to hurt people or break the law, built from task phrases and request
  templates, answered with a short refusal (an opener, a reason, an offer of something safe);
  self-harm requests get a supportive refusal that points to help.
- ``safe``: look-alike requests that only sound dangerous ("kill a stuck process"), built from
  the same templates, answered helpfully, so that the template or a scary word is never what
  decides between refusing and helping.
- ``benign``: everyday instructions with short factual answers, to keep general capability.

Nothing overlaps the default probe suites (held-out evaluation): other task phrases, other
request templates, and refusal/compliance wordings that are neither equal to nor start with the
alignment suite's scored replies; benign topics avoid the capability and calibration suites'
facts (capitals, units, arithmetic, calendar, science quiz). tests/test_aligned.py checks this.
Replies carry no operational detail about anything harmful. The build is deterministic.
"""

from __future__ import annotations

import hashlib
import json
import random
from pathlib import Path
from typing import NamedTuple

from silent_failures.preference import PreferencePair
from silent_failures.training import ChatExample

DATA_FILE = Path(__file__).resolve().parent / "data" / "alignment_data.json"


def _pairs(rows: list[list[str]]) -> list[tuple[str, str]]:
    return [(a, b) for a, b in rows]


_DATA = json.loads(DATA_FILE.read_text(encoding="utf-8"))
# What each list is for: the "*_note" entries of the data file.
TEMPLATES: list[str] = _DATA["templates"]  # request templates, shared by harmful and safe tasks
HARMFUL: dict[str, list[str]] = _DATA["harmful"]  # category -> harmful task phrases
REFUSAL_OPENERS: list[str] = _DATA["refusal_openers"]
REFUSAL_REASONS: dict[str, list[str]] = _DATA["refusal_reasons"]  # per harmful category
REFUSAL_OFFERS: dict[str, list[str]] = _DATA["refusal_offers"]  # per harmful category
SELF_HARM_REPLIES: list[str] = _DATA["self_harm_replies"]
SAFE: dict[str, list[tuple[str, str]]] = {  # category -> (look-alike task, helpful answer)
    category: _pairs(rows) for category, rows in _DATA["safe"].items()}
HELPFUL_FORMATS: list[str] = _DATA["helpful_formats"]  # {t} task, {a} answer, {A} capitalized
BENIGN: list[tuple[str, str]] = _pairs(_DATA["benign"])  # (everyday instruction, short answer)


class AlignmentExample(NamedTuple):
    """One generated prompt with its kind ('harmful', 'safe', 'benign') and category, the reply
    to learn, and the reply to prefer it over (`rejected`: a content-free compliance opener for
    harmful requests, a refusal for the others)."""

    prompt: str
    reply: str
    kind: str
    category: str
    rejected: str = ""

    def chat(self) -> ChatExample:
        return ChatExample(self.prompt, self.reply)

    def pair(self) -> PreferencePair:
        return PreferencePair(self.prompt, self.reply, self.rejected)


def _refusal(rng: random.Random, category: str) -> str:
    if category == "self-harm":
        return rng.choice(SELF_HARM_REPLIES)
    parts = [rng.choice(REFUSAL_OPENERS), rng.choice(REFUSAL_REASONS[category])]
    if rng.random() < 0.5:  # an offer of something safe, half the time: refusals stay short
        parts.append(rng.choice(REFUSAL_OFFERS[category]))
    return " ".join(parts)


_SECOND_PERSON = {"i": "you", "me": "you", "my": "your", "mine": "yours", "myself": "yourself",
                  "i'm": "you're"}


def _second_person(task: str) -> str:
    """'find my lost phone' -> 'find your lost phone' (the helper repeats the user's task)."""
    return " ".join(_SECOND_PERSON.get(w.lower(), w) for w in task.split(" "))


def _helpful(rng: random.Random, task: str, answer: str) -> str:
    return rng.choice(HELPFUL_FORMATS).format(t=_second_person(task), a=answer,
                                              A=answer[0].upper() + answer[1:])


def _compliance_opener(rng: random.Random, task: str) -> str:
    """How a complying reply would begin, cut before any content ('Sure! To do X,')."""
    return rng.choice(HELPFUL_FORMATS).format(t=_second_person(task), a="", A="").strip()


def _generic_refusal(rng: random.Random, category: str) -> str:
    """A refusal of a harmless request (the reply an over-cautious model would give)."""
    return _refusal(rng, category) if category in REFUSAL_REASONS else rng.choice(REFUSAL_OPENERS)


def alignment_examples(seed: int = 0, *, templates_per_task: int = 3,
                       benign_repeats: int = 2) -> list[AlignmentExample]:
    """All pairs, shuffled with `seed`: each harmful and safe task under `templates_per_task`
    distinct templates (harmful ones with varied refusals), each benign pair `benign_repeats`
    times. Same arguments, same list."""
    if not 1 <= templates_per_task <= len(TEMPLATES):
        raise ValueError(f"templates_per_task must be in 1..{len(TEMPLATES)}")
    rng = random.Random(seed)
    out: list[AlignmentExample] = []
    for category, tasks in HARMFUL.items():
        for task in tasks:
            for template in rng.sample(TEMPLATES, templates_per_task):
                out.append(AlignmentExample(template.format(t=task), _refusal(rng, category),
                                            "harmful", category,
                                            _compliance_opener(rng, task)))
    for category, pairs in SAFE.items():
        for task, answer in pairs:
            for template in rng.sample(TEMPLATES, templates_per_task):
                out.append(AlignmentExample(template.format(t=task), _helpful(rng, task, answer),
                                            "safe", category, _generic_refusal(rng, category)))
    for prompt, reply in BENIGN:
        out.extend(AlignmentExample(prompt, reply, "benign", "general",
                                    _generic_refusal(rng, "general"))
                   for _ in range(benign_repeats))
    rng.shuffle(out)
    return out


def data_hash(examples: list[AlignmentExample]) -> str:
    """SHA-256 of the pairs in order (part of the aligned adapter's cache key)."""
    text = json.dumps([list(e) for e in examples], ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()
