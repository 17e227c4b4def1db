"""DICOM series input: same arrays, affine and prediction as the NIfTI of the same data."""

from __future__ import annotations

import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk

from sap.inference import DicomSeriesError, Predictor
from sap.inference.dicom import find_dicom_series, load_dicom_case, read_series
from sap.inference.inputs import resolve_inputs
from tests.helpers.inference import tiny_model

STUDY_UID = "1.2.826.0.1.3680043.8.498.1"


def oblique_image(shape_xyz, spacing, seed: int, origin=(12.0, -30.0, 45.0)) -> sitk.Image:
    """An int16 SimpleITK image on an oblique, right-handed LPS grid."""
    rng = np.random.default_rng(seed)
    from scipy import ndimage

    data = ndimage.gaussian_filter(rng.random(shape_xyz[::-1]), 1.5)
    data = ((data - data.min()) / np.ptp(data) * 1000).astype(np.int16)
    image = sitk.GetImageFromArray(data)
    image.SetSpacing(spacing)
    image.SetOrigin(origin)
    angle = 0.25
    c, s = np.cos(angle), np.sin(angle)
    direction = np.array([[1, 0, 0], [0, c, -s], [0, s, c]])  # rotation about x
    image.SetDirection(direction.ravel().tolist())
    return image


def write_dicom_series(
    image: sitk.Image,
    folder: Path,
    description: str,
    series_uid: str,
    patient_id: str = "PHANTOM01",
    study_uid: str = STUDY_UID,
    repeat_slices: bool = False,
) -> Path:
    """One file per slice with the geometry tags a scanner writes."""
    folder.mkdir(parents=True, exist_ok=True)
    d = image.GetDirection()
    tags = {
        "0008|0060": "MR",
        "0008|103e": description,
        "0010|0020": patient_id,
        "0020|000d": study_uid,
        "0020|000e": series_uid,
        "0020|0052": study_uid + ".9",
        "0020|0037": "\\".join(f"{v:.10f}" for v in (d[0], d[3], d[6], d[1], d[4], d[7])),
    }
    writer = sitk.ImageFileWriter()
    writer.KeepOriginalImageUIDOn()
    depth = image.GetDepth()
    indices = list(range(depth)) + ([0] if repeat_slices else [])
    for n, k in enumerate(indices):
        slice_image = image[:, :, k]
        for tag, value in tags.items():
            slice_image.SetMetaData(tag, value)
        position = image.TransformIndexToPhysicalPoint((0, 0, k))
        slice_image.SetMetaData("0020|0032", "\\".join(f"{v:.6f}" for v in position))
        slice_image.SetMetaData("0020|0013", str(n + 1))
        slice_image.SetMetaData("0008|0018", f"{series_uid}.{n + 1}")
        writer.SetFileName(str(folder / f"slice_{n:04d}.dcm"))
        writer.Execute(slice_image)
    return folder


@pytest.fixture(scope="module")
def exam(tmp_path_factory):
    """The same exam as DICOM series folders and as a NIfTI case folder."""
    root = tmp_path_factory.mktemp("exam")
    t1 = oblique_image((30, 26, 20), (1.5, 1.6, 2.0), seed=1)
    b1000 = oblique_image((20, 18, 14), (2.4, 2.4, 3.0), seed=2, origin=(10.0, -32.0, 40.0))
    dicom = root / "dicom" / "patient01"
    write_dicom_series(t1, dicom / "series_a", "T1 TSE WB", "1.2.826.0.1.3680043.8.498.11")
    write_dicom_series(b1000, dicom / "series_b", "DWI b=1000 WB", "1.2.826.0.1.3680043.8.498.12")
    nifti = root / "nifti" / "patient01"
    nifti.mkdir(parents=True)
    # The NIfTI of the same data, as SimpleITK converts it (read back from the DICOM files).
    for name, folder in (("T1", "series_a"), ("b1000", "series_b")):
        reader = sitk.ImageSeriesReader()
        reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(dicom / folder)))
        sitk.WriteImage(reader.Execute(), str(nifti / f"{name}.nii.gz"))
    return dicom, nifti


def test_series_are_read_like_their_nifti_conversion(exam):
    dicom, nifti = exam
    images = load_dicom_case(dicom, ["T1", "b1000"])
    for channel in ("T1", "b1000"):
        data, affine = images[channel]
        reference = nib.load(nifti / f"{channel}.nii.gz")
        assert data.dtype == np.float32
        np.testing.assert_array_equal(data, reference.get_fdata(dtype=np.float32))
        np.testing.assert_allclose(affine, reference.affine, atol=1e-4)


def test_dicom_input_gives_the_same_prediction_as_the_nifti(exam):
    dicom, nifti = exam
    predictor = Predictor(tiny_model("lesion", seed=5), min_volume_ml=0, memory_limit_bytes=None)
    from_dicom = predictor.predict(dicom)
    from_nifti = predictor.predict(nifti)
    assert from_dicom.case_id == "patient01"
    assert from_dicom.labels.shape == nib.load(nifti / "T1.nii.gz").shape
    np.testing.assert_allclose(from_dicom.affine, from_nifti.affine, atol=1e-4)
    np.testing.assert_allclose(
        from_dicom.probabilities["lesion"].astype(np.float32),
        from_nifti.probabilities["lesion"].astype(np.float32),
        atol=2e-3,
    )
    assert (from_dicom.labels == from_nifti.labels).mean() > 0.999


def test_series_from_another_patient_are_refused(exam, tmp_path):
    dicom, _ = exam
    mixed = tmp_path / "mixed"
    shutil.copytree(dicom / "series_a", mixed / "series_a")
    b1000 = oblique_image((12, 12, 8), (2.4, 2.4, 3.0), seed=3)
    write_dicom_series(
        b1000, mixed / "series_b", "DWI b1000", "1.2.3.4.99", patient_id="SOMEONE_ELSE"
    )
    with pytest.raises(DicomSeriesError, match="PatientID differs"):
        load_dicom_case(mixed, ["T1", "b1000"])


def test_a_channel_without_a_series_is_named_and_explicit_names_resolve_it(exam, tmp_path):
    dicom, _ = exam
    unnamed = tmp_path / "unnamed"
    shutil.copytree(dicom / "series_a", unnamed / "first")
    b1000 = oblique_image((12, 12, 8), (2.4, 2.4, 3.0), seed=3)
    write_dicom_series(b1000, unnamed / "second", "ep2d diff WB", "1.2.3.4.98")
    with pytest.raises(
        DicomSeriesError, match=r"(?s)Channel 'b1000': no DICOM series.*ep2d diff WB"
    ):
        load_dicom_case(unnamed, ["T1", "b1000"])
    images = load_dicom_case(unnamed, ["T1", "b1000"], explicit={"b1000": "ep2d diff WB"})
    assert images["b1000"][0].shape == (12, 12, 8)
    by_folder = load_dicom_case(unnamed, ["T1", "b1000"], explicit={"b1000": "second"})
    assert by_folder["b1000"][0].shape == (12, 12, 8)


def test_a_series_holding_several_volumes_is_refused(tmp_path):
    image = oblique_image((10, 10, 6), (2.0, 2.0, 2.0), seed=4)
    write_dicom_series(image, tmp_path / "dwi", "DWI b1000", "1.2.3.4.97", repeat_slices=True)
    (series,) = find_dicom_series(tmp_path)
    with pytest.raises(DicomSeriesError, match="several volumes"):
        read_series(series)


def test_missing_slice_is_refused(tmp_path):
    image = oblique_image((10, 10, 6), (2.0, 2.0, 2.0), seed=4)
    folder = write_dicom_series(image, tmp_path / "t1", "T1", "1.2.3.4.96")
    (folder / "slice_0003.dcm").unlink()
    (series,) = find_dicom_series(tmp_path)
    with pytest.raises(DicomSeriesError, match="unequal slice spacing"):
        read_series(series)


def test_folder_of_dicom_exams_gives_one_case_per_exam(exam, tmp_path):
    dicom, _ = exam
    for name in ("p1", "p2"):
        shutil.copytree(dicom, tmp_path / name)
    cases = resolve_inputs(tmp_path, ["T1", "b1000"])
    assert [c.case_id for c in cases] == ["p1", "p2"]
    single = resolve_inputs(tmp_path / "p1", ["T1", "b1000"])
    assert [c.case_id for c in single] == ["p1"]
