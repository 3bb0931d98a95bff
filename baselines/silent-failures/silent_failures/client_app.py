"""ClientApp: LoRA fine-tuning on scenario data, with flwr-trust's client mod."""

from silent_failures.sim.apps import make_client_app

app = make_client_app()
