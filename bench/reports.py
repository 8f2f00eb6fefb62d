"""Reports that several commands share: each command owns one marked section of a
document (docs/reliability.md holds both `make chaos` and `make fuzz`) and rewrites only
that section, so that running one does not erase the other's figures."""

from __future__ import annotations

import re
from pathlib import Path


def write_section(path: Path, title: str, name: str, text: str) -> None:
    """Replace section `name` of the document at `path` (made with `title` if new)."""
    begin, end = f"<!-- begin {name} -->", f"<!-- end {name} -->"
    block = f"{begin}\n{text.strip()}\n{end}\n"
    doc = path.read_text() if path.exists() else f"# {title}\n\n"
    pattern = re.compile(re.escape(begin) + r".*?" + re.escape(end) + r"\n?", re.S)
    if pattern.search(doc):
        doc = pattern.sub(lambda _: block, doc)
    else:
        doc = doc.rstrip("\n") + "\n\n" + block
    path.write_text(doc)
