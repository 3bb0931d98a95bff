"""Score a model on a set of probe suites in one batched pass and build its BehaviorProfile."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from flwr_trust import modes as registry
from flwr_trust.errors import SuiteError
from flwr_trust.probes.suite import ProbeSuite
from flwr_trust.scoring.encoding import cached_requests
from flwr_trust.scoring.engine import score_requests, sharing_used
from flwr_trust.scoring.placement import pick_placement
from flwr_trust.scoring.prefixes import forwarded_tokens
from flwr_trust.scoring.profile import BehaviorProfile
from flwr_trust.scoring.requests import Precision, Request, Scores


def _as_mapping(suites: Mapping[str, ProbeSuite] | Iterable[ProbeSuite]) -> dict[str, ProbeSuite]:
    if isinstance(suites, Mapping):
        return dict(suites)
    out: dict[str, ProbeSuite] = {}
    for suite in suites:
        if suite.mode in out:
            raise SuiteError(f"Two suites for mode {suite.mode!r} were given.",
                             "Pass at most one suite per mode (merge them into one file).")
        out[suite.mode] = suite
    return out


def profile_model(model: Any, tokenizer: Any,
                  suites: Mapping[str, ProbeSuite] | Iterable[ProbeSuite], *,
                  name: str = "", precision: Precision = "fp32",
                  max_batch_tokens: int = 8192, common_prefix: bool = True) -> BehaviorProfile:
    """Score `model` on every suite with one batched pass over all their requests.

    common_prefix=False runs every context whole (no prefix shared across items): the same
    numbers to float rounding, for comparing (bench/probe_tokens.py)."""
    by_mode = _as_mapping(suites)
    all_requests: list[Request] = []
    spans: dict[str, tuple[int, int]] = {}
    for mode, suite in by_mode.items():
        if registry.find(mode) is None:
            raise SuiteError(f"No scorer for mode {mode!r}.",
                             f"Use one of {', '.join(registry.ids())}.")
        reqs = cached_requests(suite, tokenizer, registry.get(mode).requests)
        spans[mode] = (len(all_requests), len(all_requests) + len(reqs))
        all_requests.extend(reqs)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None \
        else tokenizer.eos_token_id
    was_training = getattr(model, "training", False)
    model.eval()
    try:
        scores = score_requests(model, all_requests, pad_id=int(pad_id), precision=precision,
                                max_batch_tokens=max_batch_tokens, common_prefix=common_prefix)
    finally:
        if was_training:
            model.train()
    metrics = {}
    for mode, (start, stop) in spans.items():
        part = Scores(scores.logprob[start:stop], scores.n_tokens[start:stop])
        declared = registry.get(mode)
        metrics[mode] = declared.stamp(declared.compute(by_mode[mode], part))
    return BehaviorProfile(metrics, {m: s.hash for m, s in by_mode.items()}, model=name,
                           extra={"precision": pick_placement(model, precision).label,
                                  "tokens": int(sum(len(r.context) + len(r.continuation)
                                                    for r in all_requests)),
                                  "forwarded_tokens": forwarded_tokens(all_requests, sharing_used(
                                      all_requests, common_prefix=common_prefix))})


def profile_arrays(bridge: Any, arrays: Any,
                   suites: Mapping[str, ProbeSuite] | Iterable[ProbeSuite], *,
                   name: str = "", precision: Precision = "fp32") -> BehaviorProfile:
    """Load `arrays` (an ArrayRecord or state dict) into the bridge's model and profile it."""
    bridge.load_arrays(arrays)
    return profile_model(bridge.model, bridge.tokenizer, suites, name=name or bridge.base.name,
                         precision=precision)
