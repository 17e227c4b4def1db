"""Preprocess a case exactly as the model was trained, from its recipe; estimate the RAM first.

The steps of :func:`sap.data.preprocess.preprocessing` (canonical orientation, DWI onto the
T1 grid, optional target spacing, per-channel percentile normalisation), with the settings
the :class:`~sap.recipe.ModelRecipe` carries, applied one channel at a time: a channel is
read, reoriented (a view, no copy), resampled if its grid is not the reference's,
normalised in place (:func:`sap.data.transforms.rescale_percentiles_`) and stored into the
float16 network input before the next one is read. A whole-body scan never has two float32
copies of all its channels, nor float64 temporaries; the values equal those of the TorchIO
pipeline training uses. Two models whose recipes give the same :func:`preprocessing_key`
can share one :class:`~sap.inference.prediction.PreparedInput`.
"""

from __future__ import annotations

import json
import math

import numpy as np
import torch

from sap.data.transforms import rescale_percentiles_
from sap.inference.inputs import CaseChannels, InputError
from sap.inference.memory import MemoryEstimate, estimate_memory
from sap.inference.prediction import PreparedInput
from sap.inference.spill import SPILL_MIN_BYTES, release_pages, slabs, spilled_empty
from sap.recipe import ModelRecipe
from sap.volume import spacing_from_affine


def normalisation_percentiles(recipe: ModelRecipe) -> tuple[float, float] | None:
    """The recipe's ``(lower, upper)`` intensity percentiles, or ``None`` for no normalisation.

    Raises:
        ValueError: a normalisation inference does not support (anything but percentiles
            mapped to [0, 1], or none).

    >>> normalisation_percentiles(ModelRecipe(backbone="tiny_unet"))
    (1.0, 99.0)
    """
    normalisation = dict(recipe.normalisation or {})
    kind = normalisation.get("kind", "percentile")
    if kind == "none":
        return None
    if kind != "percentile":
        raise ValueError(
            f"Model recipe normalisation kind {kind!r} is not supported by inference; "
            "expected 'percentile' or 'none'."
        )
    out = [float(v) for v in normalisation.get("out", (0.0, 1.0))]
    if out != [0.0, 1.0]:
        raise ValueError(f"Model recipe normalisation maps to {out}; inference supports [0, 1].")
    return float(normalisation.get("lower", 1.0)), float(normalisation.get("upper", 99.0))


def preprocessing_key(recipe: ModelRecipe) -> str:
    """What preprocessing depends on; equal keys mean one preparation serves both models."""
    return json.dumps(
        {
            "channels": list(recipe.channels),
            "spacing_mm": None if recipe.spacing_mm is None else list(recipe.spacing_mm),
            "orientation": recipe.orientation,
            "normalisation": recipe.normalisation,
        },
        sort_keys=True,
    )


def estimate_case_memory(
    case: CaseChannels,
    recipe: ModelRecipe,
    *,
    kept_probabilities: int,
    batch_size: int,
    tta_passes: int,
    accumulator_on_host: bool,
    input_dtype: torch.dtype,
    spill: bool | None = None,
) -> MemoryEstimate:
    """RAM per stage of predicting ``case`` with a model of ``recipe``, from image headers.

    The keyword arguments are those of :func:`sap.inference.memory.estimate_memory`;
    ``spill`` as in :func:`prepare_case`.
    """
    import nibabel as nib

    headers = {channel: case.header(channel) for channel in recipe.channels}
    reference_shape, affine = headers[recipe.channels[0]]
    model_shape = list(reference_shape)
    if recipe.spacing_mm is not None:
        order = np.argsort(nib.orientations.io_orientation(affine)[:, 0])
        extent = (np.array(reference_shape) * spacing_from_affine(affine))[order]
        model_shape = [max(1, math.ceil(e / t)) for e, t in zip(extent, recipe.spacing_mm)]
    return estimate_memory(
        reference_shape,
        [math.prod(shape) for shape, _ in headers.values()],
        model_shape,
        recipe.num_classes,
        recipe.patch_size,
        kept_probabilities=kept_probabilities,
        batch_size=batch_size,
        tta_passes=tta_passes,
        accumulator_on_host=accumulator_on_host,
        input_bytes_per_voxel=torch.finfo(input_dtype).bits // 8,
        spilled=_spills(len(recipe.channels), model_shape, input_dtype, spill),
    )


def prepare_case(
    case: CaseChannels,
    recipe: ModelRecipe,
    input_dtype: torch.dtype = torch.float16,
    spill: bool | None = None,
) -> PreparedInput:
    """Read and preprocess one case for ``recipe``: the network input on the model grid.

    Args:
        case: the case's channel images (:func:`sap.inference.inputs.open_case`).
        recipe: channels, spacing, orientation and normalisation to apply.
        input_dtype: how the preprocessed scan is held (float16, bfloat16 or float32).
        spill: keep the network input in a temporary file (:mod:`sap.inference.spill`),
            laid out so that a slab along its longest axis is contiguous; RAM then holds
            one channel while it is preprocessed and, later, the windows being predicted.
            ``None``: when the input takes at least ``SPILL_MIN_BYTES`` (whole-body scans).

    Raises:
        InputError: an unreadable, non-3D or non-finite image, or a channel that
            preprocessing turns non-finite (a constant image).
    """
    channels = tuple(recipe.channels)
    percentiles = normalisation_percentiles(recipe)
    stacked: torch.Tensor | None = None
    storage: np.ndarray | None = None
    row_axis: int | None = None
    grid: tuple[tuple[int, ...], np.ndarray] | None = None
    for index, channel in enumerate(channels):
        data, affine = _owned(case, channel)
        if grid is None:
            reference_shape, reference_affine = tuple(int(n) for n in data.shape), affine
        data, affine = reorient(data, affine, "RAS")
        if grid is None:
            grid = (tuple(data.shape), affine)
        elif not _same_grid(data.shape, affine, *grid):
            data, affine = _resample(data, affine, grid)
        data, affine = _to_recipe_grid(data, affine, recipe)
        if percentiles is not None:
            rescale_percentiles_(data, percentiles, f"{case.case_id}/{channel}")
        if stacked is None:
            stacked, storage, row_axis = _network_input(
                len(channels), data.shape, input_dtype, spill
            )
            model_affine = np.asarray(affine, np.float64)
        if not _finite(data, stacked.dtype):
            raise InputError(
                f"Case '{case.case_id}', channel '{channel}': preprocessing produced NaN or "
                "infinite values (is the image constant?). Check the input image."
            )
        _store(stacked, index, data, storage, row_axis)
        del data  # before the next channel is read
    assert stacked is not None
    return PreparedInput(
        case_id=case.case_id,
        image=stacked,
        model_affine=model_affine,
        reference_shape=reference_shape,
        reference_affine=reference_affine,
        preprocessing_key=preprocessing_key(recipe),
        channels=channels,
        storage=storage,
        row_axis=row_axis,
    )


def _spills(channels: int, shape, dtype: torch.dtype, spill: bool | None) -> bool:
    """Whether the network input goes to a temporary file (``None``: when it is large)."""
    if dtype not in (torch.float16, torch.float32):  # numpy, which maps the file, has no bfloat16
        return False
    if spill is None:
        return channels * math.prod(shape) * (torch.finfo(dtype).bits // 8) >= SPILL_MIN_BYTES
    return bool(spill)


def _network_input(
    channels: int, shape: tuple[int, ...], dtype: torch.dtype, spill: bool | None
) -> tuple[torch.Tensor, np.ndarray | None, int | None]:
    """``(image [C, X, Y, Z], spilled storage or None, its row axis or None)``.

    Spilled, the storage is ``[C, rows, *other axes]`` with rows along the longest spatial
    axis (ties: the last), so that the windows of one row of the sliding window read one
    contiguous part of each channel; ``image`` is a view of it in ``[C, X, Y, Z]`` order.
    """
    if not _spills(channels, shape, dtype, spill):
        return torch.empty((channels, *shape), dtype=dtype), None, None
    row_axis = max(range(3), key=lambda a: (shape[a], a))
    others = [a for a in range(3) if a != row_axis]
    storage = spilled_empty(
        (channels, shape[row_axis], *(shape[a] for a in others)),
        np.float16 if dtype == torch.float16 else np.float32,
    )
    order = [0] + [1 if a == row_axis else 2 + others.index(a) for a in range(3)]
    return torch.from_numpy(storage).permute(order), storage, row_axis


def _owned(case: CaseChannels, channel: str) -> tuple[np.ndarray, np.ndarray]:
    """A channel's voxels in an array this preparation may change in place.

    A file is read into a new array; a DICOM series read earlier is held by ``case`` and
    must stay as it is for the next model, so it is copied.
    """
    data, affine = case.read(channel)
    source = case.sources.get(channel)
    if isinstance(source, tuple) and np.shares_memory(data, source[0]):
        data = data.copy()
    return data, affine


def reorient(
    array: np.ndarray, affine: np.ndarray, codes: str = "RAS"
) -> tuple[np.ndarray, np.ndarray]:
    """``array`` as seen in the closest orientation to ``codes``: a view (flips and axis swaps).

    What ``torchio.ToOrientation`` / ``ToCanonical`` compute, without copying the voxels.

    >>> las = np.diag([-2.0, 1.0, 1.0, 1.0])  # the first axis runs right to left
    >>> array, affine = reorient(np.arange(3.0).reshape(3, 1, 1), las)
    >>> array.ravel().tolist(), affine[0, 0].item(), affine[0, 3].item()
    ([2.0, 1.0, 0.0], 2.0, -4.0)
    """
    import nibabel as nib

    current = nib.orientations.io_orientation(affine)
    transform = nib.orientations.ornt_transform(
        current, nib.orientations.axcodes2ornt(tuple(codes))
    )
    if np.array_equal(transform, [[0, 1], [1, 1], [2, 1]]):
        return array, affine
    reoriented = nib.orientations.apply_orientation(array, transform)
    return reoriented, affine @ nib.orientations.inv_ornt_aff(transform, array.shape)


def _same_grid(shape, affine, reference_shape, reference_affine) -> bool:
    return tuple(shape) == tuple(reference_shape) and np.allclose(
        affine, reference_affine, rtol=0.0, atol=1e-6
    )


def _resample(
    data: np.ndarray, affine: np.ndarray, target: tuple[tuple[int, ...], np.ndarray] | float
) -> tuple[np.ndarray, np.ndarray]:
    """One channel resampled (linear) onto a grid ``(shape, affine)`` or to a spacing, by TorchIO."""
    import torchio as tio

    image = tio.ScalarImage(
        tensor=torch.from_numpy(np.ascontiguousarray(data))[None], affine=affine
    )
    del data
    resampled = tio.Resample(target, copy=False)(tio.Subject(image=image))["image"]
    return resampled.data[0].numpy(), np.asarray(resampled.affine, np.float64)


def _to_recipe_grid(
    data: np.ndarray, affine: np.ndarray, recipe: ModelRecipe
) -> tuple[np.ndarray, np.ndarray]:
    """The recipe's target spacing and orientation, when it has them (TorchIO, one channel)."""
    spacing = recipe.spacing_mm
    if spacing is not None:  # the target sap.data.preprocess.preprocessing passes to TorchIO
        target = float(spacing) if isinstance(spacing, int | float) else tuple(map(float, spacing))
        data, affine = _resample(data, affine, target)
    if recipe.orientation.upper() != "RAS":
        data, affine = reorient(data, affine, recipe.orientation.upper())
    if data.dtype != np.float32:
        data = data.astype(np.float32)
    elif not data.flags.writeable:
        data = data.copy()
    return data, affine


def _finite(data: np.ndarray, dtype: torch.dtype) -> bool:
    """Whether every voxel is finite, also once cast to ``dtype`` (min and max tell it
    without a mask of the volume: NaN and infinities propagate into them)."""
    extremes = torch.tensor([float(data.min()), float(data.max())]).to(dtype)
    return bool(torch.isfinite(extremes).all())


def _store(
    stacked: torch.Tensor,
    index: int,
    data: np.ndarray,
    storage: np.ndarray | None,
    row_axis: int | None,
) -> None:
    """Cast one channel into the network input (numpy casts strided views without a copy);
    into a spilled input slab by slab, each slab's pages released once written."""
    if stacked.dtype not in (torch.float16, torch.float32):
        stacked[index] = torch.from_numpy(np.ascontiguousarray(data))
        return
    target = stacked.numpy()[index]
    if storage is None or row_axis is None:
        target[...] = data
        return
    for part in slabs(data.shape, axis=row_axis, voxels=1 << 24):
        target[part] = data[part]
        release_pages(storage)


__all__ = [
    "estimate_case_memory",
    "normalisation_percentiles",
    "preprocessing_key",
    "prepare_case",
    "reorient",
]
