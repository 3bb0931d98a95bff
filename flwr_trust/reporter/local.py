"""A client's local data for private metrics, and the evidence the modes compute them from.

An app hands the mod its data with ``provide_local_data(context, train=..., heldout=..., ...)``
(flwr_trust.mods); the data stays on the node. Each mode with a private part
(`FailureMode.private`, e.g. fairness's held-out loss, memorization's loss gap and canary
exposure) reads a shared `LocalEvidence`, which scores each split once for every mode. n per
split and group are treated as public; each statistic's sensitivity is stated by its mode.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from flwr_trust import modes as registry
from flwr_trust.errors import LocalDataError
from flwr_trust.privacy.private_set import PrivateSet
from flwr_trust.probes.suite import ProbeSuite
from flwr_trust.scoring.encoding import Encoder
from flwr_trust.scoring.profile import BehaviorProfile, metric_key
from flwr_trust.scoring.requests import Precision, Request

FIELDS = ("train", "heldout", "heldout_groups", "canaries")


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
        for name in FIELDS:
            value = getattr(self, name)
            if isinstance(value, str) or not all(isinstance(x, str) for x in value):
                raise LocalDataError(f"LocalData.{name} must be a sequence of strings.",
                                     "Pass e.g. train=[\"text 1\", \"text 2\"].")
            object.__setattr__(self, name, tuple(value))
        if self.heldout_groups and len(self.heldout_groups) != len(self.heldout):
            raise LocalDataError(
                f"LocalData has {len(self.heldout_groups)} held-out group labels for "
                f"{len(self.heldout)} held-out texts.", "Give one group per held-out text.")

    def to_values(self) -> dict[str, list[Any]]:
        """Plain lists (a ConfigRecord cannot hold empty lists, hence the padding and sizes)."""
        return ({k: list(getattr(self, k)) or [""] for k in FIELDS}
                | {"sizes": [len(getattr(self, k)) for k in FIELDS]})

    @classmethod
    def from_values(cls, values: Mapping[str, Any]) -> LocalData:
        sizes = list(values["sizes"])
        return cls(**{k: tuple(values[k])[:n] for k, n in zip(FIELDS, sizes, strict=True)})


def sample_losses(model: Any, tokenizer: Any, texts: Sequence[str], *, max_tokens: int,
                  precision: Precision) -> np.ndarray:
    """Mean per-token negative log-likelihood of each text (first max_tokens tokens); NaN for a
    text with no tokens, so the result stays aligned with `texts`."""
    from flwr_trust.scoring.engine import score_requests

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


class LocalEvidence:
    """One model's losses on a client's local data, scored once and shared by every mode."""

    def __init__(self, model: Any, tokenizer: Any, data: LocalData, *, groups: Sequence[str],
                 loss_bound: float, max_samples: int, max_tokens: int, precision: Precision,
                 suites: Mapping[str, ProbeSuite]) -> None:
        self.model, self.tokenizer, self.data = model, tokenizer, data
        self.groups = tuple(groups)
        self.loss_bound = loss_bound
        self.max_samples, self.max_tokens, self.precision = max_samples, max_tokens, precision
        self.suites = suites
        self._heldout: tuple[np.ndarray, np.ndarray] | None = None
        self._train: np.ndarray | None = None

    def _losses(self, texts: Sequence[str]) -> np.ndarray:
        return sample_losses(self.model, self.tokenizer, texts[:self.max_samples],
                             max_tokens=self.max_tokens, precision=self.precision)

    def heldout(self) -> tuple[np.ndarray, np.ndarray]:
        """Finite held-out losses and, aligned, each one's declared group (None if none)."""
        if self._heldout is None:
            losses = self._losses(self.data.heldout)
            ok = np.isfinite(losses)
            labels = self.data.heldout_groups[:self.max_samples]
            groups = (np.asarray([metric_key(g) for g in labels], dtype=object)[ok] if labels
                      else np.full(int(ok.sum()), None, dtype=object))
            self._heldout = losses[ok], groups
        return self._heldout

    def train(self) -> np.ndarray:
        """Finite losses of the texts the client trained on."""
        if self._train is None:
            losses = self._losses(self.data.train)
            self._train = losses[np.isfinite(losses)]
        return self._train

    def canaries(self) -> tuple[str, ...]:
        return self.data.canaries

    def suite(self, mode: str) -> ProbeSuite | None:
        return self.suites.get(mode)

    def profile(self, suites: Mapping[str, ProbeSuite]) -> BehaviorProfile:
        from flwr_trust.scoring.runner import profile_model

        return profile_model(self.model, self.tokenizer, suites, precision=self.precision)


def private_modes(modes: Iterable[str]) -> list[registry.FailureMode]:
    """The modes among `modes` that compute private statistics, in registry order."""
    wanted = set(modes)
    return [registry.get(m) for m in registry.ids() if m in wanted and registry.get(m).private]


def private_statistics(evidence: LocalEvidence, modes: Iterable[str]) -> PrivateSet:
    """Every private statistic of `modes` on the evidence, before noise."""
    out = PrivateSet()
    for mode in private_modes(modes):
        assert mode.private is not None
        out.merge(mode.private(evidence))
    return out


def expected_keys(modes: Iterable[str], groups: Sequence[str]) -> list[str]:
    """Every private metric key a reply carries when private metrics are on (a fixed key set):
    each private metric of `modes`, and its per-group variants for the declared groups."""
    out = []
    for mode in private_modes(modes):
        for metric in mode.private_metrics():
            key = f"{mode.id}.{metric.name}"
            out.append(key)
            if metric.per_group:
                out += [f"{key}/{g}" for g in groups]
    return out
