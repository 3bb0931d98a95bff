"""How an app hands the mod its local data, and the private metrics computed on it.

An app calls ``provide_local_data(context, train=..., heldout=..., ...)`` in its train or
evaluate function (any time before it returns). The texts are stored in ``context.state``, which
Flower keeps on the node and never sends; the mod reads them after the app's function returns.
Apps built with `make_trust_mod` may pass ``local_data=callable(context) -> LocalData`` instead.

From the data, `private_statistics` computes (before noise, with their sensitivities under the
substitution of one local sample by another of the same split and declared group; n per split
and group are treated as public):

- ``fairness.local-loss``: mean held-out loss (per-sample mean token NLL clipped to [0, B]),
  sensitivity B / n_heldout; ``fairness.local-loss/<group>`` for each declared group, B / n_group
  (the groups are disjoint, so together they count as one statistic);
- ``memorization.loss-gap``: mean train loss minus mean held-out loss (both clipped),
  sensitivity B / min(n_train, n_heldout): how much better the model fits what it trained on;
- ``memorization.local-canary-exposure``: mean exposure (bits) of the canaries this client
  planted in its training data, sensitivity log2(k) / c for c canaries of k candidates.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from flwr.app import ConfigRecord, Context

from flwr_trust.errors import TrustError
from flwr_trust.mods.report import PrivateMetric
from flwr_trust.privacy.mechanism import Statistic, clipped_mean
from flwr_trust.probes.suite import ProbeItem, ProbeSuite
from flwr_trust.scoring.encoding import Encoder
from flwr_trust.scoring.engine import Precision, Request, score_requests
from flwr_trust.scoring.profile import metric_key

STATE_KEY = "trust.local-data"
LOCAL_LOSS = "fairness.local-loss"
LOSS_GAP = "memorization.loss-gap"
CANARY_EXPOSURE = "memorization.local-canary-exposure"
GROUP_BLOCK = "fairness.local-loss/groups"  # the statistic holding all per-group losses


class LocalDataError(TrustError):
    """Local data handed to the mod is malformed."""


@dataclass(frozen=True)
class LocalData:
    """Texts the client trained on this round and texts it held out.

    heldout_groups: one declared group name per held-out text (or empty); only names listed in
    ``trust.local-data.groups`` get per-group metrics. canaries: ids of items of the memorization
    suite whose ``canary_text`` the app planted in its training data.
    """

    train: tuple[str, ...] = ()
    heldout: tuple[str, ...] = ()
    heldout_groups: tuple[str, ...] = ()
    canaries: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        for name in ("train", "heldout", "heldout_groups", "canaries"):
            value = getattr(self, name)
            if isinstance(value, str) or not all(isinstance(x, str) for x in value):
                raise LocalDataError(f"LocalData.{name} must be a sequence of strings.",
                                     "Pass e.g. train=[\"text 1\", \"text 2\"].")
            object.__setattr__(self, name, tuple(value))
        if self.heldout_groups and len(self.heldout_groups) != len(self.heldout):
            raise LocalDataError(
                f"LocalData has {len(self.heldout_groups)} held-out group labels for "
                f"{len(self.heldout)} held-out texts.", "Give one group per held-out text.")

    def to_config_record(self) -> ConfigRecord:
        return ConfigRecord({k: list(getattr(self, k)) or [""] for k in
                             ("train", "heldout", "heldout_groups", "canaries")}
                            | {"sizes": [len(self.train), len(self.heldout),
                                         len(self.heldout_groups), len(self.canaries)]})

    @classmethod
    def from_config_record(cls, record: ConfigRecord) -> LocalData:
        sizes = list(record["sizes"])
        fields = ("train", "heldout", "heldout_groups", "canaries")
        return cls(**{k: tuple(record[k])[:n] for k, n in zip(fields, sizes, strict=True)})


def provide_local_data(context: Context, data: LocalData | None = None, *,
                       train: Sequence[str] = (), heldout: Sequence[str] = (),
                       heldout_groups: Sequence[str] = (), canaries: Sequence[str] = ()) -> None:
    """Hand the trust mod this round's local data (kept in context.state, never sent)."""
    if data is None:
        data = LocalData(tuple(train), tuple(heldout), tuple(heldout_groups), tuple(canaries))
    context.state.config_records[STATE_KEY] = data.to_config_record()


def local_data_from_context(context: Context) -> LocalData | None:
    record = context.state.config_records.get(STATE_KEY)
    return None if record is None else LocalData.from_config_record(record)


def canary_text(item: ProbeItem) -> str:
    """The text an app plants to insert a canary: its prefix followed by its true secret."""
    if item.answer is None or not item.choices:
        raise LocalDataError(f"Probe item {item.id!r} is not a canary.",
                             "Use items of the memorization suite.")
    return item.prompt + item.choices[item.answer]


def sample_losses(model: Any, tokenizer: Any, texts: Sequence[str], *, max_tokens: int,
                  precision: Precision) -> np.ndarray:
    """Mean per-token negative log-likelihood of each text (first max_tokens tokens); NaN for a
    text with no tokens, so the result stays aligned with `texts`."""
    encoder = Encoder(tokenizer)
    out = np.full(len(texts), np.nan)
    rows, requests = [], []
    for i, text in enumerate(texts):
        ids = encoder.ids(text)[:max_tokens]
        if ids:
            rows.append(i)
            requests.append(Request(encoder.start, ids))
    if not requests:
        return out
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else \
        tokenizer.eos_token_id
    was_training = getattr(model, "training", False)
    model.eval()
    try:
        scores = score_requests(model, requests, pad_id=int(pad), precision=precision)
    finally:
        if was_training:
            model.train()
    out[rows] = -scores.logprob / np.maximum(scores.n_tokens, 1)
    return out


def expected_keys(groups: Sequence[str]) -> list[str]:
    """Every private metric key a reply carries when private metrics are on (fixed key set)."""
    return [LOCAL_LOSS] + [f"{LOCAL_LOSS}/{g}" for g in groups] + [LOSS_GAP, CANARY_EXPOSURE]


@dataclass
class PrivateSet:
    """The private metrics of one message before noise: what to report, what to noise, and why
    some expected metrics are absent (key -> reason)."""

    metrics: list[PrivateMetric] = field(default_factory=list)
    statistics: list[Statistic] = field(default_factory=list)
    absent: dict[str, str] = field(default_factory=dict)

    def add(self, key: str, value: float, sensitivity: float, n: int, span: float) -> None:
        self.statistics.append(Statistic.scalar(key, value, sensitivity))
        self.metrics.append(PrivateMetric(key, n, span / (2 * math.sqrt(n)), key))


def private_statistics(model: Any, tokenizer: Any, data: LocalData, *, groups: Sequence[str],
                       loss_bound: float, max_samples: int, max_tokens: int,
                       precision: Precision, canary_suite: ProbeSuite | None) -> PrivateSet:
    """The private metrics computable from `data` on `model` (see the module docstring)."""
    b = loss_bound
    out = PrivateSet()
    labels = data.heldout_groups[:max_samples]
    held_all = sample_losses(model, tokenizer, data.heldout[:max_samples],
                             max_tokens=max_tokens, precision=precision)
    ok = np.isfinite(held_all)
    held = held_all[ok]
    group_of = np.asarray([metric_key(g) for g in labels], dtype=object)[ok] if labels \
        else np.full(held.size, None, dtype=object)
    group_keys = [f"{LOCAL_LOSS}/{g}" for g in groups]
    if held.size >= 2:
        mean, sens = clipped_mean(held, b)
        out.add(LOCAL_LOSS, mean, sens, int(held.size), b)
        present = [(key, held[group_of == g]) for key, g in zip(group_keys, groups, strict=True)]
        present = [(key, sel) for key, sel in present if sel.size >= 1]
        out.absent |= {k: "no held-out sample of this group" for k in group_keys
                       if k not in dict(present)}
        if present:  # disjoint groups: one substitution moves one coordinate (one statistic)
            means = [clipped_mean(sel, b) for _, sel in present]
            out.statistics.append(Statistic(GROUP_BLOCK, np.asarray([m for m, _ in means]),
                                            np.asarray([sv for _, sv in means])))
            out.metrics += [PrivateMetric(key, int(sel.size), b / (2 * math.sqrt(sel.size)),
                                          GROUP_BLOCK, i)
                            for i, (key, sel) in enumerate(present)]
    else:
        out.absent |= dict.fromkeys([LOCAL_LOSS, *group_keys], "fewer than 2 held-out samples")
    trained = sample_losses(model, tokenizer, data.train[:max_samples], max_tokens=max_tokens,
                            precision=precision)
    trained = trained[np.isfinite(trained)]
    if trained.size >= 2 and held.size >= 2:
        gap = clipped_mean(trained, b)[0] - clipped_mean(held, b)[0]
        n = int(min(trained.size, held.size))
        out.add(LOSS_GAP, gap, b / n, n, b)
    else:
        out.absent[LOSS_GAP] = "fewer than 2 train or held-out samples"
    _add_canaries(out, model, tokenizer, data.canaries, canary_suite, precision)
    return out


def _add_canaries(out: PrivateSet, model: Any, tokenizer: Any, ids: Sequence[str],
                  suite: ProbeSuite | None, precision: Precision) -> None:
    if not ids:
        out.absent[CANARY_EXPOSURE] = "no canaries declared"
        return
    if suite is None:
        out.absent[CANARY_EXPOSURE] = "no memorization suite loaded"
        return
    index: Mapping[str, int] = {item.id: i for i, item in enumerate(suite.items)}
    unknown = [c for c in ids if c not in index]
    if unknown:
        # The reason travels to the server in the error reply: count, do not name, the ids.
        raise LocalDataError(f"{len(unknown)} declared canary ids are not in the memorization "
                             f"suite {suite.name}.", "Declare ids of items you planted with "
                                                     "canary_text(item).")
    from flwr_trust.scoring.runner import profile_model

    planted = suite.subset(sorted({index[c] for c in ids}), name_suffix="@planted")
    profile = profile_model(model, tokenizer, {"memorization": planted}, precision=precision)
    exposure = profile.get("memorization", "canary-exposure")
    top = math.log2(max(len(item.choices) for item in planted.items))
    c = len(planted.items)
    value = min(max(exposure.value, 0.0), top) if exposure is not None else 0.0
    out.add(CANARY_EXPOSURE, value, top / c, c, top)
