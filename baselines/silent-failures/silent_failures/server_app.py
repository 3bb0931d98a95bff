"""ServerApp: one baseline federation (silent_failures.sim.server.run_baseline), then its report."""

from silent_failures.sim.apps import make_server_app

app = make_server_app()
