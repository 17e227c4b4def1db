"""A store entry seen as training sees a case: padded to at least the patch size.

The on-the-fly path pads every volume smaller than the patch with
:class:`~sap.data.transforms.PadToMinimumShape` (zeros, split as TorchIO's ``CropOrPad``
splits them: the extra voxel before). :class:`CaseView` applies the same padding lazily:
windows are read from the memory-mapped entry and only their part outside the stored
volume is filled with zeros, so padding never copies a volume.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cached_property

import numpy as np

from sap.data.lesions import Lesion
from sap.data.store.entry import StoreEntry


class CaseView:
    """One entry padded to ``min_shape``: windows of its channels and label map.

    Args:
        entry: the store entry.
        label_name: the label map training uses.
        min_shape: minimum size per axis (the patch size).
        index: the view's position in its data set (carried into patch plans).
    """

    def __init__(
        self, entry: StoreEntry, label_name: str, min_shape: Sequence[int], index: int = 0
    ) -> None:
        self.entry = entry
        self.label_name = label_name
        self.index = int(index)
        stored = np.asarray(entry.shape)
        padded = np.maximum(stored, np.asarray(min_shape, dtype=int))
        self.pad_before = np.ceil((padded - stored) / 2).astype(int)
        self.shape: tuple[int, int, int] = tuple(int(n) for n in padded)  # type: ignore[assignment]
        self.padded = bool(np.any(padded != stored))

    @property
    def case_id(self) -> str:
        return self.entry.case_id

    @property
    def affine(self) -> np.ndarray:
        """Voxel-to-RAS+ affine of the padded grid."""
        affine = self.entry.affine.copy()
        affine[:3, 3] = affine[:3, :3] @ (-self.pad_before) + affine[:3, 3]
        return affine

    @property
    def mask(self) -> np.ndarray | PaddedLabel:
        """The label map for patch planning: sliceable, ``shape``, non-zero = foreground."""
        label = self.entry.label(self.label_name)
        return PaddedLabel(label, self.pad_before, self.shape) if self.padded else label

    @cached_property
    def lesions(self) -> list[Lesion]:
        """The stored lesion table, in the padded grid's voxel indices."""
        shift = self.pad_before
        return [
            Lesion(
                lesion.index,
                tuple(int(n) for n in np.add(lesion.lower, shift)),  # type: ignore[arg-type]
                tuple(int(n) for n in np.add(lesion.upper, shift)),  # type: ignore[arg-type]
                lesion.num_voxels,
                None if lesion.voxels is None else lesion.voxels + shift,
            )
            for lesion in self.entry.lesions(self.label_name)
        ]

    def window(self, offset: Sequence[int], size: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
        """Channels ``(C, *size)`` float32 and label ``size`` uint8 of the window at ``offset``."""
        source, target = overlap(offset, size, self.pad_before, self.entry.shape)
        image = self.entry.image
        label = self.entry.label(self.label_name)
        if not self.padded:
            return np.array(image[(slice(None), *source)]), np.array(label[source])
        channels = np.zeros((image.shape[0], *size), dtype=image.dtype)
        labels = np.zeros(tuple(size), dtype=label.dtype)
        channels[(slice(None), *target)] = image[(slice(None), *source)]
        labels[target] = label[source]
        return channels, labels

    def volume(self) -> tuple[np.ndarray, np.ndarray]:
        """The whole padded volume: channels and label map (copied into memory)."""
        return self.window((0, 0, 0), self.shape)


def overlap(
    offset: Sequence[int], size: Sequence[int], pad_before: Sequence[int], stored: Sequence[int]
) -> tuple[tuple[slice, ...], tuple[slice, ...]]:
    """Where a window of a padded volume meets the stored volume: slices in each.

    Args:
        offset: the window's first voxel in the padded grid.
        size: the window's size.
        pad_before: padding before the stored volume, per axis.
        stored: the stored volume's shape.

    Returns:
        ``(source, target)``: slices into the stored volume and into the window.

    >>> overlap((0, 2, 0), (4, 4, 4), (1, 0, 0), (2, 8, 8))
    ((slice(0, 2, None), slice(2, 6, None), slice(0, 4, None)), (slice(1, 3, None), slice(0, 4, None), slice(0, 4, None)))
    """
    source, target = [], []
    for start, length, before, count in zip(offset, size, pad_before, stored):
        low = min(max(int(start) - int(before), 0), int(count))
        high = min(max(int(start) + int(length) - int(before), 0), int(count))
        first = low + int(before) - int(start)
        source.append(slice(low, high))
        target.append(slice(first, first + high - low))
    return tuple(source), tuple(target)


class PaddedLabel:
    """A memory-mapped label map seen with zero padding: slicing and ``np.asarray`` only."""

    def __init__(self, label: np.ndarray, pad_before: np.ndarray, shape: Sequence[int]) -> None:
        self.label = label
        self.pad_before = np.asarray(pad_before, dtype=int)
        self.shape = tuple(int(n) for n in shape)
        self.ndim = 3

    def __getitem__(self, box: tuple[slice, slice, slice]) -> np.ndarray:
        starts = [s.start or 0 for s in box]
        sizes = [(n if s.stop is None else s.stop) - a for s, n, a in zip(box, self.shape, starts)]
        out = np.zeros(sizes, dtype=self.label.dtype)
        source, target = overlap(starts, sizes, self.pad_before, self.label.shape)
        out[target] = self.label[source]
        return out

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        array = self[(slice(None), slice(None), slice(None))]
        return array if dtype is None else array.astype(dtype)


__all__ = ["CaseView", "PaddedLabel", "overlap"]
