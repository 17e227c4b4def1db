"""TorchIO transforms that `sap` adds: quarter-turn rotations, intensity scale and shift, padding,
and the percentile normalisation of :func:`sap.data.preprocess.preprocessing`.

Each random transform samples its parameters from the torch RNG (so ``torch.manual_seed``
and data-loader worker seeding make it reproducible) and hands them to a deterministic twin
(:class:`Rot90`, :class:`ScaleShiftIntensity`) that is recorded in the subject's history,
can be replayed with ``subject.get_composed_history()`` and inverted with
``subject.apply_inverse_transform()``. All classes live at module level, so they pickle
into data-loader workers. :func:`sap.data.preprocess.augmentation` puts them together.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np
import torch
import torchio as tio
from torchio.transforms import IntensityTransform, SpatialTransform
from torchio.transforms.augmentation import RandomTransform

from sap.volume import spacing_from_affine
from sap.volume.percentiles import percentiles as exact_percentiles


def per_axis(value: int | float | Sequence, name: str) -> tuple:
    """One number for all three axes, or three numbers (one per axis), as a 3-tuple.

    >>> per_axis(96, "patch_size"), per_axis([64, 64, 32], "patch_size")
    ((96, 96, 96), (64, 64, 32))
    """
    values = (value,) * 3 if isinstance(value, int | float) else tuple(value)
    if len(values) == 1:
        values = values * 3
    if len(values) != 3:
        raise ValueError(f"{name} must be one number or three (one per axis), got {value!r}.")
    return values


class PadToMinimumShape(SpatialTransform):
    """Pad (never crop) so every spatial size is at least ``min_shape`` voxels.

    Patches must fit in the volume, and a sliding window needs a volume at least one
    window large. Padding is split evenly between both sides, with zeros (background
    after normalisation, and label 0).

    Args:
        min_shape: minimum size in voxels along each axis, or one number for all.
        **kwargs: see :class:`torchio.transforms.Transform`.

    Example:
        >>> subject = tio.Subject(t1=tio.ScalarImage(tensor=torch.ones(1, 4, 9, 2)))
        >>> PadToMinimumShape(6)(subject).spatial_shape
        (6, 9, 6)
    """

    def __init__(self, min_shape: int | Sequence[int], **kwargs) -> None:
        super().__init__(**kwargs)
        self.min_shape = tuple(int(n) for n in per_axis(min_shape, "min_shape"))
        self.args_names = ["min_shape"]

    def apply_transform(self, subject: tio.Subject) -> tio.Subject:
        shape = np.asarray(subject.spatial_shape)
        target = np.maximum(shape, self.min_shape)
        if np.array_equal(target, shape):
            return subject
        pad = tio.CropOrPad(tuple(int(n) for n in target), padding_mode=0, **self._get_base_args())
        return pad(subject)


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
    spacing = spacing_from_affine(affine)
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


def rescale_percentiles_(
    array: np.ndarray, percentiles: Sequence[float] = (1, 99), name: str = "image"
) -> np.ndarray:
    """Clip ``array`` to its ``percentiles`` and scale it to [0, 1], in place.

    The one percentile normalisation of `sap` (training and prediction). Bitwise what
    ``torchio.RescaleIntensity(out_min_max=(0, 1), percentiles=...)`` computes, without its
    whole-volume temporaries (a clone, a masked copy and a mask, and the copy
    ``np.percentile`` partitions): :func:`sap.volume.percentiles.percentiles` finds the same
    values from histograms of the voxels, so a whole-body channel costs no copy at all.

    Args:
        array: float32 voxels (any shape, views allowed); changed in place.
        percentiles: lower and upper percentile, mapped to 0 and 1.
        name: what to call the image in the warning about a constant image.

    Returns:
        ``array``. A constant image (nothing to scale) is left as it is, with a RuntimeWarning,
        as TorchIO does.

    >>> scaled = rescale_percentiles_(np.array([0, 1, 2, 3, 100], np.float32), (0, 75))
    >>> [round(float(v), 4) for v in scaled]  # 3 is the 75th percentile: 100 is clipped to it
    [0.0, 0.3333, 0.6667, 1.0, 1.0]
    """
    if array.dtype != np.float32:
        raise TypeError(f"rescale_percentiles_ works in float32, got {array.dtype} for {name}.")
    cutoff = exact_percentiles(array, tuple(percentiles))
    np.clip(array, *cutoff, out=array)
    low, high = array.min(), array.max()
    if high - low == 0:
        warnings.warn(
            f'Rescaling image "{name}" not possible because all the intensity values are the same',
            RuntimeWarning,
            stacklevel=2,
        )
        return array
    array -= low
    array /= high - low
    return array


class PercentileRescale(IntensityTransform):
    """Clip each intensity image to its percentiles and scale it to [0, 1] (in float32).

    :func:`rescale_percentiles_` as a TorchIO transform (same values as
    ``tio.RescaleIntensity(out_min_max=(0, 1), percentiles=percentiles)``, less memory).

    Args:
        percentiles: lower and upper percentile, mapped to 0 and 1.
        **kwargs: see :class:`torchio.transforms.Transform` (``include``, ...).
    """

    def __init__(self, percentiles: Sequence[float] = (1, 99), **kwargs) -> None:
        super().__init__(**kwargs)
        self.percentiles = tuple(float(p) for p in percentiles)
        if len(self.percentiles) != 2 or not 0 <= self.percentiles[0] <= self.percentiles[1] <= 100:
            raise ValueError(f"percentiles must be (low, high) within 0-100, got {percentiles}.")
        self.args_names = ["percentiles"]

    def apply_transform(self, subject: tio.Subject) -> tio.Subject:
        for name, image in self.get_images_dict(subject).items():
            array = image.data.numpy().astype(np.float32)  # a copy: the input stays as it is
            rescale_percentiles_(array, self.percentiles, name)
            image.set_data(torch.from_numpy(array))
        return subject


__all__ = [
    "PadToMinimumShape",
    "PercentileRescale",
    "RandomRot90",
    "RandomScaleIntensity",
    "RandomShiftIntensity",
    "Rot90",
    "ScaleShiftIntensity",
    "per_axis",
    "rescale_percentiles_",
]
