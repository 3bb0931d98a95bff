"""BBQ (Parrish et al., Findings of ACL 2022) -> a 'fairness' suite.

Each example is a three-way multiple-choice question about people from a social group, asked
after an ambiguous context (the right answer is the "unknown" option) or a disambiguated one.
``prompt = f"{context}\\nQuestion: {question}\\nAnswer:"``, ``choices = [" " + ans0, " " + ans1,
" " + ans2]``, ``answer = label``, ``group = category`` and ``label = context_condition``.
Text fields are stripped of surrounding whitespace (some published answer options end with a
space).
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from flwr_trust.errors import DatasetAdapterError
from flwr_trust.probes.adapters._common import (
    DatasetInfo,
    build_suite,
    check_sampling,
    check_unique,
    existing_path,
    need_text,
    read_jsonl,
    sample,
    sample_tag,
)
from flwr_trust.probes.suite import ProbeItem, ProbeSuite

INFO = DatasetInfo(
    title="BBQ",
    filename="<Category>.jsonl",
    url="https://github.com/nyu-mll/BBQ (data/*.jsonl)",
    source=("Parrish, Chen, Nangia, Padmakumar, Phang, Thompson, Htut and Bowman, 'BBQ: A "
            "Hand-Built Bias Benchmark for Question Answering', Findings of ACL 2022; "
            "https://github.com/nyu-mll/BBQ, data/*.jsonl"),
    license="CC BY 4.0",
)
CONDITIONS = ("ambig", "disambig", "both")
TEXT_KEYS = ("context", "question", "ans0", "ans1", "ans2")


def load_bbq(path: str | Path, *, categories: str | Iterable[str] | None = None,
             context_condition: str = "ambig", limit: int | None = None,
             seed: int = 0) -> ProbeSuite:
    """Load BBQ ``*.jsonl`` files (a folder of them, or one file) as a 'fairness' suite.

    ``categories`` picks files / rows by category name (case-insensitive, e.g. ``"Age"`` or
    ``["Age", "Religion"]``; default all found). ``context_condition`` keeps ``"ambig"`` rows
    (default: where bias shows, since the right answer is "unknown"), ``"disambig"`` rows, or
    ``"both"``. Item ids are ``bbq-<category>-<example_id>``.
    """
    check_sampling(limit, seed)
    if context_condition not in CONDITIONS:
        raise DatasetAdapterError(
            f"context_condition={context_condition!r} is not a BBQ context condition.",
            f"Use one of {', '.join(repr(c) for c in CONDITIONS)}.")
    names = _category_names(categories)
    wanted = None if names is None else {n.lower() for n in names}
    files = _files(path, names)
    items: list[ProbeItem] = []
    where: dict[str, str] = {}
    n_seen = 0
    found_categories: set[str] = set()
    for file in files:
        for line, row in read_jsonl(file, INFO):
            item = _item(row, file, line)
            found_categories.add(item.group)
            if wanted is not None and item.group.lower() not in wanted:
                continue
            n_seen += 1
            if context_condition != "both" and item.label != context_condition:
                continue
            items.append(item)
            where[item.id] = f"{file} line {line}"
    if not items:
        what = f"categories {names}" if names is not None else "any category"
        raise DatasetAdapterError(
            f"The BBQ data at {path} has no rows for {what} with context_condition "
            f"{context_condition!r} (categories found: {sorted(found_categories) or 'none'}).",
            "Pick categories and a context_condition that the files contain.")
    check_unique(items, where, INFO)
    n_rows = len(items)
    chosen = sample(items, limit, seed)
    cats = sorted({item.group for item in items})
    description = (
        f"BBQ questions ({context_condition} contexts) for {', '.join(cats)}: {len(chosen)} of "
        f"{n_rows} selected rows ({n_seen} rows in these categories). "
        'prompt = context + "\\nQuestion: " + question + "\\nAnswer:"; choices are the three '
        "answer options with a leading space; answer = BBQ label; item label = context "
        "condition.")
    version = f"bbq-{'+'.join(cats)}-{context_condition}" + sample_tag(n_rows, len(chosen),
                                                                       limit, seed)
    return build_suite(mode="fairness", name="bbq", version=version, items=chosen,
                       description=description, info=INFO, file=path)


def _category_names(categories: str | Iterable[str] | None) -> list[str] | None:
    if categories is None:
        return None
    names = [categories] if isinstance(categories, str) else list(categories)
    if not names or not all(isinstance(n, str) and n.strip() for n in names):
        raise DatasetAdapterError(
            f"categories={categories!r} is not a list of BBQ category names.",
            "Pass None for all categories, or names such as ['Age', 'Religion'].")
    return [n.strip() for n in names]


def _files(path: str | Path, names: list[str] | None) -> list[Path]:
    """The jsonl files to read, in case-insensitive name order (so the order of `names` and
    naming every category vs passing None do not change the suite)."""
    p = existing_path(path, INFO)
    if p.is_file():
        return [p]
    files = sorted(p.glob("*.jsonl")) or sorted((p / "data").glob("*.jsonl"))
    files.sort(key=lambda f: (f.stem.lower(), f.name))
    if not files:
        raise DatasetAdapterError(
            f"The BBQ folder {p} holds no *.jsonl files.",
            f"Pass the folder of BBQ category files (e.g. Age.jsonl) from {INFO.url}, "
            "or one such file.")
    if names is None:
        return files
    by_name = {f.stem.lower(): f for f in files}
    unknown = [n for n in names if n.lower() not in by_name]
    if unknown:
        raise DatasetAdapterError(
            f"The BBQ folder {p} has no file for categories {unknown} "
            f"(available: {', '.join(f.stem for f in files)}).",
            "Use category names from that list (case does not matter), or add the missing "
            f"<Category>.jsonl files from {INFO.url}.")
    wanted = {n.lower() for n in names}
    return [f for f in files if f.stem.lower() in wanted]


def _item(row: dict, file: Path, line: int) -> ProbeItem:
    def bad(problem: str) -> DatasetAdapterError:
        return DatasetAdapterError(
            f"The BBQ file {file} line {line}: {problem}.",
            f"Fix or delete that line, or re-download the file from {INFO.url}.")

    missing = [k for k in ("example_id", "category", "context_condition", "label", *TEXT_KEYS)
               if k not in row]
    if missing:
        raise bad(f"the JSON object has no key(s) {missing}")
    # need_text strips: 124 answer options in the published files end with a space, which
    # would cost those options an extra token of log-likelihood.
    text = {k: need_text(row[k], file=file, line=line, column=k, info=INFO) for k in TEXT_KEYS}
    category = need_text(row["category"], file=file, line=line, column="category",
                         info=INFO)
    condition = row["context_condition"]
    if condition not in ("ambig", "disambig"):
        raise bad(f"'context_condition' is {condition!r}, expected 'ambig' or 'disambig'")
    label = row["label"]
    if not isinstance(label, int) or isinstance(label, bool) or not 0 <= label <= 2:
        raise bad(f"'label' is {label!r}, expected 0, 1 or 2 (the index of the right answer)")
    example_id = row["example_id"]
    if isinstance(example_id, bool) or not isinstance(example_id, int | str) or (
            isinstance(example_id, str) and not example_id.strip()):
        raise bad(f"'example_id' is {example_id!r}, expected a number")
    prompt = f"{text['context']}\nQuestion: {text['question']}\nAnswer:"
    choices = tuple(" " + text[k] for k in ("ans0", "ans1", "ans2"))
    return ProbeItem(id=f"bbq-{category}-{example_id}", group=category, prompt=prompt,
                     choices=choices, answer=label, label=condition)
