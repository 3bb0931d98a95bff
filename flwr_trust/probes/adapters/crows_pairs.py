"""CrowS-Pairs (Nangia et al., EMNLP 2020) -> a 'bias' suite.

Each row is a minimal pair: ``sent_more`` (the more stereotyping sentence) and ``sent_less``.
Both rows marked ``stereo`` and ``antistereo`` keep that convention (the original metric and
lm-evaluation-harness count a pair as biased when the model prefers ``sent_more``), so every item
has ``choices = [sent_more, sent_less]`` and ``answer = 0``. Sentences are kept verbatim apart
from surrounding whitespace.
"""

from __future__ import annotations

from pathlib import Path

from flwr_trust.errors import DatasetAdapterError
from flwr_trust.probes.adapters._common import (
    DatasetInfo,
    build_suite,
    check_sampling,
    need_text,
    read_csv,
    resolve_file,
    sample,
    sample_tag,
)
from flwr_trust.probes.suite import ProbeItem, ProbeSuite

INFO = DatasetInfo(
    title="CrowS-Pairs",
    filename="crows_pairs_anonymized.csv",
    url="https://github.com/nyu-mll/crows-pairs (data/crows_pairs_anonymized.csv)",
    source=("Nangia, Vania, Bhalerao and Bowman, 'CrowS-Pairs: A Challenge Dataset for Measuring "
            "Social Biases in Masked Language Models', EMNLP 2020; "
            "https://github.com/nyu-mll/crows-pairs, data/crows_pairs_anonymized.csv"),
    license="CC BY-SA 4.0",
)
COLUMNS = ("sent_more", "sent_less", "stereo_antistereo", "bias_type")
DIRECTIONS = ("stereo", "antistereo")


def load_crows_pairs(path: str | Path, *, limit: int | None = None, seed: int = 0) -> ProbeSuite:
    """Load ``crows_pairs_anonymized.csv`` (or the folder holding it) as a 'bias' suite.

    Item ids are ``crows-<i>`` with ``i`` the 0-based data row (the file's unnamed index column);
    ``group`` is ``bias_type``. ``limit`` keeps a seeded random sample in file order.
    """
    check_sampling(limit, seed)
    file = resolve_file(path, INFO)
    items: list[ProbeItem] = []
    n_anti = 0
    for i, (line, row) in enumerate(read_csv(file, COLUMNS, INFO)):
        more = need_text(row["sent_more"], file=file, line=line, column="sent_more", info=INFO)
        less = need_text(row["sent_less"], file=file, line=line, column="sent_less", info=INFO)
        bias_type = need_text(row["bias_type"], file=file, line=line, column="bias_type",
                              info=INFO)
        direction = row["stereo_antistereo"].strip()
        if direction not in DIRECTIONS:
            raise DatasetAdapterError(
                f"The CrowS-Pairs file {file} line {line}: column 'stereo_antistereo' is "
                f"{direction!r}, expected 'stereo' or 'antistereo'.",
                f"Fix that row, or re-download the file from {INFO.url}.")
        n_anti += direction == "antistereo"
        items.append(ProbeItem(id=f"crows-{i}", group=bias_type, choices=(more, less), answer=0))
    n_rows = len(items)
    chosen = sample(items, limit, seed)
    description = (
        f"CrowS-Pairs minimal pairs from {file.name}: {len(chosen)} of {n_rows} pairs "
        f"({n_anti} of all rows are 'antistereo'). choices = [sent_more, sent_less]; answer 0 is "
        "the more stereotyping sentence for both directions. Licensed CC BY-SA 4.0: "
        "share derived suites under the same licence.")
    return build_suite(mode="bias", name="crows-pairs",
                       version="crows-pairs-anonymized" + sample_tag(n_rows, len(chosen), limit,
                                                                    seed),
                       items=chosen, description=description, info=INFO, file=file)
