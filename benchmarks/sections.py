"""Generated sections of README.md / BENCHMARKS.md, between <!-- NAME:BEGIN --> and <!-- NAME:END -->."""
from __future__ import annotations

import re
from pathlib import Path

from edgecv.fileio import write_text_atomic


def replace_section(path: Path, name: str, text: str, heading: str) -> None:
    """Put `text` between the NAME markers of `path`; a file or section not there yet is created
    (the section at the end, under `heading`)."""
    block = f"<!-- {name}:BEGIN -->\n{text}\n<!-- {name}:END -->"
    current = path.read_text() if path.is_file() else "# Benchmarks\n"
    if f"<!-- {name}:BEGIN -->" not in current:
        current = current.rstrip("\n") + f"\n\n## {heading}\n\n{block}\n"
    pattern = re.compile(rf"<!-- {name}:BEGIN -->.*<!-- {name}:END -->", re.S)
    write_text_atomic(path, pattern.sub(lambda m: block, current))
