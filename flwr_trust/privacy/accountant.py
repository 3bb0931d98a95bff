"""Per-client privacy accounting across rounds with Opacus's RDP accountant.

Every private release a client makes (one per message that carries private metrics) is one
Gaussian mechanism without subsampling; it is composed with ``RDPAccountant.step(noise_multiplier=
..., sample_rate=1.0)`` and converted to (epsilon, delta) by Opacus (Balle et al. 2020 conversion).
The accountant's history is kept in the node's state store (in Flower: a ConfigRecord in
``context.state``), so the spend survives across rounds in simulation and deployment alike.
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Mapping
from typing import Any

from flwr_trust.privacy.state import StateStore

STATE_KEY = "trust.privacy"


def _rdp_accountant() -> Any:
    from opacus.accountants import RDPAccountant  # lazy: importing opacus takes seconds

    return RDPAccountant()


class ClientAccountant:
    """One client's cumulative spend, computed by Opacus's ``RDPAccountant``.

    The history of releases is kept here as (noise multiplier, count) runs; an Opacus
    accountant is built from it when epsilon is asked for (so a client that never releases
    anything private never imports Opacus).
    """

    def __init__(self, history: list[tuple[float, int]] | None = None) -> None:
        self._history: list[tuple[float, int]] = []
        for noise_multiplier, steps in history or []:
            for _ in range(int(steps)):
                self.step(noise_multiplier)

    @property
    def history(self) -> list[tuple[float, int]]:
        """(noise multiplier, number of releases) runs, in order."""
        return list(self._history)

    @property
    def releases(self) -> int:
        return sum(steps for _, steps in self._history)

    def epsilon(self, delta: float) -> float:
        """Cumulative epsilon at `delta` (0 before the first release)."""
        if not self._history:
            return 0.0
        acc = _rdp_accountant()
        for noise_multiplier, steps in self._history:
            for _ in range(steps):
                acc.step(noise_multiplier=noise_multiplier, sample_rate=1.0)
        with warnings.catch_warnings():  # Opacus warns when the best order is at the grid edge
            warnings.simplefilter("ignore")
            return float(acc.get_epsilon(delta))

    def epsilon_after(self, noise_multiplier: float, delta: float) -> float:
        """Cumulative epsilon if one more release with `noise_multiplier` were made."""
        trial = copy.deepcopy(self)
        trial.step(noise_multiplier)
        return trial.epsilon(delta)

    def step(self, noise_multiplier: float) -> None:
        """Compose one Gaussian release (no subsampling)."""
        nm = float(noise_multiplier)
        if self._history and self._history[-1][0] == nm:
            self._history[-1] = (nm, self._history[-1][1] + 1)
        else:
            self._history.append((nm, 1))

    def to_values(self, exhausted: bool = False) -> dict[str, Any]:
        hist = self.history
        return {"noise-multipliers": [h[0] for h in hist] or [0.0],
                "steps": [h[1] for h in hist] or [0],
                "exhausted": bool(exhausted)}

    @classmethod
    def from_values(cls, record: Mapping[str, Any]) -> ClientAccountant:
        multipliers = list(record.get("noise-multipliers", []))
        steps = list(record.get("steps", []))
        if len(multipliers) != len(steps):
            raise ValueError(f"corrupt privacy state in context.state[{STATE_KEY!r}]")
        return cls([(float(m), int(s)) for m, s in zip(multipliers, steps, strict=True)
                    if int(s) > 0])


def load_accountant(state: StateStore) -> tuple[ClientAccountant, bool]:
    """The node's accountant and its 'exhausted' flag from its state (fresh if absent)."""
    record = state.get(STATE_KEY)
    if record is None:
        return ClientAccountant(), False
    return ClientAccountant.from_values(record), bool(record.get("exhausted", False))


def save_accountant(state: StateStore, accountant: ClientAccountant, exhausted: bool) -> None:
    state.put(STATE_KEY, accountant.to_values(exhausted))
