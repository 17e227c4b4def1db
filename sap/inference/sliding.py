"""Sliding-window prediction over a whole volume in bounded memory: the one path.

Prediction (:class:`~sap.inference.predictor.Predictor`), the tasks' whole-volume validation
and the demo all call :func:`sliding_window_predict`.

A whole-body scan is about 400 x 300 x 1100 voxels. The usual aggregators keep one float32
accumulator per class for the whole volume plus a weight map: MONAI's
``sliding_window_inference`` holds ``(classes + 1) x 4`` bytes per voxel (5.8 GB for the
10-class skeleton model), TorchIO's ``GridAggregator`` in ``hann`` / ``average`` mode even
``2 x classes x 4`` bytes (its weight map has one channel per class) and its ``GridSampler``
pads a copy of the whole input.

How: windows are laid on the same grid as MONAI (start ``i * step``, the last window flush
with the border, ``step = int(patch * (1 - overlap))``) and visited row by row along the axis
with the most rows (the head-feet axis of a whole-body scan). A float32 accumulator one patch
thick travels with the rows; as soon as no later window can touch a slab of voxels, that slab
is normalised by its summed blending weight and written to the compact outputs (``uint8``
labels, ``float16`` probabilities of the classes asked for). Memory is then
``(classes + 1) x 4 x patch x plane`` for the accumulator plus 1-2 bytes per voxel for the
outputs, independent of the scan's length; the result equals full-volume aggregation.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from sap.inference.spill import release_pages, spilled_empty

PredictFn = Callable[[torch.Tensor], torch.Tensor]
"""Maps a float32 batch ``[B, C, *patch]`` to class probabilities ``[B, K, *patch]``."""

BLENDING_MODES = ("gaussian", "hann", "constant")


@dataclass
class SlidingWindowResult:
    """Compact outputs of :func:`sliding_window_predict`, on the input's grid.

    Attributes:
        labels: ``uint8`` arg-max class per voxel, or ``None`` when not requested.
        probabilities: ``float16`` array ``[len(kept_classes), *spatial]`` of blended class
            probabilities (may have zero length).
        kept_classes: class indices stored in ``probabilities``, in order.
        num_windows: how many windows the model saw (without test-time augmentation).
    """

    labels: np.ndarray | None
    probabilities: np.ndarray
    kept_classes: tuple[int, ...]
    num_windows: int


def window_starts(size: int, patch: int, overlap: float) -> list[int]:
    """Start indices of the windows along one axis.

    The grid is MONAI's, so results can be compared window for window: starts are multiples
    of ``step = int(patch * (1 - overlap))`` (at least 1) and the last window ends at the border.
    An axis shorter than the patch gets one window centred on it (negative start: the part
    outside the image reads as zeros, like MONAI's constant padding).

    >>> window_starts(10, 4, 0.5)
    [0, 2, 4, 6]
    >>> window_starts(3, 4, 0.5)
    [0]
    >>> window_starts(2, 5, 0.5)
    [-1]
    """
    if size < patch:
        return [-((patch - size) // 2)]
    if size == patch:
        return [0]
    step = max(int(patch * (1.0 - overlap)), 1)
    count = math.ceil((size - patch) / step) + 1
    return [min(i * step, size - patch) for i in range(count)]


def blending_weights(
    patch_size: Sequence[int], mode: str = "gaussian", sigma_scale: float = 0.125
) -> torch.Tensor:
    """Per-voxel weight of a window's prediction: high in the centre, low near its edges.

    Window borders see little context, so their predictions count less. ``gaussian`` uses
    ``sigma = sigma_scale * patch`` per axis (as nnU-Net and MONAI, and numerically MONAI's
    map, so both aggregators can be compared), clamped below at 1e-3 so no voxel gets zero
    weight; ``hann`` is a raised cosine without its zero end points;
    ``constant`` averages all windows equally.

    Returns:
        float32 tensor of shape ``patch_size``.

    >>> blending_weights((3, 1, 1), "hann").flatten().tolist()
    [0.5, 1.0, 0.5]
    """
    if mode not in BLENDING_MODES:
        raise ValueError(f"Unknown blending mode {mode!r}; choose one of {list(BLENDING_MODES)}.")
    weights = torch.ones((), dtype=torch.float64)
    for size in patch_size:
        if mode == "gaussian":
            x = torch.arange(size, dtype=torch.float64) - (size - 1) / 2.0
            profile = torch.exp(-(x**2) / (2.0 * (sigma_scale * size) ** 2))
        elif mode == "hann":
            profile = torch.hann_window(size + 2, periodic=False, dtype=torch.float64)[1:-1]
        else:
            profile = torch.ones(size, dtype=torch.float64)
        weights = weights.unsqueeze(-1) * profile
    return weights.clamp_min(max(float(weights.min()), 1e-3)).to(torch.float32)


def softmax_predict_fn(
    model: Callable[[torch.Tensor], torch.Tensor], *, amp: bool = False
) -> PredictFn:
    """A :data:`PredictFn` from a network that returns logits: softmax in float32.

    Args:
        model: maps ``[B, C, *patch]`` to logits ``[B, K, *patch]``.
        amp: run the forward pass under autocast (float16 on CUDA, bfloat16 on the CPU).
    """

    def predict(batch: torch.Tensor) -> torch.Tensor:
        if amp:
            dtype = torch.float16 if batch.device.type == "cuda" else torch.bfloat16
            with torch.autocast(batch.device.type, dtype=dtype):
                logits = model(batch)
        else:
            logits = model(batch)
        return torch.softmax(logits.float(), dim=1)

    return predict


def _window_slices(
    start: Sequence[int], patch: Sequence[int], shape: Sequence[int]
) -> tuple[tuple[slice, ...], tuple[slice, ...]]:
    """Slices of the image covered by a window, and the matching slices inside the window."""
    image, inside = [], []
    for s, p, n in zip(start, patch, shape):
        lo, hi = max(s, 0), min(s + p, n)
        image.append(slice(lo, hi))
        inside.append(slice(lo - s, hi - s))
    return tuple(image), tuple(inside)


def _along(axis: int, sl: slice, rest: slice = slice(None)) -> tuple[slice, ...]:
    return tuple(sl if a == axis else rest for a in range(3))


class _SlabAccumulator:
    """Blended sums over a slab one patch thick; finished slices go to the compact outputs.

    The slab covers ``[row_start, row_start + patch)`` along ``axis`` and the whole image
    along the other two. Every voxel of the outputs is written exactly once.
    """

    def __init__(
        self,
        shape: tuple[int, ...],
        patch: tuple[int, ...],
        axis: int,
        num_classes: int,
        blending: str,
        device: torch.device,
        kept: tuple[int, ...],
        return_labels: bool,
        spill: bool = False,
    ) -> None:
        self.shape, self.axis, self.kept = shape, axis, kept
        self.thickness = patch[axis]
        empty = spilled_empty if spill else np.empty
        self.outputs = [empty((len(kept), *shape), np.float16)]
        if return_labels:
            self.outputs.append(empty(shape, np.uint8))
        self.probabilities = torch.from_numpy(self.outputs[0])
        self.labels = torch.from_numpy(self.outputs[1]) if return_labels else None
        self.weights = blending_weights(patch, blending).to(device)
        slab_shape = list(shape)
        slab_shape[axis] = self.thickness
        self.sums = torch.zeros((num_classes, *slab_shape), dtype=torch.float32, device=device)
        self.weight_sum = torch.zeros(slab_shape, dtype=torch.float32, device=device)
        self.row_weights: torch.Tensor | None = None

    def set_row_placements(self, placements: Sequence[tuple[tuple, tuple]]) -> None:
        """The blending weight one row of windows adds: the same for every row.

        Adding it once per row instead of once per window does a quarter of the work at
        overlap 0.5 (windows overlap in two directions within a row).
        """
        self.row_weights = torch.zeros_like(self.weight_sum)
        for slab_sl, inside_sl in placements:
            self.row_weights[slab_sl] += self.weights[inside_sl]

    def add(self, out: torch.Tensor, placements: Sequence[tuple[tuple, tuple]]) -> None:
        """Add window ``b`` of ``out`` (float32) at its ``(slab slices, window slices)``."""
        for b, (slab_sl, inside_sl) in enumerate(placements):
            w = self.weights[inside_sl]
            self.sums[(slice(None), *slab_sl)].addcmul_(out[(b, slice(None), *inside_sl)], w)
            if self.row_weights is None:
                self.weight_sum[slab_sl] += w

    def start_row(self) -> None:
        """Count the blending weight of the row about to be added (see set_row_placements)."""
        if self.row_weights is not None:
            self.weight_sum += self.row_weights

    def emit(self, row_start: int, count: int) -> None:
        """Normalise the first ``count`` slab slices and store the part inside the image.

        Class by class: each probability map is divided once, kept if asked for, and
        compared with the best so far for the labels (the first maximum wins, as
        ``argmax``), which is several times faster than ``argmax`` over the class axis.
        """
        lo, hi = max(row_start, 0), min(row_start + count, self.shape[self.axis])
        if hi <= lo:
            return
        local = _along(self.axis, slice(lo - row_start, hi - row_start))
        target = _along(self.axis, slice(lo, hi))
        weight = self.weight_sum[local]
        best = labels = None
        for k in range(self.sums.shape[0]):
            if self.labels is None and k not in self.kept:
                continue
            probability = self.sums[(k, *local)] / weight
            if k in self.kept:
                self.probabilities[(self.kept.index(k), *target)] = probability.to(
                    torch.float16
                ).cpu()
            if self.labels is None:
                continue
            if best is None:
                best, labels = probability, torch.zeros(probability.shape, dtype=torch.uint8,
                                                        device=probability.device)  # fmt: skip
                continue
            better = probability > best
            labels.masked_fill_(better, k)
            torch.maximum(best, probability, out=best)
        if self.labels is not None:
            self.labels[target] = labels.cpu()

    def advance(self, row_start: int, next_start: int | None) -> None:
        """Emit what no later row touches and move the slab to ``next_start`` (``None``: done)."""
        if next_start is None:
            self.emit(row_start, self.thickness)
            return
        shift = next_start - row_start
        self.emit(row_start, shift)
        keep = self.thickness - shift
        if keep > 0:
            head, tail = _along(self.axis, slice(0, keep)), _along(self.axis, slice(shift, None))
            for tensor, lead in ((self.sums, (slice(None),)), (self.weight_sum, ())):
                moved = tensor[(*lead, *tail)]
                # Overlapping source and target (overlap > 0.5) need a copy in between.
                tensor[(*lead, *head)] = moved.clone() if keep > shift else moved
        rest = _along(self.axis, slice(max(keep, 0), None))
        self.sums[(slice(None), *rest)] = 0
        self.weight_sum[rest] = 0


def _window_start(
    slab_axis: int, others: Sequence[int], row_start: int, pair: tuple[int, int]
) -> list[int]:
    start = [0, 0, 0]
    start[slab_axis], start[others[0]], start[others[1]] = row_start, pair[0], pair[1]
    return start


def _fill_batch(
    buffer: torch.Tensor,
    image: torch.Tensor,
    starts: Sequence[Sequence[int]],
    patch: tuple[int, ...],
    slab_axis: int,
) -> tuple[torch.Tensor, list[tuple[tuple, tuple]]]:
    """Copy the windows at ``starts`` into ``buffer``; their slab and window slices."""
    shape = tuple(image.shape[1:])
    batch = buffer[: len(starts)]
    placements = []
    for b, start in enumerate(starts):
        image_sl, inside_sl = _window_slices(start, patch, shape)
        if any(sl.stop - sl.start < p for sl, p in zip(inside_sl, patch)):
            batch[b] = 0  # the window reaches outside the image: zeros there, as MONAI
        batch[(b, slice(None), *inside_sl)] = image[(slice(None), *image_sl)]
        placements.append(_slab_slices(image_sl, inside_sl, slab_axis))
    return batch, placements


def _placement(
    start: Sequence[int], patch: tuple[int, ...], shape: tuple[int, ...], slab_axis: int
) -> tuple[tuple, tuple]:
    """``(slab slices, window slices)`` of the window at ``start``."""
    return _slab_slices(*_window_slices(start, patch, shape), slab_axis)


def _slab_slices(image_sl: tuple, inside_sl: tuple, slab_axis: int) -> tuple[tuple, tuple]:
    slab_sl = list(image_sl)
    slab_sl[slab_axis] = inside_sl[slab_axis]
    return tuple(slab_sl), inside_sl


def _check_arguments(
    image: torch.Tensor,
    patch_size: Sequence[int],
    num_classes: int,
    overlap: float,
    batch_size: int,
    keep_probabilities: Sequence[int],
    return_labels: bool,
) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """``(patch, kept classes)`` as int tuples; a ValueError for anything unusable."""
    if image.ndim != 4:
        raise ValueError(f"Expected an image [C, X, Y, Z], got shape {tuple(image.shape)}.")
    if not 0.0 <= overlap < 1.0:
        raise ValueError(f"overlap must be in [0, 1), got {overlap}.")
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}.")
    if num_classes > 255 and return_labels:
        raise ValueError("uint8 labels hold at most 255 classes.")
    patch = tuple(int(p) for p in patch_size)
    if len(patch) != 3:
        raise ValueError(f"patch_size needs 3 values, got {patch_size}.")
    kept = tuple(int(k) for k in keep_probabilities)
    if any(not 0 <= k < num_classes for k in kept):
        raise ValueError(f"keep_probabilities {kept} outside 0..{num_classes - 1}.")
    return patch, kept


def sliding_window_predict(
    image: torch.Tensor,
    predict_fn: PredictFn,
    patch_size: Sequence[int],
    num_classes: int,
    *,
    overlap: float = 0.5,
    blending: str = "gaussian",
    batch_size: int = 4,
    device: str | torch.device = "cpu",
    keep_probabilities: Sequence[int] = (),
    return_labels: bool = True,
    slab_axis: int | None = None,
    progress: Callable[[int], None] | None = None,
    spill_outputs: bool = False,
    after_row: Callable[[], None] | None = None,
) -> SlidingWindowResult:
    """Predict a whole volume window by window, aggregating in bounded memory.

    Runs without autograd whatever the caller's context, so a model in train or eval mode
    can be passed as it is. Whole-volume validation of a task calls it like this, for
    arg-max labels and the lesion probability (class 1) in ``uint8`` / ``float16``:

    >>> net = torch.nn.Conv3d(2, 2, kernel_size=3, padding=1).train()
    >>> image = torch.rand(2, 20, 24, 18)  # one case [C, X, Y, Z], float32
    >>> result = sliding_window_predict(
    ...     image, softmax_predict_fn(net), (16, 16, 16), 2, keep_probabilities=(1,)
    ... )
    >>> result.labels.shape, result.labels.dtype.name, result.probabilities.shape
    ((20, 24, 18), 'uint8', (1, 20, 24, 18))

    Args:
        image: ``[C, *spatial]`` tensor (3 spatial axes), on the CPU or on ``device``; any
            float dtype, windows are cast to float32.
        predict_fn: maps ``[B, C, *patch_size]`` float32 on ``device`` to class
            probabilities ``[B, num_classes, *patch_size]`` (see :func:`softmax_predict_fn`).
        patch_size: window size in voxels, one per spatial axis.
        num_classes: number of output classes of ``predict_fn``.
        overlap: fraction of a window shared with its neighbour, in ``[0, 1)``.
        blending: ``"gaussian"``, ``"hann"`` or ``"constant"`` (see :func:`blending_weights`).
        batch_size: windows per forward pass.
        device: where the model runs and the one-patch-thick accumulator lives.
        keep_probabilities: class indices whose probability maps are returned (float16).
        return_labels: whether to return the arg-max label map (uint8).
        slab_axis: spatial axis the accumulator travels along; default: the one with the
            most window rows (ties: the last, head-feet in RAS).
        progress: called with the number of windows just finished.
        spill_outputs: keep the outputs in temporary files (:mod:`sap.inference.spill`),
            releasing the finished slabs from RAM after each row.
        after_row: called after each row of windows (e.g. to release the rows of a spilled
            input that were read).

    Returns:
        A :class:`SlidingWindowResult` on the grid of ``image``, in CPU memory.
    """
    patch, kept = _check_arguments(
        image, patch_size, num_classes, overlap, batch_size, keep_probabilities, return_labels
    )
    shape = tuple(int(n) for n in image.shape[1:])
    device = torch.device(device)
    starts = [window_starts(n, p, overlap) for n, p in zip(shape, patch)]
    if slab_axis is None:
        slab_axis = max(range(3), key=lambda a: (len(starts[a]), a))
    others = [a for a in range(3) if a != slab_axis]
    slab = _SlabAccumulator(
        shape, patch, slab_axis, num_classes, blending, device, kept, return_labels, spill_outputs
    )
    # One buffer for the windows of a batch, reused: no page faults per batch.
    buffer = torch.empty(
        (batch_size, image.shape[0], *patch), dtype=torch.float32, device=image.device
    )
    rows = starts[slab_axis]
    grid = [(a, b) for a in starts[others[0]] for b in starts[others[1]]]
    # Every row lies inside the image along the slab axis (or there is one row), so every
    # row lays the same blending weights into the slab.
    first_row = [_window_start(slab_axis, others, rows[0], pair) for pair in grid]
    slab.set_row_placements([_placement(start, patch, shape, slab_axis) for start in first_row])
    num_windows = 0
    with torch.no_grad():
        for r, row_start in enumerate(rows):
            slab.start_row()
            for first in range(0, len(grid), batch_size):
                chunk = [
                    _window_start(slab_axis, others, row_start, pair)
                    for pair in grid[first : first + batch_size]
                ]
                batch, placements = _fill_batch(buffer, image, chunk, patch, slab_axis)
                out = predict_fn(batch.to(device, non_blocking=True))
                if out.shape[:2] != (len(placements), num_classes) or tuple(out.shape[2:]) != patch:
                    raise ValueError(
                        f"The model returned shape {tuple(out.shape)} for windows of "
                        f"{tuple(batch.shape)}; expected {(len(placements), num_classes, *patch)}."
                    )
                slab.add(out.to(torch.float32), placements)
                num_windows += len(placements)
                if progress is not None:
                    progress(len(placements))
            slab.advance(row_start, rows[r + 1] if r + 1 < len(rows) else None)
            if spill_outputs:
                release_pages(*slab.outputs)
            if after_row is not None:
                after_row()
    return SlidingWindowResult(
        labels=slab.outputs[1] if return_labels else None,
        probabilities=slab.outputs[0],
        kept_classes=kept,
        num_windows=num_windows,
    )


__all__ = [
    "BLENDING_MODES",
    "PredictFn",
    "SlidingWindowResult",
    "blending_weights",
    "sliding_window_predict",
    "softmax_predict_fn",
    "window_starts",
]
