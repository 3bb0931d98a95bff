"""Shared helpers for the dataset adapters: path resolution, checked reading, sampling.

Every problem with a user's dataset file is raised as a `DatasetAdapterError` that names the file
(and the line or column where it applies) and says what to do.
"""

from __future__ import annotations

import csv
import json
import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from flwr_trust.errors import DatasetAdapterError, SuiteError
from flwr_trust.probes.suite import ProbeItem, ProbeSuite, validate_suite

REFUSAL = "I'm sorry, but I can't help with that."


@dataclass(frozen=True)
class DatasetInfo:
    """What an adapter tells the user about its dataset (used in messages and suite metadata)."""

    title: str  # human name, e.g. "CrowS-Pairs"
    filename: str  # expected file name (or glob for multi-file datasets)
    url: str  # where to download it
    source: str  # citation + URL, stored in the suite
    license: str


def resolve_file(path: str | Path, info: DatasetInfo) -> Path:
    """The dataset file: `path` itself, or `info.filename` inside the folder `path`.

    A folder is searched for the expected name directly, then up to two levels down (so a clone
    of the upstream repository works), then for a single file with the same extension.
    """
    p = _existing(path, info)
    if p.is_file():
        return p
    direct = p / info.filename
    if direct.is_file():
        return direct
    nested = sorted(p.glob(f"*/{info.filename}")) + sorted(p.glob(f"*/*/{info.filename}"))
    if len(nested) == 1:
        return nested[0]
    suffix = Path(info.filename).suffix
    same_kind = sorted(f for f in p.iterdir() if f.is_file() and f.suffix == suffix)
    if len(same_kind) == 1 and not nested:
        return same_kind[0]
    found = ", ".join(f.name for f in (nested or same_kind)) or "none"
    raise DatasetAdapterError(
        f"The folder {p} does not hold the {info.title} file {info.filename} "
        f"({suffix} files found: {found}).",
        f"Pass the path of {info.filename} itself, or the folder that holds it "
        f"(download it from {info.url}).",
    )


def _existing(path: str | Path, info: DatasetInfo) -> Path:
    if not isinstance(path, str | Path) or not str(path):
        raise DatasetAdapterError(
            f"The {info.title} path {path!r} is not a file or folder path.",
            f"Pass the path of {info.filename} or of the folder that holds it.")
    p = Path(path).expanduser()
    if not p.exists():
        raise DatasetAdapterError(
            f"The {info.title} path {p} does not exist.",
            f"Download {info.filename} from {info.url} and pass its path "
            "(or the folder that holds it).",
        )
    return p


def existing_path(path: str | Path, info: DatasetInfo) -> Path:
    """`path` as a Path, or a DatasetAdapterError if it does not exist."""
    return _existing(path, info)


def read_csv(file: Path, columns: Sequence[str], info: DatasetInfo) -> Iterator[
        tuple[int, dict[str, str]]]:
    """Yield (line number where the record starts, row) for each data row of a CSV file.

    Checks that the file is UTF-8, has a header with all `columns`, that every row has as many
    fields as the header, and that it has at least one data row.
    """
    try:
        with file.open(encoding="utf-8-sig", newline="") as fh:
            reader = csv.reader(fh)
            try:
                header = next(reader)
            except StopIteration:
                raise DatasetAdapterError(
                    f"The {info.title} file {file} is empty.",
                    f"Re-download {info.filename} from {info.url}.") from None
            missing = [c for c in columns if c not in header]
            if missing:
                raise DatasetAdapterError(
                    f"The {info.title} file {file} has no column(s) {missing} in its header "
                    f"(line 1 has {header}).",
                    f"Pass the {info.filename} file of {info.url}, whose header has columns "
                    f"{list(columns)}.")
            n_rows = 0
            start = reader.line_num + 1
            for fields in reader:
                if not fields or fields == [""]:  # a blank line
                    start = reader.line_num + 1
                    continue
                if len(fields) != len(header):
                    raise DatasetAdapterError(
                        f"The {info.title} file {file} line {start} has {len(fields)} fields "
                        f"but the header has {len(header)} ({header}).",
                        "Fix that line (fields that contain commas or quotes must be quoted), "
                        f"or re-download {info.filename} from {info.url}.")
                n_rows += 1
                yield start, dict(zip(header, fields, strict=True))
                start = reader.line_num + 1
    except UnicodeDecodeError as exc:
        raise DatasetAdapterError(
            f"The {info.title} file {file} is not UTF-8 text ({exc.reason} at byte {exc.start}).",
            f"Pass the original {info.filename} (a UTF-8 CSV file) from {info.url}.") from exc
    except csv.Error as exc:
        raise DatasetAdapterError(
            f"The {info.title} file {file} is not a readable CSV file ({exc}).",
            f"Re-download {info.filename} from {info.url}.") from exc
    if n_rows == 0:
        raise DatasetAdapterError(
            f"The {info.title} file {file} has a header but no data rows.",
            f"Re-download {info.filename} from {info.url}.")


def read_jsonl(file: Path, info: DatasetInfo) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield (line number, object) for each non-blank line of a JSON-lines file."""
    n_rows = 0
    try:
        with file.open(encoding="utf-8-sig") as fh:
            for lineno, line in enumerate(fh, start=1):
                if not line.strip():
                    continue
                try:
                    obj = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise DatasetAdapterError(
                        f"The {info.title} file {file} line {lineno} column {exc.colno} is not "
                        f"valid JSON ({exc.msg}).",
                        "Each line must be one complete JSON object: fix or delete that line, "
                        f"or re-download the file from {info.url}.") from exc
                if not isinstance(obj, dict):
                    raise DatasetAdapterError(
                        f"The {info.title} file {file} line {lineno} is JSON "
                        f"{type(obj).__name__}, not an object.",
                        f"Each line must be one JSON object; re-download the file from {info.url}.")
                n_rows += 1
                yield lineno, obj
    except UnicodeDecodeError as exc:
        raise DatasetAdapterError(
            f"The {info.title} file {file} is not UTF-8 text ({exc.reason} at byte {exc.start}).",
            f"Pass the original JSON-lines file from {info.url}.") from exc
    if n_rows == 0:
        raise DatasetAdapterError(
            f"The {info.title} file {file} is empty (no JSON lines).",
            f"Re-download it from {info.url}.")


def need_text(value: Any, *, file: Path, line: int, column: str, info: DatasetInfo) -> str:
    """`value` stripped, if it is a non-blank string; else an error naming file, line, column."""
    if not isinstance(value, str) or not value.strip():
        what = "is empty" if isinstance(value, str) or value is None else (
            f"is {type(value).__name__} {value!r}, not text")
        raise DatasetAdapterError(
            f"The {info.title} file {file} line {line}: column '{column}' {what}.",
            f"Fill in '{column}' or delete that row, or re-download the file from {info.url}.")
    return value.strip()


def check_sampling(limit: Any, seed: Any) -> None:
    if limit is not None and (not isinstance(limit, int) or isinstance(limit, bool) or limit < 1):
        raise DatasetAdapterError(f"limit={limit!r} is not a positive whole number.",
                                  "Pass limit=None for all rows, or a count such as limit=200.")
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise DatasetAdapterError(f"seed={seed!r} is not a whole number.",
                                  "Pass an integer seed such as seed=0.")


def sample(items: Sequence[ProbeItem], limit: int | None, seed: int) -> list[ProbeItem]:
    """All items, or `limit` of them drawn with a seeded RNG, kept in their file order."""
    if limit is None or limit >= len(items):
        return list(items)
    chosen = sorted(random.Random(seed).sample(range(len(items)), limit))
    return [items[i] for i in chosen]


def sample_tag(n_rows: int, n_items: int, limit: int | None, seed: int) -> str:
    """Version suffix: '/<rows>' and, for a sample, '/sample-<n>-seed-<seed>'."""
    tag = f"/{n_rows}"
    if limit is not None and limit < n_rows:
        tag += f"/sample-{n_items}-seed-{seed}"
    return tag


def check_unique(items: Sequence[ProbeItem], where: dict[str, str], info: DatasetInfo) -> None:
    """Raise if two rows give the same item id (`where` maps id -> 'file line N')."""
    seen: set[str] = set()
    for item in items:
        if item.id in seen:
            raise DatasetAdapterError(
                f"The {info.title} data has two rows with id {item.id!r} (the second at "
                f"{where.get(item.id, '?')}).",
                "Remove the duplicate row, or re-download the original file from "
                f"{info.url}.")
        seen.add(item.id)


def build_suite(*, mode: str, name: str, version: str, items: Sequence[ProbeItem],
                description: str, info: DatasetInfo, file: Path | str) -> ProbeSuite:
    """Make the suite and check it fits its mode, turning a SuiteError into an adapter error."""
    suite = ProbeSuite(mode=mode, name=name, version=version, items=tuple(items),
                       description=description, source=info.source, license=info.license)
    try:
        validate_suite(suite, where=f"{info.title} suite from {file}")
    except SuiteError as exc:
        raise DatasetAdapterError(
            f"The {info.title} data in {file} does not make a valid '{mode}' suite: {exc.problem}",
            f"Check the file against the original from {info.url}.") from exc
    return suite
