"""Scripts that live outside the installed packages (tools/, bench/), loaded as modules."""

from __future__ import annotations

import importlib
import importlib.util
import sys
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parents[2]
TOOLS = ROOT / "tools"


def load_script(path: Path) -> ModuleType:
    """The Python file at `path` as a fresh module named after the file (not kept in
    sys.modules: each call executes it again)."""
    spec = importlib.util.spec_from_file_location(path.stem, path)
    assert spec is not None and spec.loader is not None, path
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def suite_generator() -> ModuleType:
    """tools/build_default_suites.py, imported the way running it imports its siblings: with
    tools/ on sys.path."""
    if str(TOOLS) not in sys.path:
        sys.path.insert(0, str(TOOLS))
    return importlib.import_module("build_default_suites")
