"""The docs cover every configuration key the code accepts."""

from __future__ import annotations

from pathlib import Path

from flwr_trust.detect.behavior import tolerance_keys
from flwr_trust.strategies.config import DETECTOR_KEYS, GUARD_KEYS, LORA_KEYS

DOCS = Path(__file__).resolve().parents[1] / "docs"


def test_every_server_key_is_documented():
    text = (DOCS / "configuration.md").read_text(encoding="utf-8")
    keys = [*GUARD_KEYS, *DETECTOR_KEYS, *LORA_KEYS,
            *(f"trust.tolerance.{k}" for k in tolerance_keys())]
    missing = [k for k in keys if f"`{k}`" not in text]
    assert not missing, f"undocumented keys in docs/configuration.md: {missing}"
