"""Run baseline federations in this process (InlineGrid): tests and the detection matrix.

`run_inline(num_clients=4, scenario=..., monitor=..., model="tiny")` is one federation with the
same ClientApp and server code as `flwr run baselines/silent-failures`, without Ray or a
SuperLink, so that hundreds of short runs fit in minutes.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from silent_failures.sim.client import make_client_app
from silent_failures.sim.config import parse_config
from silent_failures.sim.inline import InlineGrid
from silent_failures.sim.outcome import RunOutcome
from silent_failures.sim.server import run_baseline

_APP: list[Any] = []


def run_inline(*, num_clients: int = 4, run_config: Mapping[str, Any] | None = None,
               base_dir: str | Path | None = None, tensorboard: bool = False,
               report: bool = False, **keys: Any) -> RunOutcome:
    """One federation of `num_clients` in-process clients. `keys` are baseline keys in Python
    spelling (monitor="trust-rollback", num_server_rounds=3); `run_config` may add trust.*."""
    config = dict(run_config or {})
    config |= parse_config(config, **keys).to_json()
    if not _APP:
        _APP.append(make_client_app())
    grid = InlineGrid(_APP[0], num_clients, config)
    return run_baseline(grid, config, base_dir=base_dir, tensorboard=tensorboard,
                        report=report)
