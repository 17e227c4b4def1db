"""Skeleton (anatomy) model metrics: Dice per bone region and binary whole-skeleton Dice.

Both come from one confusion matrix of reference vs predicted labels, so they can be
accumulated over exams (and summed across processes) before the ratio is taken.

Conventions: a region absent from both reference and prediction (e.g. outside the field of
view) has Dice NaN and is left out of ``mean_region_dice``; present in only one of them, 0.
The whole-skeleton Dice treats every non-background label as bone (the paper's 0.90).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from sap.labels import SKELETON_LABELS


def confusion_matrix(pred_labels: object, ref_labels: object, n_classes: int) -> np.ndarray:
    """``(n_classes, n_classes)`` voxel counts; rows are reference labels, columns predicted.

    Label values must lie in ``0..n_classes-1``. Only non-background voxels are visited.
    """
    pred = _labels(pred_labels, "pred_labels")
    ref = _labels(ref_labels, "ref_labels")
    if pred.shape != ref.shape:
        raise ValueError(
            f"Predicted and reference label maps must be on the same grid; got shapes "
            f"{pred.shape} and {ref.shape}."
        )
    foreground = np.flatnonzero((pred != 0) | (ref != 0))
    p = pred.reshape(-1)[foreground].astype(np.int64)
    r = ref.reshape(-1)[foreground].astype(np.int64)
    for name, values in (("prediction", p), ("reference", r)):
        if values.size and (values.min() < 0 or values.max() >= n_classes):
            raise ValueError(
                f"The {name} has label values outside 0..{n_classes - 1} (found "
                f"{int(values.min())}..{int(values.max())}); pass the matching label names."
            )
    matrix = np.bincount(r * n_classes + p, minlength=n_classes * n_classes)
    matrix = matrix.reshape(n_classes, n_classes).astype(np.int64)
    matrix[0, 0] = pred.size - foreground.size
    return matrix


def dice_from_confusion(
    matrix: np.ndarray, label_names: Sequence[str] = SKELETON_LABELS
) -> dict[str, float]:
    """Per-region Dice (keyed by name), ``mean_region_dice`` and binary ``skeleton`` Dice."""
    matrix = np.asarray(matrix, dtype=np.float64)
    if matrix.shape != (len(label_names), len(label_names)):
        raise ValueError(
            f"Confusion matrix shape {matrix.shape} does not match {len(label_names)} label names."
        )
    result: dict[str, float] = {}
    for index, name in enumerate(label_names):
        if index == 0:
            continue
        denominator = matrix[index, :].sum() + matrix[:, index].sum()
        result[name] = float(2 * matrix[index, index] / denominator) if denominator else math.nan
    regions = [v for v in result.values() if not math.isnan(v)]
    result["mean_region_dice"] = float(np.mean(regions)) if regions else math.nan
    bone_both = matrix[1:, 1:].sum()
    bone_total = matrix[1:, :].sum() + matrix[:, 1:].sum()
    result["skeleton"] = float(2 * bone_both / bone_total) if bone_total else math.nan
    return result


def skeleton_dice(
    pred_labels: object, ref_labels: object, label_names: Sequence[str] = SKELETON_LABELS
) -> dict[str, float]:
    """Dice per bone region, their mean, and binary whole-skeleton Dice for one exam.

    >>> import numpy as np
    >>> ref = np.zeros((2, 2, 2), int); ref[0] = 1; ref[1] = 2
    >>> pred = ref.copy(); pred[1, 0] = 1
    >>> d = skeleton_dice(pred, ref, ("background", "a", "b"))
    >>> round(d["a"], 4), round(d["b"], 4), d["skeleton"]
    (0.8, 0.6667, 1.0)
    """
    return dice_from_confusion(
        confusion_matrix(pred_labels, ref_labels, len(label_names)), label_names
    )


def _labels(array: object, name: str) -> np.ndarray:
    if hasattr(array, "detach"):
        array = array.detach().cpu().numpy()  # type: ignore[attr-defined]
    labels = np.asarray(array)
    if labels.ndim != 3:
        raise ValueError(f"{name} must be a 3D label map, got shape {labels.shape}.")
    if labels.dtype.kind == "f":
        if not np.all(labels == np.round(labels)):
            raise ValueError(
                f"{name} holds non-integer values; pass label indices (argmax), not scores."
            )
        labels = labels.astype(np.int64)
    return labels


__all__ = ["confusion_matrix", "dice_from_confusion", "skeleton_dice"]
