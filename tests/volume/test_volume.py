"""The volume layer: components, geometry and the one checked image reader."""

from __future__ import annotations

import gzip

import nibabel as nib
import numpy as np
import pytest
from scipy import ndimage

from sap.volume import (
    VolumeReadError,
    check_connectivity,
    find_components,
    grid_offset_mm,
    label_components,
    neighbour_offsets,
    open_volume,
    overlap_in_space,
    read_volume,
    spacing_from_affine,
    voxel_volume_ml,
)


def test_neighbour_offsets_cover_each_pair_once():
    for connectivity, count in ((6, 3), (18, 9), (26, 13)):
        offsets = neighbour_offsets(connectivity)
        assert len(offsets) == count
        assert len({tuple(o) for o in offsets} | {tuple(-o) for o in offsets}) == 2 * count


def test_components_match_scipy_labelling():
    rng = np.random.default_rng(3)
    mask = ndimage.gaussian_filter(rng.random((20, 24, 16)), 1.0) > 0.55
    for connectivity, rank in ((6, 1), (18, 2), (26, 3)):
        components = find_components(mask, connectivity)
        labels, count = ndimage.label(mask, ndimage.generate_binary_structure(3, rank))
        assert components.count == count
        assert sorted(components.voxel_counts[1:]) == sorted(np.bincount(labels.ravel())[1:])
        for label in range(1, components.count + 1):
            inside = components.labels[components.bbox(label)] == label
            assert inside.sum() == components.voxel_counts[label]


def test_unknown_connectivity_is_refused_with_the_choices():
    with pytest.raises(ValueError, match=r"\(6, 18, 26\)"):
        check_connectivity(8)
    with pytest.raises(ValueError, match="connectivity"):
        label_components(np.ones((2, 2, 2)), connectivity=4)


def test_component_voxels_are_the_component_and_nothing_else():
    mask = np.zeros((6, 6, 6), bool)
    mask[0, 0, 0:3] = True
    mask[5, 5, 5] = True
    parts = find_components(mask)
    assert parts.voxels(1).tolist() == [[0, 0, 0], [0, 0, 1], [0, 0, 2]]
    assert parts.voxels(2).tolist() == [[5, 5, 5]]


def test_spacing_follows_array_axes_of_a_permuted_oblique_affine():
    angle = 0.4
    rotation = np.array(
        [[np.cos(angle), -np.sin(angle), 0], [np.sin(angle), np.cos(angle), 0], [0, 0, 1]]
    )
    affine = np.eye(4)
    affine[:3, :3] = (
        rotation @ np.array([[0, 0, 1.0], [1.0, 0, 0], [0, 1.0, 0]]) @ np.diag([0.8, 1.5, 6.0])
    )
    assert np.allclose(spacing_from_affine(affine), [0.8, 1.5, 6.0])
    assert voxel_volume_ml(spacing_from_affine(affine)) == pytest.approx(0.0072)
    batch = np.stack([affine, np.diag([2.0, 2.0, 2.0, 1.0])])
    assert np.allclose(spacing_from_affine(batch), [[0.8, 1.5, 6.0], [2, 2, 2]])


def test_grid_offset_is_infinite_for_other_shapes_and_measures_a_shift_in_mm():
    shifted = np.eye(4)
    shifted[:3, 3] = [0.0, 0.3, 0.4]
    assert grid_offset_mm((4, 4, 4), np.eye(4), (4, 4, 5), np.eye(4)) == float("inf")
    assert grid_offset_mm((4, 4, 4), np.eye(4), (4, 4, 4), shifted) == pytest.approx(0.5)


def test_overlap_is_the_covered_fraction_of_the_first_image():
    moved = np.eye(4)
    moved[0, 3] = 5.0  # half of a 10-voxel box
    assert overlap_in_space((10, 10, 10), np.eye(4), (10, 10, 10), moved) == pytest.approx(0.5)
    moved[0, 3] = 50.0
    assert overlap_in_space((10, 10, 10), np.eye(4), (10, 10, 10), moved) == 0.0


def _save_zero_spacing(path):
    header = nib.Nifti1Header()
    header.set_data_shape((4, 4, 4))
    header.set_sform(np.diag([1.0, 0.0, 1.0, 1.0]), code=1)
    nib.save(nib.Nifti1Image(np.ones((4, 4, 4), np.float32), None, header), path)
    return path


def _save(path, data, affine=None):
    nib.save(nib.Nifti1Image(data, np.eye(4) if affine is None else affine), path)
    return path


def test_reader_gives_3d_voxels_and_affine_and_drops_a_trailing_singleton(tmp_path):
    data = np.arange(24, dtype=np.float32).reshape(2, 3, 4, 1)
    affine = np.diag([2.0, 3.0, 4.0, 1.0])
    voxels, read_affine = read_volume(_save(tmp_path / "x.nii.gz", data, affine), dtype=np.float32)
    assert voxels.shape == (2, 3, 4) and voxels.dtype == np.float32
    assert np.array_equal(voxels, data[..., 0]) and np.array_equal(read_affine, affine)


@pytest.mark.parametrize(
    ("make", "problem"),
    [
        (lambda p: p, "file is missing"),
        (lambda p: (p.mkdir(), p)[1], "is a folder"),
        (lambda p: (p.write_text("not an image"), p)[1], "unreadable"),
        (lambda p: _save(p, np.zeros((4, 4, 4, 2), np.float32)), "expected one 3D volume"),
        (lambda p: _save(p, np.zeros((4, 4), np.float32)), "expected a 3D volume"),
        (lambda p: _save_zero_spacing(p), "degenerate"),
    ],
)
def test_reader_names_the_file_and_the_problem(tmp_path, make, problem):
    path = make(tmp_path / "T1.nii.gz")
    with pytest.raises(VolumeReadError, match=problem) as caught:
        open_volume(path, "channel 'T1'")
    assert caught.value.path == path and str(path) in str(caught.value)
    assert caught.value.hint


def test_reader_refuses_a_nan_in_the_affine(tmp_path):
    path = _save(tmp_path / "T1.nii.gz", np.ones((4, 4, 4), np.float32))
    image = nib.load(path)
    header = image.header.copy()
    header["srow_x"][3] = np.nan
    nib.save(nib.Nifti1Image(np.ones((4, 4, 4), np.float32), None, header), path)
    if np.all(np.isfinite(nib.load(path).affine)):
        pytest.skip("nibabel replaced the NaN sform by the qform")
    with pytest.raises(VolumeReadError, match="NaN or infinite values in its affine"):
        open_volume(path)


def test_truncated_file_fails_when_voxels_are_read_and_names_it(tmp_path):
    path = _save(tmp_path / "b1000.nii.gz", np.random.default_rng(0).random((16, 16, 16)))
    raw = gzip.decompress(path.read_bytes())
    path.write_bytes(gzip.compress(raw[: len(raw) // 2]))
    volume = open_volume(path)  # the header is intact
    with pytest.raises(VolumeReadError, match="truncated or corrupt") as caught:
        volume.voxels()
    assert caught.value.path == path
