"""Voxel geometry from an affine: spacing, voxel volume, corners, grid comparison.

Spacings are in mm and in *array-axis order*: the spacing along array axis ``i`` is the norm
of the affine's ``i``-th column (what nibabel's ``header.get_zooms()`` reports for a
consistent header), whatever the orientation.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

import numpy as np


def check_spacing(spacing_mm: Sequence[float] | np.ndarray | float, ndim: int = 3) -> np.ndarray:
    """Voxel spacing as a float64 array of length ``ndim``; one number means isotropic.

    Raises ValueError for anything not finite and positive: a zero spacing would silently
    make every volume 0 mL.

    >>> check_spacing(2).tolist()
    [2.0, 2.0, 2.0]
    """
    spacing = np.asarray(spacing_mm, dtype=np.float64).reshape(-1)
    if spacing.size == 1:
        spacing = np.repeat(spacing, ndim)
    if spacing.size != ndim or not np.all(np.isfinite(spacing)) or np.any(spacing <= 0):
        raise ValueError(
            f"spacing_mm must be {ndim} positive numbers in mm, one per array axis (the voxel "
            f"size along axis 0, 1, 2 of the mask, as in the affine's column norms), got "
            f"{np.asarray(spacing_mm).tolist()!r}."
        )
    return spacing


def spacing_from_affine(affine: object) -> np.ndarray:
    """Voxel spacing in mm (array-axis order) from a ``(4, 4)`` or ``(B, 4, 4)`` affine.

    >>> spacing_from_affine([[0, 0, 5, 0], [-1.2, 0, 0, 0], [0, 1.2, 0, 0], [0, 0, 0, 1]]).tolist()
    [1.2, 1.2, 5.0]
    """
    if hasattr(affine, "detach"):
        affine = affine.detach().cpu().numpy()  # type: ignore[attr-defined]
    a = np.asarray(affine, dtype=np.float64)
    if a.ndim < 2 or a.shape[-2:] != (4, 4):
        raise ValueError(f"affine must be (4, 4) or (B, 4, 4), got shape {a.shape}.")
    return np.linalg.norm(a[..., :3, :3], axis=-2)


def voxel_volume_ml(spacing_mm: Sequence[float] | np.ndarray) -> float:
    """Volume of one voxel in mL (1 mL = 1000 mm³); for an affine use ``spacing_from_affine``.

    >>> voxel_volume_ml([10, 10, 10])
    1.0
    """
    return float(np.prod(check_spacing(spacing_mm))) / 1000.0


def min_voxels_for_volume(min_volume_ml: float, spacing_mm: Sequence[float] | np.ndarray) -> int:
    """Smallest voxel count whose volume is at least ``min_volume_ml``.

    A relative rounding error of 1e-9 is forgiven, so that 1000 voxels of 1 mm³ count as
    exactly 1 mL and are "≥ 1 mL".

    >>> min_voxels_for_volume(1.0, [1, 1, 1]), min_voxels_for_volume(1.0, [2, 2, 2])
    (1000, 125)
    """
    if not math.isfinite(min_volume_ml) or min_volume_ml < 0:
        raise ValueError(f"min_volume_ml must be a finite number >= 0, got {min_volume_ml!r}.")
    ratio = min_volume_ml / voxel_volume_ml(spacing_mm)
    return max(int(math.ceil(ratio * (1.0 - 1e-9))), 0)


def corners_mm(shape: Sequence[int], affine: np.ndarray) -> np.ndarray:
    """World coordinates (mm) of the 8 corner voxel centres of a 3D grid, shape ``[8, 3]``."""
    corners = np.array(
        list(itertools.product(*[(0, int(n) - 1) for n in shape[:3]])), dtype=np.float64
    )
    affine = np.asarray(affine, dtype=np.float64)
    return corners @ affine[:3, :3].T + affine[:3, 3]


def grid_offset_mm(
    shape: Sequence[int], affine: np.ndarray, other_shape: Sequence[int], other_affine: np.ndarray
) -> float:
    """Largest distance (mm) between corresponding voxel centres of two grids.

    Infinite when the shapes differ. Voxel -> world is affine, so the largest discrepancy
    between two grids of one shape lies at a corner.

    >>> grid_offset_mm((4, 4, 4), np.eye(4), (4, 4, 4), np.diag([1.0, 1.0, 1.1, 1.0]))
    0.3
    """
    if tuple(int(n) for n in shape[:3]) != tuple(int(n) for n in other_shape[:3]):
        return math.inf
    difference = corners_mm(shape, affine) - corners_mm(other_shape, other_affine)
    return round(float(np.linalg.norm(difference, axis=1).max()), 12)


def overlap_in_space(
    shape: Sequence[int], affine: np.ndarray, other_shape: Sequence[int], other_affine: np.ndarray
) -> float:
    """Fraction of the first grid's world bounding box that the second grid's box covers.

    Boxes are padded by half a voxel. 0 means the images do not meet; 1 that the second
    image covers the first completely.

    >>> overlap_in_space((10, 10, 10), np.eye(4), (10, 10, 10), np.eye(4))
    1.0
    """
    boxes = []
    for s, a in ((shape, affine), (other_shape, other_affine)):
        corners = corners_mm(s, a)
        pad = float(spacing_from_affine(a).max()) / 2
        boxes.append((corners.min(axis=0) - pad, corners.max(axis=0) + pad))
    (low_a, high_a), (low_b, high_b) = boxes
    inter = np.clip(np.minimum(high_a, high_b) - np.maximum(low_a, low_b), 0, None)
    own = np.prod(high_a - low_a)
    return float(np.prod(inter) / own) if own > 0 else 0.0


__all__ = [
    "check_spacing",
    "corners_mm",
    "grid_offset_mm",
    "min_voxels_for_volume",
    "overlap_in_space",
    "spacing_from_affine",
    "voxel_volume_ml",
]
