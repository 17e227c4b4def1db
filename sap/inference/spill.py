"""Whole-volume arrays that live in a temporary file, so RAM holds only what is being used.

A whole-body case needs several arrays of the whole volume at once: the network input (two
channels, 528 MB as float16), the lesion probability (264 MB), then the mask and its
connected components. Most of them are read a slab at a time. :func:`spilled_empty` puts
an array in an unlinked temporary file (removed by the OS when the last reference goes, even
after a crash) and maps it into memory; :func:`release_pages` tells the OS that this
process is done with the pages it touched, which leave the process's resident memory and
stay in the file (in the page cache while RAM allows), to be read back on the next access.
The values never change: this is only where they are kept.
"""

from __future__ import annotations

import mmap
import tempfile
from collections.abc import Sequence

import numpy as np

#: Arrays at least this large are kept in a temporary file by default (a whole-body scan's
#: network input is ~0.5 GB; the phantoms of tests and the demo are a few MB).
SPILL_MIN_BYTES = 256 * 2**20


def spilled_empty(
    shape: Sequence[int], dtype: np.dtype | type, directory: str | None = None
) -> np.ndarray:
    """An uninitialised array backed by an unlinked temporary file in ``directory``
    (default: the system's temporary folder, ``TMPDIR``)."""
    dtype = np.dtype(dtype)
    nbytes = int(np.prod(shape)) * dtype.itemsize
    if nbytes == 0:
        return np.empty(shape, dtype)
    with tempfile.TemporaryFile(dir=directory) as handle:
        handle.truncate(nbytes)
        mapped = mmap.mmap(handle.fileno(), nbytes)  # the mapping keeps the file alive
    return np.frombuffer(mapped, dtype=dtype).reshape(tuple(shape))


def _mapping(array: np.ndarray) -> mmap.mmap | None:
    base = array
    while base is not None and not isinstance(base, mmap.mmap):
        base = getattr(base, "base", None)
        if isinstance(base, memoryview):
            base = base.obj
    return base


def is_spilled(array: np.ndarray) -> bool:
    """Whether ``array`` (or the array it views) came from :func:`spilled_empty`.

    >>> is_spilled(np.zeros(3)), is_spilled(spilled_empty((3,), np.float32)[1:])
    (False, True)
    """
    return _mapping(array) is not None


def release_pages(*arrays: np.ndarray) -> None:
    """Drop the pages of spilled arrays from this process's memory; others are left alone.

    The whole mapping is released (also of a view). The values stay in the temporary file.
    """
    for array in arrays:
        mapped = _mapping(array)
        if mapped is not None and hasattr(mapped, "madvise") and hasattr(mmap, "MADV_DONTNEED"):
            mapped.madvise(mmap.MADV_DONTNEED)


def slabs(shape: Sequence[int], axis: int = 0, voxels: int = 1 << 22) -> list[tuple[slice, ...]]:
    """Index tuples of slabs along ``axis`` of about ``voxels`` voxels each: how a whole
    volume is processed without temporaries of its size.

    >>> slabs((5, 2, 2), voxels=8)
    [(slice(0, 2, None),), (slice(2, 4, None),), (slice(4, 5, None),)]
    >>> slabs((2, 5), axis=1, voxels=6)[-1]
    (slice(None, None, None), slice(3, 5, None))
    """
    plane = int(np.prod(shape)) // max(1, int(shape[axis]))
    rows = max(1, voxels // max(1, plane))
    lead = (slice(None),) * axis
    return [(*lead, slice(i, min(i + rows, shape[axis]))) for i in range(0, shape[axis], rows)]


__all__ = ["SPILL_MIN_BYTES", "is_spilled", "release_pages", "slabs", "spilled_empty"]
