"""Voxel overlap (Dice) and boundary agreement (normalised surface Dice) of two binary masks.

``spacing_mm`` is in array-axis order. Both masks empty: 1.0; one empty: 0.0. NSD has two
variants, ``"boundary"`` (boundary-voxel counting, MONAI's default, ours) and ``"area"``
(surface-area weighted, delegated to MONAI). Definitions: ``docs/metrics.md``
("Segmentation quality").
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np
from scipy import ndimage

from sap.volume import as_mask, check_spacing

#: Names of the normalised-surface-Dice variants (``docs/metrics.md``, "Normalised surface Dice").
NSD_VARIANTS: tuple[str, ...] = ("boundary", "area")

#: Default NSD tolerance in mm. The paper does not state its tolerance; 2 mm is about two
#: in-plane voxels of whole-body MRI and is what we report unless told otherwise.
DEFAULT_NSD_TOLERANCE_MM = 2.0

# Distances are compared with this slack (mm) so that a distance equal to the tolerance
# counts as within it despite float rounding (MONAI compares float32 distances).
_DISTANCE_SLACK_MM = 1e-6

_FACE_STRUCTURE = ndimage.generate_binary_structure(3, 1)


def dice_from_counts(intersection: float, pred_volume: float, ref_volume: float) -> float:
    """Dice = 2|P∩R| / (|P| + |R|) from voxel (or mL) counts; 1.0 when both are empty."""
    total = pred_volume + ref_volume
    if total == 0:
        return 1.0
    return float(2.0 * intersection / total)


def dice(pred_mask: object, ref_mask: object) -> float:
    """Dice coefficient of two binary 3D masks (both empty: 1.0, one empty: 0.0).

    >>> import numpy as np
    >>> a = np.zeros((4, 4, 4), bool); a[:2] = True
    >>> b = np.zeros((4, 4, 4), bool); b[1:3] = True
    >>> dice(a, b)
    0.5
    """
    pred = as_mask(pred_mask, "pred_mask")
    ref = as_mask(ref_mask, "ref_mask")
    _check_same_shape(pred, ref)
    return dice_from_counts(
        np.count_nonzero(pred & ref), np.count_nonzero(pred), np.count_nonzero(ref)
    )


def boundary_voxels(mask: np.ndarray) -> np.ndarray:
    """Voxels of ``mask`` with a face-neighbour outside the mask (or outside the array)."""
    return mask & ~ndimage.binary_erosion(mask, structure=_FACE_STRUCTURE, border_value=0)


def surface_dice(
    pred_mask: object,
    ref_mask: object,
    spacing_mm: Sequence[float] | np.ndarray | float,
    tolerance_mm: float = DEFAULT_NSD_TOLERANCE_MM,
    variant: str = "boundary",
) -> float:
    """Normalised surface Dice (NSD) of two binary 3D masks at ``tolerance_mm``.

    Args:
        pred_mask: predicted mask, 3D (non-zero = foreground).
        ref_mask: reference mask, same shape.
        spacing_mm: voxel size in mm along array axes 0, 1, 2 (one number = isotropic).
        tolerance_mm: boundary elements closer than this (inclusive) to the other boundary
            count as correct.
        variant: ``"boundary"`` (boundary-voxel counting, MONAI default) or ``"area"``
            (surface-area weighted, MONAI ``use_subvoxels=True``); see ``docs/metrics.md``.

    Returns:
        NSD in [0, 1]; 1.0 when both masks are empty, 0.0 when exactly one is.
    """
    pred = as_mask(pred_mask, "pred_mask")
    ref = as_mask(ref_mask, "ref_mask")
    _check_same_shape(pred, ref)
    spacing = check_spacing(spacing_mm)
    tolerance_mm = _check_tolerance(tolerance_mm)
    _check_variant(variant)
    crop = _union_bbox(pred, ref)
    if crop is None:
        return 1.0
    return surface_dice_in_crop(pred[crop], ref[crop], spacing, tolerance_mm, variant)


def surface_dice_in_crop(
    pred: np.ndarray, ref: np.ndarray, spacing: np.ndarray, tolerance_mm: float, variant: str
) -> float:
    """NSD of two boolean crops that contain both masks entirely (no argument checks).

    The crops are padded by one background voxel so that a mask touching the crop border
    still gets its boundary there, exactly as it would in the full volume.
    """
    has_pred, has_ref = bool(pred.any()), bool(ref.any())
    if not has_pred and not has_ref:
        return 1.0
    if not has_pred or not has_ref:
        return 0.0
    pred = np.pad(pred, 1)
    ref = np.pad(ref, 1)
    if variant == "area":
        return _surface_dice_area(pred, ref, spacing, tolerance_mm)
    pred_edge = boundary_voxels(pred)
    ref_edge = boundary_voxels(ref)
    limit = tolerance_mm + _DISTANCE_SLACK_MM
    to_ref = ndimage.distance_transform_edt(~ref_edge, sampling=spacing)[pred_edge]
    to_pred = ndimage.distance_transform_edt(~pred_edge, sampling=spacing)[ref_edge]
    correct = np.count_nonzero(to_ref <= limit) + np.count_nonzero(to_pred <= limit)
    return float(correct / (to_ref.size + to_pred.size))


def _surface_dice_area(
    pred: np.ndarray, ref: np.ndarray, spacing: np.ndarray, tolerance_mm: float
) -> float:
    import torch
    from monai.metrics import compute_surface_dice

    with warnings.catch_warnings():
        # MONAI warns about its own internal use of a deprecated argument on every call.
        warnings.simplefilter("ignore", FutureWarning)
        value = compute_surface_dice(
            torch.from_numpy(pred[None, None].astype(np.float32)),
            torch.from_numpy(ref[None, None].astype(np.float32)),
            class_thresholds=[tolerance_mm + _DISTANCE_SLACK_MM],
            include_background=True,
            spacing=[float(s) for s in spacing],
            use_subvoxels=True,
        )
    return float(value.reshape(-1)[0])


def _union_bbox(a: np.ndarray, b: np.ndarray) -> tuple[slice, ...] | None:
    union = a | b
    crop = []
    for axis in range(union.ndim):
        other = tuple(i for i in range(union.ndim) if i != axis)
        hits = np.flatnonzero(union.any(axis=other))
        if hits.size == 0:
            return None
        crop.append(slice(int(hits[0]), int(hits[-1]) + 1))
    return tuple(crop)


def _check_same_shape(pred: np.ndarray, ref: np.ndarray) -> None:
    if pred.shape != ref.shape:
        raise ValueError(
            f"Prediction and reference must be on the same voxel grid; got shapes {pred.shape} "
            f"(prediction) and {ref.shape} (reference). Resample the prediction onto the "
            f"reference grid first."
        )


def _check_tolerance(tolerance_mm: float) -> float:
    tolerance = float(tolerance_mm)
    if not np.isfinite(tolerance) or tolerance < 0:
        raise ValueError(
            f"tolerance_mm must be a finite distance >= 0 in mm, got {tolerance_mm!r}."
        )
    return tolerance


def _check_variant(variant: str) -> str:
    if variant not in NSD_VARIANTS:
        raise ValueError(
            f"NSD variant must be one of {NSD_VARIANTS} ('boundary': boundary-voxel counting as "
            f"MONAI's default; 'area': surface-area weighted), got {variant!r}."
        )
    return variant


__all__ = [
    "DEFAULT_NSD_TOLERANCE_MM",
    "NSD_VARIANTS",
    "boundary_voxels",
    "dice",
    "dice_from_counts",
    "surface_dice",
    "surface_dice_in_crop",
]
