"""Specification of case discovery (`sap.data.cases`) on real NIfTI files."""

from __future__ import annotations

from pathlib import Path

import pytest

from sap.data.cases import CaseLayout, case_to_subject, discover_cases
from sap.data.problems import CaseValidationError
from sap.data.validation import validate_cases
from tests.helpers.data import T1_SHAPE, write_small_case, write_two_cases


@pytest.fixture
def cohort(tmp_path: Path) -> Path:
    return write_two_cases(tmp_path / "cohort")


def test_folder_of_cases_is_sorted_and_optional_labels_are_none(cohort: Path) -> None:
    cases = discover_cases(cohort)
    assert [c.case_id for c in cases] == ["case_a", "case_b"]
    assert cases[0].images == {
        "T1": cohort / "case_a/T1.nii.gz",
        "b1000": cohort / "case_a/b1000.nii.gz",
    }
    assert cases[0].lesion == cohort / "case_a/lesion.nii.gz"
    assert cases[1].lesion is None
    assert cases[1].skeleton == cohort / "case_b/skeleton.nii.gz"
    assert cases[1].labels == {"skeleton": cohort / "case_b/skeleton.nii.gz"}


def test_single_case_folder_is_one_case_named_after_the_folder(cohort: Path) -> None:
    cases = discover_cases(cohort / "case_a")
    assert [c.case_id for c in cases] == ["case_a"]


def test_hidden_and_underscore_folders_are_not_cases(cohort: Path) -> None:
    (cohort / "_previews").mkdir()
    (cohort / ".cache").mkdir()
    assert [c.case_id for c in discover_cases(cohort)] == ["case_a", "case_b"]


def test_custom_layout_file_names(tmp_path: Path) -> None:
    folder = write_small_case(tmp_path / "p1", seed=0)
    (folder / "T1.nii.gz").rename(folder / "t1w.nii.gz")
    layout = CaseLayout(channel_files={"T1": "t1w.nii.gz", "b1000": "b1000.nii.gz"})
    (case,) = discover_cases(folder, layout=layout)
    assert case.images["T1"] == folder / "t1w.nii.gz"
    validate_cases([case])


def test_layout_refuses_channel_names_that_clash_with_labels() -> None:
    with pytest.raises(ValueError, match="reserved"):
        CaseLayout(channels=("T1", "lesion"))


def test_empty_folder_is_refused(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(CaseValidationError, match="no cases found"):
        discover_cases(tmp_path / "empty")


def test_an_image_file_is_not_a_source(cohort: Path) -> None:
    with pytest.raises(CaseValidationError, match="not a CSV manifest"):
        discover_cases(cohort / "case_a/T1.nii.gz")


def test_missing_source_is_refused(tmp_path: Path) -> None:
    with pytest.raises(CaseValidationError, match="does not exist"):
        discover_cases(tmp_path / "nowhere")


def test_missing_channel_file_names_case_and_file_and_spots_lookalikes(cohort: Path) -> None:
    (cohort / "case_b/b1000.nii.gz").rename(cohort / "case_b/b1000.nii")
    with pytest.raises(CaseValidationError) as info:
        discover_cases(cohort)
    message = str(info.value)
    assert "case 'case_b'" in message
    assert "b1000.nii.gz" in message
    assert "channel 'b1000' file is missing" in message
    assert "found b1000.nii instead" in message


def test_case_missing_a_required_label_is_refused(cohort: Path) -> None:
    with pytest.raises(CaseValidationError) as info:
        discover_cases(cohort, require=("lesion",))
    message = str(info.value)
    assert "case 'case_b'" in message and "lesion.nii.gz" in message
    assert "required lesion label map is missing" in message
    assert "case_a" not in message


def test_case_to_subject_names_channels_labels_and_case_id(cohort: Path) -> None:
    import torchio as tio

    case_a, case_b = discover_cases(cohort)
    subject = case_to_subject(case_a)
    assert isinstance(subject["T1"], tio.ScalarImage)
    assert isinstance(subject["b1000"], tio.ScalarImage)
    assert isinstance(subject["skeleton"], tio.LabelMap)
    assert isinstance(subject["lesion"], tio.LabelMap)
    assert subject["case_id"] == "case_a"
    assert subject["T1"].spatial_shape == T1_SHAPE
    assert "lesion" not in case_to_subject(case_b)
