"""Factories for the Flower apps under baselines/: the apps themselves stay thin adapters.

    # baselines/silent-failures/silent_failures/server_app.py
    from silent_failures.sim.apps import make_server_app
    app = make_server_app()

The ServerApp runs `run_baseline` on Flower's Grid and prints the run summary, which ends with
the report's path and the wall time (each once); the ClientApp is
`silent_failures.sim.client.make_client_app()`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from flwr.app import Context
from flwr.clientapp import ClientApp
from flwr.serverapp import Grid, ServerApp

from silent_failures.sim.client import make_client_app as _make_client_app

if TYPE_CHECKING:  # the outcome module loads the ground-truth model code: only when a run starts
    from silent_failures.sim.outcome import RunOutcome


def make_client_app() -> ClientApp:
    return _make_client_app()


def make_server_app() -> ServerApp:
    app = ServerApp()

    @app.main()
    def main(grid: Grid, context: Context) -> None:
        run_and_print(grid, context.run_config)

    return app


def run_and_print(grid: Grid, run_config: Any) -> RunOutcome:
    """Run one baseline federation and print its summary once (it names the report and the
    wall time; printing them again here doubled both lines in `flwr run` output)."""
    from silent_failures.sim.server import run_baseline
    from silent_failures.sim.summary import render_summary

    outcome = run_baseline(grid, run_config)
    print("\n" + render_summary(outcome), flush=True)
    return outcome
