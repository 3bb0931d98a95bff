"""Per round, over the replies the inner strategy is given (`normalize_round`, after every
refusal of `screening.py`): normalizations, so that no reply is refused for what other replies
sent; a majority never decides:
- record names: the ArrayRecord under the name the round's instructions used (its arrays in
  the global model's order), every MetricRecord under one name;
- user metric keys: those every valid reply carries with the same shape; other keys are
  dropped from the replies that have them (logged);
- weights: each at most k x the lower median of the round's weights, k = max(1, floor(s /
  (1 - s) x floor(n / 2))) for the maximum share s (default 0.5): a single reply then carries
  at most the share s of the round's weight as long as the other replies are honest
  (docs/protocol.md gives the argument and the table); a loss weighted as loss**q (QFedAvg)
  is capped the same way on loss**q, so a self-declared loss steers no more than a weight.
"""

from __future__ import annotations

import math
from typing import Any

from flwr.app import ArrayRecord, Message, MetricRecord

from flwr_trust.protocol import PREFIX
from flwr_trust.strategies.screening import METRICS_NAME, RoundSpec, finite_number, node_of


def normalize_round(messages: list[Message], spec: RoundSpec) -> list[str]:
    """Record names, array order, the metric keys every reply shares, and the weight cap, over
    the replies the inner strategy is given (after every refusal: a refused reply must not
    move the cap or drop a key). Changes the messages in place; returns the notes to log."""
    notes: list[str] = []
    if not messages:
        return notes
    names = {next(iter(m.content.metric_records)) for m in messages}
    metrics_name = names.pop() if len(names) == 1 else METRICS_NAME
    arrays_name = spec.arrays_name if spec.layout is not None else None
    if metrics_name == arrays_name:  # one RecordDict key cannot hold both records
        metrics_name = f"{arrays_name}-{METRICS_NAME}"
    for msg in messages:
        _rename(msg, arrays_name, metrics_name, list(spec.layout or {}))
    shapes = [{k: len(v) if isinstance(v, list) else -1 for k, v in _metrics(m).items()
               if not k.startswith(PREFIX)} for m in messages]
    shared = set.intersection(*(set(s.items()) for s in shapes))
    dropped = sorted({k for s in shapes for k in s} - {k for k, _ in shared})
    if dropped:
        notes.append(f"metric keys {dropped[:5]} are not carried by every valid reply "
                     "with one shape: dropped from this round's aggregation")
        for msg in messages:
            record = _metrics(msg)
            for key in dropped:
                if key in record:
                    del record[key]
    if spec.weighted_by_key is not None:
        notes += _cap_weights(messages, spec)
    if spec.loss_weight is not None and spec.loss_weight[1] > 0:
        notes += _cap_losses(messages, spec, *spec.loss_weight)
    return notes


def _rename(msg: Message, arrays_name: str | None, metrics_name: str,
            order: list[str]) -> None:
    """Put the reply's records under the round's names (both taken out first: a reply may use
    one record's name for the other) and its arrays in the global model's order."""
    content = msg.content
    metrics_key, metrics = next(iter(content.metric_records.items()))
    del content[metrics_key]
    if arrays_name is not None:
        name, record = next(iter(content.array_records.items()))
        del content[name]
        if list(record.keys()) != order:
            record = ArrayRecord({k: record[k] for k in order})
        content[arrays_name] = record
    content[metrics_name] = metrics


def _metrics(msg: Message) -> MetricRecord:
    return next(iter(msg.content.metric_records.values()))


def cap_factor(n: int, share: float) -> float:
    """k of the weight cap: a single reply's weight share stays <= `share` (module docstring);
    share >= 1 turns the cap off."""
    if share >= 1.0:
        return math.inf
    return max(1.0, math.floor(share / (1.0 - share) * (n // 2)))


def capped_weights(weights: list[float], share: float) -> tuple[list[float], float, float]:
    """The weight cap on one round's weights (module docstring): the weights with those above
    the cap set to it, the cap, and the lower median it is a multiple of."""
    lower_median = sorted(weights)[(len(weights) - 1) // 2]
    cap = cap_factor(len(weights), share) * lower_median
    return [min(w, cap) for w in weights], cap, lower_median


def _cap_weights(messages: list[Message], spec: RoundSpec) -> list[str]:
    key = spec.weighted_by_key
    assert key is not None
    weights = [float(_metrics(m)[key]) for m in messages]
    new, cap, lower_median = capped_weights(weights, spec.max_weight_share)
    capped = []
    for msg, old, weight in zip(messages, weights, new, strict=True):
        if weight < old:
            capped.append(node_of(msg))
            _metrics(msg)[key] = float(weight)
    if not capped:
        return []
    return [f"weights of nodes {capped[:5]} capped at {cap:g} (at most "
            f"{spec.max_weight_share:g} of the round; lower median {lower_median:g})"]


def _cap_losses(messages: list[Message], spec: RoundSpec, key: str, q: float) -> list[str]:
    """The weight cap on (loss + 1e-10)**q, the weight QFedAvg gives a reply (its own offset):
    a loss above the cap is lowered to the loss whose weight is the cap. In logs, where
    loss**q cannot overflow (1e15**25 does): log w = q log(loss + 1e-10), the cap log k + the
    lower median's log w. The cost, as for weights: with 2-3 replies, or a large q, honest
    high-loss clients lose some of the up-weighting q-FFL exists for (share 1 turns it off)."""
    k = cap_factor(len(messages), spec.max_weight_share)
    if math.isinf(k):
        return []
    losses = [float(_metrics(m)[key]) for m in messages]
    logs = [q * math.log(x + 1e-10) for x in losses]
    cap_log = math.log(k) + sorted(logs)[(len(logs) - 1) // 2]
    cap = max(0.0, math.exp(cap_log / q) - 1e-10)
    capped = []
    for msg, log_w in zip(messages, logs, strict=True):
        if log_w > cap_log:
            capped.append(node_of(msg))
            _metrics(msg)[key] = cap
    if not capped:
        return []
    return [f"losses '{key}' of nodes {capped[:5]} capped at {cap:g} (their weight "
            f"loss**{q:g} at most {spec.max_weight_share:g} of the round)"]


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


def loss_weight_of(strategy: Any) -> tuple[str, float] | None:
    """(key, q) when an inner strategy weights replies by a reported loss as loss**q
    (QFedAvg's `train_loss_key` and `q`; looks through DP wrappers)."""
    seen = 0
    while strategy is not None and seen < 5:
        key, q = getattr(strategy, "train_loss_key", None), getattr(strategy, "q", None)
        if isinstance(key, str) and finite_number(q):
            return key, float(q)
        strategy = getattr(strategy, "strategy", None)
        seen += 1
    return None
