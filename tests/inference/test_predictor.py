"""Predictor: outputs on the exact input T1 grid, preprocessing from the recipe, clear errors."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest
import torch

from sap.data.cases import Case
from sap.inference import InputError, InsufficientMemoryError, OutputExistsError, Predictor
from sap.inference.space import resample_to_grid
from sap.volume import label_components
from tests.helpers.inference import (
    PointwiseLesionModel,
    blob_volume,
    dwi_affine,
    normalised,
    oblique_lps_affine,
    tiny_model,
    write_case,
)


@pytest.fixture(scope="module")
def oblique_case(tmp_path_factory):
    """T1 on an oblique, permuted LPS grid; b1000 on a coarser RAS grid of its own."""
    folder = tmp_path_factory.mktemp("cases") / "oblique"
    t1 = blob_volume((36, 28, 20), seed=1)
    b1000 = blob_volume((30, 30, 24), seed=2)
    return write_case(folder, t1, oblique_lps_affine(), b1000, dwi_affine())


def test_outputs_have_exactly_the_input_t1_shape_and_affine(oblique_case, tmp_path):
    reference = nib.load(oblique_case / "T1.nii.gz")
    lesion = Predictor(tiny_model("lesion"), memory_limit_bytes=None).predict(oblique_case)
    # A target spacing forces real interpolation back to the input grid.
    skeleton = Predictor(
        tiny_model("skeleton", spacing_mm=(3.0, 3.0, 3.0)), memory_limit_bytes=None
    ).predict(oblique_case)
    for prediction in (lesion, skeleton):
        assert prediction.labels.shape == reference.shape
        assert prediction.labels.dtype == np.uint8
        np.testing.assert_array_equal(prediction.affine, reference.affine)
        written = prediction.save(tmp_path / prediction.task, save_probabilities=True)
        for path in written:
            image = nib.load(path)
            assert image.shape == reference.shape, path
            np.testing.assert_allclose(image.affine, reference.affine, rtol=0, atol=1e-5)
    assert lesion.probabilities["lesion"].shape == reference.shape
    saved = nib.load(tmp_path / "lesion" / "lesion_probability.nii.gz").get_fdata()
    np.testing.assert_allclose(saved, lesion.probabilities["lesion"], atol=0.5 / 255 + 1e-3)


def test_prediction_lands_on_the_right_voxels_of_an_oblique_lps_input(oblique_case):
    # A voxel-wise model: every voxel must come back exactly where it started, whatever the
    # reorientation and window placement.
    t1 = nib.load(oblique_case / "T1.nii.gz").get_fdata(dtype=np.float32)
    prediction = Predictor(
        PointwiseLesionModel(), min_volume_ml=0, memory_limit_bytes=None
    ).predict(oblique_case)
    value = normalised(t1)
    expected = value >= 0.5
    clear = np.abs(value - 0.5) > 2e-3  # float16 probabilities blur the exact boundary
    assert clear.mean() > 0.95
    np.testing.assert_array_equal(prediction.labels[clear] == 1, expected[clear])
    probability = 1 / (1 + np.exp(-20 * (value - 0.5)))
    np.testing.assert_allclose(prediction.probabilities["lesion"], probability, atol=2e-3)


def test_target_spacing_round_trip_keeps_geometry(oblique_case):
    t1 = nib.load(oblique_case / "T1.nii.gz").get_fdata(dtype=np.float32)
    model = PointwiseLesionModel(spacing_mm=(1.0, 1.0, 1.0))
    prediction = Predictor(model, min_volume_ml=0, memory_limit_bytes=None).predict(oblique_case)
    expected = normalised(t1) >= 0.5
    # Resampling to 1 mm and back blurs edges a little; interiors must agree.
    assert (prediction.labels.astype(bool) == expected).mean() > 0.97


def test_skeleton_model_labels_are_majority_voted_per_bone_piece(oblique_case):
    raw = Predictor(tiny_model("skeleton", seed=3), majority_vote=False, memory_limit_bytes=None)
    voted = Predictor(tiny_model("skeleton", seed=3), majority_vote=True, memory_limit_bytes=None)
    before = raw.predict(oblique_case).labels
    after = voted.predict(oblique_case).labels
    np.testing.assert_array_equal(before > 0, after > 0)
    components, count = label_components(after > 0)
    mixed = [c for c in range(1, count + 1) if len(np.unique(before[components == c])) > 1]
    assert mixed, "the raw prediction must have bone pieces with several labels"
    for c in range(1, count + 1):
        piece = components == c
        labels, votes = np.unique(before[piece], return_counts=True)
        assert set(np.unique(after[piece])) == {labels[np.argmax(votes)]}


def test_prepared_input_is_shared_between_models_with_the_same_preprocessing(oblique_case):
    lesion = Predictor(tiny_model("lesion"), memory_limit_bytes=None)
    skeleton = Predictor(tiny_model("skeleton"), memory_limit_bytes=None)
    prepared = lesion.prepare(oblique_case)
    shared = skeleton.predict(prepared)
    direct = skeleton.predict(oblique_case)
    np.testing.assert_array_equal(shared.labels, direct.labels)
    other = Predictor(tiny_model("skeleton", spacing_mm=(3.0, 3.0, 3.0)), memory_limit_bytes=None)
    with pytest.raises(ValueError, match="prepared for another preprocessing"):
        other.predict(prepared)


def test_case_objects_and_channel_dicts_are_accepted_in_any_order(oblique_case):
    predictor = Predictor(tiny_model("lesion"), memory_limit_bytes=None)
    paths = {"b1000": oblique_case / "b1000.nii.gz", "T1": oblique_case / "T1.nii.gz"}
    from_dict = predictor.predict(paths)
    from_case = predictor.predict(Case("oblique", {"T1": paths["T1"], "b1000": paths["b1000"]}))
    np.testing.assert_array_equal(
        from_dict.probabilities["lesion"], from_case.probabilities["lesion"]
    )
    assert from_case.case_id == "oblique"


def test_missing_channel_is_named(oblique_case):
    predictor = Predictor(tiny_model("lesion"), memory_limit_bytes=None)
    with pytest.raises(InputError, match=r"missing \['b1000'\]"):
        predictor.predict({"T1": oblique_case / "T1.nii.gz"})


def test_wrongly_named_channel_is_rejected(oblique_case):
    predictor = Predictor(tiny_model("lesion"), memory_limit_bytes=None)
    with pytest.raises(InputError, match=r"unexpected \['DWI'\]"):
        predictor.predict({"T1": oblique_case / "T1.nii.gz", "DWI": oblique_case / "b1000.nii.gz"})


def test_model_and_recipe_channel_count_must_agree():
    model = tiny_model("lesion")
    model.recipe.channels = ["T1"]
    with pytest.raises(ValueError, match="1 channel|channels \\['T1'\\]"):
        Predictor(model)


def test_4d_input_is_rejected_with_advice(tmp_path):
    t1 = blob_volume((20, 20, 16))
    folder = write_case(tmp_path / "four_d", t1, np.eye(4))
    nib.save(nib.Nifti1Image(np.stack([t1, t1, t1], -1), np.eye(4)), folder / "b1000.nii.gz")
    with pytest.raises(InputError, match=r"one 3D volume.*b=1000"):
        Predictor(tiny_model("lesion"), memory_limit_bytes=None).predict(folder)


def test_truncated_file_is_named_with_its_case_and_channel(tmp_path):
    t1 = blob_volume((20, 20, 16))
    folder = write_case(tmp_path / "broken", t1, np.eye(4), blob_volume((20, 20, 16)), np.eye(4))
    data = (folder / "b1000.nii.gz").read_bytes()
    (folder / "b1000.nii.gz").write_bytes(data[: len(data) // 2])
    predictor = Predictor(tiny_model("lesion"), memory_limit_bytes=None)
    with pytest.raises(
        InputError, match=r"Case 'broken', channel 'b1000': .*b1000\.nii\.gz.*truncated"
    ):
        predictor.predict(folder)


def test_nan_input_is_rejected(tmp_path):
    t1 = blob_volume((20, 20, 16))
    t1[3, 4, 5] = np.nan
    folder = write_case(tmp_path / "nan", t1, np.eye(4), blob_volume((20, 20, 16)), np.eye(4))
    with pytest.raises(InputError, match=r"channel 'T1'.*1 NaN"):
        Predictor(tiny_model("lesion"), memory_limit_bytes=None).predict(folder)


def test_memory_estimate_refuses_up_front_with_advice(oblique_case):
    predictor = Predictor(tiny_model("lesion"), memory_limit_bytes=10_000)
    estimate = predictor.estimate_memory(oblique_case)
    assert estimate.peak > 36 * 28 * 20 * 2 * 4  # at least the float32 input
    with pytest.raises(InsufficientMemoryError, match="batch-size"):
        predictor.predict(oblique_case)


def test_whole_body_estimate_stays_far_below_float32_per_class_aggregation():
    from sap.inference.memory import estimate_memory

    shape = (400, 300, 1100)
    voxels = 400 * 300 * 1100
    estimate = estimate_memory(
        shape, [voxels, voxels], shape, 10, (96, 96, 96), kept_probabilities=0, batch_size=2
    )
    full_float32_aggregation = voxels * (10 + 1) * 4 + voxels * 2 * 4
    assert estimate.sliding_window < 0.5 * full_float32_aggregation


def test_existing_output_is_not_overwritten_without_permission(oblique_case, tmp_path):
    prediction = Predictor(tiny_model("lesion"), memory_limit_bytes=None).predict(oblique_case)
    prediction.save(tmp_path)
    before = (tmp_path / "lesion.nii.gz").stat().st_mtime_ns
    with pytest.raises(OutputExistsError, match="--overwrite"):
        prediction.save(tmp_path)
    assert (tmp_path / "lesion.nii.gz").stat().st_mtime_ns == before
    prediction.save(tmp_path, overwrite=True)


def test_resample_back_is_exact_reindexing_for_a_reoriented_grid():
    affine = oblique_lps_affine()
    shape = (7, 5, 6)
    canonical = nib.as_closest_canonical(nib.Nifti1Image(np.zeros(shape, np.float32), affine))
    values = np.arange(np.prod(canonical.shape), dtype=np.float32).reshape(canonical.shape)
    back = resample_to_grid(values, canonical.affine, shape, affine, order=0)
    transform = nib.orientations.ornt_transform(
        nib.io_orientation(canonical.affine), nib.io_orientation(affine)
    )
    np.testing.assert_array_equal(back, nib.orientations.apply_orientation(values, transform))


def test_amp_is_off_on_cpu_and_on_for_cuda_by_default():
    predictor = Predictor(tiny_model("lesion"), memory_limit_bytes=None)
    assert predictor.amp is False
    if torch.cuda.is_available():  # pragma: no cover - GPU machines only
        assert Predictor(tiny_model("lesion"), device="cuda").amp is True


def test_window_progress_is_quiet_where_output_is_not_a_terminal(oblique_case, capsys):
    # Logs and notebooks without widgets would get one line per refresh; a terminal (or a
    # Jupyter widget) gets the bar.
    Predictor(tiny_model("lesion"), memory_limit_bytes=None, progress=True).predict(oblique_case)
    assert "window" not in capsys.readouterr().err
