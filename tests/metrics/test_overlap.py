"""Dice and normalised surface Dice: known values, empty masks, spacing, MONAI agreement."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from sap.metrics import dice, surface_dice
from sap.metrics.overlap import boundary_voxels


def slab(shape, index, cols=slice(None)):
    mask = np.zeros(shape, dtype=bool)
    mask[index, :, cols] = True
    return mask


def test_dice_counts_overlap():
    a = np.zeros((4, 4, 4), bool)
    a[:2] = True
    b = np.zeros((4, 4, 4), bool)
    b[1:3] = True
    assert dice(a, b) == 0.5
    assert dice(a, a) == 1.0


def test_empty_mask_conventions():
    empty = np.zeros((5, 5, 5), bool)
    full = np.zeros((5, 5, 5), bool)
    full[1:3, 1:3, 1:3] = True
    assert dice(empty, empty) == 1.0 and surface_dice(empty, empty, 1.0) == 1.0
    assert dice(full, empty) == 0.0 and surface_dice(full, empty, 1.0) == 0.0
    assert dice(empty, full) == 0.0 and surface_dice(empty, full, 1.0) == 0.0
    assert surface_dice(empty, empty, 1.0, variant="area") == 1.0


def test_boundary_is_every_voxel_with_a_face_outside():
    cube = np.zeros((5, 5, 5), bool)
    cube[1:4, 1:4, 1:4] = True
    edge = boundary_voxels(cube)
    assert edge.sum() == 26 and not edge[2, 2, 2]
    whole = np.ones((3, 3, 3), bool)  # outside the array counts as outside
    assert boundary_voxels(whole).sum() == 26


def test_nsd_of_parallel_slabs_depends_on_distance_and_tolerance():
    ref = slab((8, 4, 4), 2)
    pred = slab((8, 4, 4), 4)  # two voxels away along axis 0
    assert surface_dice(pred, ref, (1.0, 1.0, 1.0), tolerance_mm=1.5) == 0.0
    assert surface_dice(pred, ref, (1.0, 1.0, 1.0), tolerance_mm=2.0) == 1.0  # inclusive
    assert surface_dice(pred, ref, (0.5, 1.0, 1.0), tolerance_mm=1.5) == 1.0
    # Spacing is in array-axis order: a large spacing on another axis changes nothing.
    assert surface_dice(pred, ref, (1.0, 9.0, 9.0), tolerance_mm=1.5) == 0.0


def test_nsd_counts_boundary_voxels_both_ways():
    ref = slab((8, 4, 4), 2)  # 16 boundary voxels
    pred = slab((8, 4, 4), 2, slice(0, 2)) | slab((8, 4, 4), 5, slice(2, 4))  # 8 on ref, 8 at 3 mm
    # pred -> ref: 8 at 0 mm, 8 at 3 mm; ref -> pred: 8 at 0 mm, 4 at 1 mm, 4 at 2 mm.
    assert surface_dice(pred, ref, 1.0, tolerance_mm=1.5) == pytest.approx((8 + 12) / 32)
    assert surface_dice(pred, ref, 1.0, tolerance_mm=2.0) == pytest.approx((8 + 16) / 32)
    assert surface_dice(pred, ref, 1.0, tolerance_mm=3.0) == 1.0


def test_masks_touching_the_array_border_keep_their_boundary():
    ref = np.zeros((6, 6, 6), bool)
    ref[:3] = True
    pred = np.zeros((6, 6, 6), bool)
    pred[:2] = True
    padded = surface_dice(np.pad(pred, 2), np.pad(ref, 2), 1.0, tolerance_mm=0.5)
    assert surface_dice(pred, ref, 1.0, tolerance_mm=0.5) == pytest.approx(padded)


def test_input_checks_name_the_problem():
    with pytest.raises(ValueError, match="same voxel grid"):
        surface_dice(np.zeros((3, 3, 3)), np.zeros((3, 3, 4)), 1.0)
    with pytest.raises(ValueError, match="tolerance_mm"):
        surface_dice(np.zeros((3, 3, 3)), np.zeros((3, 3, 3)), 1.0, tolerance_mm=-1)
    with pytest.raises(ValueError, match="variant"):
        surface_dice(np.zeros((3, 3, 3)), np.zeros((3, 3, 3)), 1.0, variant="surface")
    with pytest.raises(ValueError, match="spacing_mm"):
        surface_dice(np.zeros((3, 3, 3)), np.zeros((3, 3, 3)), (1.0, 1.0))


def monai_nsd(pred, ref, spacing, tolerance_mm, use_subvoxels=False):
    import torch
    from monai.metrics import compute_surface_dice

    tensors = [torch.from_numpy(m[None, None].astype(np.float32)) for m in (pred, ref)]
    value = compute_surface_dice(
        *tensors,
        class_thresholds=[tolerance_mm],
        include_background=True,
        spacing=list(spacing),
        use_subvoxels=use_subvoxels,
    )
    return float(value[0, 0])


@pytest.mark.filterwarnings("ignore::FutureWarning")
@pytest.mark.parametrize("seed", range(3))
def test_boundary_nsd_agrees_with_monai_on_random_masks(seed):
    rng = np.random.default_rng(seed)
    shape = (20, 18, 14)
    spacing = (0.9, 1.3, 3.0)
    ref = ndimage.gaussian_filter(rng.random(shape), 1.0) > 0.53
    pred = ndimage.gaussian_filter(rng.random(shape) + 0.4 * ref, 1.0) > 0.6
    for tolerance in (0.7, 1.9, 3.1):
        ours = surface_dice(pred, ref, spacing, tolerance_mm=tolerance)
        assert ours == pytest.approx(monai_nsd(pred, ref, spacing, tolerance), abs=1e-6)
        assert 0.0 < ours < 1.0


@pytest.mark.filterwarnings("ignore::FutureWarning")
def test_area_variant_is_monai_subvoxel_nsd_and_differs_on_thin_objects():
    ref = slab((10, 8, 8), slice(3, 5), slice(1, 7))
    pred = slab((10, 8, 8), slice(4, 6), slice(1, 7))
    spacing = (5.0, 1.0, 1.0)  # thin object, thick slices
    area = surface_dice(pred, ref, spacing, tolerance_mm=2.0, variant="area")
    boundary = surface_dice(pred, ref, spacing, tolerance_mm=2.0)
    assert area == pytest.approx(
        monai_nsd(np.pad(pred, 1), np.pad(ref, 1), spacing, 2.0, True), abs=1e-6
    )
    assert 0.0 < area < 1.0 and 0.0 < boundary < 1.0
    assert abs(area - boundary) > 0.05
    assert surface_dice(ref, ref, spacing, variant="area") == pytest.approx(1.0)
