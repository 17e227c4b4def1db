"""torchmetrics wrappers: the same numbers inside Lightning validation, across processes.

Every metric keeps per-exam / per-lesion rows as *list states* concatenated across
processes (``dist_reduce_fx="cat"``) or sums, so a DDP run reports exactly what one process
would report on all exams. Each ``update`` call evaluates whole exams on the CPU (connected
components are not a GPU job); inputs may live on any device.

Input shapes: one exam ``(D, H, W)``, a batch ``(B, D, H, W)`` or ``(B, 1, D, H, W)``.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np
import torch
from torchmetrics import Metric
from torchmetrics.utilities.data import dim_zero_cat

from sap.labels import SKELETON_LABELS
from sap.metrics.degenerate import DegeneratePredictionWarning
from sap.metrics.detection import DetectionSettings, evaluate_exam
from sap.metrics.froc import (
    DEFAULT_MAX_FP_PER_EXAM,
    DEFAULT_MAX_FP_PER_EXAM_LARGE,
    DEFAULT_MIN_PROB,
    ExamFROC,
    exam_froc,
    pooled_froc_curve,
)
from sap.metrics.overlap import DEFAULT_NSD_TOLERANCE_MM
from sap.metrics.segmentation import confusion_matrix, dice_from_confusion
from sap.metrics.summary import summarise

#: Columns of the per-exam rows kept by :class:`LesionDetection` (see ExamResult.metrics).
EXAM_COLUMNS: tuple[str, ...] = (
    "n_lesions",
    "tp",
    "fn",
    "fp",
    "n_pred_components",
    "n_pred_matched",
    "sensitivity",
    "precision",
    "f_beta",
    "n_lesions_large",
    "tp_large",
    "fn_large",
    "fp_large",
    "sensitivity_large",
    "precision_large",
    "f_beta_large",
    "dice_detected_mean",
    "nsd_detected_mean",
    "mean_lesion_dice",
    "global_dice",
    "ref_volume_ml",
    "pred_volume_ml",
    "intersection_volume_ml",
    "merged_predictions",
    "max_lesions_per_prediction",
    "volume_ratio",
    "pred_fraction",
    "degenerate",
)
LESION_COLUMNS: tuple[str, ...] = ("volume_ml", "large", "detected", "dice", "nsd")


def _exams(tensor: object, name: str) -> list[np.ndarray]:
    """Split an input into 3D numpy volumes, one per exam."""
    if isinstance(tensor, torch.Tensor):
        array = tensor.detach().cpu().numpy()
    else:
        array = np.asarray(tensor)
    if array.ndim == 3:
        return [array]
    if array.ndim == 4:
        return list(array)
    if array.ndim == 5 and array.shape[1] == 1:
        return list(array[:, 0])
    raise ValueError(
        f"{name} must be (D, H, W), (B, D, H, W) or (B, 1, D, H, W); got shape {tuple(array.shape)}. "
        f"For a 2-channel softmax pass its lesion channel, e.g. probs[:, 1]."
    )


def _spacings(spacing_mm: object, default: object, n: int) -> list[np.ndarray]:
    """One spacing triple per exam, from an argument, a default, or a (B, 3) tensor."""
    value = default if spacing_mm is None else spacing_mm
    if value is None:
        raise ValueError(
            "spacing_mm is needed to turn voxels into mL and mm: pass it to update() (a triple, "
            "or a (B, 3) tensor; sap.metrics.spacing_from_affine(affine) gives it from a batch "
            "affine) or to the metric's constructor."
        )
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu().numpy()
    array = np.asarray(value, dtype=np.float64)
    if array.ndim == 2:
        if array.shape[0] != n:
            raise ValueError(f"Got {array.shape[0]} spacings for {n} exams.")
        return list(array)
    return [array] * n


def _inputs(
    preds: object,
    target: object,
    spacing_mm: object,
    body_mask: object,
    default_spacing: object,
    what: str,
) -> list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray | None]]:
    """``(prediction, target, spacing, body mask or None)`` per exam of an ``update`` call."""
    pred_list = _exams(preds, "preds")
    target_list = _exams(target, "target")
    if len(pred_list) != len(target_list):
        raise ValueError(f"Got {len(pred_list)} {what} for {len(target_list)} targets.")
    spacings = _spacings(spacing_mm, default_spacing, len(pred_list))
    bodies = [None] * len(pred_list) if body_mask is None else _exams(body_mask, "body_mask")
    if len(bodies) != len(pred_list):
        raise ValueError(f"Got {len(bodies)} body masks for {len(pred_list)} {what}.")
    return list(zip(pred_list, target_list, spacings, bodies))


def _cat(state: object, width: int) -> torch.Tensor:
    if isinstance(state, list) and not state:
        return torch.zeros((0, width), dtype=torch.float64)
    return dim_zero_cat(state).reshape(-1, width).to(torch.float64)


class LesionDetection(Metric):
    """Lesion detection and segmentation metrics of :mod:`sap.metrics.detection`.

    Args:
        connectivity: 6, 18 or 26 (default 26) for both prediction and reference.
        min_volume_ml: volume limit of the large subset (default 1 mL).
        nsd_tolerance_mm: NSD tolerance (default 2 mm).
        nsd_variant: ``"boundary"`` (default) or ``"area"``.
        beta: β of F-beta (default 2).
        threshold: float predictions are binarised with ``preds >= threshold``; boolean or
            integer predictions are used as they are (non-zero = lesion).
        spacing_mm: default voxel spacing when ``update`` gets none.

    ``update(preds, target, spacing_mm=None, body_mask=None)``; ``compute()`` returns scalar
    tensors: for every per-exam metric of :data:`sap.metrics.summary.EXAM_METRICS`
    (sensitivity, precision, fp_per_exam, f_beta, mean_lesion_dice, global_dice, ``*_large``,
    volumes, ``volume_ratio`` and ``merged_predictions``) the pooled value under its name
    (``merged_predictions``: the total over exams; ``volume_ratio``: total predicted / total
    reference volume) and the median over exams as ``<name>_median``; ``dice_detected`` /
    ``nsd_detected`` (mean over detected lesions) with their medians; ``patient_mean_dice``
    (the paper's per-patient mean lesion Dice, missed lesions 0, averaged over exams with
    lesions); ``degenerate_exams`` (exams flagged as degenerate predictions, with one
    :class:`~sap.metrics.DegeneratePredictionWarning` per ``compute()``);
    ``icc_total_volume``; ``n_exams``, ``n_lesions``. Undefined values are NaN.
    """

    is_differentiable = False
    higher_is_better = None
    full_state_update = False

    def __init__(
        self,
        connectivity: int = 26,
        min_volume_ml: float = 1.0,
        nsd_tolerance_mm: float = DEFAULT_NSD_TOLERANCE_MM,
        nsd_variant: str = "boundary",
        beta: float = 2.0,
        threshold: float = 0.5,
        spacing_mm: Sequence[float] | None = None,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        self.settings = DetectionSettings(
            connectivity=connectivity,
            min_volume_ml=min_volume_ml,
            nsd_tolerance_mm=nsd_tolerance_mm,
            nsd_variant=nsd_variant,
            beta=beta,
        )
        self.threshold = float(threshold)
        self.spacing_mm = spacing_mm
        # Rows are stored flattened (1-D) in float64, so that a process that saw no exam
        # (torchmetrics then syncs an empty 1-D tensor of the metric's dtype) still concatenates.
        self.add_state("exam_stats", default=[], dist_reduce_fx="cat")
        self.add_state("lesion_stats", default=[], dist_reduce_fx="cat")
        self.set_dtype(torch.float64)

    def update(
        self,
        preds: torch.Tensor,
        target: torch.Tensor,
        spacing_mm: object = None,
        body_mask: object = None,
    ) -> None:
        """Evaluate each exam of the batch and keep its rows (``body_mask``: optional, like
        ``target``; the degenerate flag then counts body voxels)."""
        for pred, ref, spacing, body in _inputs(
            preds, target, spacing_mm, body_mask, self.spacing_mm, "predictions"
        ):
            if pred.dtype.kind == "f":
                pred = pred >= np.float64(self.threshold)
            result = evaluate_exam(pred, ref, spacing, self.settings, body_mask=body, warn=False)
            row = result.metrics()
            self.exam_stats.append(
                torch.tensor(
                    [row[c] for c in EXAM_COLUMNS], dtype=torch.float64, device=self.device
                )
            )
            lesions = [
                [
                    lesion.volume_ml,
                    float(lesion.large),
                    float(lesion.detected),
                    lesion.dice,
                    lesion.nsd,
                ]
                for lesion in result.lesions
            ]
            self.lesion_stats.append(
                torch.tensor(lesions, dtype=torch.float64, device=self.device).reshape(-1)
            )

    def compute(self) -> dict[str, torch.Tensor]:
        """Scalar tensors (see the class docstring)."""
        exams = _cat(self.exam_stats, len(EXAM_COLUMNS)).cpu().numpy()
        lesions = _cat(self.lesion_stats, len(LESION_COLUMNS)).cpu().numpy()
        if exams.shape[0] == 0:
            raise ValueError("LesionDetection.compute() called before any update().")
        exam_rows = [dict(zip(EXAM_COLUMNS, row), case_id=str(i)) for i, row in enumerate(exams)]
        lesion_rows = [
            {
                "volume_ml": r[0],
                "large": bool(r[1]),
                "detected": bool(r[2]),
                "dice": r[3],
                "nsd": r[4],
            }
            for r in lesions
        ]
        summary = summarise(exam_rows, lesion_rows, self.settings, bootstrap=None)
        out: dict[str, float] = {}
        for name, stats in summary["metrics"].items():
            out[name] = stats["pooled"]
            out[f"{name}_median"] = stats["median"]
        per_patient = exams[:, EXAM_COLUMNS.index("mean_lesion_dice")]
        per_patient = per_patient[np.isfinite(per_patient)]
        out["patient_mean_dice"] = float(per_patient.mean()) if per_patient.size else np.nan
        n_degenerate = int(exams[:, EXAM_COLUMNS.index("degenerate")].sum())
        out["degenerate_exams"] = n_degenerate
        if n_degenerate:
            warnings.warn(
                f"{n_degenerate} of {exams.shape[0]} exams look like degenerate predictions (one "
                "component over many lesions, or most of the volume predicted): their "
                "sensitivity, precision and F2 are not meaningful; watch patient_mean_dice and "
                "volume_ratio (docs/metrics.md, 'Degenerate predictions').",
                DegeneratePredictionWarning,
                stacklevel=2,
            )
        out["icc_total_volume"] = summary["icc_2_1_total_volume"]
        out["n_exams"] = summary["n_exams"]
        out["n_lesions"] = summary["n_lesions"]
        return {
            k: torch.tensor(np.nan if v is None else float(v), dtype=torch.float64)
            for k, v in out.items()
        }


class LesionFROC(Metric):
    """FROC-AUC from probability maps (exact at every threshold ``>= min_prob``).

    Args:
        connectivity, min_volume_ml: as in :class:`LesionDetection`.
        min_prob: lowest threshold swept (default 0.01).
        max_fp_per_exam: AUC limit for all lesions (default 15).
        max_fp_per_exam_large: AUC limit for the large subset (default 4).
        spacing_mm: default voxel spacing when ``update`` gets none.

    ``update(probs, target, spacing_mm=None, body_mask=None)``; ``compute()`` returns
    ``froc_auc``, ``froc_auc_large`` (not normalised, as the paper) and
    ``froc_auc_normalised``, ``froc_auc_large_normalised`` (divided by the limit: mean
    sensitivity), and ``degenerate_exams``: exams whose maps are (near-)constant or at or
    above ``min_prob`` over most of the volume. A constant map reaches the maximum AUC, so
    ``compute()`` warns (:class:`~sap.metrics.DegeneratePredictionWarning`) when any is.
    """

    is_differentiable = False
    higher_is_better = True
    full_state_update = False

    def __init__(
        self,
        connectivity: int = 26,
        min_volume_ml: float = 1.0,
        min_prob: float = DEFAULT_MIN_PROB,
        max_fp_per_exam: float = DEFAULT_MAX_FP_PER_EXAM,
        max_fp_per_exam_large: float = DEFAULT_MAX_FP_PER_EXAM_LARGE,
        spacing_mm: Sequence[float] | None = None,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        DetectionSettings(connectivity=connectivity, min_volume_ml=min_volume_ml)
        self.connectivity = connectivity
        self.min_volume_ml = float(min_volume_ml)
        self.min_prob = float(min_prob)
        self.max_fp_per_exam = float(max_fp_per_exam)
        self.max_fp_per_exam_large = float(max_fp_per_exam_large)
        self.spacing_mm = spacing_mm
        for name in (
            "lesion_max_prob",
            "lesion_large",
            "fp_values",
            "fp_deltas",
            "fp_large_values",
            "fp_large_deltas",
        ):
            self.add_state(name, default=[], dist_reduce_fx="cat")
        self.set_dtype(torch.float64)
        self.add_state("n_exams", default=torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")
        self.add_state(
            "n_degenerate", default=torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum"
        )

    def update(
        self,
        probs: torch.Tensor,
        target: torch.Tensor,
        spacing_mm: object = None,
        body_mask: object = None,
    ) -> None:
        """Reduce each exam's probability map to its FROC events."""
        for prob, ref, spacing, body in _inputs(
            probs, target, spacing_mm, body_mask, self.spacing_mm, "probability maps"
        ):
            exam = exam_froc(
                prob,
                ref,
                spacing,
                connectivity=self.connectivity,
                min_volume_ml=self.min_volume_ml,
                min_prob=self.min_prob,
                body_mask=body,
                warn=False,
            )
            self.n_degenerate += int(bool(exam.flags))
            for name in (
                "lesion_max_prob",
                "lesion_large",
                "fp_values",
                "fp_deltas",
                "fp_large_values",
                "fp_large_deltas",
            ):
                value = np.asarray(getattr(exam, name), dtype=np.float64)
                getattr(self, name).append(torch.from_numpy(value).to(self.device))
            self.n_exams += 1

    def pooled(self) -> ExamFROC:
        """All accumulated exams as one pooled pseudo-exam (see :func:`sap.metrics.froc.pool_exams`)."""

        def get(name: str) -> np.ndarray:
            return _cat(getattr(self, name), 1).reshape(-1).cpu().numpy()

        return ExamFROC(
            lesion_max_prob=get("lesion_max_prob"),
            lesion_volume_ml=np.zeros(0),
            lesion_large=get("lesion_large").astype(bool),
            fp_values=get("fp_values"),
            fp_deltas=get("fp_deltas").astype(np.int64),
            fp_large_values=get("fp_large_values"),
            fp_large_deltas=get("fp_large_deltas").astype(np.int64),
            min_prob=self.min_prob,
            connectivity=self.connectivity,
            min_volume_ml=self.min_volume_ml,
        )

    def compute(self) -> dict[str, torch.Tensor]:
        """FROC-AUCs (see the class docstring)."""
        n_exams = int(self.n_exams)
        if n_exams == 0:
            raise ValueError("LesionFROC.compute() called before any update().")
        pooled = self.pooled()
        auc = pooled_froc_curve(pooled, n_exams).auc(self.max_fp_per_exam)
        auc_large = pooled_froc_curve(pooled, n_exams, large=True).auc(self.max_fp_per_exam_large)
        values = {
            "froc_auc": auc,
            "froc_auc_normalised": auc / self.max_fp_per_exam,
            "froc_auc_large": auc_large,
            "froc_auc_large_normalised": auc_large / self.max_fp_per_exam_large,
            "degenerate_exams": float(self.n_degenerate),
        }
        if int(self.n_degenerate):
            warnings.warn(
                f"{int(self.n_degenerate)} of {n_exams} probability maps are (near-)constant or "
                f">= min_prob={self.min_prob:g} over most of the volume; a constant map reaches "
                "the maximum FROC-AUC, so this AUC is not meaningful (docs/metrics.md, "
                "'Degenerate predictions').",
                DegeneratePredictionWarning,
                stacklevel=2,
            )
        return {k: torch.tensor(v, dtype=torch.float64) for k, v in values.items()}


class SkeletonDice(Metric):
    """Per-region Dice and binary whole-skeleton Dice, pooled over all voxels of all exams.

    Args:
        label_names: class names, index 0 background (default: the 10 skeleton labels).

    ``update(preds, target)`` takes label maps (argmax already taken) shaped like the
    inputs of :class:`LesionDetection`. ``compute()`` returns the numbers of
    :func:`sap.metrics.class_dice` on the summed confusion matrix, under skeleton names:
    ``dice_<region>`` per region, ``mean_region_dice`` (``mean_class_dice``) and
    ``skeleton_dice`` (``foreground``); NaN for a region absent everywhere.
    """

    is_differentiable = False
    higher_is_better = True
    full_state_update = False

    def __init__(self, label_names: Sequence[str] = SKELETON_LABELS, **kwargs) -> None:
        super().__init__(**kwargs)
        self.label_names = tuple(label_names)
        k = len(self.label_names)
        self.add_state(
            "confusion", default=torch.zeros((k, k), dtype=torch.long), dist_reduce_fx="sum"
        )

    def update(self, preds: torch.Tensor, target: torch.Tensor) -> None:
        """Add each exam's confusion matrix."""
        for pred, ref in zip(_exams(preds, "preds"), _exams(target, "target"), strict=True):
            matrix = confusion_matrix(pred, ref, len(self.label_names))
            self.confusion += torch.from_numpy(matrix).to(self.confusion.device)

    def compute(self) -> dict[str, torch.Tensor]:
        """Dice values (see the class docstring)."""
        result = dice_from_confusion(self.confusion.cpu().numpy(), self.label_names)
        out = {f"dice_{name}": result[name] for name in self.label_names[1:]}
        out["mean_region_dice"] = result["mean_class_dice"]
        out["skeleton_dice"] = result["foreground"]
        return {key: torch.tensor(value, dtype=torch.float64) for key, value in out.items()}


__all__ = ["LesionDetection", "LesionFROC", "SkeletonDice"]
