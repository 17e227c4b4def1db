"""Bring a prediction from the model's grid back onto the input T1 grid, slab by slab.

The model sees the scan in canonical (RAS+) orientation and maybe another voxel spacing;
users compare our output voxel for voxel with their T1, so every output must have exactly
the T1's shape and affine. Two cases:

* the model grid is the T1 grid reoriented (no target spacing; the usual case): the
  voxel-to-voxel map is a signed axis permutation, and the output is an exact reindexing
  (flips and transposes, no interpolation, labels and probabilities unchanged);
* otherwise: interpolation (nearest neighbour for labels, linear for probabilities) done in
  slabs of the output, each reading only the part of the source it needs, so a whole-body
  map never needs a float64 copy (``scipy.ndimage`` would make one for the whole volume).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import ndimage

from sap.inference.spill import is_spilled, release_pages, slabs, spilled_empty

#: Voxel offsets closer than this to an integer count as exact (sform/qform float noise).
_INTEGER_TOLERANCE = 1e-3


def voxel_map(source_affine: np.ndarray, target_affine: np.ndarray) -> np.ndarray:
    """4x4 matrix taking target voxel indices to source voxel indices (same scanner space)."""
    return np.linalg.inv(np.asarray(source_affine, np.float64)) @ np.asarray(
        target_affine, np.float64
    )


def _signed_permutation(
    mapping: np.ndarray, source_shape: Sequence[int], target_shape: Sequence[int]
) -> list[tuple[int, int, int]] | None:
    """``[(source_axis, sign, offset)]`` per target axis when the map is an exact reindexing."""
    linear, offset = mapping[:3, :3], mapping[:3, 3]
    rounded = np.round(linear)
    if np.abs(linear - rounded).max() > _INTEGER_TOLERANCE:
        return None
    if np.abs(offset - np.round(offset)).max() > _INTEGER_TOLERANCE:
        return None
    if sorted(np.abs(rounded).sum(axis=0).tolist()) != [1, 1, 1]:
        return None
    if sorted(np.abs(rounded).sum(axis=1).tolist()) != [1, 1, 1]:
        return None
    axes = []
    for j in range(3):
        i = int(np.flatnonzero(rounded[:, j])[0])
        sign = int(rounded[i, j])
        start = int(np.round(offset[i]))
        end = start + sign * (int(target_shape[j]) - 1)
        if min(start, end) < 0 or max(start, end) >= int(source_shape[i]):
            return None  # the target reaches outside the source: interpolate with clamping
        axes.append((i, sign, start))
    if sorted(a for a, _, _ in axes) != [0, 1, 2]:
        return None
    return axes


def resample_to_grid(
    array: np.ndarray,
    source_affine: np.ndarray,
    target_shape: Sequence[int],
    target_affine: np.ndarray,
    *,
    order: int,
    slab_voxels: int = 16_000_000,
) -> np.ndarray:
    """Resample a 3D ``array`` (or ``[K, X, Y, Z]`` stack) onto another grid of the same space.

    Args:
        array: values on the source grid; a leading channel axis is allowed.
        source_affine: the source grid's voxel-to-scanner matrix.
        target_shape: spatial shape of the target grid (the input T1).
        target_affine: the target grid's voxel-to-scanner matrix.
        order: 0 (nearest neighbour: labels) or 1 (linear: probabilities).
        slab_voxels: target voxels interpolated at a time (bounds temporary memory).

    Returns:
        Array of ``target_shape`` (with the channel axis if given), same dtype as ``array``.
        Target voxels outside the source grid take the nearest edge value.
    """
    if order not in (0, 1):
        raise ValueError(f"order must be 0 (nearest) or 1 (linear), got {order}.")
    target_shape = tuple(int(n) for n in target_shape)
    if array.ndim == 4:
        return np.stack(
            [
                resample_to_grid(
                    channel,
                    source_affine,
                    target_shape,
                    target_affine,
                    order=order,
                    slab_voxels=slab_voxels,
                )
                for channel in array
            ]
        )
    if array.ndim != 3:
        raise ValueError(f"Expected a 3D array or a [K, X, Y, Z] stack, got shape {array.shape}.")
    mapping = voxel_map(source_affine, target_affine)
    exact = _signed_permutation(mapping, array.shape, target_shape)
    if exact is not None:
        return _reindex(array, exact, target_shape)
    return _interpolate(array, mapping, target_shape, order, slab_voxels)


def _reindex(
    array: np.ndarray, axes: list[tuple[int, int, int]], target_shape: tuple[int, ...]
) -> np.ndarray:
    """Flips and transposes of ``array`` given by :func:`_signed_permutation`."""
    per_source: list[slice] = [slice(None)] * 3
    flipped = []
    for j, (i, sign, start) in enumerate(axes):
        n = target_shape[j]
        per_source[i] = slice(start, start + n) if sign > 0 else slice(start - n + 1, start + 1)
        if sign < 0:
            flipped.append(i)
    view = array[tuple(per_source)]
    if flipped:
        view = np.flip(view, axis=tuple(flipped))
    view = view.transpose([i for i, _, _ in axes])
    if not is_spilled(array):
        return np.ascontiguousarray(view)
    out = spilled_empty(view.shape, view.dtype)  # a spilled map stays spilled
    for part in slabs(view.shape):
        out[part] = view[part]
        release_pages(array, out)
    return out


def _interpolate(
    array: np.ndarray,
    mapping: np.ndarray,
    target_shape: tuple[int, ...],
    order: int,
    slab_voxels: int,
) -> np.ndarray:
    """Interpolate slab by slab, each slab reading only the part of ``array`` it needs."""
    out = (spilled_empty if is_spilled(array) else np.empty)(target_shape, array.dtype)
    linear, offset = mapping[:3, :3], mapping[:3, 3]
    plane = target_shape[0] * target_shape[1]
    step = max(1, slab_voxels // max(plane, 1))
    source_max = np.array(array.shape) - 1
    for z0 in range(0, target_shape[2], step):
        z1 = min(z0 + step, target_shape[2])
        corners = np.array(
            [
                [x, y, z]
                for x in (0, target_shape[0] - 1)
                for y in (0, target_shape[1] - 1)
                for z in (z0, z1 - 1)
            ],
            dtype=np.float64,
        )
        mapped = corners @ linear.T + offset
        lo = np.clip(np.floor(mapped.min(axis=0)).astype(int) - 1, 0, source_max)
        hi = np.clip(np.ceil(mapped.max(axis=0)).astype(int) + 2, lo + 1, source_max + 1)
        crop = array[lo[0] : hi[0], lo[1] : hi[1], lo[2] : hi[2]]
        if order == 1 or crop.dtype == np.float16:
            crop = crop.astype(np.float32)
        start = np.array([0.0, 0.0, float(z0)])
        slab = ndimage.affine_transform(
            crop,
            linear,
            offset=linear @ start + offset - lo,
            output_shape=(target_shape[0], target_shape[1], z1 - z0),
            order=order,
            mode="nearest",
            prefilter=False,
        )
        out[:, :, z0:z1] = slab.astype(array.dtype, copy=False)
        release_pages(array, out)
    return out


__all__ = ["resample_to_grid", "voxel_map"]
