"""Specification of file validation (`sap.data.validation`): each breakage is named with
its case, file, problem and fix."""

from __future__ import annotations

import gzip
from collections.abc import Callable
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from sap.data.cases import Case, CaseLayout, discover_cases
from sap.data.problems import CaseValidationError
from sap.data.validation import validate_cases
from tests.helpers.data import T1_SPACING_MM, write_nifti, write_small_case, write_two_cases


@pytest.fixture
def cohort(tmp_path: Path) -> Path:
    return write_two_cases(tmp_path / "cohort")


def validation_message(root: Path, **kwargs) -> str:
    with pytest.raises(CaseValidationError) as info:
        validate_cases(discover_cases(root), **kwargs)
    return str(info.value)


def test_good_cohort_passes_validation_even_with_dwi_on_another_grid(cohort: Path) -> None:
    validate_cases(discover_cases(cohort))
    validate_cases(discover_cases(cohort, require=("skeleton",)))


def truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def overwrite_with_garbage(path: Path) -> None:
    path.write_bytes(b"this is not a NIfTI file" * 10)


def rewrite(
    path: Path, change: Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]
) -> None:
    image = nib.load(str(path))
    array, affine = change(np.asanyarray(image.dataobj).copy(), image.affine.copy())
    path.unlink()
    write_nifti(path, array, affine)


def with_nan(array, affine):
    array[1, 2, 3] = np.nan
    return array, affine


def with_inf(array, affine):
    array[0, 0, 0] = np.inf
    return array, affine


def as_time_series(array, affine):
    return np.stack([array, array], axis=-1), affine


def label_value_12(array, affine):
    array[4, 4, 4] = 12
    return array, affine


def label_half(array, affine):
    return array.astype(np.float32) * 0.5, affine


def label_cropped(array, affine):
    return array[:, :, :-2], affine


def label_shifted_5mm(array, affine):
    affine[0, 3] += 5.0
    return array, affine


def dwi_elsewhere(array, affine):
    affine[2, 3] += 1000.0
    return array, affine


def constant(array, affine):
    return np.zeros_like(array), affine


BREAKAGES = {
    "truncated_gzip": ("T1.nii.gz", truncate, "voxel data cannot be read"),
    "not_a_nifti": ("b1000.nii.gz", overwrite_with_garbage, "unreadable"),
    "nan_voxels": ("T1.nii.gz", lambda p: rewrite(p, with_nan), "1 NaN/Inf voxel(s)"),
    "inf_voxels": ("b1000.nii.gz", lambda p: rewrite(p, with_inf), "1 NaN/Inf voxel(s)"),
    "4d_image": (
        "T1.nii.gz",
        lambda p: rewrite(p, as_time_series),
        "is 4D with shape (12, 12, 10, 2)",
    ),
    "constant_image": ("b1000.nii.gz", lambda p: rewrite(p, constant), "is constant"),
    "label_outside_map": (
        "skeleton.nii.gz",
        lambda p: rewrite(p, label_value_12),
        "value(s) 12 outside the label map",
    ),
    "non_integer_label": (
        "skeleton.nii.gz",
        lambda p: rewrite(p, label_half),
        "non-integer values",
    ),
    "label_other_shape": (
        "lesion.nii.gz",
        lambda p: rewrite(p, label_cropped),
        "shape (12, 12, 8) but T1 has (12, 12, 10)",
    ),
    "label_other_affine": (
        "lesion.nii.gz",
        lambda p: rewrite(p, label_shifted_5mm),
        "up to 5 mm away from T1",
    ),
    "dwi_not_overlapping": (
        "b1000.nii.gz",
        lambda p: rewrite(p, dwi_elsewhere),
        "does not overlap T1",
    ),
}


@pytest.mark.parametrize("breakage", sorted(BREAKAGES))
def test_bad_file_is_named_with_case_file_and_problem(cohort: Path, breakage: str) -> None:
    file_name, damage, expected = BREAKAGES[breakage]
    damage(cohort / "case_a" / file_name)
    message = validation_message(cohort)
    assert "case 'case_a'" in message
    assert f"case_a/{file_name}" in message
    assert expected in message
    assert "fix:" in message
    assert "case_b" not in message  # the good case is not blamed


def test_truncated_uncompressed_nifti_is_caught(tmp_path: Path) -> None:
    folder = write_small_case(tmp_path / "c", seed=0)
    image = nib.load(str(folder / "T1.nii.gz"))
    array = np.asanyarray(image.dataobj)
    (folder / "T1.nii.gz").unlink()
    write_nifti(folder / "T1.nii", array, image.affine)
    truncate(folder / "T1.nii")
    layout = CaseLayout(channel_files={"T1": "T1.nii", "b1000": "b1000.nii.gz"})
    with pytest.raises(
        CaseValidationError, match=r"T1\.nii: channel 'T1'.*voxel data cannot be read"
    ):
        validate_cases(discover_cases(folder, layout=layout))


def test_4d_image_with_a_trailing_singleton_is_one_volume_and_accepted(cohort: Path) -> None:
    rewrite(cohort / "case_a/T1.nii.gz", lambda a, aff: (a[..., None], aff))
    assert nib.load(str(cohort / "case_a/T1.nii.gz")).ndim == 4
    validate_cases(discover_cases(cohort))


def test_label_affine_within_rounding_tolerance_is_accepted(cohort: Path) -> None:
    rewrite(cohort / "case_a/lesion.nii.gz", lambda a, aff: (a, aff + 1e-4))
    validate_cases(discover_cases(cohort))


def test_custom_label_names_widen_the_allowed_values(cohort: Path) -> None:
    rewrite(cohort / "case_a/skeleton.nii.gz", label_value_12)
    validate_cases(discover_cases(cohort), label_names={"skeleton": [f"c{i}" for i in range(13)]})


def test_all_problems_of_all_cases_are_reported_at_once(cohort: Path) -> None:
    rewrite(cohort / "case_a/T1.nii.gz", with_nan)
    rewrite(cohort / "case_a/skeleton.nii.gz", label_value_12)
    truncate(cohort / "case_b/b1000.nii.gz")
    message = validation_message(cohort)
    assert message.startswith("3 problem(s) in 2 case(s)")
    assert "case_a/T1.nii.gz" in message
    assert "case_a/skeleton.nii.gz" in message
    assert "case_b/b1000.nii.gz" in message


def test_headers_only_mode_skips_voxels_but_still_checks_shapes(cohort: Path) -> None:
    rewrite(cohort / "case_a/T1.nii.gz", with_nan)
    validate_cases(discover_cases(cohort), check_voxels=False)
    rewrite(cohort / "case_b/skeleton.nii.gz", label_cropped)
    with pytest.raises(CaseValidationError, match=r"case_b/skeleton\.nii\.gz.*shape"):
        validate_cases(discover_cases(cohort), check_voxels=False)


def test_hand_built_case_with_a_missing_file_is_refused(cohort: Path) -> None:
    case = Case("x1", {"T1": cohort / "case_a/T1.nii.gz", "b1000": cohort / "nope.nii.gz"})
    with pytest.raises(
        CaseValidationError,
        match=r"case 'x1', file .*nope\.nii\.gz: channel 'b1000' file is missing",
    ):
        validate_cases([case])


def test_validating_no_cases_is_refused() -> None:
    with pytest.raises(CaseValidationError, match="no cases"):
        validate_cases([])


def test_folder_instead_of_image_is_reported(cohort: Path) -> None:
    (cohort / "case_a/T1.nii.gz").unlink()
    (cohort / "case_a/T1.nii.gz").mkdir()
    assert "is a folder" in validation_message(cohort)


def test_non_nifti_formats_are_read_with_simpleitk(tmp_path: Path) -> None:
    import SimpleITK as sitk

    folder = write_small_case(tmp_path / "c", seed=0)
    image = nib.load(str(folder / "T1.nii.gz"))
    array = np.asanyarray(image.dataobj)
    sitk_image = sitk.GetImageFromArray(np.ascontiguousarray(array.transpose(2, 1, 0)))
    sitk_image.SetSpacing(T1_SPACING_MM)
    # RAS diagonal affine == LPS direction diag(-1, -1, 1) with a mirrored origin.
    sitk_image.SetDirection((-1.0, 0.0, 0.0, 0.0, -1.0, 0.0, 0.0, 0.0, 1.0))
    sitk.WriteImage(sitk_image, str(folder / "T1.nrrd"))
    layout = CaseLayout(channel_files={"T1": "T1.nrrd", "b1000": "b1000.nii.gz"})
    validate_cases(discover_cases(folder, layout=layout))

    sitk_image.SetOrigin((50.0, 0.0, 0.0))  # moves the grid 50 mm: labels no longer match
    sitk.WriteImage(sitk_image, str(folder / "T1.nrrd"))
    with pytest.raises(CaseValidationError, match="skeleton label map's grid is up to 50 mm"):
        validate_cases(discover_cases(folder, layout=layout))


def test_gzip_member_with_corrupt_data_is_caught(cohort: Path) -> None:
    path = cohort / "case_a/skeleton.nii.gz"
    raw = bytearray(gzip.decompress(path.read_bytes()))
    compressed = bytearray(gzip.compress(bytes(raw)))
    compressed[len(compressed) // 2 :: 7] = b"\x00" * len(compressed[len(compressed) // 2 :: 7])
    path.write_bytes(bytes(compressed))
    message = validation_message(cohort)
    assert "case_a/skeleton.nii.gz" in message and "unreadable" in message
