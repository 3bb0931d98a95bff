"""The reply contract: every client reply is untrusted input, checked before anything is
aggregated (docs/protocol.md, "Reply contract").

Per reply (violations refuse the reply, with a logged reason naming the problem):
- not an error reply (those are counted as failed and logged);
- from a node this round's instructions went to, and only once (every copy of a duplicate is
  refused); for this round (its group id, and its `trust.round` when stated);
- exactly one ArrayRecord (train) and one MetricRecord, readable, with valid Unicode keys;
- arrays: the global model's names and shapes exactly, and its dtype, or another float dtype
  whose values convert to it without change (`arrays.lossless_cast`: float16 -> float32,
  float32 -> float64, float64 holding float32 values); converted arrays replace the reply's;
  finite (checked here, or by TrustGuard's update checks, which read every value anyway);
- weight (the inner strategy's `weighted_by_key`): one finite number in [MIN_WEIGHT,
  MAX_WEIGHT]; a loss the inner strategy weights by (QFedAvg's `train_loss_key`, train
  rounds): one finite number in [0, MAX_ABS_USER_VALUE]; user metrics: finite numbers (or
  lists of them) within +-MAX_ABS_USER_VALUE;
  ``trust.*`` numbers finite within +-MAX_ABS_TRUST_VALUE, their stderr / n / noise not
  negative, shaped as the reporter sends them (`protocol.report_shape_problem`: bounded
  counts, `.items` consistent with `.n` and the value, every watched metric with its `.n`),
  and the suite hash, when stated, the server's.

Per round: `normalization.py`.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from flwr.app import Array, ArrayRecord, Message, MetricRecord

from flwr_trust.errors import TrustError
from flwr_trust.protocol import MAX_ITEMS, PREFIX, ROUND, SUFFIXES, report_shape_problem
from flwr_trust.protocol import SUITE_HASH as SUITE_HASH_KEY
from flwr_trust.strategies.arrays import decode_array, lossless_cast

MAX_ABS_TRUST_VALUE = 1e6  # behaviour metrics are rates, log-likelihoods, bits or losses
MAX_ABS_USER_VALUE = 1e15  # a loss or count beyond this is no measurement
MIN_WEIGHT, MAX_WEIGHT = 1e-9, 1e15  # outside: not a count of examples; cannot weigh anything
_ROUND_ID = re.compile(r"[0-9]{1,18}")  # a group id that names a round (Flower: str(round))
METRICS_NAME = "metrics"  # the MetricRecord name when replies disagree (Flower's convention)


@dataclass(frozen=True)
class RoundSpec:
    """What the round's own configuration says a reply must look like.

    layout:    array name -> (shape, dtype) of the global model (None: no arrays expected)
    arrays_name: the ArrayRecord name the instructions used
    nodes:     the nodes instructions went to (None: unknown, not checked)
    trust_round: the `trust.round` the instructions stated, when it is not server_round (a
               resumed run numbers Flower's restarted rounds after its log: guard/resume.py)
    """

    server_round: int
    layout: dict[str, tuple[tuple[int, ...], str]] | None = None
    arrays_name: str = "arrays"
    nodes: frozenset[int] | None = None
    weighted_by_key: str | None = "num-examples"
    suite_hash_int: int | None = None
    max_weight_share: float = 0.5
    trust_round: int | None = None
    max_items: int = MAX_ITEMS  # the longest list a trust.* number may be: the largest suite
    loss_weight: tuple[str, float] | None = None  # (key, q): the inner weights by loss**q


@dataclass
class Screened:
    """Replies split into those aggregation may use and those refused (node id -> reason).

    arrays: the valid replies' arrays as decoded while checking them (read-only views of the
    replies' bytes), so that later stages need not decode them again. errors: the error
    replies themselves and the refused ones (a DP wrapper applies its own failure rule).
    """

    valid: list[Message] = field(default_factory=list)
    refused: dict[int, str] = field(default_factory=dict)
    errors: dict[int, str] = field(default_factory=dict)
    error_replies: list[Message] = field(default_factory=list)
    refused_replies: list[Message] = field(default_factory=list)
    arrays: dict[int, dict[str, np.ndarray]] = field(default_factory=dict)
    n_refused: int = 0  # replies, not nodes: a node that replies twice counts twice
    n_failed: int = 0

    def refuse(self, node: int, reason: str, msg: Message) -> None:
        self.refused[node] = loggable(reason)
        self.refused_replies.append(msg)
        self.n_refused += 1

    def fail(self, node: int, reason: str, msg: Message) -> None:
        self.errors[node] = loggable(reason)
        self.error_replies.append(msg)
        self.n_failed += 1


def loggable(text: str) -> str:
    """Reasons quote client text, and the audit log takes valid Unicode only (no lone
    surrogates, which an in-memory reply can carry): escape what UTF-8 cannot encode."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def node_of(msg: Message) -> int:
    try:
        return int(msg.metadata.src_node_id)
    except Exception:  # a reply without metadata still must not crash the server
        return -1


def screen_replies(replies: Iterable[Message], spec: RoundSpec, *,
                   check_finite: bool = True) -> Screened:
    """Apply the reply contract (module docstring) to one round's replies.

    check_finite=False leaves the NaN/Inf scan of float arrays to a caller that reads every
    value anyway and refuses non-finite replies itself before aggregating (TrustGuard's update
    checks): the scan is the screen's only full pass over the data."""
    out = Screened()
    replies = list(replies)
    counts = Counter(node_of(m) for m in replies)
    for msg in replies:
        node = node_of(msg)
        try:
            if msg.has_error():
                out.fail(node, f"client error: {msg.error.reason}", msg)
                continue
        except Exception as exc:
            out.refuse(node, f"unreadable reply ({exc})", msg)
            continue
        reason = _who_problem(msg, node, counts[node], spec)
        decoded: dict[str, np.ndarray] = {}
        if not reason:
            reason, decoded = _content_problem(msg, spec, check_finite)
        if reason:
            out.refuse(node, reason, msg)
            continue
        out.valid.append(msg)
        if decoded:
            out.arrays[node] = decoded
    return out


# ------------------------------------------------------------------------------ per reply


def _who_problem(msg: Message, node: int, copies: int, spec: RoundSpec) -> str:
    if copies > 1:
        return f"node {node} replied {copies} times this round"
    if spec.nodes is not None and node not in spec.nodes:
        return f"node {node} was not sent an instruction this round"
    group = str(msg.metadata.group_id or "")
    # Only ASCII digit strings of sane length are round numbers: str.isdigit() also accepts
    # "²" and 5,000-digit strings, which int() refuses (a reply must not crash the server).
    if _ROUND_ID.fullmatch(group) and int(group) != spec.server_round:
        return f"stale reply: it answers round {group}, this is round {spec.server_round}"
    if group and not _ROUND_ID.fullmatch(group) and group.isdigit():
        return f"unreadable group id {_short(group)} (digits, but not a round number)"
    return ""


def _content_problem(msg: Message, spec: RoundSpec, check_finite: bool
                     ) -> tuple[str, dict[str, np.ndarray]]:
    """The reason to refuse the reply ("" if none) and its decoded arrays (if expected)."""
    content = msg.content
    n_arrays, n_metrics = len(content.array_records), len(content.metric_records)
    expect_arrays = spec.layout is not None
    if expect_arrays and n_arrays != 1:
        return f"expected exactly one ArrayRecord, got {n_arrays}", {}
    if n_metrics != 1:
        return f"expected exactly one MetricRecord, got {n_metrics}", {}
    metrics = next(iter(content.metric_records.values()))
    reason = _metric_problem(metrics, spec)
    if reason or not expect_arrays:
        return reason, {}
    name, arrays = next(iter(content.array_records.items()))
    reason, decoded, cast = _arrays_problem(arrays, spec, check_finite)
    if cast:  # lossless conversions replace the reply's arrays (the inner sees one dtype)
        content.array_records[name] = ArrayRecord(
            {k: Array(np.ascontiguousarray(cast[k])) if k in cast else v
             for k, v in arrays.items()})
    return reason, decoded


def _metric_problem(metrics: MetricRecord, spec: RoundSpec) -> str:
    for key in metrics:
        if loggable(key) != key:
            return f"metric key {loggable(key)!r} is not valid Unicode"
    weight_key = spec.weighted_by_key
    if weight_key is not None:
        weight = metrics.get(weight_key)
        if isinstance(weight, list) or weight is None:
            return f"missing or non-scalar weight '{weight_key}'"
        if not (finite_number(weight) and MIN_WEIGHT <= weight <= MAX_WEIGHT):
            return (f"weight '{weight_key}' = {_short(weight)} is not a finite number in "
                    f"[{MIN_WEIGHT:g}, {MAX_WEIGHT:g}]")
    if spec.loss_weight is not None:
        loss_key, loss = spec.loss_weight[0], metrics.get(spec.loss_weight[0])
        if isinstance(loss, list) or not (finite_number(loss) and 0 <= loss <= MAX_ABS_USER_VALUE):
            return (f"loss '{loss_key}' = {_short(loss)} is not a finite number in "
                    f"[0, {MAX_ABS_USER_VALUE:g}] (the inner strategy weights replies by it)")
    for key, value in metrics.items():
        values = value if isinstance(value, list) else [value]
        if not key.startswith(PREFIX):
            if not all(finite_number(v) and abs(v) <= MAX_ABS_USER_VALUE for v in values):
                return f"metric {key} = {_short(value)} is not a finite number within " \
                       f"+-{MAX_ABS_USER_VALUE:g}"
            continue
        if key == SUITE_HASH_KEY:
            continue
        if not all(finite_number(v) and abs(v) <= MAX_ABS_TRUST_VALUE for v in values):
            return f"metric {key} = {_short(value)} is not a finite plausible number"
        if key.endswith(SUFFIXES) and any(v < 0 for v in values):
            return f"metric {key} = {_short(value)} is negative"
    if reason := report_shape_problem(metrics, spec.max_items):
        return reason
    stated_round, expected = metrics.get(ROUND), spec.trust_round or spec.server_round
    if stated_round is not None and stated_round != expected:
        return f"stale report: {ROUND} = {_short(stated_round)}, this is round {expected}"
    if spec.suite_hash_int is not None and SUITE_HASH_KEY in metrics \
            and metrics[SUITE_HASH_KEY] != spec.suite_hash_int:
        return "probe suite hash differs from the server's (client probed other suites)"
    return ""


def _arrays_problem(arrays: ArrayRecord, spec: RoundSpec, check_finite: bool
                    ) -> tuple[str, dict[str, np.ndarray], dict[str, np.ndarray]]:
    """(reason, decoded arrays, the arrays that were converted losslessly)."""
    expected = spec.layout or {}
    keys = list(arrays.keys())
    if set(keys) != set(expected):
        missing = sorted(set(expected) - set(keys))[:2]
        extra = sorted(set(keys) - set(expected))[:2]
        return (f"array names differ from the global model (missing {missing}, "
                f"extra {extra})"), {}, {}
    decoded: dict[str, np.ndarray] = {}
    cast: dict[str, np.ndarray] = {}
    for key, arr in arrays.items():
        want_shape, want_dtype = expected[key]
        try:
            shape, dtype = tuple(arr.shape), str(arr.dtype)
            if shape != want_shape:
                return (f"array {key} has shape {shape}, expected {want_shape}"), {}, {}
            values, declared = decode_array(arr), np.dtype(dtype)
        except Exception as exc:
            return f"array {key} cannot be decoded ({type(exc).__name__})", {}, {}
        if tuple(values.shape) != shape:
            return f"array {key} data does not match its declared shape", {}, {}
        if values.dtype != declared:
            return f"array {key} data is {values.dtype}, not its declared {dtype}", {}, {}
        if check_finite and values.dtype.kind == "f" and not np.isfinite(values).all():
            return f"array {key} contains NaN or Inf", {}, {}
        if dtype != want_dtype:
            converted = lossless_cast(values, np.dtype(want_dtype))
            if converted is None:
                return (f"array {key} is {dtype}; the global model is {want_dtype} and its "
                        "values do not convert without change"), {}, {}
            values = cast[key] = converted
        decoded[key] = values
    return "", decoded, cast


def _short(value: Any, limit: int = 60) -> str:
    """repr for a reason line; a client's 10**400 or million-item list must not flood the log."""
    text = repr(value)
    return text if len(text) <= limit else text[:limit - 3] + "..."


def finite_number(value: Any) -> bool:
    """A finite int or float (not a bool); ints beyond float range (10**400) are not."""
    try:
        return isinstance(value, int | float) and not isinstance(value, bool) \
            and math.isfinite(value)
    except OverflowError:
        return False


def stop_if_all_refused(server_round: int, screened: Screened, aggregated_before: bool
                        ) -> None:
    """Before the run's first aggregation, a round whose every reply was refused or a
    trust_mod error is a misconfiguration (replies that break the contract, a client key the
    mod refuses on every client): a TrustError with the commonest reason, rather than a run
    that trains nothing and ends as if it completed. Other error replies (a lost node, an app
    exception) may be transient and do not count."""
    reasons = [*screened.refused.values(),  # the mod's own errors: not a lost node's
               *(r for r in screened.errors.values() if "trust_mod:" in r)]
    if aggregated_before or screened.valid or not reasons:
        return
    reason, count = Counter(reasons).most_common(1)[0]
    raise TrustError(f"Every reply of round {server_round} was refused or an error "
                     f"({len(reasons)} nodes; {count} for: {reason}).",
                     "Fix what the reason names: the client app's replies must meet the reply "
                     "contract (docs/protocol.md, \"Reply contract\"); a trust_mod error names "
                     "the client key or model to fix.")
