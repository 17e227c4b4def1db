"""Lesion detection and per-lesion segmentation quality of one exam, as in the SAP paper.

Reference lesions and predicted components (connected components, one connectivity) are
matched by any overlap, many-to-many; each lesion gets its Dice and NSD against the union
of the components touching it. Definitions of every count and ratio, the ≥ 1 mL subset
and the known weakness of any-overlap matching: ``docs/metrics.md`` ("Detection"); what
exposes it (``merged_predictions``, ``volume_ratio`` and the degenerate-prediction flags):
``docs/metrics.md`` ("Degenerate predictions").
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

import numpy as np

from sap.metrics.degenerate import covered_fraction, mask_flags, warn_degenerate
from sap.metrics.overlap import (
    DEFAULT_NSD_TOLERANCE_MM,
    _check_tolerance,
    _check_variant,
    dice_from_counts,
    surface_dice_in_crop,
)
from sap.volume import (
    DEFAULT_CONNECTIVITY,
    Components,
    as_mask,
    check_connectivity,
    check_spacing,
    find_components,
    min_voxels_for_volume,
    voxel_volume_ml,
)


@dataclass(frozen=True)
class DetectionSettings:
    """Everything that changes a detection number; written next to every report.

    Args:
        connectivity: neighbourhood for connected components (6, 18 or 26).
        min_volume_ml: lower volume limit of the "large" subset, in mL.
        nsd_tolerance_mm: NSD tolerance in mm.
        nsd_variant: ``"boundary"`` or ``"area"`` (see :mod:`sap.metrics.overlap`).
        beta: the β of F-beta (2 in the paper).
    """

    connectivity: int = DEFAULT_CONNECTIVITY
    min_volume_ml: float = 1.0
    nsd_tolerance_mm: float = DEFAULT_NSD_TOLERANCE_MM
    nsd_variant: str = "boundary"
    beta: float = 2.0

    def __post_init__(self) -> None:
        check_connectivity(self.connectivity)
        _check_tolerance(self.nsd_tolerance_mm)
        _check_variant(self.nsd_variant)
        if not math.isfinite(self.min_volume_ml) or self.min_volume_ml < 0:
            raise ValueError(f"min_volume_ml must be >= 0 mL, got {self.min_volume_ml!r}.")
        if not math.isfinite(self.beta) or self.beta <= 0:
            raise ValueError(f"beta must be a positive number (2 for F2), got {self.beta!r}.")

    def to_dict(self) -> dict[str, object]:
        """Plain dict for JSON reports."""
        return asdict(self)


def sensitivity(tp: float, fn: float) -> float:
    """TP / (TP + FN); NaN when there is nothing to detect."""
    total = tp + fn
    return float(tp / total) if total else math.nan


def precision(tp: float, fp: float) -> float:
    """TP / (TP + FP); NaN when nothing was predicted and nothing detected."""
    total = tp + fp
    return float(tp / total) if total else math.nan


def f_beta(tp: float, fn: float, fp: float, beta: float = 2.0) -> float:
    """(1 + β²)TP / ((1 + β²)TP + β²FN + FP); 1.0 when TP = FN = FP = 0.

    >>> f_beta(tp=1, fn=1, fp=0)
    0.5555555555555556
    """
    b2 = beta * beta
    denominator = (1 + b2) * tp + b2 * fn + fp
    return float((1 + b2) * tp / denominator) if denominator else 1.0


@dataclass(frozen=True)
class LesionRecord:
    """One reference lesion of one exam.

    Attributes:
        lesion_id: its label among the reference components (1..n, in labelling order).
        volume_ml: its volume.
        centroid_voxel: mean voxel index along array axes 0, 1, 2.
        large: volume ≥ ``min_volume_ml``.
        detected: some predicted component overlaps it.
        n_pred_components: number of predicted components touching it.
        dice: Dice against the union of those components (NaN when missed).
        nsd: NSD against that union (NaN when missed).
    """

    lesion_id: int
    volume_ml: float
    centroid_voxel: tuple[float, float, float]
    large: bool
    detected: bool
    n_pred_components: int
    dice: float
    nsd: float


@dataclass(frozen=True)
class ExamResult:
    """Detection and segmentation results of one exam (definitions: ``docs/metrics.md``)."""

    settings: DetectionSettings
    spacing_mm: tuple[float, float, float]
    n_lesions: int
    tp: int
    fn: int
    n_pred_components: int
    n_pred_matched: int
    fp: int
    n_lesions_large: int
    tp_large: int
    fn_large: int
    fp_large: int
    ref_volume_ml: float
    pred_volume_ml: float
    intersection_volume_ml: float
    lesions: tuple[LesionRecord, ...] = ()
    fp_volumes_ml: tuple[float, ...] = field(default=())
    merged_predictions: int = 0
    max_lesions_per_prediction: int = 0
    pred_fraction: float = 0.0
    flags: tuple[str, ...] = ()

    @property
    def volume_ratio(self) -> float:
        """Predicted / reference lesion volume; NaN without reference lesions."""
        return self.pred_volume_ml / self.ref_volume_ml if self.ref_volume_ml else math.nan

    def metrics(self) -> dict[str, float]:
        """Per-exam numbers as a flat dict (one row of the per-exam table)."""
        beta = self.settings.beta
        detected = [lesion for lesion in self.lesions if lesion.detected]
        lesion_dice = [lesion.dice if lesion.detected else 0.0 for lesion in self.lesions]
        return {
            "n_lesions": float(self.n_lesions),
            "tp": float(self.tp),
            "fn": float(self.fn),
            "fp": float(self.fp),
            "n_pred_components": float(self.n_pred_components),
            "n_pred_matched": float(self.n_pred_matched),
            "sensitivity": sensitivity(self.tp, self.fn),
            "precision": precision(self.tp, self.fp),
            "f_beta": f_beta(self.tp, self.fn, self.fp, beta),
            "n_lesions_large": float(self.n_lesions_large),
            "tp_large": float(self.tp_large),
            "fn_large": float(self.fn_large),
            "fp_large": float(self.fp_large),
            "sensitivity_large": sensitivity(self.tp_large, self.fn_large),
            "precision_large": precision(self.tp_large, self.fp_large),
            "f_beta_large": f_beta(self.tp_large, self.fn_large, self.fp_large, beta),
            "dice_detected_mean": _mean([lesion.dice for lesion in detected]),
            "nsd_detected_mean": _mean([lesion.nsd for lesion in detected]),
            "mean_lesion_dice": _mean(lesion_dice),
            "global_dice": dice_from_counts(
                self.intersection_volume_ml, self.pred_volume_ml, self.ref_volume_ml
            ),
            "ref_volume_ml": self.ref_volume_ml,
            "pred_volume_ml": self.pred_volume_ml,
            "intersection_volume_ml": self.intersection_volume_ml,
            "merged_predictions": float(self.merged_predictions),
            "max_lesions_per_prediction": float(self.max_lesions_per_prediction),
            "volume_ratio": self.volume_ratio,
            "pred_fraction": self.pred_fraction,
            "degenerate": float(bool(self.flags)),
        }


def _mean(values: Sequence[float]) -> float:
    return float(np.mean(values)) if len(values) else math.nan


def evaluate_exam(
    pred_mask: object,
    ref_mask: object,
    spacing_mm: Sequence[float] | np.ndarray | float,
    settings: DetectionSettings | None = None,
    *,
    segmentation: bool = True,
    body_mask: object | None = None,
    warn: bool = True,
) -> ExamResult:
    """Match predicted and reference lesions of one exam and score them.

    Args:
        pred_mask: binarised prediction, 3D array or tensor (non-zero = lesion).
        ref_mask: reference lesion mask on the same grid.
        spacing_mm: voxel size in mm along array axes 0, 1, 2.
        settings: connectivity, volume limit, NSD tolerance/variant, β.
        segmentation: compute per-lesion NSD (the only part that needs crops; Dice is
            computed from counts). Off for fast sweeps.
        body_mask: the patient's body on the same grid (optional): the "covers most of the
            body" flag then counts body voxels instead of all voxels.
        warn: raise a :class:`~sap.metrics.degenerate.DegeneratePredictionWarning` when the
            prediction is flagged (``result.flags``).

    Returns:
        An :class:`ExamResult`; ``.metrics()`` gives the per-exam row, ``.lesions`` the
        per-lesion rows.

    Example (one blob over everything "detects" both lesions with no false positive):
        >>> import numpy as np
        >>> ref = np.zeros((8, 8, 8), bool); ref[1, 1, 1] = ref[6, 6, 6] = True
        >>> result = evaluate_exam(np.ones((8, 8, 8)), ref, 1.0, warn=False)
        >>> result.tp, result.fp, result.merged_predictions, result.volume_ratio
        (2, 0, 1, 256.0)
        >>> result.flags[0]
        'one predicted component covers 2 of 2 reference lesions'
    """
    settings = settings or DetectionSettings()
    pred = as_mask(pred_mask, "pred_mask")
    ref = as_mask(ref_mask, "ref_mask")
    if pred.shape != ref.shape:
        raise ValueError(
            f"Prediction and reference must be on the same voxel grid; got shapes {pred.shape} "
            f"(prediction) and {ref.shape} (reference)."
        )
    spacing = check_spacing(spacing_mm)
    voxel_ml = voxel_volume_ml(spacing)
    min_voxels = min_voxels_for_volume(settings.min_volume_ml, spacing)
    ref_c = find_components(ref, settings.connectivity)
    pred_c = find_components(pred, settings.connectivity)
    overlap = _Overlap.of(ref_c, pred_c)
    fp_labels = np.flatnonzero(~overlap.matched_pred[1:]) + 1
    fp_voxels = pred_c.voxel_counts[fp_labels]
    lesions = tuple(
        _lesion_record(label, overlap, ref_c, pred_c, spacing, settings, min_voxels, segmentation)
        for label in range(1, ref_c.count + 1)
    )
    n_large = sum(lesion.large for lesion in lesions)
    tp = sum(lesion.detected for lesion in lesions)
    tp_large = sum(lesion.detected and lesion.large for lesion in lesions)
    body = None if body_mask is None else as_mask(body_mask, "body_mask")
    lesions_per_pred = np.bincount(overlap.pair_pred, minlength=pred_c.count + 1)
    max_per_pred = int(lesions_per_pred.max(initial=0))
    covered = covered_fraction(pred, body)
    flags = mask_flags(max_per_pred, ref_c.count, covered)
    if warn:
        warn_degenerate(flags)
    return ExamResult(
        settings=settings,
        spacing_mm=tuple(float(s) for s in spacing),  # type: ignore[arg-type]
        n_lesions=ref_c.count,
        tp=tp,
        fn=ref_c.count - tp,
        n_pred_components=pred_c.count,
        n_pred_matched=int(overlap.matched_pred[1:].sum()),
        fp=int(fp_labels.size),
        n_lesions_large=n_large,
        tp_large=tp_large,
        fn_large=n_large - tp_large,
        fp_large=int(np.count_nonzero(fp_voxels >= min_voxels)),
        ref_volume_ml=ref_c.flat_index.size * voxel_ml,
        pred_volume_ml=pred_c.flat_index.size * voxel_ml,
        intersection_volume_ml=overlap.n_voxels * voxel_ml,
        lesions=lesions,
        fp_volumes_ml=tuple(float(v) * voxel_ml for v in fp_voxels),
        merged_predictions=int(np.count_nonzero(lesions_per_pred >= 2)),
        max_lesions_per_prediction=max_per_pred,
        pred_fraction=covered[0],
        flags=flags,
    )


@dataclass(frozen=True)
class _Overlap:
    """Which predicted components touch which reference lesion, and by how many voxels.

    Pairs are sorted by reference label; the pairs of lesion ``l`` are
    ``slice(starts[l], starts[l + 1])``.
    """

    pair_pred: np.ndarray
    pair_voxels: np.ndarray
    starts: np.ndarray
    matched_pred: np.ndarray
    n_voxels: int

    @classmethod
    def of(cls, ref_c: Components, pred_c: Components) -> _Overlap:
        # Voxels in both masks, found by merging the two sorted foreground index lists: no
        # pass over the full volume.
        pos = np.searchsorted(pred_c.flat_index, ref_c.flat_index)
        pos_clipped = np.minimum(pos, max(pred_c.flat_index.size - 1, 0))
        hit = (
            pred_c.flat_index[pos_clipped] == ref_c.flat_index
            if pred_c.flat_index.size
            else np.zeros(ref_c.flat_index.size, dtype=bool)
        )
        pair_key = ref_c.flat_label[hit] * (pred_c.count + 1) + pred_c.flat_label[pos_clipped[hit]]
        keys, pair_voxels = np.unique(pair_key, return_counts=True)
        pair_ref, pair_pred = np.divmod(keys, pred_c.count + 1)
        matched_pred = np.zeros(pred_c.count + 1, dtype=bool)
        matched_pred[pair_pred] = True
        return cls(
            pair_pred=pair_pred,
            pair_voxels=pair_voxels,
            starts=np.searchsorted(pair_ref, np.arange(ref_c.count + 2)),
            matched_pred=matched_pred,
            n_voxels=int(hit.sum()),
        )

    def touching(self, label: int) -> tuple[np.ndarray, np.ndarray]:
        """Predicted components touching lesion ``label`` and the voxels each shares with it."""
        part = slice(self.starts[label], self.starts[label + 1])
        return self.pair_pred[part], self.pair_voxels[part]


def _lesion_record(
    label: int,
    overlap: _Overlap,
    ref_c: Components,
    pred_c: Components,
    spacing: np.ndarray,
    settings: DetectionSettings,
    min_voxels: int,
    segmentation: bool,
) -> LesionRecord:
    """Detection, Dice and NSD of reference lesion ``label``."""
    touching, shared = overlap.touching(label)
    volume = int(ref_c.voxel_counts[label])
    detected = touching.size > 0
    lesion_dice = lesion_nsd = math.nan
    if detected:
        lesion_dice = dice_from_counts(
            float(shared.sum()), float(pred_c.voxel_counts[touching].sum()), volume
        )
        if segmentation:
            lesion_nsd = _lesion_nsd(label, touching, ref_c, pred_c, spacing, settings)
    return LesionRecord(
        lesion_id=label,
        volume_ml=volume * voxel_volume_ml(spacing),
        centroid_voxel=tuple(float(c) for c in ref_c.centroid_voxel[label]),  # type: ignore[arg-type]
        large=volume >= min_voxels,
        detected=detected,
        n_pred_components=int(touching.size),
        dice=lesion_dice,
        nsd=lesion_nsd,
    )


def _lesion_nsd(
    label: int,
    touching: np.ndarray,
    ref_c: Components,
    pred_c: Components,
    spacing: np.ndarray,
    settings: DetectionSettings,
) -> float:
    """NSD of one lesion against the union of its touching components, inside their joint box."""
    start = ref_c.bbox_start[label].copy()
    stop = ref_c.bbox_stop[label].copy()
    start = np.minimum(start, pred_c.bbox_start[touching].min(axis=0))
    stop = np.maximum(stop, pred_c.bbox_stop[touching].max(axis=0))
    crop = tuple(slice(int(a), int(b)) for a, b in zip(start, stop))
    lesion = ref_c.labels[crop] == label
    union = np.isin(pred_c.labels[crop], touching)
    return surface_dice_in_crop(
        union, lesion, spacing, settings.nsd_tolerance_mm, settings.nsd_variant
    )


__all__ = [
    "DetectionSettings",
    "ExamResult",
    "LesionRecord",
    "evaluate_exam",
    "f_beta",
    "precision",
    "sensitivity",
]
