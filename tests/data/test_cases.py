"""Specification of case discovery and validation (`sap.data.cases`) on real NIfTI files."""

from __future__ import annotations

import gzip
from collections.abc import Callable
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from sap.data.cases import Case, CaseLayout, case_to_subject, discover_cases
from sap.data.problems import CaseValidationError
from sap.data.validation import validate_cases

T1_SHAPE = (12, 12, 10)
T1_SPACING_MM = (2.0, 2.0, 3.0)


def affine_for(spacing_mm, origin_mm=(0.0, 0.0, 0.0)) -> np.ndarray:
    affine = np.diag([*spacing_mm, 1.0])
    affine[:3, 3] = origin_mm
    return affine


def write_nifti(path: Path, array: np.ndarray, affine: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(array, affine), str(path))
    return path


def write_case(folder: Path, seed: int, lesion: bool = True) -> Path:
    """A tiny valid case: T1, a DWI on a coarser grid over the same field of view, labels."""
    rng = np.random.default_rng(seed)
    t1_affine = affine_for(T1_SPACING_MM)
    write_nifti(folder / "T1.nii.gz", rng.random(T1_SHAPE, dtype=np.float32), t1_affine)
    # Half the voxels per axis, twice the spacing; origin shifted so both cover the same box.
    dwi_affine = affine_for((4.0, 4.0, 6.0), origin_mm=(1.0, 1.0, 1.5))
    write_nifti(folder / "b1000.nii.gz", rng.random((6, 6, 5), dtype=np.float32), dwi_affine)
    skeleton = rng.integers(0, 10, T1_SHAPE).astype(np.uint8)
    write_nifti(folder / "skeleton.nii.gz", skeleton, t1_affine)
    if lesion:
        write_nifti(folder / "lesion.nii.gz", (skeleton == 3).astype(np.uint8), t1_affine)
    return folder


@pytest.fixture
def cohort(tmp_path: Path) -> Path:
    root = tmp_path / "cohort"
    write_case(root / "case_b", seed=1, lesion=False)
    write_case(root / "case_a", seed=0)
    return root


def validation_message(root: Path, **kwargs) -> str:
    with pytest.raises(CaseValidationError) as info:
        validate_cases(discover_cases(root), **kwargs)
    return str(info.value)


# --------------------------------------------------------------------------------------
# Discovery
# --------------------------------------------------------------------------------------


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


def test_good_cohort_passes_validation_even_with_dwi_on_another_grid(cohort: Path) -> None:
    validate_cases(discover_cases(cohort))
    validate_cases(discover_cases(cohort, require=("skeleton",)))


def test_custom_layout_file_names(tmp_path: Path) -> None:
    folder = write_case(tmp_path / "p1", seed=0)
    (folder / "T1.nii.gz").rename(folder / "t1w.nii.gz")
    layout = CaseLayout(channel_files={"T1": "t1w.nii.gz", "b1000": "b1000.nii.gz"})
    (case,) = discover_cases(folder, layout=layout)
    assert case.images["T1"] == folder / "t1w.nii.gz"
    validate_cases([case])


def test_layout_refuses_channel_names_that_clash_with_labels() -> None:
    with pytest.raises(ValueError, match="reserved"):
        CaseLayout(channels=("T1", "lesion"))


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


# --------------------------------------------------------------------------------------
# Validation of file contents: each breakage of case_a must be named with case and file
# --------------------------------------------------------------------------------------


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
    folder = write_case(tmp_path / "c", seed=0)
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

    folder = write_case(tmp_path / "c", seed=0)
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


# --------------------------------------------------------------------------------------
# TorchIO subject
# --------------------------------------------------------------------------------------


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
