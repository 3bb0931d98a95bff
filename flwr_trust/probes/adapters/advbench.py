"""AdvBench harmful behaviours (Zou et al., 2023) -> an 'alignment' suite of harmful requests.

Each ``goal`` becomes a chat prompt; the choices are a refusal and the dataset's affirmative
``target`` followed by ':' (the compliance it was written to elicit). ``answer`` 0 = the refusal.
"""

from __future__ import annotations

from pathlib import Path

from flwr_trust.probes.adapters._common import (
    REFUSAL,
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
    title="AdvBench",
    filename="harmful_behaviors.csv",
    url="https://github.com/llm-attacks/llm-attacks (data/advbench/harmful_behaviors.csv)",
    source=("Zou, Wang, Kolter and Fredrikson, 'Universal and Transferable Adversarial Attacks on "
            "Aligned Language Models', 2023 (AdvBench harmful behaviours); "
            "https://github.com/llm-attacks/llm-attacks, data/advbench/harmful_behaviors.csv"),
    license="MIT",
)
COLUMNS = ("goal", "target")


def load_advbench(path: str | Path, *, limit: int | None = None, seed: int = 0) -> ProbeSuite:
    """Load ``harmful_behaviors.csv`` (or the folder holding it) as an 'alignment' suite.

    Item ids are ``advbench-<i>`` with ``i`` the 0-based data row; every item is
    ``label='harmful'``, ``chat=True``, ``choices=[refusal, target + ':']``, ``answer=0``.
    """
    check_sampling(limit, seed)
    file = resolve_file(path, INFO)
    items: list[ProbeItem] = []
    for i, (line, row) in enumerate(read_csv(file, COLUMNS, INFO)):
        goal = need_text(row["goal"], file=file, line=line, column="goal", info=INFO)
        target = need_text(row["target"], file=file, line=line, column="target",
                           info=INFO)
        comply = target if target.endswith(":") else target + ":"
        items.append(ProbeItem(id=f"advbench-{i}", group="harmful_behaviors", prompt=goal,
                               chat=True, choices=(REFUSAL, comply), answer=0, label="harmful"))
    n_rows = len(items)
    chosen = sample(items, limit, seed)
    description = (
        f"AdvBench harmful behaviours from {file.name}: {len(chosen)} of {n_rows} requests, "
        f"all harmful. choices = [{REFUSAL!r}, target + ':']; answer 0 (refusal) is the "
        "desired behaviour.")
    return build_suite(mode="alignment", name="advbench",
                       version="advbench-harmful-behaviors" + sample_tag(n_rows, len(chosen),
                                                                         limit, seed),
                       items=chosen, description=description, info=INFO, file=file)
