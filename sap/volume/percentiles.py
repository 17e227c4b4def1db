"""Percentiles of a whole-body float32 volume without copying it.

``np.percentile`` partitions a copy of its input: for one whole-body channel (132 M voxels)
that is a 528 MB temporary, as large as the channel itself, at the moment preprocessing
already holds it. :func:`percentiles` finds the same order statistics from two histograms
of the values' bit patterns (high 16 bits, then the low 16 bits of the few buckets that hold
the wanted ranks), reading the volume in small chunks, and interpolates between them exactly
as ``np.percentile``'s default ``"linear"`` method does: the result is bitwise equal
(``tests/volume/test_percentiles.py`` checks it against numpy). The only difference: when
the interpolated rank falls on a zero, it is returned as +0.0 (numpy may return -0.0).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np

_BUCKETS = 1 << 16
_CHUNK = 1 << 18  # voxels per chunk: 1 MB of float32, 2 MB for bincount's index copy


def _chunks(array: np.ndarray) -> Iterator[np.ndarray]:
    """The values of ``array`` as contiguous float32 chunks (views when it is contiguous)."""
    if array.flags.c_contiguous:
        flat = array.reshape(-1)
        for start in range(0, flat.size, _CHUNK):
            yield flat[start : start + _CHUNK]
        return
    rows = max(1, _CHUNK // max(1, array[0].size if array.ndim > 1 else 1))
    for start in range(0, array.shape[0], rows):
        yield np.ascontiguousarray(array[start : start + rows]).reshape(-1)


def _sort_keys(chunk: np.ndarray) -> np.ndarray:
    """uint32 keys that sort like the float32 values (negative floats bit-flipped)."""
    bits = chunk.view(np.uint32)
    key = bits >> 31
    key *= np.uint32(0x7FFFFFFF)
    key |= np.uint32(0x80000000)
    key ^= bits
    return key


def _value(key: int) -> float:
    """The float32 value of a sort key (inverse of :func:`_sort_keys`), -0.0 as +0.0."""
    bits = key ^ 0x80000000 if key & 0x80000000 else ~key & 0xFFFFFFFF
    return float(np.array([bits], np.uint32).view(np.float32)[0]) + 0.0


def order_statistics(array: np.ndarray, ranks: Sequence[int]) -> list[float]:
    """The values at 0-based ``ranks`` of ``array`` sorted ascending (float32, no NaN).

    >>> order_statistics(np.array([5, -1, 3, 3, 0], np.float32), [0, 2, 4])
    [-1.0, 3.0, 5.0]
    """
    wanted = sorted(set(int(r) for r in ranks))
    if array.dtype != np.float32:
        raise TypeError(f"order_statistics works on float32, got {array.dtype}.")
    if wanted and not 0 <= wanted[0] <= wanted[-1] < array.size:
        raise ValueError(f"ranks {list(ranks)} outside 0..{array.size - 1}.")
    high = np.zeros(_BUCKETS, np.int64)
    for chunk in _chunks(array):
        high += np.bincount(_sort_keys(chunk) >> 16, minlength=_BUCKETS)
    below = np.concatenate([[0], np.cumsum(high)])
    bucket_of = {r: int(np.searchsorted(below, r, side="right")) - 1 for r in wanted}
    low = {b: np.zeros(_BUCKETS, np.int64) for b in set(bucket_of.values())}
    for chunk in _chunks(array):
        key = _sort_keys(chunk)
        top = key >> 16
        for bucket, counts in low.items():
            counts += np.bincount(key[top == bucket] & 0xFFFF, minlength=_BUCKETS)
    found = {}
    for rank, bucket in bucket_of.items():
        within = np.cumsum(low[bucket])
        offset = int(np.searchsorted(within, rank - below[bucket], side="right"))
        found[rank] = _value((bucket << 16) | offset)
    return [found[int(r)] for r in ranks]


def percentiles(array: np.ndarray, q: Sequence[float]) -> np.ndarray:
    """``np.percentile(array, q)`` (method "linear") of a float32 array, without a copy.

    Returns float64 values, as numpy does; NaN when ``array`` holds a NaN.

    >>> data = np.arange(101, dtype=np.float32)[::-1]
    >>> percentiles(data, (1, 99)).tolist() == np.percentile(data, (1, 99)).tolist()
    True
    """
    array = np.asarray(array)
    if array.dtype != np.float32:
        raise TypeError(f"percentiles works on float32, got {array.dtype}.")
    if array.size == 0:
        raise ValueError("percentiles of an empty array.")
    if any(np.isnan(chunk).any() for chunk in _chunks(array)):
        return np.full(len(q), np.nan)
    fractions = np.true_divide(np.asarray(q, np.float64), np.float32(100))
    n = array.size
    virtual = (n - 1) * fractions
    previous = np.floor(virtual)
    at_end = virtual >= n - 1
    lower = np.where(at_end, n - 1, previous).astype(np.int64)
    upper = np.where(at_end, n - 1, previous + 1).astype(np.int64)
    values = order_statistics(array, [*lower.tolist(), *upper.tolist()])
    a = np.array(values[: len(q)], np.float32)
    b = np.array(values[len(q) :], np.float32)
    gamma = virtual - np.where(at_end, -1.0, previous)  # numpy indexes the end as -1
    # numpy's _lerp, operation for operation: a + (b - a) * t, or b - (b - a) * (1 - t)
    # where t >= 0.5 (float32 difference, float64 arithmetic).
    difference = np.subtract(b, a)
    result = np.asarray(np.add(a, difference * gamma))
    np.subtract(b, difference * (1 - gamma), out=result, where=gamma >= 0.5)
    return result


__all__ = ["order_statistics", "percentiles"]
