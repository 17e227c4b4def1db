"""docs/faults.md says what the fault tests check, and every row names a test that exists."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.helpers.fault_catalogue import FAULTS_DIR, fault_sections, render_catalogue

DOC = Path(__file__).resolve().parents[2] / "docs" / "faults.md"


def test_docs_faults_md_is_assembled_from_the_fault_tests():
    assert DOC.read_text(encoding="utf-8") == render_catalogue(fault_sections()), (
        "docs/faults.md is out of date: python -m tests.helpers.fault_catalogue > docs/faults.md"
    )


@pytest.mark.parametrize("section", fault_sections(), ids=lambda section: section.module)
def test_every_row_names_a_test_of_its_module(section):
    tree = ast.parse((FAULTS_DIR / f"{section.module}.py").read_text(encoding="utf-8"))
    tests = {node.name for node in tree.body if isinstance(node, ast.FunctionDef)}
    assert section.rows, f"{section.module} has no catalogue table"
    for row in section.rows:
        assert len(row) == 4, f"{section.module}: row {row} does not have 4 cells"
        name = row[-1].strip("`").split("[")[0]
        assert name in tests, f"{section.module} row {row[0]} names {name}, which is no test there"
    numbers = [row[0] for row in section.rows]
    assert len(numbers) == len(set(numbers)), f"{section.module}: row numbers repeat"
