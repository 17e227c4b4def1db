"""TorchIO transforms that turn a case into network input: preprocessing and augmentation.

:func:`preprocessing` is deterministic and is applied to every case, in training and at
inference, so that a model always sees the same kind of input as its recipe says:

1. canonical (RAS+) orientation;
2. every channel but the first (DWI) and every label map resampled onto the first channel's
   (T1's) grid: linear interpolation for images, nearest neighbour for labels;
3. optionally, resampling to a target voxel spacing;
4. per channel, clip to the 1st-99th intensity percentile and scale to [0, 1] (PAPER.md).

:func:`augmentation` is the training-time randomness of the paper: flips on the three axes,
90-degree rotations in the axial plane, intensity scale and shift. The rotation and intensity
transforms TorchIO lacks are written here as TorchIO transforms: a random transform samples
its parameters from the torch RNG (so ``torch.manual_seed`` and data-loader worker seeding
make them reproducible) and hands them to a deterministic twin (:class:`Rot90`,
:class:`ScaleShiftIntensity`) that is recorded in the subject's history, can be replayed with
``subject.get_composed_history()`` and inverted with ``subject.apply_inverse_transform()``.
All classes live at module level, so they pickle into ``tio.Queue`` / data-loader workers.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import torch
import torchio as tio
from torchio.transforms import IntensityTransform, SpatialTransform
from torchio.transforms.augmentation import RandomTransform

from sap.data.cases import Case, case_to_subject
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
        ['ToCanonical', 'Resample', 'Resample', 'RescaleIntensity']
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
        transforms.append(
            tio.RescaleIntensity(
                out_min_max=(0, 1), percentiles=tuple(percentiles), include=channels
            )
        )
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

    Returns:
        A :class:`torchio.Compose`; transforms with probability 0 are left out.
    """
    transforms: list[tio.Transform] = []
    if flip_p > 0:
        transforms.append(tio.RandomFlip(axes=(0, 1, 2), flip_probability=flip_p))
    if rot90_p > 0:
        transforms.append(RandomRot90(axes=(0, 1), p=rot90_p))
    if intensity_p > 0 and intensity_range > 0:
        transforms.append(RandomScaleIntensity(factors=intensity_range, p=intensity_p))
        transforms.append(RandomShiftIntensity(offsets=intensity_range, p=intensity_p))
    if bias_field_p > 0:
        transforms.append(tio.RandomBiasField(coefficients=bias_field_coefficients, p=bias_field_p))
    if noise_p > 0:
        transforms.append(tio.RandomNoise(std=(0, noise_std), p=noise_p))
    return tio.Compose(transforms)


def _parse_plane(axes: Sequence[int]) -> tuple[int, int]:
    plane = tuple(int(a) for a in axes)
    if len(plane) != 2 or plane[0] == plane[1] or not all(a in (0, 1, 2) for a in plane):
        raise ValueError(f"axes must be two different spatial axes out of (0, 1, 2), got {axes!r}.")
    return plane  # type: ignore[return-value]


class Rot90(SpatialTransform):
    """Rotate every image and label map by ``k`` quarter turns in the plane of two array axes.

    The rotation turns array axis ``axes[0]`` towards ``axes[1]`` (``torch.rot90``). The
    affine keeps its orientation and centre and swaps the two voxel spacings for odd ``k``,
    so the result is the same body physically rotated about the volume centre, as
    :class:`torchio.Flip` leaves the affine's orientation alone too. After
    :func:`preprocessing` (RAS+), ``axes=(0, 1)`` is the axial plane: rotations there keep
    the head-foot axis, which whole-body MRI always has along the scanner bore.

    Args:
        k: number of quarter turns; any integer, taken modulo 4.
        axes: the two spatial axes (0, 1, 2) spanning the rotation plane.
        **kwargs: see :class:`torchio.transforms.Transform`.
    """

    def __init__(self, k: int = 1, axes: Sequence[int] = (0, 1), **kwargs) -> None:
        super().__init__(**kwargs)
        self.k = int(k) % 4
        self.axes = _parse_plane(axes)
        self.args_names = ["k", "axes"]

    def apply_transform(self, subject: tio.Subject) -> tio.Subject:
        if self.k == 0:
            return subject
        for image in self.get_images(subject):
            _rot90_image(image, self.k, self.axes)
        return subject

    def is_invertible(self) -> bool:
        return True

    def inverse(self) -> Rot90:
        return Rot90(k=-self.k, axes=self.axes, **self._get_base_args())


def _rot90_image(image: tio.Image, k: int, axes: tuple[int, int]) -> None:
    old_shape = np.array(image.spatial_shape, dtype=np.float64)
    affine = np.asarray(image.affine, dtype=np.float64)
    spacing = np.linalg.norm(affine[:3, :3], axis=0)
    direction = affine[:3, :3] / spacing
    centre_mm = affine[:3, :3] @ ((old_shape - 1) / 2) + affine[:3, 3]

    data = torch.rot90(image.data, k, dims=(axes[0] + 1, axes[1] + 1)).contiguous()
    new_shape = np.array(data.shape[1:], dtype=np.float64)
    if k % 2:
        spacing[[axes[0], axes[1]]] = spacing[[axes[1], axes[0]]]
    new_affine = np.eye(4)
    new_affine[:3, :3] = direction * spacing
    new_affine[:3, 3] = centre_mm - new_affine[:3, :3] @ ((new_shape - 1) / 2)
    image.set_data(data)
    image.affine = new_affine


class RandomRot90(RandomTransform, SpatialTransform):
    """Rotate by a random number (1 to ``max_k``) of quarter turns; see :class:`Rot90`.

    Same as MONAI's ``RandRotate90(prob=p, max_k=3, spatial_axes=(0, 1))`` used by the
    SAP reference code; use ``p`` for the probability of rotating at all.

    Args:
        axes: the two spatial axes spanning the rotation plane; ``(0, 1)`` is axial in RAS+.
        max_k: largest number of quarter turns drawn.
        **kwargs: see :class:`torchio.transforms.Transform` (``p``, ``include``, ...).
    """

    def __init__(self, axes: Sequence[int] = (0, 1), max_k: int = 3, **kwargs) -> None:
        super().__init__(**kwargs)
        self.axes = _parse_plane(axes)
        if not 1 <= int(max_k) <= 3:
            raise ValueError(f"max_k must be 1, 2 or 3 quarter turns, got {max_k}.")
        self.max_k = int(max_k)
        self.args_names = ["axes", "max_k"]

    def apply_transform(self, subject: tio.Subject) -> tio.Subject:
        k = int(torch.randint(1, self.max_k + 1, (1,)).item())
        return Rot90(k=k, axes=self.axes, **self._get_base_args())(subject)


class ScaleShiftIntensity(IntensityTransform):
    """``x * scale + shift`` on every intensity image (label maps are never touched).

    Args:
        scale: multiplicative factor; must not be 0 (the transform is invertible).
        shift: additive offset, in intensity units.
        **kwargs: see :class:`torchio.transforms.Transform`.
    """

    def __init__(self, scale: float = 1.0, shift: float = 0.0, **kwargs) -> None:
        super().__init__(**kwargs)
        if scale == 0:
            raise ValueError("scale must not be 0.")
        self.scale = float(scale)
        self.shift = float(shift)
        self.args_names = ["scale", "shift"]

    def apply_transform(self, subject: tio.Subject) -> tio.Subject:
        for image in self.get_images(subject):
            image.set_data(image.data.float() * self.scale + self.shift)
        return subject

    def is_invertible(self) -> bool:
        return True

    def inverse(self) -> ScaleShiftIntensity:
        return ScaleShiftIntensity(
            scale=1 / self.scale, shift=-self.shift / self.scale, **self._get_base_args()
        )


def _symmetric_range(value: float | tuple[float, float], name: str) -> tuple[float, float]:
    if isinstance(value, int | float):
        if value < 0:
            raise ValueError(f"{name} must be >= 0 or a (low, high) pair, got {value}.")
        return -float(value), float(value)
    low, high = (float(v) for v in value)
    if low > high:
        raise ValueError(f"{name} must be (low, high) with low <= high, got {value}.")
    return low, high


class RandomScaleIntensity(RandomTransform, IntensityTransform):
    """Scale intensities by ``1 + s``, ``s`` uniform in ``factors`` (MONAI ``RandScaleIntensity``).

    Args:
        factors: ``f`` for ``s`` in ``[-f, f]``, or a ``(low, high)`` range.
        **kwargs: see :class:`torchio.transforms.Transform` (``p``, ``include``, ...).
    """

    def __init__(self, factors: float | tuple[float, float] = 0.1, **kwargs) -> None:
        super().__init__(**kwargs)
        self.factors = _symmetric_range(factors, "factors")
        if self.factors[0] <= -1:
            raise ValueError(f"factors must stay above -1 (a scale of 0 or less), got {factors}.")
        self.args_names = ["factors"]

    def apply_transform(self, subject: tio.Subject) -> tio.Subject:
        scale = 1 + self.sample_uniform(*self.factors)
        return ScaleShiftIntensity(scale=scale, **self._get_base_args())(subject)


class RandomShiftIntensity(RandomTransform, IntensityTransform):
    """Add ``o`` uniform in ``offsets`` to intensities (MONAI ``RandShiftIntensity``).

    Args:
        offsets: ``o`` for an offset in ``[-o, o]``, or a ``(low, high)`` range.
        **kwargs: see :class:`torchio.transforms.Transform` (``p``, ``include``, ...).
    """

    def __init__(self, offsets: float | tuple[float, float] = 0.1, **kwargs) -> None:
        super().__init__(**kwargs)
        self.offsets = _symmetric_range(offsets, "offsets")
        self.args_names = ["offsets"]

    def apply_transform(self, subject: tio.Subject) -> tio.Subject:
        shift = self.sample_uniform(*self.offsets)
        return ScaleShiftIntensity(shift=shift, **self._get_base_args())(subject)


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
    "RandomRot90",
    "RandomScaleIntensity",
    "RandomShiftIntensity",
    "Rot90",
    "ScaleShiftIntensity",
    "augmentation",
    "load_subject",
    "preprocessing",
    "stack_channels",
]
