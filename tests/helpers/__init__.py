"""Shared test helpers: `guard` (a fake Grid and simulated client replies), `mods` (small
suites, a tiny LoRA app and Flower messages for the trust_mod tests), `flower` (isolated Flower
processes for the `flwr run` and deployment tests), `scripts` (the scripts of tools/ and bench/
loaded as modules)."""
