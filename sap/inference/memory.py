"""Estimate the RAM a prediction needs before starting it, and refuse early if it won't fit.

Running out of memory 20 minutes into a whole-body prediction kills the process (or the
machine) with no useful message. From image headers alone we know every array the pipeline
will hold, so we add them up per stage and compare the largest stage with the memory that is
free now. The numbers are on the high side (a resampled channel counts twice, the model's
activations are a Swin UNETR's).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

_FLOAT64 = 8
_FLOAT32 = 4
_FLOAT16 = 2
_UINT8 = 1
_UINT32 = 4


class InsufficientMemoryError(MemoryError):
    """The estimated peak memory of a prediction exceeds the memory available."""


@dataclass(frozen=True)
class MemoryEstimate:
    """Bytes needed by each stage of :class:`sap.inference.Predictor.predict`.

    Attributes:
        preprocessing: raw channels plus TorchIO's working copies and the stacked input.
        sliding_window: network input, slab accumulator, compact outputs, model activations.
        back_to_input: outputs on the model grid and on the input grid, component maps.
    """

    preprocessing: int
    sliding_window: int
    back_to_input: int

    @property
    def peak(self) -> int:
        return max(self.preprocessing, self.sliding_window, self.back_to_input)

    def describe(self) -> str:
        gib = 1024**3
        return (
            f"~{self.peak / gib:.1f} GiB (preprocessing {self.preprocessing / gib:.1f}, "
            f"sliding window {self.sliding_window / gib:.1f}, back to input space "
            f"{self.back_to_input / gib:.1f})"
        )


def estimate_memory(
    input_shape: Sequence[int],
    channel_voxels: Sequence[int],
    model_shape: Sequence[int],
    num_classes: int,
    patch_size: Sequence[int],
    *,
    kept_probabilities: int,
    batch_size: int,
    tta_passes: int = 1,
    accumulator_on_host: bool = True,
    activation_bytes_per_voxel: int = 512,
    input_bytes_per_voxel: int = 2,
    spilled: bool = False,
) -> MemoryEstimate:
    """Add up the arrays of each stage.

    Args:
        input_shape: spatial shape of the input T1 (output grid).
        channel_voxels: voxel count of each input channel as stored on disk.
        model_shape: spatial shape on the model grid (after reorientation and resampling).
        num_classes: classes the model outputs.
        patch_size: window size in voxels.
        kept_probabilities: probability maps kept (float16) besides the uint8 labels.
        batch_size: windows per forward pass.
        tta_passes: forward passes per window (flips).
        accumulator_on_host: whether the slab accumulator lives in RAM (CPU inference).
        activation_bytes_per_voxel: rough activation memory per window voxel on the host
            (CPU inference only); small U-Nets need far less, Swin UNETR about this.
        input_bytes_per_voxel: bytes per voxel and channel of the held network input.
        spilled: the network input and probability maps live in temporary files
            (:mod:`sap.inference.spill`); RAM holds the slabs in use.
    """
    n_in = math.prod(int(n) for n in input_shape)
    n_model = math.prod(int(n) for n in model_shape)
    n_channels = len(channel_voxels)
    patch_voxels = math.prod(int(p) for p in patch_size)
    thickness = int(max(patch_size))
    plane = n_model // max(int(max(model_shape)), 1) if model_shape else 0
    stacked = n_channels * n_model * int(input_bytes_per_voxel)
    # Preprocessing holds one channel at a time: as read (float32), and its float32 copy on
    # the model grid when it must be resampled (TorchIO), besides the network input.
    raw = max((int(v) for v in channel_voxels), default=0) * _FLOAT32
    working = n_model * _FLOAT32
    held_input = n_channels * thickness * plane * int(input_bytes_per_voxel) if spilled else stacked
    preprocessing = raw + working + held_input

    slab = (num_classes + 1) * _FLOAT32 * thickness * max(plane, 1) * 2
    outputs_model = n_model * (_UINT8 + _FLOAT16 * kept_probabilities)
    if spilled:  # finished slabs of the outputs leave RAM row by row
        outputs_model = thickness * max(plane, 1) * (_UINT8 + _FLOAT16 * kept_probabilities)
    window = batch_size * patch_voxels * (n_channels + 2 * num_classes) * _FLOAT32
    activations = batch_size * patch_voxels * activation_bytes_per_voxel * min(tta_passes, 2)
    sliding = held_input + outputs_model + window
    if accumulator_on_host:
        sliding += slab + activations

    outputs_input = n_in * (_UINT8 + (0 if spilled else _FLOAT16 * kept_probabilities))
    components = n_in * (_UINT32 + _UINT8)  # connected components and the mask
    back = outputs_model + 2 * outputs_input + components
    return MemoryEstimate(int(preprocessing), int(sliding), int(back))


def available_memory_bytes() -> int:
    """RAM free for new allocations now (psutil's ``available``)."""
    import psutil

    return int(psutil.virtual_memory().available)


def check_memory(estimate: MemoryEstimate, available: int | None, what: str) -> None:
    """Raise :class:`InsufficientMemoryError` with advice when ``estimate`` does not fit.

    Args:
        estimate: from :func:`estimate_memory`.
        available: bytes available, or ``None`` to skip the check.
        what: the case being predicted, for the message.
    """
    if available is None or estimate.peak <= available:
        return
    gib = 1024**3
    raise InsufficientMemoryError(
        f"Predicting {what} needs {estimate.describe()} of RAM but only "
        f"{available / gib:.1f} GiB is available. Close other programs, use a machine with "
        f"more memory, lower --batch-size, leave out --save-probabilities, or crop the scan "
        f"to the body. To skip this check at your own risk: --no-memory-check (CLI) or "
        f"memory_limit_bytes=None (Python)."
    )


__all__ = [
    "InsufficientMemoryError",
    "MemoryEstimate",
    "available_memory_bytes",
    "check_memory",
    "estimate_memory",
]
