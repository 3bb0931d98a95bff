"""Fuzz TrustGuard's reply screening with malformed replies mixed among honest ones.

Every batch goes through `TrustGuard(FedAvg(), model=None).aggregate_train` after one
`configure_train` (so the guard knows the global arrays), and must satisfy:

- the call never raises;
- the returned arrays are bit-identical to `FedAvg().aggregate_train` on only the well-formed
  replies of the batch (same order), or None when there are none: nothing in a malformed reply
  reaches the global model, and no malformed reply can make the round fail;
- every malformed reply is refused or counted as failed (`guard.history[-1].clients` and the
  `trust.replies-refused` / `trust.replies-failed` metrics), and no well-formed one is.

What counts as well-formed is what `flwr_trust/strategies/screening.py` documents: float arrays of
another float dtype are accepted when their values convert to the global's float32 without
change (float16, float64 holding float32 values), integer arrays are not; replies whose layout
differs from other replies' (extra or missing metric keys, record names, array order) are
normalized, never refused;
negative `trust.*` values are fine (log-likelihoods) except `.stderr`/`.n`/`.noise`.

Malformed replies per run (`pytest -s` prints the count): `test_fuzz_mixed_batches` at least
250 x 8 = 2,000 (about 2,600 with repeated nodes' extra copies), `test_fuzz_trust_metric_values`
and `test_fuzz_weights` about 250 more, and the deterministic tests two batches per kind.
Arrays are tiny (168 floats), so the file runs in about 25 s of CPU.

Two more property tests pin the guard's hot-path shortcuts to what they replace: the screen's
zero-copy `decode_array` vs Flower's `Array.numpy()`, and the update checks' fast median vs
`np.sort`.
"""

from __future__ import annotations

import io
import itertools
import math
import os
import tempfile
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from flwr.app import (
    Array,
    ArrayRecord,
    ConfigRecord,
    Error,
    Message,
    MetricRecord,
    RecordDict,
)
from flwr.serverapp.strategy import FedAvg
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flwr_trust.detect.update_stats import _median_rows
from flwr_trust.protocol import hash_to_int
from flwr_trust.strategies import TrustGuard
from flwr_trust.strategies.screening import (
    MAX_ABS_TRUST_VALUE,
    MAX_WEIGHT,
    MIN_WEIGHT,
    capped_weights,
    decode_array,
)
from tests.helpers.guard import FakeGrid, initial_arrays

# Malformed reply messages built in this session (shown with `pytest -s`).
GENERATED: Counter[str] = Counter()
INIT = initial_arrays()  # the global model of every batch
INIT_NP = {k: v.numpy() for k, v in INIT.items()}
FUZZ = settings(deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


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


# -------------------------------------------------------------------------------- harness


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


def _normalize_reference(reference: list[Message]) -> None:
    """The reply contract's per-round normalizations, written out again for the reference:
    records renamed to the instructions' names, arrays in the global model's order and dtype
    (the accepted float dtypes convert losslessly), user
    metric keys kept only where every reply has them with one shape, weights capped
    (screening.capped_weights) at the default share."""
    if not reference:
        return
    for msg in reference:
        content = msg.content
        arrays = next(iter(content.array_records.values()))
        metrics = next(iter(content.metric_records.values()))
        for key in list(content.keys()):
            del content[key]
        content["arrays"] = ArrayRecord(
            {k: arrays[k] if arrays[k].dtype == INIT[k].dtype
             else Array(np.ascontiguousarray(arrays[k].numpy().astype(INIT_NP[k].dtype)))
             for k in INIT})
        content["metrics"] = metrics
    records = [m.content.metric_records["metrics"] for m in reference]
    layout = [{(k, len(v) if isinstance(v, list) else -1) for k, v in r.items()} for r in records]
    shared = {k for k, _ in set.intersection(*layout)}
    for record in records:
        for key in [k for k in record if k not in shared]:
            del record[key]
    weights = [float(r["num-examples"]) for r in records]
    capped, _, _ = capped_weights(weights, 0.5)
    for record, old, new in zip(records, weights, capped, strict=True):
        if new < old:
            record["num-examples"] = float(new)


def _strip_trust(msg: Message) -> None:
    name, metrics = next(iter(msg.content.metric_records.items()))
    msg.content.metric_records[name] = MetricRecord(
        {k: v for k, v in metrics.items() if not k.startswith("trust.")})


_RUNS = itertools.count()


def run_batch(specs: list[Spec], base: Path) -> None:
    """One round: node i sends specs[i]'s message(s), in list order, to a fresh
    TrustGuard(FedAvg()); check the properties in the module docstring."""
    guard = TrustGuard(FedAvg(), model=None, tensorboard=False,
                       run_dir=base / f"run-{next(_RUNS)}")
    instructions = sorted(guard.configure_train(1, INIT, ConfigRecord(), FakeGrid(len(specs))),
                          key=lambda m: m.metadata.dst_node_id)
    suite = hash_to_int(guard.client_suite_hash)
    ctxs = [Ctx(m, suite, s.seed) for m, s in zip(instructions, specs, strict=True)]
    sent = [(spec, ctx, msg) for spec, ctx in zip(specs, ctxs, strict=True)
            for msg in spec.build(ctx)]
    GENERATED.update(spec.kind.split("=")[0] for spec, _, _ in sent if spec.malformed)

    arrays, metrics = guard.aggregate_train(1, [msg for _, _, msg in sent])

    # FedAvg alone on fresh copies of only the well-formed replies, in the same order.
    reference = [m for spec, ctx, _ in sent if not spec.malformed
                 for m in spec.build(ctx, for_reference=True)]
    _normalize_reference(reference)
    want_arrays, want_metrics = (FedAvg().aggregate_train(1, reference) if reference
                                 else (None, None))

    # 1. Nothing malformed reaches the global model, and the good replies are aggregated.
    if want_arrays is None:
        assert arrays is None
    else:
        assert arrays is not None, "the well-formed replies were not aggregated"
        assert _identical(arrays, want_arrays), "global arrays differ from FedAvg's"
        assert want_metrics is not None and metrics is not None
        assert {k: v for k, v in metrics.items() if not k.startswith("trust.")} \
            == dict(want_metrics.items())

    # 2. Every malformed reply is refused or failed, and no well-formed one.
    assert metrics is not None
    good = {c.msg.metadata.dst_node_id for s, c in zip(specs, ctxs, strict=True)
            if not s.malformed}
    bad = {c.msg.metadata.dst_node_id for s, c in zip(specs, ctxs, strict=True) if s.malformed}
    clients = guard.history[-1].clients
    rejected = {int(n) for n in clients.refused} | {int(n) for n in clients.failed}
    assert set(clients.valid) == good
    assert bad <= rejected and not good & rejected, clients
    n_bad = sum(spec.malformed for spec, _, _ in sent)
    assert metrics["trust.replies-valid"] == len(good)
    assert metrics["trust.replies-refused"] + metrics["trust.replies-failed"] == n_bad
    assert metrics["trust.replies-failed"] == sum(msg.has_error() for _, _, msg in sent)


def _identical(a: ArrayRecord, b: ArrayRecord) -> bool:
    """Same names in the same order and, per array, the same dtype, shape and bytes."""
    return list(a.keys()) == list(b.keys()) and all(
        a[k].dtype == b[k].dtype and tuple(a[k].shape) == tuple(b[k].shape)
        and a[k].data == b[k].data for k in a)


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """One folder for the module's run folders (hypothesis forbids function-scoped ones). In
    memory where possible: each audit record is fsync'ed, which dominates on a slow disk."""
    shm = Path("/dev/shm")
    if not (shm.is_dir() and os.access(shm, os.W_OK)):
        yield tmp_path_factory.mktemp("fuzz")
        return
    with tempfile.TemporaryDirectory(dir=shm, prefix="flwr-trust-fuzz-") as folder:
        yield Path(folder)


@pytest.fixture(scope="module", autouse=True)
def _report() -> Iterator[None]:
    yield
    print(f"\nfuzz: {sum(GENERATED.values())} malformed replies ({len(GENERATED)} kinds)")


# -------------------------------------------------------------------------------- tests


@pytest.mark.parametrize("kind", sorted(MALFORMED))
@pytest.mark.parametrize("position", ["first", "last"])
def test_malformed_reply_is_refused(kind: str, position: str, base: Path) -> None:
    """One malformed node among three honest ones, first (FedAvg's sum takes the dtype of the
    first reply) or last: refused, and the result equals FedAvg on the honest three."""
    specs = [Spec("honest", s) for s in (1, 2, 3)]
    specs.insert(0 if position == "first" else 3, Spec(kind, 7))
    run_batch(specs, base)


@pytest.mark.parametrize("kind", sorted(ACCEPTED))
@pytest.mark.parametrize("position", ["first", "last"])
def test_unusual_well_formed_reply_is_accepted(kind: str, position: str, base: Path) -> None:
    specs = [Spec("honest", s) for s in (1, 2)]
    specs.insert(0 if position == "first" else 2, Spec(kind, 7))
    run_batch(specs, base)


def test_only_malformed_replies_give_no_model(base: Path) -> None:
    kinds = ["nan-in-array", "error-reply", "duplicate-node", "no-array-record"]
    run_batch([Spec(k, i) for i, k in enumerate(kinds)], base)


def test_all_copies_of_a_repeated_node_are_counted(base: Path) -> None:
    run_batch([Spec("honest", 1), Spec("triplicate-node", 5), Spec("honest", 2)], base)


HONEST = st.builds(Spec, st.sampled_from(["honest"] * 4 + sorted(ACCEPTED)),
                   st.integers(0, 10**6), st.sampled_from(["float32"] * 4 + ["float64", "float16"]),
                   st.booleans())


@st.composite
def batches(draw: st.DrawFn) -> list[Spec]:
    """8-12 malformed nodes (any kinds, repeats allowed) and 2-8 well-formed ones, in any
    order."""
    kinds = draw(st.lists(st.sampled_from(sorted(MALFORMED)), min_size=8, max_size=12))
    good = draw(st.lists(HONEST, min_size=2, max_size=8))
    bad = [Spec(k, draw(st.integers(0, 10**6))) for k in kinds]
    return draw(st.permutations(bad + good))


def test_a_majority_layout_does_not_refuse_the_minority(base: Path) -> None:
    """Three replies with an extra metric key and one without: all four are aggregated, the
    odd keys dropped (a majority never decides)."""
    run_batch([Spec("odd-metric-key", s) for s in (1, 2, 3)] + [Spec("honest", 4)], base)


@settings(FUZZ, max_examples=250)
@given(specs=batches())
def test_fuzz_mixed_batches(specs: list[Spec], base: Path) -> None:
    run_batch(specs, base)


FLOATS = st.floats(allow_nan=True, allow_infinity=True)
NUMBERS = st.one_of(FLOATS, st.integers(-(10**400), 10**400), st.lists(FLOATS, max_size=3))


@settings(FUZZ, max_examples=200)
@given(value=NUMBERS, key=st.sampled_from([RS, "trust.knowledge.loglik", "trust.style.x"]),
       seed=st.integers(0, 10**6))
def test_fuzz_trust_metric_values(value: Any, key: str, seed: int, base: Path) -> None:
    """Any number or list as a `trust.*` value: refused exactly when screening.py's rule
    says so (every value finite with |v| <= 1e6)."""
    values = value if isinstance(value, list) else [value]
    ok = all(abs(v) <= MAX_ABS_TRUST_VALUE for v in values)  # False for NaN and Inf
    _one_value_batch(key, value, ok, seed, base)


@settings(FUZZ, max_examples=150)
@given(value=NUMBERS, seed=st.integers(0, 10**6))
def test_fuzz_weights(value: Any, seed: int, base: Path) -> None:
    """Any number or list as `num-examples`: accepted only as a scalar in [MIN_WEIGHT,
    MAX_WEIGHT] (then capped like every weight)."""
    ok = (not isinstance(value, list) and not isinstance(value, bool)
          and MIN_WEIGHT <= value <= MAX_WEIGHT)
    _one_value_batch("num-examples", value, ok, seed, base)


def _one_value_batch(key: str, value: Any, ok: bool, seed: int, base: Path) -> None:
    odd = Spec(f"value:{key}={value!r}"[:80], seed, make=_with_metrics(**{key: value}),
               bad=not ok)
    run_batch([Spec("honest", seed + 1), odd, Spec("honest", seed + 2)], base)


DTYPES = ["float16", "float32", "float64", ">f4", "int32", "uint8", "complex64", "bool"]


@settings(FUZZ, max_examples=200)
@given(dtype=st.sampled_from(DTYPES), shape=st.lists(st.integers(0, 5), max_size=3),
       fortran=st.booleans(), cut=st.integers(0, 200), junk=st.binary(max_size=8))
def test_decode_array_matches_flower(dtype: str, shape: list[int], fortran: bool, cut: int,
                                     junk: bytes) -> None:
    """The screen's zero-copy decoder gives Flower's `Array.numpy()` (dtype, shape, values) and
    refuses exactly the bytes Flower cannot load (truncated, or junk before the data)."""
    values = np.arange(math.prod(shape)).reshape(shape).astype(dtype)
    values = np.asfortranarray(values) if fortran else values
    arr = Array(values)
    for data in (arr.data, arr.data[:cut], junk + arr.data):
        case = Array(dtype=arr.dtype, shape=tuple(arr.shape), stype=arr.stype, data=data)
        try:
            want = case.numpy()
        except Exception:
            with pytest.raises(Exception):  # noqa: B017 - any decoding error refuses the reply
                decode_array(case)
            continue
        got = decode_array(case)
        assert got.dtype == want.dtype and got.shape == want.shape
        assert got.tobytes() == want.tobytes()


@settings(FUZZ, max_examples=100)
@given(n=st.integers(1, 300), d=st.integers(1, 700), ties=st.booleans(),
       seed=st.integers(0, 2**32 - 1))
def test_update_median_matches_sorting(n: int, d: int, ties: bool, seed: int) -> None:
    """The update checks' fast coordinate-wise median (tiled transpose + sort or selection)
    gives exactly the numbers of the plain sort along the clients axis it replaced."""
    rng = np.random.default_rng(seed)
    block = (rng.integers(-3, 3, (n, d)) if ties else rng.standard_normal((n, d)) * 1e30)
    block = block.astype(np.float32)
    srt = np.sort(block, axis=0)
    want = 0.5 * srt[(n - 1) // 2] + 0.5 * srt[n // 2]
    assert _median_rows(block).tobytes() == want.tobytes()
