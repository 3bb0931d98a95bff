"""The suites this package ships (one per registered mode) and loading suites by name or path."""

from __future__ import annotations

from collections.abc import Iterable
from functools import cache
from pathlib import Path

from flwr_trust.errors import SuiteError
from flwr_trust.probes.suite import ProbeSuite, load_suite

DATA_DIR = Path(__file__).parent / "data"


@cache
def default_suite(mode: str) -> ProbeSuite:
    """The shipped suite for one mode (loaded once per process)."""
    from flwr_trust import modes

    found = modes.find(mode)
    if found is None or not found.suite_file:
        shipped = ", ".join(m for m in modes.ids() if modes.get(m).suite_file)
        raise SuiteError(f"There is no default suite for mode {mode!r}.",
                         f"Use one of {shipped}, or pass a suite file.")
    return load_suite(DATA_DIR / found.suite_file)


def default_suites(modes: Iterable[str] | None = None) -> dict[str, ProbeSuite]:
    """The shipped suite of each of `modes` (default: every registered mode)."""
    from flwr_trust import modes as registry

    return {mode: default_suite(mode) for mode in (registry.ids() if modes is None else modes)}


def load_suites(spec: str | Path = "default", modes: Iterable[str] | None = None
                ) -> dict[str, ProbeSuite]:
    """'default', one suite file, or a folder of suite files (*.json), as mode -> suite.

    A file or folder replaces the default suites of the modes it covers; only `modes` are kept
    (default: every registered mode).
    """
    if str(spec) == "default":
        return default_suites(modes)
    path = Path(spec)
    if path.is_dir():
        files = sorted(path.glob("*.json"))
        if not files:
            raise SuiteError(f"Suite folder {path} has no *.json files.",
                             "Put flwr-trust suite files in it, or pass 'default'.")
    elif path.is_file():
        files = [path]
    else:
        raise SuiteError(f"Suite {spec!s} is neither 'default' nor an existing file or folder.",
                         "Pass 'default', a suite .json file, or a folder of them.")
    out: dict[str, ProbeSuite] = {}
    for file in files:
        suite = load_suite(file)
        if suite.mode in out:
            raise SuiteError(f"{path} has two suites for mode {suite.mode!r}.",
                             "Keep one suite file per mode in a folder.")
        out[suite.mode] = suite
    wanted = None if modes is None else set(modes)
    return {m: s for m, s in out.items() if wanted is None or m in wanted}
