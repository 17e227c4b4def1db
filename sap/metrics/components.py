"""Connected components of 3D masks, and the volume bookkeeping every lesion metric needs.

Why a module of its own: "what is one lesion" decides every detection number. Packages
disagree on the default neighbourhood (scipy labels with 6-connectivity unless told, cc3d
and most lesion papers use 26), so the connectivity is an explicit argument everywhere and
is written next to every number we report.

Speed: labelling uses ``cc3d`` (about 3x faster than ``scipy.ndimage.label`` on a
whole-body volume); every per-component quantity (voxel count, bounding box, centroid) is
then computed from the foreground voxels only, never by looping over labels on the full
volume.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

#: Neighbourhoods understood by :func:`label_components`: faces (6), faces and edges (18),
#: faces, edges and corners (26).
CONNECTIVITIES: tuple[int, ...] = (6, 18, 26)

#: Default neighbourhood for lesions: two voxels touching by a corner are one lesion.
DEFAULT_CONNECTIVITY = 26


def check_connectivity(connectivity: int) -> int:
    """Return ``connectivity`` if it is 6, 18 or 26, else raise a ValueError saying so."""
    if connectivity not in CONNECTIVITIES:
        raise ValueError(
            f"connectivity must be one of {CONNECTIVITIES} (voxels sharing a face, an edge or a "
            f"corner are neighbours), got {connectivity!r}."
        )
    return int(connectivity)


def neighbour_offsets(connectivity: int) -> np.ndarray:
    """Half of the neighbourhood: offsets ``(di, dj, dk)`` that come after ``(0, 0, 0)`` in C order.

    Each unordered pair of neighbouring voxels is produced exactly once by these offsets
    (13 for 26-connectivity, 9 for 18, 3 for 6).
    """
    check_connectivity(connectivity)
    offsets = []
    for di in (-1, 0, 1):
        for dj in (-1, 0, 1):
            for dk in (-1, 0, 1):
                order = abs(di) + abs(dj) + abs(dk)
                if order == 0:
                    continue
                if (connectivity == 6 and order > 1) or (connectivity == 18 and order > 2):
                    continue
                if (di, dj, dk) > (0, 0, 0):
                    offsets.append((di, dj, dk))
    return np.asarray(offsets, dtype=np.int64)


def check_spacing(spacing_mm: Sequence[float] | np.ndarray | float, ndim: int = 3) -> np.ndarray:
    """Voxel spacing in mm as a float64 array of length ``ndim``, in array-axis order.

    A single number means isotropic spacing. Raises ValueError for anything not finite and
    positive: a zero spacing would silently make every volume 0 mL.
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

    The spacing along array axis i is the norm of the affine's i-th column (what
    ``nibabel``'s ``header.get_zooms()`` reports for a consistent header).

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
    """Volume of one voxel in mL (1 mL = 1000 mm³)."""
    return float(np.prod(check_spacing(spacing_mm))) / 1000.0


def min_voxels_for_volume(min_volume_ml: float, spacing_mm: Sequence[float] | np.ndarray) -> int:
    """Smallest voxel count whose volume is at least ``min_volume_ml``.

    The comparison forgives a relative rounding error of 1e-9, so that 1000 voxels of
    1 mm³ (or 125 voxels of 2 mm × 2 mm × 2 mm) count as exactly 1 mL and are "≥ 1 mL".
    """
    if not math.isfinite(min_volume_ml) or min_volume_ml < 0:
        raise ValueError(f"min_volume_ml must be a finite number >= 0, got {min_volume_ml!r}.")
    ratio = min_volume_ml / voxel_volume_ml(spacing_mm)
    return max(int(math.ceil(ratio * (1.0 - 1e-9))), 0)


def as_mask(array: object, name: str = "mask") -> np.ndarray:
    """A 3D boolean numpy array from a numpy array or torch tensor (non-zero = foreground)."""
    if hasattr(array, "detach"):
        array = array.detach().cpu().numpy()  # type: ignore[attr-defined]
    mask = np.asarray(array)
    if mask.ndim != 3:
        raise ValueError(
            f"{name} must be a 3D volume (D, H, W); got shape {mask.shape}. Remove batch and "
            f"channel axes first (e.g. mask[0, 0])."
        )
    if mask.dtype != np.bool_:
        mask = mask != 0
    return mask


def label_components(
    mask: np.ndarray, connectivity: int = DEFAULT_CONNECTIVITY
) -> tuple[np.ndarray, int]:
    """Label the connected components of a 3D boolean mask.

    Args:
        mask: 3D boolean array.
        connectivity: 6, 18 or 26 (see :data:`CONNECTIVITIES`).

    Returns:
        ``(labels, count)``: an unsigned integer volume with 0 for background and
        ``1..count`` for the components, and the number of components.
    """
    import cc3d

    check_connectivity(connectivity)
    labels, count = cc3d.connected_components(
        np.ascontiguousarray(mask, dtype=bool), connectivity=connectivity, return_N=True
    )
    return labels, int(count)


@dataclass(frozen=True)
class Components:
    """The connected components of one mask, with per-component geometry.

    Arrays indexed by label have length ``count + 1``; index 0 (background) holds zeros.

    Attributes:
        labels: dense label volume (0 = background, ``1..count``).
        count: number of components.
        voxel_counts: voxels per component.
        bbox_start: first voxel index of each component's bounding box, per axis.
        bbox_stop: one past the last voxel index, per axis (slice semantics).
        centroid_voxel: mean voxel index of each component, per axis (array-axis order).
        flat_index: flat (C-order) indices of all foreground voxels, sorted.
        flat_label: the label of each voxel in ``flat_index``.
    """

    labels: np.ndarray
    count: int
    voxel_counts: np.ndarray
    bbox_start: np.ndarray
    bbox_stop: np.ndarray
    centroid_voxel: np.ndarray
    flat_index: np.ndarray
    flat_label: np.ndarray

    def bbox(self, label: int) -> tuple[slice, slice, slice]:
        """Bounding box of component ``label`` as slices into the volume."""
        return tuple(
            slice(int(a), int(b)) for a, b in zip(self.bbox_start[label], self.bbox_stop[label])
        )  # type: ignore[return-value]


def find_components(mask: np.ndarray, connectivity: int = DEFAULT_CONNECTIVITY) -> Components:
    """Label ``mask`` and measure each component from its foreground voxels only."""
    labels, count = label_components(mask, connectivity)
    flat_index = np.flatnonzero(labels)
    flat_label = labels.reshape(-1)[flat_index].astype(np.int64)
    voxel_counts = np.bincount(flat_label, minlength=count + 1).astype(np.int64)
    bbox_start = np.zeros((count + 1, 3), dtype=np.int64)
    bbox_stop = np.zeros((count + 1, 3), dtype=np.int64)
    centroid = np.zeros((count + 1, 3), dtype=np.float64)
    if count:
        coords = np.unravel_index(flat_index, labels.shape)
        order = np.argsort(flat_label, kind="stable")
        sorted_labels = flat_label[order]
        starts = np.flatnonzero(np.r_[True, sorted_labels[1:] != sorted_labels[:-1]])
        present = sorted_labels[starts]
        for axis, coord in enumerate(coords):
            sorted_coord = coord[order]
            bbox_start[present, axis] = np.minimum.reduceat(sorted_coord, starts)
            bbox_stop[present, axis] = np.maximum.reduceat(sorted_coord, starts) + 1
            sums = np.bincount(flat_label, weights=coord, minlength=count + 1)
            centroid[1:, axis] = sums[1:] / np.maximum(voxel_counts[1:], 1)
    return Components(
        labels=labels,
        count=count,
        voxel_counts=voxel_counts,
        bbox_start=bbox_start,
        bbox_stop=bbox_stop,
        centroid_voxel=centroid,
        flat_index=flat_index,
        flat_label=flat_label,
    )


__all__ = [
    "CONNECTIVITIES",
    "DEFAULT_CONNECTIVITY",
    "Components",
    "as_mask",
    "check_connectivity",
    "check_spacing",
    "find_components",
    "label_components",
    "min_voxels_for_volume",
    "neighbour_offsets",
    "spacing_from_affine",
    "voxel_volume_ml",
]
