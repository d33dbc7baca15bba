"""The README's configuration table is the one the settings and the source registry make."""

from __future__ import annotations

import re
from pathlib import Path

from hoard.cli.config import config_table

README = Path(__file__).resolve().parent.parent / "README.md"


def test_readme_config_table_comes_from_the_registry() -> None:
    text = README.read_text()
    match = re.search(r"<!-- config-table:[^>]*-->\n(.*?)\n<!-- /config-table -->", text, re.S)
    assert match, "README.md lost its config-table markers"
    assert match.group(1) == config_table(), "README.md's configuration table is stale: run `make docs`"
