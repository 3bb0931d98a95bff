"""Refuse untrusted replies before they reach detectors or the inner strategy.

A reply is kept only if it has no error, comes from a node that replied once this round, carries
exactly the records aggregation needs, its arrays have the global model's names, shapes and
dtypes and are finite (checked here, or, in TrustGuard, by the update checks that read
every value anyway), its weight is a finite positive number, its `trust.*` numbers are finite
and plausible, and (when it states one) its suite hash is the server's. Everything else is
refused with a logged reason; nothing in a refused reply is ever aggregated.
"""

from __future__ import annotations

import functools
import io
import math
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from flwr.app import Array, ArrayRecord, Message, MetricRecord
from flwr.common.constant import SType
from numpy.lib import format as npy_format

from flwr_trust.protocol import PREFIX, SUFFIXES
from flwr_trust.protocol import SUITE_HASH as SUITE_HASH_KEY

# Behavior metrics are rates, log-likelihoods, bits or losses; anything beyond this is absurd.
MAX_ABS_TRUST_VALUE = 1e6


@dataclass
class Screened:
    """Replies split into those aggregation may use and those refused (node id -> reason)."""

    valid: list[Message] = field(default_factory=list)
    refused: dict[int, str] = field(default_factory=dict)
    errors: dict[int, str] = field(default_factory=dict)
    # The valid replies' arrays as decoded while checking them (read-only views of the
    # replies' bytes), so that later stages need not decode them again.
    arrays: dict[int, dict[str, np.ndarray]] = field(default_factory=dict)
    # Replies, not nodes: a node that replies twice has one reason but two refused replies.
    n_refused: int = 0
    n_failed: int = 0

    def refuse(self, node: int, reason: str) -> None:
        self.refused[node] = _loggable(reason)
        self.n_refused += 1

    def refuse_valid(self, node: int, reason: str) -> None:
        """Refuse a reply that passed the screen (a later check found it untrustworthy)."""
        self.valid = [m for m in self.valid if _node(m) != node]
        self.arrays.pop(node, None)
        self.refuse(node, reason)

    def fail(self, node: int, reason: str) -> None:
        self.errors[node] = _loggable(reason)
        self.n_failed += 1

    @property
    def valid_nodes(self) -> list[int]:
        return [m.metadata.src_node_id for m in self.valid]


def _loggable(text: str) -> str:
    """Reasons quote client text, and the audit log takes valid Unicode only (no lone
    surrogates, which an in-memory reply can carry): escape what UTF-8 cannot encode."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def _node(msg: Message) -> int:
    try:
        return int(msg.metadata.src_node_id)
    except Exception:  # a reply without metadata still must not crash the server
        return -1


def screen_replies(replies: Iterable[Message], *, global_arrays: ArrayRecord | None,
                   weighted_by_key: str | None, suite_hash_int: int | None,
                   expect_arrays: bool, check_finite: bool = True) -> Screened:
    """Split replies into valid ones and refused ones (with one-line reasons).

    check_finite=False skips the NaN/Inf scan of float arrays, for a caller that reads every
    value anyway and refuses non-finite replies itself before aggregating (TrustGuard's update
    checks): the scan is the screen's only full pass over the data, the first (memory-bound)
    touch of every byte."""
    out = Screened()
    replies = list(replies)
    counts = Counter(_node(m) for m in replies)
    expected = _array_layout(global_arrays) if global_arrays is not None else None
    for msg in replies:
        node = _node(msg)
        try:
            if msg.has_error():
                out.fail(node, f"client error: {msg.error.reason}")
                continue
        except Exception as exc:
            out.refuse(node, f"unreadable reply ({exc})")
            continue
        if counts[node] > 1:
            out.refuse(node, f"node {node} replied {counts[node]} times this round")
            continue
        reason, decoded = _problem(msg, expected, weighted_by_key, suite_hash_int,
                                   expect_arrays, check_finite)
        if reason:
            out.refuse(node, reason)
        else:
            out.valid.append(msg)
            if decoded:
                out.arrays[node] = decoded
    _refuse_odd_layouts(out, expect_arrays)
    return out


Layout = tuple[str | None, frozenset[str], str, frozenset[tuple[str, int]]]


def _layout(msg: Message, expect_arrays: bool) -> Layout:
    """What Flower's strategies need equal across replies: the ArrayRecord's name and keys, the
    MetricRecord's name, and the user's metric keys, each a scalar (-1) or a list of one length."""
    content = msg.content
    arrays_name, array_keys = None, frozenset[str]()
    if expect_arrays:
        arrays_name, arrays = next(iter(content.array_records.items()))
        array_keys = frozenset(arrays.keys())
    metrics_name, metrics = next(iter(content.metric_records.items()))
    keys = frozenset((k, len(v) if isinstance(v, list) else -1) for k, v in metrics.items()
                     if not k.startswith(PREFIX))
    return arrays_name, array_keys, metrics_name, keys


def _refuse_odd_layouts(out: Screened, expect_arrays: bool) -> None:
    """Flower's strategies raise when replies' record names, metric keys or list lengths differ;
    a single odd client must not be able to crash the round, so replies off the majority layout
    are refused."""
    if len(out.valid) < 2:
        return
    layouts = Counter(_layout(m, expect_arrays) for m in out.valid)
    majority = layouts.most_common(1)[0][0]
    kept = []
    for msg in out.valid:
        layout = _layout(msg, expect_arrays)
        if layout == majority:
            kept.append(msg)
        elif layout[:3] != majority[:3]:
            out.refuse(_node(msg), "record names or array keys differ from the other replies")
        else:
            odd = sorted({k for k, _ in layout[3] ^ majority[3]})[:3]
            out.refuse(_node(msg), f"metric keys or list lengths differ from the other "
                                   f"replies ({odd})")
    out.valid = kept
    for node in set(out.arrays) - {_node(m) for m in kept}:
        del out.arrays[node]


def _array_layout(arrays: ArrayRecord) -> dict[str, tuple[tuple[int, ...], str]]:
    return {k: (tuple(v.shape), str(v.dtype)) for k, v in arrays.items()}


def _problem(msg: Message, expected: dict[str, tuple[tuple[int, ...], str]] | None,
             weighted_by_key: str | None, suite_hash_int: int | None,
             expect_arrays: bool, check_finite: bool = True
             ) -> tuple[str, dict[str, np.ndarray]]:
    """The reason to refuse the reply ("" if none) and its decoded arrays (if expected)."""
    content = msg.content
    n_arrays, n_metrics = len(content.array_records), len(content.metric_records)
    if expect_arrays and n_arrays != 1:
        return f"expected exactly one ArrayRecord, got {n_arrays}", {}
    if n_metrics != 1:
        return f"expected exactly one MetricRecord, got {n_metrics}", {}
    metrics = next(iter(content.metric_records.values()))
    reason = _metric_problem(metrics, weighted_by_key, suite_hash_int)
    if reason or not expect_arrays:
        return reason, {}
    arrays = next(iter(content.array_records.values()))
    return _arrays_problem(arrays, expected, check_finite)


def _metric_problem(metrics: MetricRecord, weighted_by_key: str | None,
                    suite_hash_int: int | None) -> str:
    for key in metrics:
        if _loggable(key) != key:
            return f"metric key {_loggable(key)!r} is not valid Unicode"
    if weighted_by_key is not None:
        weight = metrics.get(weighted_by_key)
        if isinstance(weight, list) or weight is None:
            return f"missing or non-scalar weight '{weighted_by_key}'"
        if not (_finite(weight) and weight > 0):
            return f"weight '{weighted_by_key}' = {_short(weight)} is not a finite positive number"
    for key, value in metrics.items():
        if not key.startswith(PREFIX) or key == SUITE_HASH_KEY:
            continue
        values = value if isinstance(value, list) else [value]
        if not all(_finite(v) and abs(v) <= MAX_ABS_TRUST_VALUE for v in values):
            return f"metric {key} = {_short(value)} is not a finite plausible number"
        if key.endswith(SUFFIXES) and any(v < 0 for v in values):
            return f"metric {key} = {_short(value)} is negative"
    if suite_hash_int is not None and SUITE_HASH_KEY in metrics \
            and metrics[SUITE_HASH_KEY] != suite_hash_int:
        return "probe suite hash differs from the server's (client probed other suites)"
    return ""


def _short(value: Any, limit: int = 60) -> str:
    """repr for a reason line; a client's 10**400 or million-item list must not flood the log."""
    text = repr(value)
    return text if len(text) <= limit else text[:limit - 3] + "..."


def _finite(value: Any) -> bool:
    """A finite int or float; ints beyond float range (10**400) are not, and must not raise."""
    try:
        return isinstance(value, int | float) and math.isfinite(value)
    except OverflowError:
        return False


def _arrays_problem(arrays: ArrayRecord, expected: dict[str, tuple[tuple[int, ...], str]] | None,
                    check_finite: bool = True) -> tuple[str, dict[str, np.ndarray]]:
    if expected is not None:
        keys = list(arrays.keys())
        if set(keys) != set(expected):
            missing = sorted(set(expected) - set(keys))[:2]
            extra = sorted(set(keys) - set(expected))[:2]
            return (f"array names differ from the global model (missing {missing}, "
                    f"extra {extra})"), {}
    decoded: dict[str, np.ndarray] = {}
    for key, arr in arrays.items():
        try:
            shape, dtype = tuple(arr.shape), str(arr.dtype)
            if expected is not None and not _fits(shape, dtype, *expected[key]):
                return (f"array {key} has shape {shape} dtype {dtype}, expected "
                        f"{expected[key][0]} {expected[key][1]}"), {}
            values, declared = decode_array(arr), np.dtype(dtype)
        except Exception as exc:
            return f"array {key} cannot be decoded ({type(exc).__name__})", {}
        if tuple(values.shape) != shape:
            return f"array {key} data does not match its declared shape", {}
        if values.dtype != declared:
            return f"array {key} data is {values.dtype}, not its declared {dtype}", {}
        if check_finite and values.dtype.kind == "f" and not np.isfinite(values).all():
            return f"array {key} contains NaN or Inf", {}
        if expected is not None and _overflows(values, expected[key][1]):
            return f"array {key} overflows the global model's {expected[key][1]}", {}
        decoded[key] = values
    return "", decoded


def decode_array(arr: Array) -> np.ndarray:
    """`arr.numpy()` without copying the data: a read-only view of the Array's bytes.

    The same values as Flower's `np.load(..., allow_pickle=False)`, which copies the data twice
    (4 MB per 1M float32): the guard decodes every reply once and shares the result.
    """
    if arr.stype != SType.NUMPY:
        raise TypeError(f"unsupported serialization type '{arr.stype}'")
    shape = tuple(arr.shape)
    header = _npy_header(arr.dtype, shape)
    if arr.data[:len(header)] == header:  # what np.save writes: skip parsing the header
        dtype = np.dtype(arr.dtype)
        if dtype.hasobject:
            raise ValueError("object arrays need pickle, which is never loaded")
        return np.frombuffer(arr.data, dtype=dtype, count=math.prod(shape),
                             offset=len(header)).reshape(shape)
    stream = io.BytesIO(arr.data)
    version = npy_format.read_magic(stream)
    if version == (1, 0):
        shape, fortran_order, dtype = npy_format.read_array_header_1_0(stream)
    elif version == (2, 0):
        shape, fortran_order, dtype = npy_format.read_array_header_2_0(stream)
    else:  # rare header versions: Flower's own (copying) decoder
        return arr.numpy()
    if dtype.hasobject:
        raise ValueError("object arrays need pickle, which is never loaded")
    values = np.frombuffer(arr.data, dtype=dtype, count=math.prod(shape), offset=stream.tell())
    if fortran_order:
        return values.reshape(shape[::-1]).transpose()
    return values.reshape(shape)


@functools.lru_cache(maxsize=1024)
def _npy_header(dtype: str, shape: tuple[int, ...]) -> bytes:
    """The .npy header np.save writes for a C-order array of this dtype and shape (parsing
    one with ast.literal_eval costs as much as checking 50,000 floats)."""
    stream = io.BytesIO()
    npy_format.write_array_header_1_0(stream, {
        "descr": npy_format.dtype_to_descr(np.dtype(dtype)), "fortran_order": False,
        "shape": shape})
    return stream.getvalue()


def _overflows(values: np.ndarray, want_dtype: str) -> bool:
    """Finite values that become Inf in the global's (narrower) float dtype, e.g. 1e300 sent
    as float64 against a float32 model: they would turn the average into Inf."""
    want = np.dtype(want_dtype)
    if want.kind != "f" or values.dtype.kind != "f" or values.size == 0 \
            or want.itemsize >= values.dtype.itemsize:
        return False
    return bool(np.abs(values).max() > np.finfo(want).max)


def _fits(shape: tuple[int, ...], dtype: str, want_shape: tuple[int, ...], want_dtype: str
          ) -> bool:
    """Same shape, and the same dtype or float for float: server optimizers (FedAdam) keep
    float64 globals while clients send float32, which Flower's own aggregation accepts."""
    if shape != want_shape:
        return False
    if dtype == want_dtype:
        return True
    try:
        return np.dtype(dtype).kind == "f" and np.dtype(want_dtype).kind == "f"
    except TypeError:
        return False


def weighted_key_of(strategy: Any) -> str | None:
    """The weight key an inner strategy aggregates by (looks through DP wrappers)."""
    seen = 0
    while strategy is not None and seen < 5:
        key = getattr(strategy, "weighted_by_key", None)
        if key is not None:
            return str(key)
        strategy = getattr(strategy, "strategy", None)
        seen += 1
    return None
