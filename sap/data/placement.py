"""Where a patch goes: around one lesion, or clear of every lesion.

Offsets are the patch's first voxel ``(i, j, k)``. Random numbers come from torch's global
RNG, like TorchIO's samplers, so ``torch.manual_seed`` / ``lightning.seed_everything`` make
sampling reproducible.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np
import torch

from sap.data.lesions import Lesion


def _randint(low: int, high: int) -> int:
    """Uniform integer in ``[low, high]`` (inclusive) from torch's global RNG."""
    return int(torch.randint(low, high + 1, (1,)).item())


def lesion_patch_offset(
    lesion: Lesion, patch_size: Sequence[int], shape: Sequence[int], margin: int = 0
) -> tuple[int, int, int]:
    """A random patch offset that holds ``lesion``, or as much of it as a patch can.

    Along each axis where the lesion's bounding box fits in the patch, the offset is
    uniform among those that keep the whole box inside the patch and, where the patch is
    large enough and the volume allows, ``margin`` voxels from the patch border. Along an
    axis where the lesion is larger than the patch, the patch is centred on one random
    voxel of the lesion (the same voxel for every such axis), then shifted as little as
    needed to stay within the lesion's extent. The patch always lies inside the volume.

    Args:
        lesion: the lesion; needs ``voxels`` if it is larger than the patch along some axis.
        patch_size: patch size in voxels per axis.
        shape: volume shape in voxels.
        margin: voxels of context wanted between the lesion and the patch border.

    Example:
        >>> lesion = Lesion(1, (10, 10, 10), (12, 12, 12), 8)
        >>> lesion_patch_offset(lesion, (8, 8, 8), (32, 32, 32), margin=3)  # 3 + 2 + 3 voxels
        (7, 7, 7)
    """
    offset = []
    voxel = None
    for axis in range(3):
        size, length = int(patch_size[axis]), int(shape[axis])
        lower, upper = lesion.lower[axis], lesion.upper[axis]
        if upper - lower <= size:
            keep = min(margin, (size - (upper - lower)) // 2)
            low = int(np.clip(upper + keep - size, 0, length - size))
            high = int(np.clip(lower - keep, 0, length - size))
            offset.append(_randint(low, high))
        else:
            if voxel is None:
                if lesion.voxels is None:
                    raise ValueError(
                        f"lesion {lesion.index} is larger than the {tuple(patch_size)} patch "
                        f"but carries no voxels; find it with keep_voxels_larger_than="
                        f"{tuple(patch_size)}."
                    )
                voxel = lesion.voxels[_randint(0, len(lesion.voxels) - 1)]
            centre = int(voxel[axis])
            low, high = max(lower, centre - size + 1), min(upper - size, centre)
            offset.append(int(np.clip(centre - size // 2, low, high)))
    return offset[0], offset[1], offset[2]


def lesion_free_patch_offset(
    mask: np.ndarray,
    patch_size: Sequence[int],
    max_tries: int = 100,
    has_lesion: bool | None = None,
) -> tuple[int, int, int]:
    """A random offset whose patch holds no lesion voxel of ``mask``.

    Uniform offsets are tried up to ``max_tries`` times (once if the mask is empty). If all
    fail (a crowded volume), the lesion-free offsets are found exactly with
    :func:`window_sums` and one is drawn uniformly; if there are none, the offset with the
    fewest lesion voxels is used and a RuntimeWarning says so.

    Args:
        mask: 3D lesion mask (non-zero = lesion): an array, or anything with ``shape``
            that slices like one and converts with ``np.asarray``.
        patch_size: patch size in voxels per axis.
        max_tries: random offsets tried before searching exactly.
        has_lesion: whether ``mask`` has a lesion voxel, if the caller knows (saves a
            pass over the volume per patch).
    """
    size = [int(n) for n in patch_size]
    valid = [int(length) - s for length, s in zip(mask.shape, size)]
    if has_lesion is None:
        has_lesion = bool(mask.any())
    for _ in range(max_tries if has_lesion else 1):
        i, j, k = (_randint(0, v) for v in valid)
        if not has_lesion or not mask[i : i + size[0], j : j + size[1], k : k + size[2]].any():
            return i, j, k
    counts = window_sums(np.asarray(mask) != 0, size)
    free = np.argwhere(counts == 0)
    if len(free):
        i, j, k = free[_randint(0, len(free) - 1)]
        return int(i), int(j), int(k)
    warnings.warn(
        f"no lesion-free {tuple(size)} patch exists in a volume of shape {mask.shape}; using "
        f"the patch with the fewest lesion voxels as a lesion-free (negative) patch.",
        RuntimeWarning,
        stacklevel=3,  # the code that draws the patches
    )
    i, j, k = np.unravel_index(int(np.argmin(counts)), counts.shape)
    return int(i), int(j), int(k)


def window_sums(mask: np.ndarray, size: Sequence[int]) -> np.ndarray:
    """Voxels of ``mask`` inside every patch position: ``mask[i:i+p, j:j+q, k:k+r].sum()``.

    A summed-area table (8 look-ups per position); the output has shape ``mask.shape -
    size + 1``.

    >>> window_sums(np.ones((3, 3, 3), bool), (2, 2, 2)).tolist()
    [[[8, 8], [8, 8]], [[8, 8], [8, 8]]]
    """
    p, q, r = size
    table = np.zeros(tuple(n + 1 for n in mask.shape), dtype=np.int32)
    table[1:, 1:, 1:] = mask.cumsum(0, dtype=np.int32).cumsum(1).cumsum(2)
    return (
        table[p:, q:, r:]
        - table[:-p, q:, r:]
        - table[p:, :-q, r:]
        - table[p:, q:, :-r]
        + table[:-p, :-q, r:]
        + table[:-p, q:, :-r]
        + table[p:, :-q, :-r]
        - table[:-p, :-q, :-r]
    )


__all__ = ["lesion_free_patch_offset", "lesion_patch_offset", "window_sums"]
