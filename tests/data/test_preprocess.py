"""Specification of preprocessing and augmentation (`sap.data.preprocess`) on tiny volumes."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
import torchio as tio

from sap.data.cases import Case
from sap.data.preprocess import augmentation, load_subject, preprocessing, stack_channels
from sap.data.transforms import (
    RandomRot90,
    RandomScaleIntensity,
    RandomShiftIntensity,
    Rot90,
    ScaleShiftIntensity,
)
from tests.helpers.data import affine_for, write_nifti

SHAPE = (10, 12, 8)  # deliberately not cubic, so axis mix-ups change shapes


def make_subject(shape=SHAPE, spacing_mm=(2.0, 2.0, 3.0), seed: int = 0) -> tio.Subject:
    """T1 with unique voxel values, a DWI on the same grid, and a label marking a few voxels."""
    rng = np.random.default_rng(seed)
    affine = affine_for(spacing_mm, origin_mm=(-7.0, 3.0, 11.0))
    t1 = torch.from_numpy(rng.permutation(np.prod(shape)).reshape(1, *shape).astype(np.float32))
    label = torch.zeros(1, *shape, dtype=torch.uint8)
    label[0, 1, 2, 3] = 1
    label[0, 7, 10, 5] = 2
    return tio.Subject(
        T1=tio.ScalarImage(tensor=t1, affine=affine),
        b1000=tio.ScalarImage(tensor=t1 * 2 + 1, affine=affine),
        lesion=tio.LabelMap(tensor=label, affine=affine),
        case_id="c0",
    )


def assert_labels_follow_intensities(before: tio.Subject, after: tio.Subject) -> None:
    """Each labelled voxel still holds the (unique) T1 value it had before the transform."""
    for value in (1, 2):
        original = before["T1"].data[before["lesion"].data == value]
        moved = after["T1"].data[after["lesion"].data == value]
        assert moved.tolist() == original.tolist()


# --------------------------------------------------------------------------------------
# Preprocessing
# --------------------------------------------------------------------------------------


def test_dwi_on_a_coarser_grid_is_resampled_onto_t1(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    t1_affine = affine_for((1.5, 1.5, 1.5))
    t1 = write_nifti(tmp_path / "T1.nii.gz", rng.random((16, 16, 16), dtype=np.float32), t1_affine)
    dwi_affine = affine_for((3.0, 3.0, 3.0), origin_mm=(0.75, 0.75, 0.75))
    dwi = write_nifti(
        tmp_path / "b1000.nii.gz", rng.random((8, 8, 8), dtype=np.float32), dwi_affine
    )
    case = Case("c0", {"T1": t1, "b1000": dwi})

    subject = load_subject(case, preprocessing())

    assert subject["b1000"].spatial_shape == subject["T1"].spatial_shape == (16, 16, 16)
    np.testing.assert_allclose(subject["b1000"].affine, t1_affine, atol=1e-5)
    np.testing.assert_allclose(subject["T1"].affine, t1_affine, atol=1e-5)


def test_lps_input_comes_out_in_canonical_ras(tmp_path: Path) -> None:
    lps = affine_for((2.0, 2.0, 3.0))
    lps[0, 0], lps[1, 1] = -2.0, -2.0
    array = np.random.default_rng(0).random(SHAPE, dtype=np.float32)
    t1 = write_nifti(tmp_path / "T1.nii.gz", array, lps)
    label = write_nifti(tmp_path / "lesion.nii.gz", (array > 0.9).astype(np.uint8), lps)
    subject = load_subject(Case("c0", {"T1": t1}, lesion=label), preprocessing(channels=("T1",)))
    assert subject["T1"].orientation == ("R", "A", "S")
    assert subject["lesion"].orientation == ("R", "A", "S")
    # L->R reversal of axes 0 and 1; the label still marks the same voxels.
    np.testing.assert_array_equal(subject["lesion"].numpy()[0], (array > 0.9)[::-1, ::-1, :])


def test_percentiles_map_to_zero_and_one_and_beyond_is_clipped() -> None:
    subject = make_subject()
    t1 = subject["T1"].numpy().ravel()
    out = preprocessing()(subject)
    normalised = out["T1"].numpy().ravel()
    low, high = np.percentile(t1, (1, 99))
    np.testing.assert_allclose(normalised, (np.clip(t1, low, high) - low) / (high - low), atol=1e-6)
    assert normalised.min() == 0.0 and normalised.max() == 1.0
    assert (normalised[t1 <= low] == 0).all() and (normalised[t1 >= high] == 1).all()
    # Each channel has its own percentiles: b1000 = 2 * T1 + 1 normalises to the same values.
    np.testing.assert_allclose(out["b1000"].numpy(), out["T1"].numpy(), atol=1e-6)
    # Labels are untouched.
    assert torch.equal(out["lesion"].data, subject["lesion"].data)


def test_target_spacing_sets_the_output_shape() -> None:
    subject = make_subject(shape=(16, 16, 12), spacing_mm=(1.0, 1.0, 2.0))
    out = preprocessing(spacing_mm=2.0)(subject)
    for name in ("T1", "b1000", "lesion"):
        assert out[name].spatial_shape == (8, 8, 12)
        np.testing.assert_allclose(out[name].spacing, (2.0, 2.0, 2.0))
    assert set(out["lesion"].data.unique().tolist()) <= {0, 1, 2}  # nearest neighbour


def test_preprocessing_without_normalisation_keeps_intensities() -> None:
    subject = make_subject()
    out = preprocessing(percentiles=None)(subject)
    assert torch.equal(out["T1"].data, subject["T1"].data)


# --------------------------------------------------------------------------------------
# Augmentation: spatial
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("axes", [(0,), (1,), (2,), (0, 1, 2)])
def test_flips_keep_labels_on_their_voxels(axes) -> None:
    subject = make_subject()
    flipped = tio.Flip(axes=axes)(subject)
    assert not torch.equal(flipped["T1"].data, subject["T1"].data)
    assert_labels_follow_intensities(subject, flipped)


@pytest.mark.parametrize("k", [1, 2, 3])
def test_rot90_keeps_labels_on_their_voxels(k: int) -> None:
    subject = make_subject()
    rotated = Rot90(k=k, axes=(0, 1))(subject)
    expected_shape = (12, 10, 8) if k % 2 else SHAPE
    for name in ("T1", "b1000", "lesion"):
        assert rotated[name].spatial_shape == expected_shape
    np.testing.assert_array_equal(
        rotated["T1"].numpy()[0], np.rot90(subject["T1"].numpy()[0], k, axes=(0, 1))
    )
    assert_labels_follow_intensities(subject, rotated)


def test_rot90_keeps_orientation_and_centre_and_swaps_spacing() -> None:
    subject = make_subject(spacing_mm=(1.0, 2.0, 3.0))
    rotated = Rot90(k=1)(subject)["T1"]
    original = subject["T1"]
    assert rotated.orientation == original.orientation == ("R", "A", "S")
    np.testing.assert_allclose(rotated.spacing, (2.0, 1.0, 3.0))

    def centre(image):
        return (
            image.affine[:3, :3] @ ((np.array(image.spatial_shape) - 1) / 2) + image.affine[:3, 3]
        )

    np.testing.assert_allclose(centre(rotated), centre(original))


def test_random_rot90_is_reproducible_recorded_and_invertible() -> None:
    subject = make_subject()
    transform = RandomRot90(axes=(0, 1), p=1.0)
    draws = set()
    for seed in range(12):
        torch.manual_seed(seed)
        out = transform(subject)
        torch.manual_seed(seed)
        assert torch.equal(transform(subject)["T1"].data, out["T1"].data)
        name, arguments = out.applied_transforms[-1]
        assert name == "Rot90"
        draws.add(arguments["k"])
        replayed = out.get_composed_history()(subject)
        assert torch.equal(replayed["T1"].data, out["T1"].data)
        restored = out.apply_inverse_transform()
        assert torch.equal(restored["T1"].data, subject["T1"].data)
        assert torch.equal(restored["lesion"].data, subject["lesion"].data)
        np.testing.assert_allclose(restored["T1"].affine, subject["T1"].affine, atol=1e-9)
    assert draws == {1, 2, 3}


def test_rot90_refuses_a_bad_plane() -> None:
    with pytest.raises(ValueError, match="two different spatial axes"):
        Rot90(axes=(1, 1))
    with pytest.raises(ValueError, match="max_k"):
        RandomRot90(max_k=4)


# --------------------------------------------------------------------------------------
# Augmentation: intensity
# --------------------------------------------------------------------------------------


def test_intensity_scale_and_shift_follow_monai_semantics_and_spare_labels() -> None:
    subject = make_subject()
    torch.manual_seed(0)
    scaled = RandomScaleIntensity(factors=0.1, p=1.0)(subject)
    (_, arguments) = scaled.applied_transforms[-1]
    assert 0.9 <= arguments["scale"] <= 1.1 and arguments["shift"] == 0.0
    torch.testing.assert_close(scaled["T1"].data, subject["T1"].data * arguments["scale"])
    torch.testing.assert_close(scaled["b1000"].data, subject["b1000"].data * arguments["scale"])

    shifted = RandomShiftIntensity(offsets=0.1, p=1.0)(subject)
    (_, arguments) = shifted.applied_transforms[-1]
    assert -0.1 <= arguments["shift"] <= 0.1 and arguments["scale"] == 1.0
    torch.testing.assert_close(shifted["T1"].data, subject["T1"].data + arguments["shift"])

    for out in (scaled, shifted):
        assert torch.equal(out["lesion"].data, subject["lesion"].data)
        assert out["lesion"].data.dtype == torch.uint8


def test_scale_shift_intensity_is_invertible() -> None:
    subject = make_subject()
    out = ScaleShiftIntensity(scale=1.05, shift=-0.07)(subject)
    restored = out.apply_inverse_transform()
    torch.testing.assert_close(restored["T1"].data, subject["T1"].data)


def test_full_augmentation_keeps_alignment_and_leaves_labels_values_alone() -> None:
    subject = make_subject()
    transform = augmentation(flip_p=0.5, rot90_p=1.0, intensity_p=1.0)
    for seed in range(4):
        torch.manual_seed(seed)
        out = transform(subject)
        assert [name for name, _ in out.applied_transforms][-3:] == [
            "Rot90",
            "ScaleShiftIntensity",
            "ScaleShiftIntensity",
        ]
        assert torch.equal(out["lesion"].data.unique(), subject["lesion"].data.unique())
        undone = out.apply_inverse_transform(warn=False)
        torch.testing.assert_close(undone["T1"].data, subject["T1"].data)
        assert torch.equal(undone["lesion"].data, subject["lesion"].data)


def test_augmentation_leaves_out_transforms_with_zero_probability() -> None:
    names = [t.name for t in augmentation(flip_p=0, rot90_p=0, intensity_p=0).transforms]
    assert names == []
    names = [t.name for t in augmentation(bias_field_p=0.3, noise_p=0.2).transforms]
    assert names == [
        "RandomFlip",
        "RandomRot90",
        "RandomScaleIntensity",
        "RandomShiftIntensity",
        "RandomBiasField",
        "RandomNoise",
    ]


def test_augmentation_runs_in_queue_worker_processes() -> None:
    transform = pickle.loads(
        pickle.dumps(tio.Compose([preprocessing(), augmentation(rot90_p=1.0)]))
    )
    dataset = tio.SubjectsDataset([make_subject(seed=s) for s in range(2)], transform=transform)
    queue = tio.Queue(
        dataset,
        max_length=4,
        samples_per_volume=2,
        sampler=tio.UniformSampler(patch_size=(6, 6, 6)),
        num_workers=1,
    )
    patches = [queue[i] for i in range(len(queue))]  # one epoch (iter(queue) never ends)
    assert len(patches) == 4
    for patch in patches:
        assert "Rot90" in [name for name, _ in patch.applied_transforms]
    batch = next(iter(tio.SubjectsLoader(queue, batch_size=2)))
    assert stack_channels(batch, ("T1", "b1000")).shape == (2, 2, 6, 6, 6)


# --------------------------------------------------------------------------------------
# Network input
# --------------------------------------------------------------------------------------


def test_stack_channels_of_a_subject_follows_the_requested_order() -> None:
    subject = make_subject()
    stacked = stack_channels(subject, ("b1000", "T1"))
    assert stacked.shape == (2, *SHAPE) and stacked.dtype == torch.float32
    assert torch.equal(stacked[0], subject["b1000"].data[0])
    assert torch.equal(stacked[1], subject["T1"].data[0])


def test_stack_channels_of_a_collated_batch() -> None:
    loader = tio.SubjectsLoader(
        tio.SubjectsDataset([make_subject(seed=s) for s in range(3)]), batch_size=3
    )
    batch = next(iter(loader))
    stacked = stack_channels(batch, ("T1", "b1000"))
    assert stacked.shape == (3, 2, *SHAPE)
    assert torch.equal(stacked[:, 1], batch["b1000"][tio.DATA][:, 0].float())


def test_stack_channels_explains_missing_and_misaligned_channels() -> None:
    subject = make_subject()
    with pytest.raises(KeyError, match="channel 'DWI' is not in the subject"):
        stack_channels(subject, ("T1", "DWI"))
    subject["b1000"] = tio.ScalarImage(tensor=torch.zeros(1, 4, 4, 4))
    with pytest.raises(ValueError, match="apply sap.data.preprocess.preprocessing"):
        stack_channels(subject, ("T1", "b1000"))
