"""Assemble docs/faults.md from the tables in the docstrings of ``tests/faults/test_*.py``.

Each fault module's docstring holds its part of the catalogue (a title line, a paragraph, a
Markdown table ``| # | input / fault | expected outcome | test |``), next to the tests that
prove each row. The page users read is built from those docstrings, so it cannot say
something the tests do not check. Rebuild it after changing a table::

    python -m tests.helpers.fault_catalogue > docs/faults.md
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from pathlib import Path

FAULTS_DIR = Path(__file__).resolve().parents[1] / "faults"

HEADER = """\
# Fault catalogue

What `sap` does with input that is wrong in the ways real data is wrong, and with runs that
are stopped half-way. Every row is checked by the test named in its last column (under
`tests/faults/`); this page is assembled from those tests' docstrings by
`python -m tests.helpers.fault_catalogue > docs/faults.md`, and a test fails when the two
disagree.

Exit status: `0` done; `1` `sap predict`, `sap evaluate` or `sap zoo` could not use an input
or output folder (each named on stderr; `sap predict` finishes the other cases and lists the
failed ones in `summary.csv`); `2` refused up front (an impossible option, a bad file or
configuration for `sap fit|validate|test`, `demo`, `phantom`), nothing written; `130`/`143`
stopped by SIGINT/SIGTERM, temporary output removed, the run resumable.
"""


@dataclass(frozen=True)
class FaultSection:
    """The catalogue part of one fault module: its title, its text, its table rows."""

    module: str
    title: str
    text: str
    rows: list[list[str]]


def read_section(path: Path) -> FaultSection:
    """The catalogue part of the fault module at ``path`` (its docstring, split up)."""
    docstring = ast.get_docstring(ast.parse(path.read_text(encoding="utf-8"))) or ""
    lines = docstring.splitlines()
    title = lines[0].removeprefix("Fault catalogue,").strip() if lines else path.stem
    title = re.sub(r"\s*\(#\d+\)", "", title).rstrip(".")
    table = [line for line in lines if line.startswith("|")]
    text = "\n".join(line for line in lines[1:] if not line.startswith("|")).strip()
    rows = [_cells(line) for line in table[2:]]  # after the header and the |---| line
    return FaultSection(path.stem, title[:1].upper() + title[1:], text, rows)


def _cells(line: str) -> list[str]:
    return [cell.strip() for cell in re.split(r"(?<!\\)\|", line.strip())[1:-1]]


def fault_sections(folder: Path = FAULTS_DIR) -> list[FaultSection]:
    """The catalogue parts of every ``test_*_faults.py`` module, by file name."""
    return [read_section(path) for path in sorted(folder.glob("test_*faults.py"))]


def render_catalogue(sections: list[FaultSection]) -> str:
    """docs/faults.md: the header, then one section per fault module."""
    parts = [HEADER]
    total = sum(len(section.rows) for section in sections)
    parts.append(f"{total} faults in {len(sections)} groups.\n")
    for section in sections:
        parts.append(f"## {section.title}\n")
        if section.text:
            parts.append(section.text + "\n")
        parts.append("| # | input / fault | expected outcome | test |\n|---|---|---|---|")
        for row in section.rows:
            row = [*row[:-1], f"`tests/faults/{section.module}.py::{row[-1].strip('`')}`"]
            parts.append("| " + " | ".join(row) + " |")
        parts.append("")
    return "\n".join(parts)


if __name__ == "__main__":
    print(render_catalogue(fault_sections()), end="")
