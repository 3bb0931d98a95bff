"""The docs cover every configuration key the code accepts: their tables are generated from
the key table and the mode registry (tools/config_docs.py) and must be up to date."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from flwr_trust.config.keys import KEYS
from flwr_trust.modes import tolerance_keys

ROOT = Path(__file__).resolve().parents[1]


def _tool():
    spec = importlib.util.spec_from_file_location("config_docs", ROOT / "tools" / "config_docs.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_generated_tables_are_up_to_date():
    tool = _tool()
    for name in tool.FILES:
        text = (ROOT / "docs" / name).read_text(encoding="utf-8")
        assert tool.render(text) == text, f"docs/{name} is stale: run python tools/config_docs.py"


def test_every_key_and_tolerance_is_documented():
    text = "".join((ROOT / "docs" / n).read_text(encoding="utf-8")
                   for n in ("configuration.md", "client.md"))
    keys = [k.name for k in KEYS] + [f"trust.tolerance.{k}" for k in tolerance_keys()]
    missing = [k for k in keys if f"`{k}`" not in text]
    assert not missing, f"undocumented keys: {missing}"
