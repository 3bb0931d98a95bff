"""The reply contract's properties checked on one adversarial round (docs/protocol.md "Reply
contract"): shared by tests/test_guard_fuzz.py and bench/adversarial_replies.py.

`run_batch` sends one round of replies (tests/helpers/adversary.py builds them) to a fresh
TrustGuard over an inner strategy and asserts:

- the call never raises;
- no contamination: the returned arrays are bit-identical to the inner strategy alone (a fresh
  instance, configured the same way) on only the well-formed replies the gate did not leave out,
  normalized as the contract states (record names, array order and dtype, shared metric keys,
  capped weights), or None when there are none;
- every malformed reply is refused or counted as failed, with a reason, and counted in the
  round's `trust.replies-refused` / `trust.replies-failed`; no well-formed one is.
"""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from flwr.app import Array, ArrayRecord, ConfigRecord, Message
from flwr.serverapp.strategy import (
    FedAdam,
    FedAvg,
    FedAvgM,
    FedMedian,
    FedProx,
    FedTrimmedAvg,
    FedYogi,
    Krum,
    MultiKrum,
)

from flwr_trust.protocol import hash_to_int
from flwr_trust.strategies import TrustGuard
from flwr_trust.strategies.normalization import capped_weights
from tests.helpers.adversary import INIT, INIT_NP, Ctx, Spec
from tests.helpers.guard import FakeGrid

Factory = Callable[[], Any]
# The inner strategies besides FedAvg that the suite runs (stateful FedOpt ones included).
OTHER_INNERS: dict[str, Factory] = {
    "fedprox": lambda: FedProx(proximal_mu=0.1),
    "fedadam": FedAdam,
    "fedyogi": FedYogi,
    "fedavgm": lambda: FedAvgM(server_momentum=0.9),
    "fedmedian": FedMedian,
    "fedtrimmedavg": lambda: FedTrimmedAvg(beta=0.2),
    "krum": lambda: Krum(num_malicious_nodes=0),
    "multikrum": lambda: MultiKrum(num_malicious_nodes=0, num_nodes_to_select=2),
}


@dataclass
class BatchResult:
    """What one batch sent and what the guard did with it."""

    sent: int = 0  # messages
    malformed: int = 0  # messages that must be refused or failed
    refused: int = 0
    failed: int = 0
    reasons: Counter[str] = field(default_factory=Counter)  # refusal reason -> count
    kinds: Counter[str] = field(default_factory=Counter)  # malformed kind -> messages
    node_kind: dict[int, str] = field(default_factory=dict)  # node -> its Spec's kind
    weights: dict[int, float] = field(default_factory=dict)  # valid node -> weight aggregated
    contaminated: bool = False  # never True when run_batch returns (it asserts)


_RUNS = itertools.count()


def run_batch(specs: list[Spec], base: Path, inner: Factory = FedAvg, gate: str = "off"
              ) -> BatchResult:
    """One round: node i sends specs[i]'s message(s), in list order, to a fresh
    TrustGuard(inner()); check the properties in the module docstring."""
    guard = TrustGuard(inner(), model=None, tensorboard=False, gate=gate,
                       run_dir=base / f"run-{next(_RUNS)}")
    grid = FakeGrid(len(specs))
    instructions = sorted(guard.configure_train(1, INIT, ConfigRecord(), grid),
                          key=lambda m: m.metadata.dst_node_id)
    suite = hash_to_int(guard.client_suite_hash)
    ctxs = [Ctx(m, suite, s.seed) for m, s in zip(instructions, specs, strict=True)]
    sent = [(spec, ctx, msg) for spec, ctx in zip(specs, ctxs, strict=True)
            for msg in spec.build(ctx)]
    out = BatchResult(sent=len(sent))
    arrays, metrics = guard.aggregate_train(1, [msg for _, _, msg in sent])
    record = guard.history[-1]
    clients, excluded = record.clients, {int(n) for n in record.gate.excluded}

    # The inner strategy alone (configured like the guard's) on fresh copies of only the
    # well-formed replies the gate did not leave out, in the same order.
    reference_strategy = inner()
    reference_strategy.configure_train(1, INIT, ConfigRecord(), grid)
    reference = [m for spec, ctx, _ in sent if not spec.malformed
                 for m in spec.build(ctx, for_reference=True)
                 if m.metadata.src_node_id not in excluded]
    _normalize_reference(reference)
    want_arrays, want_metrics = (reference_strategy.aggregate_train(1, reference)
                                 if reference else (None, None))

    # 1. No contamination.
    if want_arrays is None:
        assert arrays is None, "arrays were aggregated from no well-formed reply"
    else:
        assert arrays is not None, "the well-formed replies were not aggregated"
        assert identical(arrays, want_arrays), "global arrays differ from the inner's alone"
        assert want_metrics is not None and metrics is not None
        assert {k: v for k, v in metrics.items() if not k.startswith("trust.")} \
            == dict(want_metrics.items())

    # 2. Every malformed reply is refused or failed, with a reason; no well-formed one.
    assert metrics is not None
    good = {c.msg.metadata.dst_node_id for s, c in zip(specs, ctxs, strict=True)
            if not s.malformed}
    bad = {msg.metadata.src_node_id for s, _, msg in sent if s.malformed}
    rejected = {int(n) for n in clients.refused} | {int(n) for n in clients.failed}
    assert set(clients.valid) == good
    assert bad <= rejected and not good & rejected, clients
    assert all(reason.strip() for reason in [*clients.refused.values(),
                                             *clients.failed.values()])
    out.malformed = sum(spec.malformed for spec, _, _ in sent)
    out.refused = int(metrics["trust.replies-refused"])
    out.failed = int(metrics["trust.replies-failed"])
    assert metrics["trust.replies-valid"] == len(good)
    assert out.refused + out.failed == out.malformed
    assert out.failed == sum(msg.has_error() for _, _, msg in sent)
    out.reasons.update(reason_kind(r) for r in clients.refused.values())
    out.kinds.update(spec.kind.split("=")[0] for spec, _, _ in sent if spec.malformed)
    out.node_kind = {c.msg.metadata.dst_node_id: s.kind for s, c in zip(specs, ctxs, strict=True)}
    key = "num-examples"  # the guard normalizes the valid replies in place (weight cap)
    out.weights = {msg.metadata.src_node_id: float(next(iter(
        msg.content.metric_records.values()))[key]) for spec, _, msg in sent
        if msg.metadata.src_node_id in good and not spec.malformed}
    return out


def reason_kind(reason: str) -> str:
    """A refusal reason without its numbers and names, for counting by kind."""
    words = [w for w in reason.replace(":", " ").split()
             if not any(ch.isdigit() for ch in w) and "'" not in w and "[" not in w]
    return " ".join(words[:6])


def _normalize_reference(reference: list[Message]) -> None:
    """The reply contract's per-round normalizations, written out again for the reference:
    records renamed to the instructions' names, arrays in the global model's order and dtype
    (the accepted float dtypes convert losslessly), user
    metric keys kept only where every reply has them with one shape, weights capped
    (normalization.capped_weights) at the default share."""
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


def identical(a: ArrayRecord, b: ArrayRecord) -> bool:
    """Same names in the same order and, per array, the same dtype, shape and bytes."""
    return list(a.keys()) == list(b.keys()) and all(
        a[k].dtype == b[k].dtype and tuple(a[k].shape) == tuple(b[k].shape)
        and a[k].data == b[k].data for k in a)

