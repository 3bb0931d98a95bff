"""How a Flower app hands the mod its local data, and where the mod keeps per-node state.

An app calls ``provide_local_data(context, train=..., heldout=..., ...)`` in its train or
evaluate function (any time before it returns). The texts are stored in ``context.state``, which
Flower keeps on the node and never sends; the mod reads them after the app's function returns.
Apps built with `make_trust_mod` may pass ``local_data=callable(context) -> LocalData`` instead.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from flwr.app import ConfigRecord, Context, RecordDict

from flwr_trust.reporter.local import LocalData

STATE_KEY = "trust.local-data"


def provide_local_data(context: Context, data: LocalData | None = None, *,
                       train: Sequence[str] = (), heldout: Sequence[str] = (),
                       heldout_groups: Sequence[str] = (), canaries: Sequence[str] = ()) -> None:
    """Hand the trust mod this round's local data (kept in context.state, never sent)."""
    if data is None:
        data = LocalData(tuple(train), tuple(heldout), tuple(heldout_groups), tuple(canaries))
    context.state.config_records[STATE_KEY] = ConfigRecord(data.to_values())


def local_data_from_context(context: Context) -> LocalData | None:
    record = context.state.config_records.get(STATE_KEY)
    return None if record is None else LocalData.from_values(record)


class RecordState:
    """The node's ``context.state`` as the reporter's state store (a ConfigRecord per key)."""

    def __init__(self, state: RecordDict) -> None:
        self.state = state

    def get(self, key: str) -> Mapping[str, Any] | None:
        return self.state.config_records.get(key)

    def put(self, key: str, values: Mapping[str, Any]) -> None:
        self.state.config_records[key] = ConfigRecord(dict(values))
