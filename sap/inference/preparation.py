"""Preprocess a case exactly as the model was trained, from its recipe; estimate the RAM first.

Canonical orientation, DWI onto the T1 grid, optional target spacing and per-channel
percentile normalisation come from :func:`sap.data.preprocess.preprocessing`, with the
settings the :class:`~sap.recipe.ModelRecipe` carries. Two models whose recipes give the same
:func:`preprocessing_key` can share one :class:`~sap.inference.prediction.PreparedInput`.
"""

from __future__ import annotations

import json
import math

import numpy as np
import torch

from sap.inference.inputs import CaseChannels, InputError
from sap.inference.memory import MemoryEstimate, estimate_memory
from sap.inference.prediction import PreparedInput
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
) -> MemoryEstimate:
    """RAM per stage of predicting ``case`` with a model of ``recipe``, from image headers.

    The keyword arguments are those of :func:`sap.inference.memory.estimate_memory`.
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
    )


def prepare_case(
    case: CaseChannels, recipe: ModelRecipe, input_dtype: torch.dtype = torch.float16
) -> PreparedInput:
    """Read and preprocess one case for ``recipe``: the network input on the model grid.

    Args:
        case: the case's channel images (:func:`sap.inference.inputs.open_case`).
        recipe: channels, spacing, orientation and normalisation to apply.
        input_dtype: how the preprocessed scan is held (float16, bfloat16 or float32).

    Raises:
        InputError: an unreadable, non-3D or non-finite image, or a channel that
            preprocessing turns non-finite (a constant image).
    """
    import torchio as tio

    from sap.data.preprocess import preprocessing

    channels = tuple(recipe.channels)
    reference_shape, reference_affine = None, None
    images = {}
    for channel in channels:
        data, affine = case.read(channel)
        if reference_shape is None:
            reference_shape, reference_affine = tuple(int(n) for n in data.shape), affine
        images[channel] = tio.ScalarImage(tensor=torch.from_numpy(data)[None], affine=affine)
    del data  # the subject holds the only reference: freed once transformed
    subject = tio.Subject(images)
    del images
    transform = preprocessing(
        channels=channels,
        spacing_mm=recipe.spacing_mm,
        percentiles=normalisation_percentiles(recipe),
    )
    if recipe.orientation.upper() != "RAS":
        transform = tio.Compose([transform, tio.ToOrientation(recipe.orientation.upper())])
    subject = transform(subject)
    first = subject[channels[0]]
    model_affine = np.asarray(first.affine, np.float64)
    stacked = torch.empty((len(channels), *first.spatial_shape), dtype=input_dtype)
    for index, channel in enumerate(channels):
        stacked[index] = subject[channel].data[0]
        subject.remove_image(channel)  # free each channel once copied
    for index, channel in enumerate(channels):
        if not torch.isfinite(stacked[index]).all():
            raise InputError(
                f"Case '{case.case_id}', channel '{channel}': preprocessing produced NaN or "
                "infinite values (is the image constant?). Check the input image."
            )
    return PreparedInput(
        case_id=case.case_id,
        image=stacked,
        model_affine=model_affine,
        reference_shape=reference_shape,
        reference_affine=reference_affine,
        preprocessing_key=preprocessing_key(recipe),
        channels=channels,
    )


__all__ = [
    "estimate_case_memory",
    "normalisation_percentiles",
    "preprocessing_key",
    "prepare_case",
]
