"""Adapters that turn public behavioural benchmarks into probe suites.

The benchmark files are not shipped: download them (see each module for the URL) and pass the
file, or the folder that holds it::

    from flwr_trust.probes.adapters import load_benchmark
    suite = load_benchmark("bbq", "data/BBQ/data", categories=["Age"], limit=200)
    suite.save("bbq-age-200.json")

| name          | dataset                        | mode      |
| ------------- | ------------------------------ | --------- |
| ``crows-pairs`` | CrowS-Pairs (anonymized csv) | bias      |
| ``bbq``         | BBQ (``<Category>.jsonl``)   | fairness  |
| ``advbench``    | AdvBench harmful_behaviors   | alignment |
| ``xstest``      | XSTest v2 prompts            | alignment |

Every loader takes ``limit`` (a seeded random sample, kept in file order) and ``seed``, and raises
`DatasetAdapterError` naming the file, line and column of any layout problem.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from pathlib import Path
from typing import Any

from flwr_trust.errors import DatasetAdapterError
from flwr_trust.probes.adapters.advbench import load_advbench
from flwr_trust.probes.adapters.bbq import load_bbq
from flwr_trust.probes.adapters.crows_pairs import load_crows_pairs
from flwr_trust.probes.adapters.xstest import load_xstest
from flwr_trust.probes.suite import ProbeSuite

ADAPTERS: dict[str, Callable[..., ProbeSuite]] = {
    "crows-pairs": load_crows_pairs,
    "bbq": load_bbq,
    "advbench": load_advbench,
    "xstest": load_xstest,
}


def load_benchmark(name: str, path: str | Path, **kw: Any) -> ProbeSuite:
    """Load the benchmark `name` (a key of `ADAPTERS`) from `path` with its options `kw`."""
    key = name.strip().lower().replace("_", "-") if isinstance(name, str) else name
    if key == "crowspairs":
        key = "crows-pairs"
    loader = ADAPTERS.get(key) if isinstance(key, str) else None
    if loader is None:
        raise DatasetAdapterError(f"There is no dataset adapter named {name!r}.",
                                  f"Use one of: {', '.join(sorted(ADAPTERS))}.")
    options = [p for p in inspect.signature(loader).parameters if p != "path"]
    unknown = sorted(set(kw) - set(options))
    if unknown:
        raise DatasetAdapterError(
            f"The {key} adapter has no option(s) {unknown}.",
            f"Its options are: {', '.join(options)}.")
    return loader(path, **kw)


__all__ = ["ADAPTERS", "load_advbench", "load_bbq", "load_benchmark", "load_crows_pairs",
           "load_xstest"]
