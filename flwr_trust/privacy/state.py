"""Where a client keeps what must survive across rounds (privacy spend, shift history).

The core only needs named bundles of plain values (numbers, strings, lists of them). In a
Flower app the mod stores them as ConfigRecords in ``context.state``, which Flower keeps on the
node and never sends (flwr_trust.mods.RecordState); `MemoryState` keeps them in a dict.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol


class StateStore(Protocol):
    """A key-value store of plain-value bundles, persistent for one node over a run."""

    def get(self, key: str) -> Mapping[str, Any] | None: ...

    def put(self, key: str, values: Mapping[str, Any]) -> None: ...


class MemoryState:
    """A `StateStore` in memory (tests, and apps outside Flower)."""

    def __init__(self) -> None:
        self.values: dict[str, dict[str, Any]] = {}

    def get(self, key: str) -> Mapping[str, Any] | None:
        return self.values.get(key)

    def put(self, key: str, values: Mapping[str, Any]) -> None:
        self.values[key] = dict(values)
