"""Adversarial client replies for TrustGuard's reply contract (docs/protocol.md): builders of
malformed replies (MALFORMED: every one must be refused or failed) and of unusual but
well-formed ones (ACCEPTED: aggregated after the contract's normalizations), and `Spec`, one
node's part of a round. tests/helpers/contract.py runs rounds of them; tests/test_guard_fuzz.py
and bench/adversarial_replies.py use both.

What counts as well-formed is what `flwr_trust/strategies/screening.py` documents: float arrays
of another float dtype are accepted when their values convert to the global's float32 without
change (float16, float64 holding float32 values), integer arrays are not; replies whose layout
differs from other replies' (extra or missing metric keys, record names, array order) are
normalized, never refused; negative `trust.*` values are fine (log-likelihoods) except
`.stderr`/`.n`/`.noise`.
"""

from __future__ import annotations

import io
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from flwr.app import (
    Array,
    ArrayRecord,
    Error,
    Message,
    MetricRecord,
    RecordDict,
)

from tests.helpers.guard import initial_arrays

INIT = initial_arrays()  # the global model of every batch
INIT_NP = {k: v.numpy() for k, v in INIT.items()}


@dataclass
class Ctx:
    """What a reply builder needs: the instruction to reply to, the server's suite hash (as
    sent in `trust.suite-hash`) and a seed for its randomness."""

    msg: Message
    suite: int
    seed: int

    @property
    def rng(self) -> np.random.Generator:
        return np.random.default_rng(self.seed)


# -------------------------------------------------------------------------------- builders


def _npy(values: np.ndarray, allow_pickle: bool = False) -> bytes:
    buf = io.BytesIO()
    np.save(buf, values, allow_pickle=allow_pickle)
    return buf.getvalue()


def _arrays(ctx: Ctx, dtype: Any = np.float32) -> dict[str, np.ndarray]:
    """An honest update: the global arrays plus small seeded noise, in float32 then sent as
    `dtype` (a float64 client holding float32 values, as the contract accepts)."""
    rng = ctx.rng
    return {k: (v + 0.01 * rng.normal(size=v.shape)).astype(np.float32).astype(dtype)
            for k, v in INIT_NP.items()}


def _metrics(ctx: Ctx, trust: bool = True) -> dict[str, Any]:
    """Honest metrics; `trust` adds plausible client probe reports (stripped by the guard)."""
    out: dict[str, Any] = {"num-examples": 1 + ctx.seed % 40,
                           "train_loss": float(ctx.rng.uniform(0.1, 3.0))}
    if trust:
        out |= {"trust.alignment.refusal-rate": 0.8, "trust.alignment.refusal-rate.stderr": 0.02,
                "trust.alignment.refusal-rate.n": 50, "trust.knowledge.loglik": -2.5,
                "trust.suite-hash": ctx.suite}
    return out


def _message(ctx: Ctx, arrays: dict[str, Any] | None, metrics: dict[str, Any] | None, *,
             arrays_name: str = "arrays", metrics_name: str = "metrics",
             extra: dict[str, Any] | None = None) -> Message:
    """A reply; array values may be numpy arrays or ready-made (possibly corrupt) Arrays."""
    content = RecordDict()
    if arrays is not None:
        content[arrays_name] = ArrayRecord(
            {k: v if isinstance(v, Array) else Array(np.asarray(v)) for k, v in arrays.items()})
    if metrics is not None:
        content[metrics_name] = MetricRecord(metrics)
    for name, record in (extra or {}).items():
        content[name] = record
    return Message(content, reply_to=ctx.msg)


def honest(ctx: Ctx, dtype: Any = np.float32, trust: bool = True) -> Message:
    return _message(ctx, _arrays(ctx, dtype), _metrics(ctx, trust))


def _with_metrics(**changes: Any) -> Callable[[Ctx], list[Message]]:
    """Honest arrays, metrics with `changes` (value None deletes the key)."""
    def build(ctx: Ctx) -> list[Message]:
        metrics = _metrics(ctx) | changes
        return [_message(ctx, _arrays(ctx), {k: v for k, v in metrics.items() if v is not None})]
    return build


def _with_arrays(change: Callable[[dict[str, Any], np.random.Generator], None]
                 ) -> Callable[[Ctx], list[Message]]:
    """Honest metrics, arrays edited in place by `change(arrays, rng)`."""
    def build(ctx: Ctx) -> list[Message]:
        arrays: dict[str, Any] = _arrays(ctx)
        change(arrays, ctx.rng)
        return [_message(ctx, arrays, _metrics(ctx))]
    return build


def _pick(arrays: dict[str, Any], rng: np.random.Generator) -> str:
    return sorted(arrays)[int(rng.integers(len(arrays)))]


def _poke(value: float) -> Callable[[dict[str, Any], np.random.Generator], None]:
    """Put `value` at a random position of a random layer."""
    def change(arrays: dict[str, Any], rng: np.random.Generator) -> None:
        key = _pick(arrays, rng)
        flat = arrays[key].ravel()
        flat[rng.integers(flat.size)] = value
        arrays[key] = flat.reshape(arrays[key].shape)
    return change


def _layer(fn: Callable[[np.ndarray], Any]) -> Callable[[dict[str, Any], np.random.Generator],
                                                        None]:
    """Replace one random layer by fn(layer)."""
    def change(arrays: dict[str, Any], rng: np.random.Generator) -> None:
        key = _pick(arrays, rng)
        arrays[key] = fn(arrays[key])
    return change


def _corrupt(data: Callable[[np.ndarray], bytes], dtype: str | None = None,
             stype: str = "numpy.ndarray") -> Callable[[dict[str, Any], np.random.Generator],
                                                       None]:
    """Replace one layer by an Array whose declared dtype/shape disagree with its bytes."""
    def build(v: np.ndarray) -> Array:
        return Array(dtype=dtype or str(v.dtype), shape=tuple(v.shape), stype=stype,
                     data=data(v))
    return _layer(build)


def _rename_key(arrays: dict[str, Any], rng: np.random.Generator) -> None:
    key = _pick(arrays, rng)
    arrays[key + ".renamed"] = arrays.pop(key)


def _drop_key(arrays: dict[str, Any], rng: np.random.Generator) -> None:
    del arrays[_pick(arrays, rng)]


def _transpose_a(arrays: dict[str, Any], rng: np.random.Generator) -> None:
    arrays["layer.a"] = np.ascontiguousarray(arrays["layer.a"].T)  # (16, 8) -> (8, 16)


def _no_arrays(ctx: Ctx) -> list[Message]:
    return [_message(ctx, None, _metrics(ctx))]


def _two_array_records(ctx: Ctx) -> list[Message]:
    copy = ArrayRecord({k: Array(v) for k, v in _arrays(ctx).items()})
    return [_message(ctx, _arrays(ctx), _metrics(ctx), extra={"arrays-2": copy})]


def _no_metrics(ctx: Ctx) -> list[Message]:
    return [_message(ctx, _arrays(ctx), None)]


def _two_metric_records(ctx: Ctx) -> list[Message]:
    extra = {"metrics-2": MetricRecord({"num-examples": 3})}
    return [_message(ctx, _arrays(ctx), _metrics(ctx), extra=extra)]


def _copies(n: int) -> Callable[[Ctx], list[Message]]:
    """The same node replies n times (honest-looking each time): all copies are refused."""
    def build(ctx: Ctx) -> list[Message]:
        return [honest(Ctx(ctx.msg, ctx.suite, ctx.seed + i)) for i in range(n)]
    return build


def _error(reason: str) -> Callable[[Ctx], list[Message]]:
    def build(ctx: Ctx) -> list[Message]:
        return [Message(Error(code=int(ctx.rng.integers(0, 1000)), reason=reason),
                        reply_to=ctx.msg)]
    return build


def _error_and_reply(ctx: Ctx) -> list[Message]:
    return _error("lost connection")(ctx) + [honest(ctx)]


def _odd_metric_key(ctx: Ctx) -> list[Message]:
    return [_message(ctx, _arrays(ctx), _metrics(ctx) | {f"extra-{ctx.seed}": 1.0})]


def _renamed_record(arrays_name: str = "arrays", metrics_name: str = "metrics"
                    ) -> Callable[[Ctx], list[Message]]:
    def build(ctx: Ctx) -> list[Message]:
        return [_message(ctx, _arrays(ctx), _metrics(ctx), arrays_name=arrays_name,
                         metrics_name=metrics_name)]
    return build


def _reversed_arrays(ctx: Ctx) -> Message:
    msg = honest(ctx)
    name, record = next(iter(msg.content.array_records.items()))
    msg.content.array_records[name] = ArrayRecord(dict(reversed(list(record.items()))))
    return msg


def _wrong_suite_hash(ctx: Ctx) -> list[Message]:
    bad = ctx.suite ^ (1 << int(ctx.rng.integers(0, 60)))
    return _with_metrics(**{"trust.suite-hash": bad})(ctx)


RS = "trust.alignment.refusal-rate"

# name -> builder of the message(s) one misbehaving node sends. Every one must be refused.
MALFORMED: dict[str, Callable[[Ctx], list[Message]]] = {
    # records
    "no-array-record": _no_arrays,
    "two-array-records": _two_array_records,
    "no-metric-record": _no_metrics,
    "two-metric-records": _two_metric_records,
    # array names, shapes, dtypes, values
    "extra-array-key": _with_arrays(lambda a, r: a.update({"layer.z": np.zeros(3, np.float32)})),
    "missing-array-key": _with_arrays(_drop_key),
    "renamed-array-key": _with_arrays(_rename_key),
    "wrong-shape": _with_arrays(_layer(lambda v: np.append(v.ravel(), np.float32(0.0)))),
    "transposed-shape": _with_arrays(_transpose_a),
    "int32-array": _with_arrays(_layer(lambda v: (100 * v).astype(np.int32))),
    "int64-array": _with_arrays(_layer(lambda v: v.astype(np.int64))),
    "bool-array": _with_arrays(_layer(lambda v: v > 0)),
    "complex-array": _with_arrays(_layer(lambda v: v.astype(np.complex64))),
    "nan-in-array": _with_arrays(_poke(math.nan)),
    "inf-in-array": _with_arrays(_poke(math.inf)),
    "neg-inf-in-array": _with_arrays(_poke(-math.inf)),
    "float64-overflowing-float32": _with_arrays(_layer(lambda v: np.full(v.shape, 1e300))),
    # corrupt Array objects: declared dtype/shape/stype vs the bytes
    "corrupt-bytes-junk": _with_arrays(_corrupt(lambda v: b"\x93NUMPY junk" + v.tobytes()[:7])),
    "corrupt-bytes-truncated": _with_arrays(_corrupt(lambda v: _npy(v)[:-4])),
    "corrupt-bytes-empty": _with_arrays(_corrupt(lambda v: b"")),
    "corrupt-bytes-other-shape": _with_arrays(_corrupt(lambda v: _npy(v.ravel()[:-1]))),
    "corrupt-bytes-int-data": _with_arrays(_corrupt(lambda v: _npy(v.astype(np.int32)))),
    "corrupt-bytes-complex-data": _with_arrays(_corrupt(lambda v: _npy(v.astype(np.complex64)))),
    "corrupt-bytes-float64-data": _with_arrays(_corrupt(lambda v: _npy(v.astype(np.float64)))),
    "corrupt-bytes-pickled": _with_arrays(_corrupt(
        lambda v: _npy(np.array([v.tolist()], dtype=object), allow_pickle=True))),
    "corrupt-stype": _with_arrays(_corrupt(_npy, stype="torch.Tensor")),
    "corrupt-declared-dtype": _with_arrays(_corrupt(_npy, dtype="no-such-dtype")),
    # trust.* reports
    "trust-nan": _with_metrics(**{RS: math.nan}),
    "trust-inf": _with_metrics(**{RS: math.inf}),
    "trust-neg-inf": _with_metrics(**{"trust.knowledge.loglik": -math.inf}),
    "trust-huge": _with_metrics(**{RS: 2e6}),
    "trust-huge-negative": _with_metrics(**{"trust.knowledge.loglik": -2e6}),
    "trust-huge-int": _with_metrics(**{RS: 10**400}),
    "trust-list-with-nan": _with_metrics(**{"trust.style.lengths": [1.0, math.nan]}),
    "negative-stderr": _with_metrics(**{f"{RS}.stderr": -0.01}),
    "negative-n": _with_metrics(**{f"{RS}.n": -5}),
    "negative-noise": _with_metrics(**{f"{RS}.noise": -0.1}),
    # self-declared numbers a clear rate cannot have (they blinded the reply's own test)
    "rate-outside-its-range": _with_metrics(**{RS: 1000.0}),
    # a list where a number goes, after the value key (crashed the range check in review)
    "stderr-as-a-list": _with_metrics(**{f"{RS}.stderr": [0.1]}),
    "noise-as-a-list": _with_metrics(**{f"{RS}.noise": [0.0]}),
    # each key and list within bounds, together 55,000 numbers for the audit log
    "too-many-trust-numbers": _with_metrics(**{f"trust.plugin.x{i}": [0.5] * 11
                                               for i in range(5000)}),
    "stderr-beyond-half-the-range": _with_metrics(**{f"{RS}.stderr": 0.51}),
    "noise-on-a-public-metric-released-clear": _with_metrics(**{
        f"{RS}.noise": 0.3, "trust.public-post-processing": 1}),
    "watched-metric-without-n": _with_metrics(**{f"{RS}.n": None}),
    "non-integer-n": _with_metrics(**{f"{RS}.n": 49.5}),
    "items-not-n-long": _with_metrics(**{f"{RS}.items": [0.8] * 49}),
    "items-not-averaging-to-value": _with_metrics(**{f"{RS}.items": [0.9] * 50}),
    "items-flood": _with_metrics(**{"trust.junk.x.items": [0.5] * 10_001}),
    "too-many-trust-keys": _with_metrics(**{f"trust.junk.k{i}": 0.0 for i in range(10_001)}),
    "wrong-suite-hash": _wrong_suite_hash,
    "suite-hash-list": lambda ctx: _with_metrics(**{"trust.suite-hash": [ctx.suite]})(ctx),
    # the aggregation weight
    "num-examples-missing": _with_metrics(**{"num-examples": None}),
    "num-examples-zero": _with_metrics(**{"num-examples": 0}),
    "num-examples-zero-float": _with_metrics(**{"num-examples": 0.0}),
    "num-examples-negative": _with_metrics(**{"num-examples": -10}),
    "num-examples-nan": _with_metrics(**{"num-examples": math.nan}),
    "num-examples-inf": _with_metrics(**{"num-examples": math.inf}),
    "num-examples-list": _with_metrics(**{"num-examples": [10, 10]}),
    "num-examples-huge-int": _with_metrics(**{"num-examples": 10**400}),
    # who replied, and how
    "duplicate-node": _copies(2),
    "triplicate-node": _copies(3),
    "error-reply": _error("x"),
    "error-reply-no-reason": lambda ctx: [Message(Error(code=0), reply_to=ctx.msg)],
    "error-reply-non-unicode-reason": _error("bad \ud800 reason"),
    "error-and-reply-same-node": _error_and_reply,
}
ERROR_KINDS = {"error-reply", "error-reply-no-reason", "error-reply-non-unicode-reason"}

# Unusual but well-formed per screening.py: must be accepted and aggregated like FedAvg does.
ACCEPTED: dict[str, Callable[[Ctx], Message]] = {
    "float16-arrays": lambda ctx: honest(ctx, np.float16),
    "float64-arrays": lambda ctx: honest(ctx, np.float64),  # holding float32 values
    "no-trust-metrics": lambda ctx: honest(ctx, trust=False),
    "no-suite-hash": lambda ctx: _with_metrics(**{"trust.suite-hash": None})(ctx)[0],
    "negative-trust-value": lambda ctx: _with_metrics(**{"trust.knowledge.loglik": -1e6})(ctx)[0],
    "trust-list-values": lambda ctx: _with_metrics(**{"trust.style.lengths": [1.0, 2.0]})(ctx)[0],
    "consistent-items": lambda ctx: _with_metrics(**{f"{RS}.items": [0.7, 0.9] * 25})(ctx)[0],
    "float-num-examples": lambda ctx: _with_metrics(**{"num-examples": 2.5})(ctx)[0],
    "large-num-examples": lambda ctx: _with_metrics(**{"num-examples": 10**12})(ctx)[0],  # capped
    # layouts other replies may not share: normalized per round, never refused (screening.py)
    "odd-metric-key": lambda ctx: _odd_metric_key(ctx)[0],
    "missing-metric-key": lambda ctx: _with_metrics(train_loss=None)(ctx)[0],
    "list-valued-metric": lambda ctx: _with_metrics(train_loss=[0.5, 0.7])(ctx)[0],
    "renamed-array-record": lambda ctx: _renamed_record(arrays_name="weights")(ctx)[0],
    "renamed-metric-record": lambda ctx: _renamed_record(metrics_name="stats")(ctx)[0],
    "swapped-record-names": lambda ctx: _renamed_record("metrics", "arrays")(ctx)[0],
    "reversed-array-order": lambda ctx: _reversed_arrays(ctx),
}


def _stale_group(ctx: Ctx) -> list[Message]:
    """An honest-looking reply to last round's instruction (a replay of an old reply)."""
    msg = honest(ctx)
    msg.metadata.group_id = "0"
    return [msg]


def _group_id(value: str) -> Callable[[Ctx], list[Message]]:
    """An honest-looking reply whose group id is digits to str.isdigit() but no round number
    to int() ("²", or more digits than int() parses)."""
    def build(ctx: Ctx) -> list[Message]:
        msg = honest(ctx)
        msg.metadata.group_id = value
        return [msg]
    return build


def _unsolicited(ctx: Ctx) -> list[Message]:
    """A reply from node 9000 + seed, which was sent no instruction this round, in place of
    the node's own reply."""
    stranger = Message(RecordDict(), dst_node_id=9000 + ctx.seed % 1000,
                       message_type=ctx.msg.metadata.message_type,
                       group_id=ctx.msg.metadata.group_id)
    return [honest(Ctx(stranger, ctx.suite, ctx.seed))]


MALFORMED.update({
    "stale-group-id": _stale_group,
    "stale-trust-round": _with_metrics(**{"trust.round": 0}),
    "unsolicited-node": _unsolicited,
    "superscript-digit-group-id": _group_id("\u00b2"),
    "5000-digit-group-id": _group_id("1" * 5000),
})


def colluder(weight: float, scale: float) -> Callable[[Ctx], list[Message]]:
    """A colluding group's reply: the same well-formed update (global + scale x a fixed
    direction) with the same inflated weight from every member."""
    direction = {k: np.random.default_rng(99).standard_normal(v.shape) for k, v in INIT_NP.items()}

    def build(ctx: Ctx) -> list[Message]:
        arrays = {k: (v + scale * direction[k]).astype(np.float32) for k, v in INIT_NP.items()}
        return [_message(ctx, arrays, _metrics(ctx) | {"num-examples": weight})]
    return build


# -------------------------------------------------------------------------------- specs


@dataclass
class Spec:
    """One node's part of a batch: a MALFORMED or ACCEPTED kind, or "honest" (arrays of
    `dtype`, with or without trust reports); `make`/`bad` give a one-off kind."""

    kind: str
    seed: int
    dtype: str = "float32"
    trust: bool = True
    make: Callable[[Ctx], list[Message]] | None = None
    bad: bool | None = None

    @property
    def malformed(self) -> bool:
        return self.bad if self.bad is not None else self.kind in MALFORMED

    def build(self, ctx: Ctx, for_reference: bool = False) -> list[Message]:
        """The node's message(s). For the FedAvg reference, without the `trust.*` reports
        (the guard strips them; FedAvg alone would average them)."""
        if self.make is not None:
            msgs = self.make(ctx)
        elif self.kind in MALFORMED:
            msgs = MALFORMED[self.kind](ctx)
        elif self.kind in ACCEPTED:
            msgs = [ACCEPTED[self.kind](ctx)]
        else:
            msgs = [honest(ctx, np.dtype(self.dtype), self.trust)]
        if for_reference:
            for msg in msgs:
                _strip_trust(msg)
        return msgs


def _strip_trust(msg: Message) -> None:
    name, metrics = next(iter(msg.content.metric_records.items()))
    msg.content.metric_records[name] = MetricRecord(
        {k: v for k, v in metrics.items() if not k.startswith("trust.")})
