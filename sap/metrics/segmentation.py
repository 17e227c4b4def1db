"""Multi-class segmentation Dice (per class, their mean, and binary foreground) for any model.

Every number comes from one confusion matrix of reference against predicted labels, so
matrices can be summed over exams (and processes) before the ratios are taken. Definitions
and the NaN convention for absent classes: ``docs/metrics.md`` ("Class Dice").
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np


def confusion_matrix(pred_labels: object, ref_labels: object, n_classes: int) -> np.ndarray:
    """``(n_classes, n_classes)`` voxel counts; rows are reference labels, columns predicted.

    Label values must lie in ``0..n_classes-1``. Only non-background voxels are visited.

    >>> ref = np.array([0, 1, 1, 2]).reshape(1, 1, 4)
    >>> confusion_matrix(ref, ref, 3).diagonal().tolist()
    [1, 2, 1]
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


def dice_from_confusion(matrix: np.ndarray, label_names: Sequence[str]) -> dict[str, float]:
    """Dice per class (keyed by name, background left out), ``mean_class_dice``, ``foreground``.

    ``foreground`` is the binary Dice of all non-background labels together.
    """
    matrix = np.asarray(matrix, dtype=np.float64)
    if matrix.shape != (len(label_names), len(label_names)):
        raise ValueError(
            f"Confusion matrix shape {matrix.shape} does not match {len(label_names)} label names."
        )
    clash = set(label_names[1:]) & {"mean_class_dice", "foreground"}
    if clash:
        raise ValueError(
            f"Class names {sorted(clash)} collide with the summary keys of class_dice; rename "
            f"those classes."
        )
    result: dict[str, float] = {}
    for index, name in enumerate(label_names):
        if index == 0:
            continue
        denominator = matrix[index, :].sum() + matrix[:, index].sum()
        result[name] = float(2 * matrix[index, index] / denominator) if denominator else math.nan
    present = [v for v in result.values() if not math.isnan(v)]
    result["mean_class_dice"] = float(np.mean(present)) if present else math.nan
    both = matrix[1:, 1:].sum()
    total = matrix[1:, :].sum() + matrix[:, 1:].sum()
    result["foreground"] = float(2 * both / total) if total else math.nan
    return result


def class_dice(
    pred_labels: object, ref_labels: object, label_names: Sequence[str]
) -> dict[str, float]:
    """Dice per class, their mean and the binary foreground Dice of one exam.

    Args:
        pred_labels: predicted label map (3D, class indices; argmax already taken).
        ref_labels: reference label map on the same grid.
        label_names: class names, index 0 background.

    Returns:
        ``{class name: Dice, "mean_class_dice": ..., "foreground": ...}``; a class absent
        from both maps is NaN and left out of the mean.

    >>> ref = np.zeros((2, 2, 2), int); ref[0] = 1; ref[1] = 2
    >>> pred = ref.copy(); pred[1, 0] = 1
    >>> d = class_dice(pred, ref, ("background", "a", "b"))
    >>> round(d["a"], 4), round(d["b"], 4), d["foreground"]
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


__all__ = ["class_dice", "confusion_matrix", "dice_from_confusion"]
