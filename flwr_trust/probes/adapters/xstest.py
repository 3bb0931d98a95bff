"""XSTest v2 (Röttger et al., NAACL 2024) -> an 'alignment' suite for over-refusal vs refusal.

250 prompts are safe but look unsafe (a model should answer them) and 200 are unsafe contrasts
(a model should refuse). ``label`` is 'safe' or 'harmful' (XSTest's 'unsafe'); ``group`` is the
prompt ``type``. Choices are a refusal and a neutral compliance opening; ``answer`` 0 = refusal.
"""

from __future__ import annotations

from pathlib import Path

from flwr_trust.errors import DatasetAdapterError
from flwr_trust.probes.adapters._common import (
    REFUSAL,
    DatasetInfo,
    build_suite,
    check_sampling,
    check_unique,
    need_text,
    read_csv,
    resolve_file,
    sample,
    sample_tag,
)
from flwr_trust.probes.suite import ProbeItem, ProbeSuite

INFO = DatasetInfo(
    title="XSTest",
    filename="xstest_prompts.csv",
    url="https://github.com/paul-rottger/exaggerated-safety (xstest_prompts.csv)",
    source=("Röttger, Kirk, Vidgen, Attanasio, Bianchi and Hovy, 'XSTest: A Test Suite for "
            "Identifying Exaggerated Safety Behaviours in Large Language Models', NAACL 2024; "
            "https://github.com/paul-rottger/exaggerated-safety, xstest_prompts.csv"),
    license="CC BY 4.0",
)
COLUMNS = ("prompt", "type", "label")  # 'id' is used when present
COMPLY = "Sure, here is some information about that:"
LABELS = {"safe": "safe", "unsafe": "harmful"}


def load_xstest(path: str | Path, *, limit: int | None = None, seed: int = 0) -> ProbeSuite:
    """Load ``xstest_prompts.csv`` (or the folder holding it) as an 'alignment' suite.

    Item ids are ``xstest-<id>`` (the file's ``id`` column, else the 1-based row number).
    """
    check_sampling(limit, seed)
    file = resolve_file(path, INFO)
    items: list[ProbeItem] = []
    where: dict[str, str] = {}
    for i, (line, row) in enumerate(read_csv(file, COLUMNS, INFO)):
        prompt = need_text(row["prompt"], file=file, line=line, column="prompt", info=INFO)
        kind = need_text(row["type"], file=file, line=line, column="type", info=INFO)
        raw_label = row["label"].strip().lower()
        if raw_label not in LABELS:
            raise DatasetAdapterError(
                f"The XSTest file {file} line {line}: column 'label' is {row['label']!r}, "
                "expected 'safe' or 'unsafe'.",
                f"Fix that row, or re-download the file from {INFO.url}.")
        item_id = f"xstest-{(row.get('id') or '').strip() or i + 1}"
        items.append(ProbeItem(id=item_id, group=kind, prompt=prompt, chat=True,
                               choices=(REFUSAL, COMPLY), answer=0, label=LABELS[raw_label]))
        where[item_id] = f"{file} line {line}"
    check_unique(items, where, INFO)
    n_rows = len(items)
    n_safe = sum(item.label == "safe" for item in items)
    chosen = sample(items, limit, seed)
    description = (
        f"XSTest v2 prompts from {file.name}: {len(chosen)} of {n_rows} "
        f"({n_safe} safe, {n_rows - n_safe} unsafe in the file). label 'safe' items should be "
        f"answered, 'harmful' ones refused; choices = [{REFUSAL!r}, {COMPLY!r}], answer 0 "
        "is the refusal.")
    return build_suite(mode="alignment", name="xstest",
                       version="xstest-v2" + sample_tag(n_rows, len(chosen), limit, seed),
                       items=chosen, description=description, info=INFO, file=file)
