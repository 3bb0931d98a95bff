"""Factories for the Flower apps under baselines/: the apps themselves stay thin adapters.

    # baselines/silent-failures/silent_failures/server_app.py
    from silent_failures.sim.apps import make_server_app
    app = make_server_app()

The ServerApp runs `run_baseline` on Flower's Grid, prints the run summary, the report's path
and the wall time; the ClientApp is `silent_failures.sim.client.make_client_app()`.
"""

from __future__ import annotations

import time

from flwr.app import Context
from flwr.clientapp import ClientApp
from flwr.serverapp import Grid, ServerApp

from silent_failures.sim.client import make_client_app as _make_client_app


def make_client_app() -> ClientApp:
    return _make_client_app()


def make_server_app() -> ServerApp:
    app = ServerApp()

    @app.main()
    def main(grid: Grid, context: Context) -> None:
        from silent_failures.sim.server import run_baseline
        from silent_failures.sim.summary import render_summary

        start = time.perf_counter()
        outcome = run_baseline(grid, context.run_config)
        print("\n" + render_summary(outcome), flush=True)
        where = outcome.report or f"{outcome.run_dir}/summary.md"
        print(f"Report: {where}", flush=True)
        print(f"Wall time (ServerApp): {time.perf_counter() - start:.1f} s", flush=True)

    return app
