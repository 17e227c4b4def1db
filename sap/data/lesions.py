"""The lesions of a label map: its connected components, with what a patch sampler needs.

Components come from :func:`sap.volume.find_components` (one connectivity convention for
all of `sap`, 26 by default), numbered in raster (C) order of their first voxel.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from sap.volume import DEFAULT_CONNECTIVITY, as_mask, find_components, label_components


@dataclass(frozen=True)
class Lesion:
    """One lesion: a connected component of a lesion map, in voxel indices.

    Args:
        index: component number, 1-based, in raster order of the component's first voxel.
        lower: first voxel of the bounding box along each axis (inclusive).
        upper: one past the last voxel along each axis (exclusive).
        num_voxels: size of the component in voxels.
        voxels: ``(N, 3)`` voxel indices of the component, in raster order. Kept only for
            lesions larger than the patch along some axis (the only ones whose patch needs
            a voxel); ``None`` otherwise, which keeps a cache of lesions small.
    """

    index: int
    lower: tuple[int, int, int]
    upper: tuple[int, int, int]
    num_voxels: int
    voxels: np.ndarray | None = None

    @property
    def extent(self) -> tuple[int, int, int]:
        """Bounding-box size in voxels along each axis."""
        return tuple(int(u - lo) for lo, u in zip(self.lower, self.upper))  # type: ignore[return-value]


def find_lesions(
    label: object,
    connectivity: int = DEFAULT_CONNECTIVITY,
    keep_voxels_larger_than: Sequence[int] | None = None,
) -> list[Lesion]:
    """The lesions of a label map: its connected components of non-zero voxels.

    Args:
        label: 3D label array or tensor (any non-zero voxel is lesion), or a TorchIO
            ``(1, X, Y, Z)`` tensor.
        connectivity: 26 (voxels touching by a face, an edge or a corner are one lesion),
            18 or 6 (faces only).
        keep_voxels_larger_than: a patch size; the voxel list is kept for lesions whose
            bounding box exceeds it along some axis. ``None`` keeps it for every lesion.

    Returns:
        One :class:`Lesion` per component, ordered by component number.

    Examples:
        >>> mask = np.zeros((8, 8, 8), bool)
        >>> mask[1, 1, 1] = mask[2, 2, 2] = True  # touching by a corner only
        >>> len(find_lesions(mask, 26)), len(find_lesions(mask, 6))
        (1, 2)
    """
    parts = find_components(as_mask(label, "lesion map"), connectivity)
    limit = None if keep_voxels_larger_than is None else np.asarray(keep_voxels_larger_than)
    lesions = []
    for index in range(1, parts.count + 1):
        lower = tuple(int(n) for n in parts.bbox_start[index])
        upper = tuple(int(n) for n in parts.bbox_stop[index])
        keep = limit is None or bool(np.any(np.subtract(upper, lower) > limit))
        voxels = parts.voxels(index) if keep else None
        lesions.append(Lesion(index, lower, upper, int(parts.voxel_counts[index]), voxels))  # type: ignore[arg-type]
    return lesions


def count_lesions(label: object, connectivity: int = DEFAULT_CONNECTIVITY) -> int:
    """Number of lesions (connected components) in a label map; see :func:`find_lesions`.

    >>> count_lesions(np.eye(4)[None].repeat(4, axis=0))  # a diagonal plane: one lesion
    1
    """
    return label_components(as_mask(label, "lesion map"), connectivity)[1]


class LesionCache:
    """:func:`find_lesions` with its results kept for the most recently seen lesion maps.

    Keyed by a hash of the mask (hashing a whole-body mask costs ~2 % of labelling it), so
    each augmented variant of a map (a flip, a rotation) is its own entry.

    Args:
        connectivity: 26, 18 or 6; see :func:`find_lesions`.
        keep_voxels_larger_than: see :func:`find_lesions`.
        size: number of lesion maps kept (least recently used ones are dropped); 0 keeps none.
    """

    def __init__(
        self,
        connectivity: int = DEFAULT_CONNECTIVITY,
        keep_voxels_larger_than: Sequence[int] | None = None,
        size: int = 256,
    ) -> None:
        self.connectivity = connectivity
        self.keep_voxels_larger_than = keep_voxels_larger_than
        self.size = size
        self._entries: OrderedDict[tuple, list[Lesion]] = OrderedDict()

    def __call__(self, mask: np.ndarray) -> list[Lesion]:
        """The lesions of a 3D boolean ``mask``."""
        if self.size == 0:
            return find_lesions(mask, self.connectivity, self.keep_voxels_larger_than)
        digest = hashlib.blake2b(np.packbits(mask).tobytes(), digest_size=16).digest()
        key = (mask.shape, digest)
        if key in self._entries:
            self._entries.move_to_end(key)
            return self._entries[key]
        lesions = find_lesions(mask, self.connectivity, self.keep_voxels_larger_than)
        self._entries[key] = lesions
        while len(self._entries) > self.size:
            self._entries.popitem(last=False)
        return lesions


__all__ = ["Lesion", "LesionCache", "count_lesions", "find_lesions"]
