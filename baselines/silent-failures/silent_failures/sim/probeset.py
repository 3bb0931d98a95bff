"""The baselines' fixed probe set, and the held-out items the ground truth is measured on.

TrustGuard compares what clients report with a reference probed by the server at round 0. Its
detectors treat that reference as exact, which holds when both sides score the same items; with
a per-round client sample drawn differently from the server's subset they would compare
different items. The baselines therefore give server and clients one fixed, stratified set of
`probe-items` items per mode (`flwr_trust.probes.round_sample`, round 0): clients get it
as a mapping (make_trust_mod(suites=...)), the server as a folder of suite files
(trust.suites), so both hold identical content and the suite hashes match.

The ground truth uses the other items of each suite, so a monitor is never judged on the items
it watched.
"""

from __future__ import annotations

import math
from functools import cache
from pathlib import Path

from flwr_trust.models.default_model import cache_root
from flwr_trust.modes import MODES
from flwr_trust.probes.defaults import default_suite
from flwr_trust.probes.suite import ProbeSuite, combined_hash


def items_for(mode: str, items: int) -> int:
    """Items of `mode` in the probe set. Memorization gets half (rounded up): each canary is
    ranked against 20 candidate continuations, about 7x the cost of another mode's item
    (measured: 0.57 s vs 0.03-0.14 s per item on SmolLM2, bf16, one thread)."""
    if mode == "memorization" and items > 0:
        return math.ceil(items / 2)
    return items


@cache
def probe_set(items: int) -> dict[str, ProbeSuite]:
    """mode -> the fixed probe suite: a stratified window of `items_for(mode, items)` items
    (0 = whole suite)."""
    from flwr_trust.probes import round_sample

    return {m: round_sample(default_suite(m), 0, items_for(m, items)) for m in MODES}


def probe_set_folder(items: int) -> Path:
    """The probe set as suite files in the flwr-trust cache (written once per content hash)."""
    suites = probe_set(items)
    digest = combined_hash({m: s.hash for m, s in suites.items()})[:12]
    folder = cache_root() / "baseline-suites" / f"items{items}-{digest}"
    if not all((folder / f"{m}.json").is_file() for m in suites):
        folder.mkdir(parents=True, exist_ok=True)
        for mode, suite in suites.items():
            suite.save(folder / f"{mode}.json")
    return folder


def heldout_suite(mode: str, probe_items: int, eval_items: int) -> ProbeSuite:
    """Items of `mode` outside the probe set: all of them, or a stratified `eval_items` of them
    (the whole suite when the probe set is the whole suite)."""
    from flwr_trust.probes import round_sample

    suite = default_suite(mode)
    watched = {item.id for item in probe_set(probe_items)[mode].items}
    rest = [i for i, item in enumerate(suite.items) if item.id not in watched]
    if not rest:
        return round_sample(suite, 0, eval_items)
    held = suite.subset(rest, name_suffix="@heldout") if len(rest) < len(suite.items) else suite
    return round_sample(held, 0, eval_items)
