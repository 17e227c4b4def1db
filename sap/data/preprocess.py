"""The two TorchIO pipelines a case goes through, and the stacking of its channels.

:func:`preprocessing` is deterministic and is applied to every case, in training and at
inference, so that a model always sees the kind of input its recipe describes:

1. canonical (RAS+) orientation;
2. every channel but the first (DWI) and every label map resampled onto the first channel's
   (T1's) grid: linear interpolation for images, nearest neighbour for labels;
3. optionally, resampling to a target voxel spacing;
4. per channel, clip to the 1st-99th intensity percentile and scale to [0, 1] (PAPER.md).

:func:`augmentation` is the training-time randomness of the paper: flips on the three axes,
90-degree rotations in the axial plane, intensity scale and shift (the transforms TorchIO
lacks are in :mod:`sap.data.transforms`). :func:`stack_channels` makes the network input.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
import torchio as tio

from sap.data.cases import Case, case_to_subject
from sap.data.transforms import (
    PercentileRescale,
    RandomRot90,
    RandomScaleIntensity,
    RandomShiftIntensity,
)
from sap.labels import CHANNELS

# --------------------------------------------------------------------------------------
# Preprocessing
# --------------------------------------------------------------------------------------


def preprocessing(
    channels: Sequence[str] = CHANNELS,
    spacing_mm: float | Sequence[float] | None = None,
    percentiles: tuple[float, float] | None = (1, 99),
) -> tio.Compose:
    """The deterministic preprocessing every case goes through.

    Args:
        channels: input channel names; the first one (T1) defines the grid that the other
            channels and all label maps are resampled onto.
        spacing_mm: target voxel spacing in mm (one number for isotropic, or three), or
            ``None`` to keep the first channel's spacing.
        percentiles: lower and upper intensity percentiles of each channel that are mapped
            to 0 and 1; intensities beyond them are clipped. ``None`` leaves intensities as
            they are.

    Returns:
        A :class:`torchio.Compose` to use as a ``tio.SubjectsDataset`` transform.

    Example:
        >>> transform = preprocessing(("T1", "b1000"), spacing_mm=4.0)
        >>> [t.name for t in transform.transforms]
        ['ToCanonical', 'Resample', 'Resample', 'PercentileRescale']
    """
    channels = list(channels)
    if not channels:
        raise ValueError("preprocessing needs at least one channel, e.g. channels=('T1',).")
    transforms: list[tio.Transform] = [
        tio.ToCanonical(),
        # Names the first channel: TorchIO skips it and resamples everything else onto it.
        tio.Resample(target=channels[0]),
    ]
    if spacing_mm is not None:
        target = (
            float(spacing_mm)
            if isinstance(spacing_mm, int | float)
            else tuple(map(float, spacing_mm))
        )
        transforms.append(tio.Resample(target))
    if percentiles is not None:
        transforms.append(PercentileRescale(percentiles, include=channels))
    return tio.Compose(transforms)


def load_subject(case: Case, transform: tio.Transform | None = None) -> tio.Subject:
    """Read ``case`` into memory, optionally transformed (e.g. by :func:`preprocessing`).

    Convenient for inference and inspection; training goes through ``tio.SubjectsDataset``.
    """
    subject = case_to_subject(case)
    subject.load()
    return transform(subject) if transform is not None else subject


# --------------------------------------------------------------------------------------
# Augmentation
# --------------------------------------------------------------------------------------


def augmentation(
    flip_p: float = 0.5,
    rot90_p: float = 0.2,
    intensity_p: float = 0.1,
    intensity_range: float = 0.1,
    bias_field_p: float = 0.0,
    noise_p: float = 0.0,
    *,
    bias_field_coefficients: float = 0.5,
    noise_std: float = 0.05,
    copy: bool = True,
) -> tio.Compose:
    """Training augmentation of the SAP paper, plus optional TorchIO MRI artefacts.

    Applied after :func:`preprocessing` (intensities in [0, 1]). Spatial transforms move
    images and label maps together; intensity transforms touch images only.

    Args:
        flip_p: probability of a flip, drawn independently for each of the 3 axes.
        rot90_p: probability of a 90/180/270-degree rotation in the axial plane.
        intensity_p: probability of an intensity scale ``x * (1 + s)`` and, independently,
            of a shift ``x + o``; ``s`` and ``o`` uniform in ``±intensity_range``. One draw
            is shared by all channels, as when MONAI transforms a stacked input.
        intensity_range: half-width of the scale and shift ranges (paper: 0.1).
        bias_field_p: probability of a smooth multiplicative bias field (``tio.RandomBiasField``).
        noise_p: probability of Gaussian noise (``tio.RandomNoise``).
        bias_field_coefficients: maximum magnitude of the bias field's polynomial coefficients.
        noise_std: the noise standard deviation is drawn uniformly in ``[0, noise_std]``
            (in units of the [0, 1] normalised intensity).
        copy: transform a copy of the subject (TorchIO's default). ``False`` changes the
            subject in place, which saves a copy per transform when the subject is a fresh
            patch (the patch store's).

    Returns:
        A :class:`torchio.Compose`; transforms with probability 0 are left out.
    """
    transforms: list[tio.Transform] = []
    if flip_p > 0:
        transforms.append(tio.RandomFlip(axes=(0, 1, 2), flip_probability=flip_p, copy=copy))
    if rot90_p > 0:
        transforms.append(RandomRot90(axes=(0, 1), p=rot90_p, copy=copy))
    if intensity_p > 0 and intensity_range > 0:
        transforms.append(RandomScaleIntensity(factors=intensity_range, p=intensity_p, copy=copy))
        transforms.append(RandomShiftIntensity(offsets=intensity_range, p=intensity_p, copy=copy))
    if bias_field_p > 0:
        transforms.append(
            tio.RandomBiasField(coefficients=bias_field_coefficients, p=bias_field_p, copy=copy)
        )
    if noise_p > 0:
        transforms.append(tio.RandomNoise(std=(0, noise_std), p=noise_p, copy=copy))
    return tio.Compose(transforms, copy=copy)


# --------------------------------------------------------------------------------------
# Network input
# --------------------------------------------------------------------------------------


def stack_channels(
    subject_or_batch: tio.Subject | Mapping[str, object], channels: Sequence[str] = CHANNELS
) -> torch.Tensor:
    """Stack channel images into the network input, in ``channels`` order.

    Args:
        subject_or_batch: a :class:`torchio.Subject` (image data ``[1, D, H, W]``) or a batch
            collated by a ``torch.utils.data.DataLoader`` from TorchIO subjects/patches
            (``batch[channel]["data"]`` of shape ``[B, 1, D, H, W]``).
        channels: channel names in the order the model expects (its recipe's ``channels``).

    Returns:
        float32 tensor ``[C, D, H, W]`` for a subject, ``[B, C, D, H, W]`` for a batch.
    """
    channels = list(channels)
    if not channels:
        raise ValueError("stack_channels needs at least one channel name.")
    is_subject = isinstance(subject_or_batch, tio.Subject)
    tensors = []
    for name in channels:
        if name not in subject_or_batch:
            available = [k for k in subject_or_batch if k != "case_id"]
            raise KeyError(
                f"channel '{name}' is not in the {'subject' if is_subject else 'batch'} "
                f"(it has {available}); the model's channels are {channels}."
            )
        entry = subject_or_batch[name]
        if isinstance(entry, tio.Image):
            tensor = entry.data
        elif isinstance(entry, Mapping) and tio.DATA in entry:
            tensor = entry[tio.DATA]
        elif isinstance(entry, torch.Tensor):
            tensor = entry
        else:
            raise TypeError(
                f"channel '{name}' holds {type(entry).__name__}, expected a TorchIO image or batch entry."
            )
        channel_axis = 0 if is_subject else 1
        if tensor.shape[channel_axis] != 1:
            raise ValueError(
                f"channel '{name}' has {tensor.shape[channel_axis]} components (shape "
                f"{tuple(tensor.shape)}); each channel must be a single 3D volume."
            )
        tensors.append(tensor)
    shapes = {name: tuple(t.shape) for name, t in zip(channels, tensors)}
    if len(set(shapes.values())) > 1:
        raise ValueError(
            f"channels have different shapes {shapes}; apply sap.data.preprocess.preprocessing "
            f"first, which resamples every channel onto the grid of '{channels[0]}'."
        )
    return torch.cat(tensors, dim=0 if is_subject else 1).float()


__all__ = [
    "augmentation",
    "load_subject",
    "preprocessing",
    "stack_channels",
]
