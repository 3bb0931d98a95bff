"""Rewrite the configuration tables in docs/ from the key table (flwr_trust.config.keys) and
the mode registry, between markers like ``<!-- generated: keys-server -->`` and
``<!-- /generated -->``. tests/test_docs.py checks that the docs equal what this writes.

    python tools/config_docs.py          # rewrite docs/configuration.md and docs/client.md
    python tools/config_docs.py --check  # exit 1 if they are out of date
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Callable
from pathlib import Path

from flwr_trust.config.keys import markdown_table
from flwr_trust.config.server import tolerance_table

DOCS = Path(__file__).resolve().parents[1] / "docs"
TABLES: dict[str, Callable[[], str]] = {
    "keys-server": lambda: markdown_table("server"),
    "keys-client": lambda: markdown_table("client"),
    "tolerances": tolerance_table,
}
FILES = ("configuration.md", "client.md")
_BLOCK = re.compile(r"(<!-- generated: ([a-z-]+) -->\n)(.*?)(<!-- /generated -->)", re.DOTALL)


def render(text: str) -> str:
    """`text` with every generated block replaced by its current table."""
    def fill(match: re.Match[str]) -> str:
        name = match.group(2)
        if name not in TABLES:
            raise SystemExit(f"unknown generated block {name!r}; known: {sorted(TABLES)}")
        return f"{match.group(1)}{TABLES[name]()}\n{match.group(4)}"
    return _BLOCK.sub(fill, text)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only check, write nothing")
    args = parser.parse_args(argv)
    stale = []
    for name in FILES:
        path = DOCS / name
        text = path.read_text(encoding="utf-8")
        new = render(text)
        if new != text:
            stale.append(name)
            if not args.check:
                path.write_text(new, encoding="utf-8")
    if stale:
        print(("out of date: " if args.check else "rewrote: ") + ", ".join(stale))
    return 1 if stale and args.check else 0


if __name__ == "__main__":
    sys.exit(main())
