"""Specification of lesion finding (`sap.data.lesions`): components, boxes, numbering, cache."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sap.data.lesions import LesionCache, count_lesions, find_lesions
from tests.helpers.data import separated_lesions


def test_find_lesions_reports_bounding_boxes() -> None:
    lesion = np.zeros((10, 10, 10), np.uint8)
    lesion[2:4, 3:6, 1:2] = 1
    (found,) = find_lesions(lesion)
    assert (found.lower, found.upper, found.extent, found.num_voxels) == (
        (2, 3, 1),
        (4, 6, 2),
        (2, 3, 1),
        6,
    )


def test_lesions_are_numbered_in_raster_order_of_their_first_voxel() -> None:
    # Patches carry this number (LESION_COMPONENT): it must not depend on the labelling library.
    lesion = np.zeros((10, 10, 10), np.uint8)
    lesion[5, 0, 0] = 1  # third in raster (C) order
    lesion[0, 9, 9] = 1  # second
    lesion[0, 0, 5:8] = 1  # first
    found = find_lesions(lesion)
    assert [(f.index, f.lower) for f in found] == [(1, (0, 0, 5)), (2, (0, 9, 9)), (3, (5, 0, 0))]


def test_voxels_are_kept_only_for_lesions_larger_than_the_patch() -> None:
    lesion = np.zeros((20, 20, 20), np.uint8)
    lesion[1:3, 1:3, 1:3] = 1
    lesion[10, 10, 2:12] = 1  # 10 voxels long
    small, long = find_lesions(lesion, keep_voxels_larger_than=(8, 8, 8))
    assert small.voxels is None
    assert long.voxels.tolist() == [[10, 10, k] for k in range(2, 12)]


@pytest.mark.parametrize(("connectivity", "expected"), [(26, 1), (18, 2), (6, 3)])
def test_count_follows_the_connectivity(connectivity: int, expected: int) -> None:
    lesion = torch.zeros(1, 8, 8, 8, dtype=torch.uint8)  # a TorchIO label tensor
    lesion[0, 2, 2, 2] = lesion[0, 3, 3, 3] = 1  # touching by a corner
    lesion[0, 4, 4, 3] = 1  # touching the second by an edge
    assert count_lesions(lesion, connectivity) == expected
    assert len(find_lesions(lesion, connectivity)) == expected


def test_cache_returns_the_same_lesions_for_the_same_mask_only() -> None:
    cache = LesionCache(size=1)
    mask = separated_lesions(2) > 0
    first = cache(mask)
    assert cache(mask.copy()) is first
    assert len(cache(mask[::-1])) == 2  # another mask replaces the only entry
    assert cache(mask) is not first and len(cache(mask)) == 2
