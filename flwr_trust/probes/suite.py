"""Probe suites: a versioned, content-hashed data format shared by server and clients.

A suite file is JSON::

    {"format": "flwr-trust-suite/1", "mode": "alignment", "name": "default-alignment",
     "version": "1.0.0", "description": "...", "source": "...", "license": "...",
     "items": [{"id": "...", "group": "...", "prompt": "...", "chat": true,
                "choices": ["...", "..."], "answer": 0, "label": "harmful"}, ...]}

Item fields (which ones a mode needs is the mode's `check_item`, see flwr_trust.modes):

- ``id``      unique string within the suite
- ``group``   subgroup (bias type, demographic group, ...); default ``"all"``
- ``prompt``  context string scored as a condition (may be empty)
- ``chat``    if true, ``prompt`` is a user turn rendered with the model's chat template
- ``choices`` continuations whose log-likelihood is compared
- ``answer``  index into ``choices`` of the correct / stereotyping / refusal / true-secret choice,
              or null for an unanswerable item
- ``label``   item kind within a mode (e.g. ``harmful`` vs ``safe`` for alignment)
- ``text``    a whole text scored for perplexity (capability)

The hash is SHA-256 over the canonical JSON of everything but the description, so a suite
reformatted or re-described keeps its hash, while any change to what is scored changes it.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from flwr_trust.errors import SuiteError, SuiteHashMismatchError

FORMAT = "flwr-trust-suite/1"

_ITEM_KEYS = {"id", "group", "prompt", "chat", "choices", "answer", "label", "text"}


@dataclass(frozen=True)
class ProbeItem:
    """One probe. See the module docstring for what each field means."""

    id: str
    group: str = "all"
    prompt: str = ""
    chat: bool = False
    choices: tuple[str, ...] = ()
    answer: int | None = None
    label: str = ""
    text: str = ""

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"id": self.id, "group": self.group}
        if self.prompt:
            out["prompt"] = self.prompt
        if self.chat:
            out["chat"] = True
        if self.choices:
            out["choices"] = list(self.choices)
            out["answer"] = self.answer
        if self.label:
            out["label"] = self.label
        if self.text:
            out["text"] = self.text
        return out


@dataclass(frozen=True)
class ProbeSuite:
    """A named, versioned list of probes for one failure mode."""

    mode: str
    name: str
    version: str
    items: tuple[ProbeItem, ...]
    description: str = ""
    source: str = ""
    license: str = ""
    hash: str = field(default="", compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "hash", suite_hash(self))

    @property
    def short_hash(self) -> str:
        return self.hash[:12]

    def groups(self) -> list[str]:
        return sorted({item.group for item in self.items})

    def subset(self, indices: Iterable[int], *, name_suffix: str) -> ProbeSuite:
        """A suite of some items (e.g. one round's probe budget); it gets its own hash."""
        chosen = tuple(self.items[i] for i in indices)
        return ProbeSuite(self.mode, f"{self.name}{name_suffix}", self.version, chosen,
                          self.description, self.source, self.license)

    def to_json(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "mode": self.mode,
            "name": self.name,
            "version": self.version,
            "description": self.description,
            "source": self.source,
            "license": self.license,
            "hash": self.hash,
            "items": [item.to_json() for item in self.items],
        }

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.write_text(json.dumps(self.to_json(), indent=1, ensure_ascii=False) + "\n",
                        encoding="utf-8")
        return path


def suite_hash(suite: ProbeSuite) -> str:
    """SHA-256 of the canonical content: format, mode, name, version and items."""
    payload = {
        "format": FORMAT,
        "mode": suite.mode,
        "name": suite.name,
        "version": suite.version,
        "items": [item.to_json() for item in suite.items],
    }
    canonical = json.dumps(payload, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def combined_hash(hashes: Mapping[str, str]) -> str:
    """One hash for a set of suites (mode -> suite hash), independent of order."""
    canonical = json.dumps(dict(sorted(hashes.items())), separators=(",", ":"))
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def check_hash(expected: str, actual: str, *, what: str = "probe suite") -> None:
    """Raise a clear error if two parties' suite hashes differ (a prefix of >= 12 chars is ok)."""
    if not expected or not actual:
        raise SuiteHashMismatchError(f"A {what} hash is empty.", "Send the full suite hash.")
    n = min(len(expected), len(actual))
    if n < 12 or expected[:n] != actual[:n]:
        raise SuiteHashMismatchError(
            f"The {what} hash {expected[:12]} does not match the local one {actual[:12]}: "
            "the two sides would score different probes.",
            "Install the same flwr-trust version (or suite files) on server and clients, or set "
            "trust.suite to a path both sides share.",
        )


def _item_from_json(raw: Any, where: str) -> ProbeItem:
    if not isinstance(raw, dict):
        raise SuiteError(f"{where} is not a JSON object.", "Each item must be an object.")
    unknown = set(raw) - _ITEM_KEYS
    if unknown:
        raise SuiteError(f"{where} has unknown fields {sorted(unknown)}.",
                         f"Use only {sorted(_ITEM_KEYS)}.")
    if not isinstance(raw.get("id"), str) or not raw["id"]:
        raise SuiteError(f"{where} has no string 'id'.", "Give every item a unique string id.")
    choices = raw.get("choices", [])
    if not isinstance(choices, list) or not all(isinstance(c, str) and c for c in choices):
        raise SuiteError(f"{where}: 'choices' must be a list of non-empty strings.",
                         "Fix the item.")
    answer = raw.get("answer")
    if answer is not None and (not isinstance(answer, int) or isinstance(answer, bool)
                               or not 0 <= answer < len(choices)):
        raise SuiteError(f"{where}: 'answer' {answer!r} is not an index into its "
                         f"{len(choices)} choices.", "Use a 0-based index or null.")
    for key in ("group", "prompt", "label", "text"):
        if key in raw and not isinstance(raw[key], str):
            raise SuiteError(f"{where}: '{key}' must be a string.", "Fix the item.")
    if "chat" in raw and not isinstance(raw["chat"], bool):
        raise SuiteError(f"{where}: 'chat' must be true or false.", "Fix the item.")
    return ProbeItem(id=raw["id"], group=raw.get("group", "all") or "all",
                     prompt=raw.get("prompt", ""), chat=raw.get("chat", False),
                     choices=tuple(choices), answer=answer, label=raw.get("label", ""),
                     text=raw.get("text", ""))


def suite_from_json(data: Any, *, where: str = "suite") -> ProbeSuite:
    """Build and validate a suite from parsed JSON."""
    if not isinstance(data, dict):
        raise SuiteError(f"{where} is not a JSON object.", f"Write a '{FORMAT}' suite object.")
    if data.get("format") != FORMAT:
        raise SuiteError(f"{where} has format {data.get('format')!r}, expected {FORMAT!r}.",
                         f'Add "format": "{FORMAT}" (and check the file is a probe suite).')
    for key in ("mode", "name", "version"):
        if not isinstance(data.get(key), str) or not data[key]:
            raise SuiteError(f"{where} has no string '{key}'.", f"Add a '{key}' field.")
    items_raw = data.get("items")
    if not isinstance(items_raw, list) or not items_raw:
        raise SuiteError(f"{where} has no items.", "A suite needs a non-empty 'items' list.")
    items = tuple(_item_from_json(raw, f"{where} item {i}") for i, raw in enumerate(items_raw))
    suite = ProbeSuite(mode=data["mode"], name=data["name"], version=data["version"],
                       items=items, description=str(data.get("description", "")),
                       source=str(data.get("source", "")), license=str(data.get("license", "")))
    validate_suite(suite, where=where)
    stated = data.get("hash")
    if stated and stated != suite.hash:
        raise SuiteHashMismatchError(
            f"{where} states hash {str(stated)[:12]} but its content hashes to "
            f"{suite.short_hash}: the file was edited after it was hashed.",
            "Remove the 'hash' field to re-hash it, or restore the original file.")
    return suite


def load_suite(path: str | Path) -> ProbeSuite:
    """Load one suite file, with clear errors for missing, unreadable or malformed files."""
    path = Path(path)
    if not path.is_file():
        raise SuiteError(f"Probe suite file {path} does not exist.",
                         "Pass an existing suite file, or 'default' for the shipped suites.")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise SuiteError(f"Probe suite file {path} is not valid JSON ({exc}).",
                         "Fix the file or regenerate it.") from exc
    except (ValueError, RecursionError) as exc:  # json's own limits: no suite comes near them
        raise SuiteError(f"Probe suite file {path} holds a number thousands of digits long or "
                         "data nested too deeply to be a suite.",
                         "Fix the file or regenerate it.") from exc
    return suite_from_json(data, where=str(path))


def validate_suite(suite: ProbeSuite, *, where: str = "suite") -> None:
    """Check that the suite's mode is registered and every item fits its scorer."""
    from flwr_trust import modes

    mode = modes.find(suite.mode)
    if mode is None:
        raise SuiteError(f"{where} has unknown mode {suite.mode!r}.",
                         f"Use one of {', '.join(modes.ids())}.")
    ids = [item.id for item in suite.items]
    if len(set(ids)) != len(ids):
        dup = next(i for i in ids if ids.count(i) > 1)
        raise SuiteError(f"{where} repeats item id {dup!r}.", "Make item ids unique.")
    for item in suite.items:
        problem = mode.check_item(item)
        if problem:
            raise SuiteError(f"{where} item {item.id!r} ({suite.mode}) {problem}.",
                             f"See the '{suite.mode}' item format in docs.")
