"""Shared test helpers: `guard` (a fake Grid and simulated client replies), `scripts` (the
scripts of tools/ and bench/ loaded as modules)."""
