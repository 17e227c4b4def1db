"""How well SAP's skeleton model segments bone in patients it never saw: its premise, measured.

SAP transfers a skeleton segmentation model. Whether that model knows the anatomy decides
whether the transfer can help, so the benchmark measures it on the tuning fold's patients
(never trained on by any model) wherever their cases carry a skeleton label map, as the
phantoms do. A weak skeleton model (too much or too little bone, regions confused) explains
a weak SAP arm before any lesion model is trained; ``FINDINGS.md`` has such a case.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np


def skeleton_quality(
    checkpoint: str | Path,
    cases: Sequence[Any],
    *,
    overlap: float = 0.25,
    batch_size: int = 16,
) -> dict[str, Any]:
    """Bone Dice, bone volume ratio and region Dice of the skeleton model on labelled cases.

    Args:
        checkpoint: the skeleton model (a ``sap fit`` / pretraining checkpoint).
        cases: :class:`sap.data.cases.Case` objects; those without a skeleton label map are
            left out (``cases`` in the result counts the ones used).
        overlap, batch_size: sliding-window settings of the prediction.

    Returns:
        ``{"cases", "foreground_dice", "volume_ratio", "mean_region_dice"}`` as medians over
        the cases, ``"region_dice"`` per bone region from the confusion matrix summed over
        the cases, and ``"per_case"``; all ``None`` when no case has a skeleton label map.
    """
    from sap.inference import Predictor, load_model
    from sap.labels import SKELETON_LABELS
    from sap.metrics.segmentation import confusion_matrix, dice_from_confusion
    from sap.volume import read_volume

    labelled = [case for case in cases if case.skeleton is not None]
    empty = {"cases": 0, "foreground_dice": None, "volume_ratio": None,
             "mean_region_dice": None, "region_dice": None, "per_case": {}}  # fmt: skip
    if not labelled:
        return empty
    predictor = Predictor(
        load_model(checkpoint, "cpu", task="skeleton"),
        overlap=overlap,
        batch_size=batch_size,
        memory_limit_bytes=None,
    )
    n = len(SKELETON_LABELS)
    total = np.zeros((n, n), dtype=np.int64)
    per_case = {}
    for case in labelled:
        predicted = predictor.predict(case).labels
        reference, _ = read_volume(case.skeleton, what="skeleton label map")
        if reference.shape != predicted.shape:
            raise ValueError(
                f"{case.skeleton}: skeleton label map of shape {reference.shape} is not on the "
                f"T1 grid of case '{case.case_id}' {predicted.shape}"
            )
        matrix = confusion_matrix(predicted, np.rint(reference).astype(np.int64), n)
        total += matrix
        dice = dice_from_confusion(matrix, SKELETON_LABELS)
        bone = matrix[1:, :].sum()
        per_case[case.case_id] = {
            "foreground_dice": dice["foreground"],
            "volume_ratio": float(matrix[:, 1:].sum() / bone) if bone else None,
            "mean_region_dice": dice["mean_class_dice"],
        }
    pooled = dice_from_confusion(total, SKELETON_LABELS)

    def median(name: str) -> float | None:
        values = [v[name] for v in per_case.values() if v[name] is not None]
        values = [v for v in values if not np.isnan(v)]
        return float(np.median(values)) if values else None

    return {
        "cases": len(labelled),
        "foreground_dice": median("foreground_dice"),
        "volume_ratio": median("volume_ratio"),
        "mean_region_dice": median("mean_region_dice"),
        "region_dice": {
            name: None if np.isnan(pooled[name]) else pooled[name] for name in SKELETON_LABELS[1:]
        },
        "per_case": per_case,
    }


__all__ = ["skeleton_quality"]
