"""Specification of patch placement (`sap.data.placement`)."""

from __future__ import annotations

import numpy as np
import pytest

from sap.data.lesions import Lesion
from sap.data.placement import lesion_patch_offset, window_sums


def test_window_sums_match_brute_force() -> None:
    rng = np.random.default_rng(0)
    mask = rng.random((9, 7, 8)) > 0.8
    sums = window_sums(mask, (3, 2, 4))
    assert sums.shape == (7, 6, 5)
    for i, j, k in [(0, 0, 0), (6, 5, 4), (3, 2, 1)]:
        assert sums[i, j, k] == mask[i : i + 3, j : j + 2, k : k + 4].sum()


def test_patch_near_the_border_stays_inside_the_volume() -> None:
    lesion = Lesion(1, (0, 0, 30), (2, 2, 32), 8)
    for _ in range(10):
        offset = lesion_patch_offset(lesion, (8, 8, 8), (32, 32, 32), margin=3)
        assert offset[:2] == (0, 0) and offset[2] == 24


def test_large_lesion_without_voxels_is_refused_with_the_fix() -> None:
    lesion = Lesion(4, (0, 0, 0), (20, 2, 2), 80)
    with pytest.raises(ValueError, match="keep_voxels_larger_than"):
        lesion_patch_offset(lesion, (8, 8, 8), (32, 32, 32))
