"""``sap demo``'s pieces that run in milliseconds; the whole demo runs in tests/cli (slow)."""

from __future__ import annotations

from pathlib import Path

import pytest

from sap.experiments import format_table, run_demo


def test_demo_table_shows_missing_values_as_na() -> None:
    table = format_table(
        {"sap": {"sensitivity": 0.5, "f_beta": None}, "scratch": {"sensitivity": 0.25}}
    )
    lines = table.splitlines()
    assert lines[0].split() == ["metric", "sap", "scratch"]
    assert lines[1].split()[-2:] == ["0.500", "0.250"]
    assert "n/a" in lines[4] and lines[4].startswith("F2")


def test_demo_refuses_a_non_empty_output_folder(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="not empty"):
        run_demo(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]
