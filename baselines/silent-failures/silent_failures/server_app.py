"""ServerApp: one baseline federation (flwr_trust.sim.server.run_baseline), then its report."""

from flwr_trust.sim.apps import make_server_app

app = make_server_app()
