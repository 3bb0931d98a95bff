"""The private data-shift report of train messages: this round's noised token sketch of the
client's training data, compared with its earlier rounds and with the public probe text
(flwr_trust.privacy.shift holds the sketch and the maths)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from flwr_trust import protocol
from flwr_trust.privacy.mechanism import Statistic
from flwr_trust.privacy.shift import (
    SKETCH_NAME,
    ShiftHistory,
    sketch,
    sketch_statistic,
    squared_distance,
)
from flwr_trust.privacy.state import StateStore
from flwr_trust.probes.suite import ProbeSuite, combined_hash
from flwr_trust.protocol import Number, absent, entry
from flwr_trust.reporter.probing import ProbeTarget

if TYPE_CHECKING:
    from flwr_trust.config.client import TrustConfig
    from flwr_trust.reporter.local import LocalData
    from flwr_trust.reporter.reporter import RoundPlan


def token_ids(tokenizer: Any, text: str) -> list[int]:
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])


class ShiftReporter:
    """Builds the shift statistic and, once released, its two distances; caches the public
    reference sketch per (tokenizer, suites, buckets)."""

    def __init__(self, suites: Callable[[TrustConfig], Mapping[str, ProbeSuite]]) -> None:
        self._suites = suites
        self._reference: dict[tuple[int, str, int], np.ndarray] = {}

    def statistic(self, plan: RoundPlan, data: LocalData | None,
                  target: Callable[[], ProbeTarget]) -> tuple[Statistic | None, int]:
        """This round's sketch as a private statistic, and its sample count."""
        cfg = plan.cfg
        if plan.kind != "train" or not cfg.shift or data is None or not data.train:
            return None, 0
        tokenizer = target().tokenizer
        samples = [token_ids(tokenizer, t)[:cfg.max_tokens] for t in data.train[:cfg.max_samples]]
        if not any(samples):
            return None, 0
        return sketch_statistic(samples, cfg.shift_buckets)

    def metrics(self, plan: RoundPlan, released: Mapping[str, Any], n: int, state: StateStore,
                target: Callable[[], ProbeTarget]) -> dict[str, Number]:
        """trust.shift.from-earlier / from-reference from the released (noised) sketch."""
        keys = (protocol.SHIFT_FROM_EARLIER, protocol.SHIFT_FROM_REFERENCE)
        noised = released.get(SKETCH_NAME)
        if noised is None:
            return absent(keys[0]) | absent(keys[1])
        var = float(np.mean(noised.noise_std ** 2))  # the same for every coordinate
        history = ShiftHistory.from_state(state, plan.cfg.shift_buckets)
        out: dict[str, Number] = {}
        if history.count:
            mean, var_mean = history.mean()
            est, std = squared_distance(noised.value, var, mean, var_mean)
            out |= entry(keys[0], est, 0.0, n, std)
        else:
            out |= absent(keys[0])
        est, std = squared_distance(noised.value, var, self.reference(plan.cfg, target), 0.0)
        out |= entry(keys[1], est, 0.0, n, std)
        history.add(noised.value, var)
        history.save(state)
        return out

    def reference(self, cfg: TrustConfig, target: Callable[[], ProbeTarget]) -> np.ndarray:
        """The sketch of the public probe text of the probed modes (computed once)."""
        tokenizer = target().tokenizer
        suites = {m: s for m, s in self._suites(cfg).items() if m in cfg.modes}
        key = (id(tokenizer), combined_hash({m: s.hash for m, s in suites.items()}),
               cfg.shift_buckets)
        if key not in self._reference:
            texts = [t for s in suites.values() for i in s.items
                     for t in (i.prompt, i.text, *i.choices) if t]
            ids = [token_ids(tokenizer, t)[:cfg.max_tokens] for t in texts]
            self._reference[key] = sketch([x for x in ids if x], cfg.shift_buckets)[0]
        return self._reference[key]
