"""False-positive counts of a probability map at *every* threshold, from one pass.

For every threshold t: how many connected components of ``{p >= t}`` touch no reference
lesion, and how many of those hold at least ``k`` voxels. Built from the merge tree of the
map's basins (local maxima) instead of relabelling per threshold; the algorithm is in
``docs/metrics.md`` ("How the false-positive counts at every threshold are computed").
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import minimum_spanning_tree

from sap.volume import neighbour_offsets


@dataclass(frozen=True)
class FalsePositiveEvents:
    """Step functions of the false-positive count over thresholds, as signed events.

    The count at threshold t is ``deltas[values >= t].sum()``; exact for ``t >= min_prob``.
    ``large_*`` count only components of at least ``min_voxels`` voxels.
    """

    values: np.ndarray
    deltas: np.ndarray
    large_values: np.ndarray
    large_deltas: np.ndarray

    def count(self, thresholds: np.ndarray, large: bool = False) -> np.ndarray:
        """False-positive count at each threshold."""
        values = self.large_values if large else self.values
        deltas = self.large_deltas if large else self.deltas
        return count_at(values, deltas, thresholds)


def count_at(values: np.ndarray, deltas: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """Sum of ``deltas`` over events with ``values >= t``, for each t in ``thresholds``."""
    thresholds = np.asarray(thresholds, dtype=np.float64)
    if values.size == 0:
        return np.zeros(thresholds.shape, dtype=np.int64)
    order = np.argsort(values, kind="stable")
    suffix = np.concatenate([np.cumsum(deltas[order][::-1])[::-1], [0]]).astype(np.int64)
    return suffix[np.searchsorted(values[order], thresholds, side="left")]


def false_positive_events(
    prob: np.ndarray,
    lesion_mask: np.ndarray,
    connectivity: int,
    min_prob: float,
    min_voxels: int,
) -> FalsePositiveEvents:
    """Events of the lesion-free component counts of ``{prob >= t}`` for all ``t >= min_prob``.

    Args:
        prob: 3D float array (probability of lesion per voxel).
        lesion_mask: 3D boolean reference mask, same shape.
        connectivity: 6, 18 or 26.
        min_prob: lowest threshold of interest; voxels below it are never candidates.
        min_voxels: size limit (voxels) for the "large" counts.
    """
    empty = np.zeros(0, dtype=np.float64), np.zeros(0, dtype=np.int64)
    prob = np.ascontiguousarray(prob)
    voxel_index = np.flatnonzero(prob >= np.float64(min_prob))
    if voxel_index.size == 0:
        return FalsePositiveEvents(*empty, *empty)
    values = prob.reshape(-1)[voxel_index].astype(np.float64)
    on_lesion = np.ascontiguousarray(lesion_mask).reshape(-1)[voxel_index]
    neighbours = _Neighbours(voxel_index, prob.shape, connectivity)
    del voxel_index
    basin, peaks = _basins(values, neighbours)
    pair_u, pair_v, pair_saddle = _basin_graph(values, basin, peaks.size, neighbours)
    del neighbours

    peak_value = values[peaks]
    touch = np.full(peaks.size, -np.inf)
    np.maximum.at(touch, basin[on_lesion], values[on_lesion])
    # Sizes matter only for basins that start lesion-free (see _events).
    top = _top_values_per_basin(basin, values, peaks.size, min_voxels, touch < peak_value)
    tree = _merge_tree(pair_u, pair_v, pair_saddle, peak_value, touch)
    return _events(tree, top, min_voxels)


class _Neighbours:
    """Neighbour lookup among the candidate voxels, one offset at a time.

    A dense id map over the candidates' bounding box, padded by one voxel so that
    neighbours never wrap around an edge (4 bytes per voxel of the box).
    """

    def __init__(self, voxel_index: np.ndarray, shape: tuple[int, ...], connectivity: int):
        n = voxel_index.size
        itype = np.int32 if n < 2**31 - 1 else np.int64
        coords = np.unravel_index(voxel_index, shape)
        start = np.array([c.min() for c in coords], dtype=np.int64)
        padded = tuple(int(c.max() - s0) + 3 for c, s0 in zip(coords, start))
        self.flat = np.ravel_multi_index(tuple(c - s0 + 1 for c, s0 in zip(coords, start)), padded)
        del coords
        # Voxel id + 1, 0 elsewhere: np.zeros only touches the memory pages that get written.
        self.id_map = np.zeros(int(np.prod(padded)), dtype=itype)
        self.id_map[self.flat] = np.arange(1, n + 1, dtype=itype)
        strides = np.array([padded[1] * padded[2], padded[2], 1], dtype=np.int64)
        self.offsets = [int(offset @ strides) for offset in neighbour_offsets(connectivity)]

    def pairs(self) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """For each offset: candidate pairs (i, j) where voxel j sits at that offset from i."""
        for offset in self.offsets:
            neighbour = self.id_map[self.flat + offset]
            found = np.flatnonzero(neighbour)
            yield found.astype(self.id_map.dtype), neighbour[found] - 1


def _basins(values: np.ndarray, neighbours: _Neighbours) -> tuple[np.ndarray, np.ndarray]:
    """Basin of every candidate voxel (by steepest ascent) and the peak voxel of each basin."""
    n = values.size
    itype = neighbours.id_map.dtype
    # Strict order consistent with p, ties broken by position (stable sort).
    order = np.argsort(values, kind="stable")
    rank = np.empty(n, dtype=itype)
    rank[order] = np.arange(n, dtype=itype)
    # Steepest ascent: each voxel points to its highest-ranked neighbour above it. Within one
    # offset every voxel appears at most once on each side, so plain assignment is safe.
    best_rank = np.full(n, -1, dtype=itype)
    for a, b in neighbours.pairs():
        rank_a, rank_b = rank[a], rank[b]
        up = rank_b > rank_a
        lower, higher = a[up], rank_b[up]
        best_rank[lower] = np.maximum(best_rank[lower], higher)
        down = ~up
        lower, higher = b[down], rank_a[down]
        best_rank[lower] = np.maximum(best_rank[lower], higher)
    root = np.where(best_rank >= 0, order[np.maximum(best_rank, 0)], np.arange(n, dtype=itype))
    del best_rank, order, rank
    while True:
        jumped = root[root]
        if np.array_equal(jumped, root):
            break
        root = jumped
    peaks = np.flatnonzero(root == np.arange(n))
    basin_of_peak = np.full(n, -1, dtype=np.int64)
    basin_of_peak[peaks] = np.arange(peaks.size)
    return basin_of_peak[root], peaks


def _basin_graph(
    values: np.ndarray, basin: np.ndarray, n_basins: int, neighbours: _Neighbours
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pairs of touching basins ``(u < v)`` and the best saddle level between each pair."""
    lows, highs, saddles = [], [], []
    for a, b in neighbours.pairs():
        basin_a, basin_b = basin[a], basin[b]
        across = np.flatnonzero(basin_a != basin_b)
        a, b, basin_a, basin_b = a[across], b[across], basin_a[across], basin_b[across]
        saddles.append(np.minimum(values[a], values[b]))
        lows.append(np.minimum(basin_a, basin_b))
        highs.append(np.maximum(basin_a, basin_b))
    return _max_per_pair(
        np.concatenate(lows), np.concatenate(highs), np.concatenate(saddles), n_basins
    )


def _max_per_pair(
    lo: np.ndarray, hi: np.ndarray, weight: np.ndarray, n_nodes: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    if lo.size == 0:
        return lo, hi, weight
    key = lo.astype(np.int64) * n_nodes + hi
    order = np.argsort(key, kind="stable")
    key = key[order]
    starts = np.flatnonzero(np.r_[True, key[1:] != key[:-1]])
    best = np.maximum.reduceat(weight[order], starts)
    u, v = np.divmod(key[starts], n_nodes)
    return u, v, best


def _top_values_per_basin(
    basin: np.ndarray, values: np.ndarray, n_basins: int, k: int, needed: np.ndarray
) -> list[np.ndarray] | None:
    """The ``k`` highest values of each ``needed`` basin (all if fewer); None when k <= 1."""
    if k <= 1:
        return None
    keep = needed[basin]
    kept_basin = basin[keep]
    kept_values = values[keep]
    order = np.lexsort((-kept_values, kept_basin))
    sorted_basin = kept_basin[order]
    sorted_values = kept_values[order]
    starts = np.searchsorted(sorted_basin, np.arange(n_basins + 1))
    return [sorted_values[starts[i] : min(starts[i] + k, starts[i + 1])] for i in range(n_basins)]


@dataclass
class _MergeTree:
    """Nodes of the merge tree: basins first, then one node per merge.

    Node i is a component alive for thresholds in ``(death[i], birth[i]]``; it touches a
    lesion for thresholds ``<= touch[i]``; ``children[i]`` are the merged nodes (-1 for a basin).
    """

    birth: list[float]
    death: list[float]
    touch: list[float]
    children: list[tuple[int, int]]


def _merge_tree(
    pair_u: np.ndarray,
    pair_v: np.ndarray,
    pair_saddle: np.ndarray,
    peak_value: np.ndarray,
    touch: np.ndarray,
) -> _MergeTree:
    """Kruskal over the basin graph, highest saddles first."""
    n_basins = peak_value.size
    tree = _MergeTree(
        birth=list(peak_value.astype(float)),
        death=[-math.inf] * n_basins,
        touch=list(touch.astype(float)),
        children=[(-1, -1)] * n_basins,
    )
    parent = list(range(n_basins))
    node_of_set = list(range(n_basins))

    def find(x: int) -> int:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for u, v, level in _merges(pair_u, pair_v, pair_saddle, n_basins):
        ru, rv = find(int(u)), find(int(v))
        if ru == rv:
            continue
        left, right = node_of_set[ru], node_of_set[rv]
        node = len(tree.birth)
        tree.birth.append(float(level))
        tree.touch.append(max(tree.touch[left], tree.touch[right]))
        tree.death.append(-math.inf)
        tree.children.append((left, right))
        tree.death[left] = tree.death[right] = float(level)
        parent[rv] = ru
        node_of_set[ru] = node
    return tree


def _merges(
    pair_u: np.ndarray, pair_v: np.ndarray, pair_saddle: np.ndarray, n_basins: int
) -> Iterator[tuple[int, int, float]]:
    """The edges of the maximum spanning forest, highest saddle first: only they merge."""
    if not pair_u.size:
        return iter(())
    # Integer weights (rank of the saddle level, highest = 1) keep levels exact.
    levels, level_index = np.unique(pair_saddle, return_inverse=True)
    weight = (levels.size - level_index).astype(np.float64)
    forest = minimum_spanning_tree(
        coo_matrix((weight, (pair_u, pair_v)), shape=(n_basins, n_basins))
    ).tocoo()
    merge_u, merge_v = forest.row, forest.col
    merge_level = levels[levels.size - np.rint(forest.data).astype(np.int64)]
    by_level = np.argsort(-merge_level, kind="stable")
    return zip(merge_u[by_level], merge_v[by_level], merge_level[by_level])


def _events(tree: _MergeTree, top: list[np.ndarray] | None, min_voxels: int) -> FalsePositiveEvents:
    """+1 at each lesion-free node's birth, -1 where it dies or first touches a lesion."""
    values, deltas, large_values, large_deltas = [], [], [], []
    tops: dict[int, np.ndarray] = {}
    for node in range(len(tree.birth)):
        b, d, t = tree.birth[node], tree.death[node], tree.touch[node]
        if t >= b:
            continue  # touches a lesion from its birth on, and so do all its ancestors
        low = max(d, t)
        if b > low:
            values += [b, low]
            deltas += [1, -1]
        if top is None:
            size_level = math.inf if min_voxels <= 1 else -math.inf
        else:
            left, right = tree.children[node]
            if left < 0:
                node_top = top[node]
            else:
                node_top = np.concatenate([tops.pop(left), tops.pop(right)])
                if node_top.size > min_voxels:
                    node_top = -np.partition(-node_top, min_voxels - 1)[:min_voxels]
            tops[node] = node_top
            size_level = float(node_top.min()) if node_top.size >= min_voxels else -math.inf
        high = min(b, size_level)
        if high > low:
            large_values += [high, low]
            large_deltas += [1, -1]
    return FalsePositiveEvents(
        *_finite_events(values, deltas), *_finite_events(large_values, large_deltas)
    )


def _finite_events(values: list[float], deltas: list[int]) -> tuple[np.ndarray, np.ndarray]:
    v = np.asarray(values, dtype=np.float64)
    d = np.asarray(deltas, dtype=np.int64)
    keep = np.isfinite(v)  # a -1 at -inf never applies to a threshold >= min_prob
    return v[keep], d[keep]


__all__ = ["FalsePositiveEvents", "count_at", "false_positive_events"]
