"""Pictures in radiological convention: the patient's right is on the left, whatever the affine."""

from __future__ import annotations

import numpy as np
import pytest

from sap.metrics.views import RadiologicalView

SHAPE = (20, 10, 30)


def lesion_at_high_index_0() -> tuple[np.ndarray, tuple[int, int, int]]:
    """A lesion near the end of array axis 0: the patient's right with an RAS affine, the left
    with an LPS one."""
    mask = np.zeros(SHAPE, bool)
    mask[16:19, 4:6, 20:23] = True
    return mask, (17, 4, 21)


@pytest.mark.parametrize(
    ("affine", "patient_side"),
    [
        (np.diag([1.5, 1.5, 2.0, 1.0]), "right"),  # RAS: index 0 grows towards the right
        (np.diag([-1.5, -1.5, 2.0, 1.0]), "left"),  # LPS: index 0 grows towards the left
    ],
)
def test_coronal_mip_puts_the_patients_right_on_the_left(affine, patient_side):
    mask, _ = lesion_at_high_index_0()
    view = RadiologicalView.of(affine, SHAPE)
    picture = view.coronal_mip(mask)
    assert picture.shape == (SHAPE[2], SHAPE[0])  # rows: head to feet, columns: across
    columns = np.flatnonzero(picture.any(axis=0))
    on_left_of_picture = columns.max() < SHAPE[0] / 2
    assert on_left_of_picture == (patient_side == "right")
    rows = np.flatnonzero(picture.any(axis=1))
    assert rows.max() < SHAPE[2] / 2  # z = 20..22 of 30: near the head, top of the picture


def test_points_land_on_their_voxels_in_coronal_and_axial_pictures():
    mask, voxel = lesion_at_high_index_0()
    affine = np.array(
        [[0.0, 0.0, -2.0, 10.0], [1.5, 0.0, 0.0, 0.0], [0.0, 1.5, 0.0, 0.0], [0, 0, 0, 1.0]]
    )  # axes permuted and flipped: array axis 0 is anterior, axis 2 runs to the left
    view = RadiologicalView.of(affine, SHAPE)
    one = np.zeros(SHAPE, bool)
    one[voxel] = True
    col, row = view.coronal_point(voxel)
    assert view.coronal_mip(one)[int(row), int(col)]
    z = int(view.ras_index(voxel)[2])
    col, row = view.axial_point(voxel)
    assert view.axial_slice(one, z)[int(row), int(col)]
    assert view.coronal_aspect == pytest.approx(1.5 / 2.0)  # z spacing / x spacing
