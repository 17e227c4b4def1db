"""Specification of CSV manifests (`sap.data.manifest`) read through `discover_cases`."""

from __future__ import annotations

from pathlib import Path

import pytest

from sap.data.cases import discover_cases
from sap.data.problems import CaseValidationError
from sap.data.validation import validate_cases
from tests.helpers.data import write_two_cases


@pytest.fixture
def cohort(tmp_path: Path) -> Path:
    return write_two_cases(tmp_path / "cohort")


def test_csv_manifest_resolves_relative_paths_against_its_folder(
    cohort: Path, tmp_path: Path
) -> None:
    manifest = cohort / "manifest.csv"
    manifest.write_text(
        "case_id,T1,b1000,skeleton,lesion\n"
        "p2,case_b/T1.nii.gz,case_b/b1000.nii.gz,case_b/skeleton.nii.gz,\n"
        f"p1,{cohort / 'case_a/T1.nii.gz'},case_a/b1000.nii.gz,case_a/skeleton.nii.gz,case_a/lesion.nii.gz\n"
    )
    cases = discover_cases(manifest)
    assert [c.case_id for c in cases] == ["p2", "p1"]  # manifest order is kept
    assert cases[0].images["T1"] == cohort / "case_b/T1.nii.gz"
    assert cases[0].lesion is None
    assert cases[1].lesion == cohort / "case_a/lesion.nii.gz"
    validate_cases(cases)


def test_csv_manifest_with_duplicate_case_ids_is_refused(cohort: Path) -> None:
    manifest = cohort / "manifest.csv"
    row = "p1,case_a/T1.nii.gz,case_a/b1000.nii.gz\n"
    manifest.write_text("case_id,T1,b1000\n" + row + row)
    with pytest.raises(CaseValidationError, match=r"case 'p1'.*duplicate case_id in rows 2 and 3"):
        discover_cases(manifest)


def test_csv_manifest_without_a_channel_column_is_refused(cohort: Path) -> None:
    manifest = cohort / "manifest.csv"
    manifest.write_text("case_id,T1\np1,case_a/T1.nii.gz\n")
    with pytest.raises(CaseValidationError, match=r"manifest.csv.*lacks column\(s\) \['b1000'\]"):
        discover_cases(manifest)


def test_csv_manifest_pointing_at_a_missing_file_names_case_and_file(cohort: Path) -> None:
    manifest = cohort / "manifest.csv"
    manifest.write_text("case_id,T1,b1000\np1,case_a/T1.nii.gz,case_a/dwi.nii.gz\n")
    with pytest.raises(
        CaseValidationError, match=r"case 'p1'.*dwi\.nii\.gz.*channel 'b1000' file is missing"
    ):
        discover_cases(manifest)
