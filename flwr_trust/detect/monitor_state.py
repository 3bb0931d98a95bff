"""What the behavioural monitor's sequential tests remember between rounds, and its JSON form
in the audit log (a restarted guard resumes from it: guard/resume.py)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from flwr_trust.detect.config import FAMILIES


@dataclass
class MonitorState:
    """What the sequential tests remember: per family, how many rounds ran a test (the look
    index for alpha spending), and per (mode, metric) the (round, degradation, se, df) history."""

    looks: dict[str, int] = field(default_factory=lambda: dict.fromkeys(FAMILIES, 0))
    history: dict[tuple[str, str], list[tuple[int, float, float, float]]] = field(
        default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """{"looks": family -> count, "history": mode -> metric -> [[round, d, se, df], ...]}
        for the audit log, so a restarted guard goes on spending alpha where this one was."""
        history: dict[str, dict[str, list[list[float]]]] = {}
        for (mode, metric), rows in self.history.items():
            history.setdefault(mode, {})[metric] = [list(row) for row in rows]
        return {"looks": dict(self.looks), "history": history}

    @classmethod
    def from_json(cls, data: Any) -> MonitorState | None:
        """The state `to_json` wrote, or None if any part is missing or malformed: a caller
        must then rebuild a conservative state rather than trust half of one."""
        if not isinstance(data, Mapping):
            return None
        looks, history = data.get("looks"), data.get("history")
        if not isinstance(looks, Mapping) or not isinstance(history, Mapping):
            return None
        state = cls()
        for family in FAMILIES:
            count = looks.get(family)
            if type(count) is not int or count < 0:
                return None
            state.looks[family] = count
        for mode, metrics in history.items():
            if not isinstance(metrics, Mapping):
                return None
            for metric, rows in metrics.items():
                parsed = [_history_row(r) for r in rows] if isinstance(rows, list) else [None]
                if None in parsed:
                    return None
                state.history[(str(mode), str(metric))] = parsed  # type: ignore[assignment]
        return state


def _history_row(row: Any) -> tuple[int, float, float, float] | None:
    """(round, degradation, se, df) from its JSON form (df may be "Infinity"), else None."""
    if not isinstance(row, list) or len(row) != 4 or type(row[0]) is not int:
        return None
    try:
        d, se, df = (float(x) if not isinstance(x, bool) else math.nan for x in row[1:])
    except (TypeError, ValueError):
        return None
    if not (math.isfinite(d) and math.isfinite(se) and se >= 0 and df > 0):
        return None
    return row[0], d, se, df
