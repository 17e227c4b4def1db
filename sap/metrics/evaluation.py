"""The paper's whole evaluation of a set of exams, from Python: tables and one summary dict.

:class:`Evaluation` takes exams one at a time (so whole-body volumes never pile up in
memory) and produces the per-lesion table, the per-exam table and a summary with medians
and bootstrap CIs; :func:`evaluate_exams` is the one-call version for arrays in memory.

Levels, as in the paper: per-patient numbers (sensitivity, precision, FP per exam, F2,
per-patient mean lesion Dice with missed lesions 0, global Dice, and the same on the large
subset) are summarised by their median over exams; Dice and NSD of detected lesions by their
median over lesions. ``pooled`` gives the dataset-level counterpart (sums of counts over
exams; FP per exam is the mean). ICC(2,1) compares total tumour volumes over exams. With
probability maps the FROC and its AUC are added (see :mod:`sap.metrics.froc`).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from sap.metrics.detection import (
    DetectionSettings,
    ExamResult,
    evaluate_exam,
    f_beta,
    precision,
    sensitivity,
)
from sap.metrics.froc import (
    DEFAULT_MAX_FP_PER_EXAM,
    DEFAULT_MAX_FP_PER_EXAM_LARGE,
    DEFAULT_MIN_PROB,
    ExamFROC,
    exam_froc,
    froc_curve,
)
from sap.metrics.stats import (
    DEFAULT_CONFIDENCE_LEVEL,
    DEFAULT_N_RESAMPLES,
    DEFAULT_SEED,
    median_ci,
)
from sap.metrics.volume import volume_icc

#: Version of the summary layout, written into every summary.
SUMMARY_FORMAT = 1

#: Per-exam metrics summarised by their median over exams: summary name -> per-exam column.
EXAM_METRICS: dict[str, str] = {
    "sensitivity": "sensitivity",
    "precision": "precision",
    "fp_per_exam": "fp",
    "f_beta": "f_beta",
    "mean_lesion_dice": "mean_lesion_dice",
    "global_dice": "global_dice",
    "sensitivity_large": "sensitivity_large",
    "precision_large": "precision_large",
    "fp_per_exam_large": "fp_large",
    "f_beta_large": "f_beta_large",
    "ref_volume_ml": "ref_volume_ml",
    "pred_volume_ml": "pred_volume_ml",
}

#: Per-lesion metrics over detected lesions: summary name -> per-lesion column.
LESION_METRICS: dict[str, str] = {"dice_detected": "dice", "nsd_detected": "nsd"}


@dataclass(frozen=True)
class BootstrapSettings:
    """How medians get their confidence intervals (paper: 1000 resamples, 95 %)."""

    n_resamples: int = DEFAULT_N_RESAMPLES
    confidence_level: float = DEFAULT_CONFIDENCE_LEVEL
    seed: int = DEFAULT_SEED


#: The paper's bootstrap: 1000 resamples, 95 % percentile interval, seed 0.
DEFAULT_BOOTSTRAP = BootstrapSettings()


class Evaluation:
    """Accumulate exams, then report.

    Args:
        settings: detection settings (connectivity, volume limit, NSD, β).
        min_prob: lowest FROC threshold for exams given with a probability map.
        threshold: the threshold the binary predictions came from, if any (reported only).

    Example:
        >>> import numpy as np
        >>> ref = np.zeros((8, 8, 8), bool); ref[1:3, 1:3, 1:3] = True
        >>> evaluation = Evaluation()
        >>> _ = evaluation.add("case_a", ref.copy(), ref, (1.0, 1.0, 1.0))
        >>> evaluation.summary(bootstrap=None)["metrics"]["sensitivity"]["median"]
        1.0
    """

    def __init__(
        self,
        settings: DetectionSettings | None = None,
        *,
        min_prob: float = DEFAULT_MIN_PROB,
        threshold: float | None = None,
    ) -> None:
        self.settings = settings or DetectionSettings()
        self.min_prob = float(min_prob)
        self.threshold = threshold
        self.case_ids: list[str] = []
        self.results: list[ExamResult] = []
        self.frocs: dict[str, ExamFROC] = {}
        self.affines: dict[str, np.ndarray] = {}

    def add(
        self,
        case_id: str,
        pred_mask: object,
        ref_mask: object,
        spacing_mm: Sequence[float] | np.ndarray,
        *,
        prob: object | None = None,
        affine: np.ndarray | None = None,
    ) -> ExamResult:
        """Evaluate one exam and keep its results.

        Args:
            case_id: unique name of the exam (used in every table).
            pred_mask: binarised prediction (3D).
            ref_mask: reference lesion mask (3D, same grid).
            spacing_mm: voxel size in mm along array axes 0, 1, 2.
            prob: the probability map the prediction came from, for the FROC (optional).
            affine: voxel-to-scanner matrix, to report lesion centroids in scanner mm.
        """
        if case_id in self.case_ids:
            raise ValueError(f"Case {case_id!r} was added twice; case ids must be unique.")
        try:
            result = evaluate_exam(pred_mask, ref_mask, spacing_mm, self.settings)
            if prob is not None:
                self.frocs[case_id] = exam_froc(
                    prob,
                    ref_mask,
                    spacing_mm,
                    connectivity=self.settings.connectivity,
                    min_volume_ml=self.settings.min_volume_ml,
                    min_prob=self.min_prob,
                )
        except ValueError as error:
            raise ValueError(f"Case {case_id!r}: {error}") from error
        self.case_ids.append(case_id)
        self.results.append(result)
        if affine is not None:
            self.affines[case_id] = np.asarray(affine, dtype=np.float64)
        return result

    # Tables ------------------------------------------------------------------------------
    def exam_table(self) -> list[dict[str, object]]:
        """One row per exam: ``case_id`` plus :meth:`ExamResult.metrics`."""
        return [
            {"case_id": case_id, **result.metrics()}
            for case_id, result in zip(self.case_ids, self.results)
        ]

    def lesion_table(self) -> list[dict[str, object]]:
        """One row per reference lesion: case, lesion id, volume, centroid, detection, Dice, NSD.

        Centroids: ``centroid_mm_{x,y,z}`` in scanner coordinates when the exam came with an
        affine (else voxel index times spacing), and ``centroid_voxel_{i,j,k}``.
        """
        rows = []
        for case_id, result in zip(self.case_ids, self.results):
            affine = self.affines.get(case_id)
            for lesion in result.lesions:
                voxel = np.asarray(lesion.centroid_voxel)
                if affine is not None:
                    mm = affine[:3, :3] @ voxel + affine[:3, 3]
                else:
                    mm = voxel * np.asarray(result.spacing_mm)
                rows.append(
                    {
                        "case_id": case_id,
                        "lesion_id": lesion.lesion_id,
                        "volume_ml": lesion.volume_ml,
                        "large": lesion.large,
                        "centroid_mm_x": float(mm[0]),
                        "centroid_mm_y": float(mm[1]),
                        "centroid_mm_z": float(mm[2]),
                        "centroid_voxel_i": float(voxel[0]),
                        "centroid_voxel_j": float(voxel[1]),
                        "centroid_voxel_k": float(voxel[2]),
                        "detected": lesion.detected,
                        "n_pred_components": lesion.n_pred_components,
                        "dice": lesion.dice,
                        "nsd": lesion.nsd,
                    }
                )
        return rows

    def fp_volumes_ml(self) -> np.ndarray:
        """Volumes of all false-positive components, all exams together."""
        volumes = [v for result in self.results for v in result.fp_volumes_ml]
        return np.asarray(volumes, dtype=np.float64)

    # Summary -----------------------------------------------------------------------------
    def summary(self, bootstrap: BootstrapSettings | None = DEFAULT_BOOTSTRAP) -> dict:
        """The summary dict (JSON-ready: NaN written as None). ``bootstrap=None``: no CIs."""
        if not self.results:
            raise ValueError("No exams were evaluated; add at least one exam first.")
        exam_rows = self.exam_table()
        lesion_rows = self.lesion_table()
        summary = summarise(exam_rows, lesion_rows, self.settings, bootstrap)
        summary["settings"]["min_prob"] = self.min_prob
        summary["settings"]["threshold"] = self.threshold
        if self.frocs:
            summary["froc"] = froc_summary(
                [self.frocs[c] for c in self.case_ids if c in self.frocs]
            )
        return _json_ready(summary)


def summarise(
    exam_rows: Sequence[dict],
    lesion_rows: Sequence[dict],
    settings: DetectionSettings,
    bootstrap: BootstrapSettings | None = DEFAULT_BOOTSTRAP,
) -> dict:
    """Summary dict from per-exam and per-lesion rows (see the module docstring)."""
    columns = {
        key: np.asarray([row[key] for row in exam_rows], dtype=np.float64)
        for key in exam_rows[0]
        if key != "case_id"
    }
    totals = {
        key: float(np.nansum(columns[key]))
        for key in ("tp", "fn", "fp", "tp_large", "fn_large", "fp_large")
    }
    n_exams = len(exam_rows)
    pooled = {
        "sensitivity": sensitivity(totals["tp"], totals["fn"]),
        "precision": precision(totals["tp"], totals["fp"]),
        "fp_per_exam": totals["fp"] / n_exams,
        "f_beta": f_beta(totals["tp"], totals["fn"], totals["fp"], settings.beta),
        "sensitivity_large": sensitivity(totals["tp_large"], totals["fn_large"]),
        "precision_large": precision(totals["tp_large"], totals["fp_large"]),
        "fp_per_exam_large": totals["fp_large"] / n_exams,
        "f_beta_large": f_beta(
            totals["tp_large"], totals["fn_large"], totals["fp_large"], settings.beta
        ),
        "global_dice": _pooled_dice(columns),
        "mean_lesion_dice": _mean_or_nan(
            [row["dice"] if row["detected"] else 0.0 for row in lesion_rows]
        ),
        "ref_volume_ml": float(np.sum(columns["ref_volume_ml"])),
        "pred_volume_ml": float(np.sum(columns["pred_volume_ml"])),
    }
    metrics: dict[str, dict] = {}
    for name, column in EXAM_METRICS.items():
        values = columns[column]
        metrics[name] = _describe(values, "exam", bootstrap) | {"pooled": pooled[name]}
    detected = [row for row in lesion_rows if row["detected"]]
    for name, column in LESION_METRICS.items():
        values = np.asarray([row[column] for row in detected], dtype=np.float64)
        metrics[name] = _describe(values, "lesion", bootstrap) | {"pooled": _mean_or_nan(values)}
    case_ids = [str(row["case_id"]) for row in exam_rows]
    return {
        "format": SUMMARY_FORMAT,
        "settings": settings.to_dict()
        | {"bootstrap": None if bootstrap is None else vars(bootstrap).copy()},
        "n_exams": n_exams,
        "n_lesions": int(totals["tp"] + totals["fn"]),
        "n_lesions_large": int(totals["tp_large"] + totals["fn_large"]),
        "n_detected": int(totals["tp"]),
        "metrics": metrics,
        "icc_2_1_total_volume": volume_icc(columns["ref_volume_ml"], columns["pred_volume_ml"]),
        "per_exam": {
            case_id: {name: float(columns[column][i]) for name, column in EXAM_METRICS.items()}
            for i, case_id in enumerate(case_ids)
        },
        "per_lesion": {
            name: [float(row[column]) for row in detected]
            for name, column in LESION_METRICS.items()
        },
    }


def headline_metrics(summary: dict, statistic: str = "median") -> dict[str, float | None]:
    """Flat ``{metric: value}`` view of a summary, for tables and logs.

    Args:
        summary: a summary from :func:`evaluate_exams` / :meth:`Evaluation.summary`.
        statistic: ``"median"`` (the paper's), ``"mean"`` or ``"pooled"``.

    Keys: every entry of ``summary["metrics"]`` (``sensitivity``, ``precision``,
    ``fp_per_exam``, ``f_beta``, ``dice_detected``, ``nsd_detected``, ``mean_lesion_dice``,
    ``global_dice``, the ``*_large`` subset, volumes), plus ``icc_2_1_total_volume`` and,
    with probability maps, ``froc_auc`` and ``froc_auc_large``. Undefined values are None.
    """
    if statistic not in ("median", "mean", "pooled"):
        raise ValueError(f"statistic must be 'median', 'mean' or 'pooled', got {statistic!r}.")
    flat: dict[str, float | None] = {
        name: _none_if_nan(stats.get(statistic)) for name, stats in summary["metrics"].items()
    }
    flat["icc_2_1_total_volume"] = _none_if_nan(summary.get("icc_2_1_total_volume"))
    if "froc" in summary:
        flat["froc_auc"] = _none_if_nan(summary["froc"]["auc"])
        flat["froc_auc_large"] = _none_if_nan(summary["froc"]["auc_large"])
    return flat


def _none_if_nan(value: object) -> float | None:
    if value is None:
        return None
    value = float(value)  # type: ignore[arg-type]
    return None if math.isnan(value) else value


def froc_summary(
    exams: Sequence[ExamFROC],
    max_fp_per_exam: float = DEFAULT_MAX_FP_PER_EXAM,
    max_fp_per_exam_large: float = DEFAULT_MAX_FP_PER_EXAM_LARGE,
) -> dict:
    """FROC curves (all lesions and large subset) with AUCs, as a JSON-ready dict."""
    curve = froc_curve(exams)
    curve_large = froc_curve(exams, large=True)
    return {
        "auc": curve.auc(max_fp_per_exam),
        "auc_normalised": curve.auc(max_fp_per_exam) / max_fp_per_exam,
        "max_fp_per_exam": max_fp_per_exam,
        "extended": curve.extended(max_fp_per_exam),
        "auc_large": curve_large.auc(max_fp_per_exam_large),
        "auc_large_normalised": curve_large.auc(max_fp_per_exam_large) / max_fp_per_exam_large,
        "max_fp_per_exam_large": max_fp_per_exam_large,
        "extended_large": curve_large.extended(max_fp_per_exam_large),
        "curve": curve.to_dict(),
        "curve_large": curve_large.to_dict(),
    }


def evaluate_exams(
    pred_masks: Iterable[object] | None,
    ref_masks: Iterable[object],
    spacings_mm: Iterable[Sequence[float]] | Sequence[float],
    *,
    case_ids: Sequence[str] | None = None,
    prob_maps: Iterable[object] | None = None,
    threshold: float = 0.5,
    settings: DetectionSettings | None = None,
    min_prob: float = DEFAULT_MIN_PROB,
    bootstrap: BootstrapSettings | None = DEFAULT_BOOTSTRAP,
) -> dict:
    """Evaluate a set of exams in one call and return the summary dict.

    Args:
        pred_masks: binarised predictions, one 3D array/tensor per exam; ``None`` to derive
            them from ``prob_maps >= threshold``.
        ref_masks: reference lesion masks, same grids.
        spacings_mm: one ``(s0, s1, s2)`` per exam (mm, array-axis order), or one triple
            for all exams.
        case_ids: names of the exams (default ``exam_000``, ``exam_001``, ...).
        prob_maps: probability maps, one per exam, to add the FROC (optional).
        threshold: binarisation threshold when ``pred_masks`` is None.
        settings: detection settings (default: 26-connectivity, 1 mL, NSD 2 mm boundary, F2).
        min_prob: lowest FROC threshold.
        bootstrap: CI settings of the medians; None skips the bootstrap.

    Returns:
        The summary (see :class:`Evaluation`): ``summary["metrics"][name]["median"]`` etc.
    """
    refs = list(ref_masks)
    probs = list(prob_maps) if prob_maps is not None else None
    if pred_masks is None:
        if probs is None:
            raise ValueError("Give pred_masks, or prob_maps to binarise at `threshold`.")
        preds: list[object] = [None] * len(refs)
    else:
        preds = list(pred_masks)
    spacing_list = _per_exam_spacings(spacings_mm, len(refs))
    ids = list(case_ids) if case_ids is not None else [f"exam_{i:03d}" for i in range(len(refs))]
    lengths = {len(preds), len(refs), len(ids), len(spacing_list)} | (
        {len(probs)} if probs is not None else set()
    )
    if len(lengths) != 1:
        raise ValueError(
            f"Need one prediction, reference, spacing and case id per exam; got {len(preds)} "
            f"predictions, {len(refs)} references, {len(spacing_list)} spacings, {len(ids)} ids"
            + (f", {len(probs)} probability maps." if probs is not None else ".")
        )
    evaluation = Evaluation(
        settings, min_prob=min_prob, threshold=threshold if pred_masks is None else None
    )
    for i, case_id in enumerate(ids):
        prob = None if probs is None else probs[i]
        pred = preds[i]
        if pred is None:
            pred = _as_array(prob) >= np.float64(threshold)
        evaluation.add(case_id, pred, refs[i], spacing_list[i], prob=prob)
    return evaluation.summary(bootstrap)


def _per_exam_spacings(spacings_mm: object, n: int) -> list[np.ndarray]:
    """One triple for all exams, or one triple per exam."""
    if np.isscalar(spacings_mm):
        return [np.asarray(spacings_mm, dtype=np.float64)] * n
    items = [_as_array(s) for s in spacings_mm]  # type: ignore[union-attr]
    if all(item.ndim == 0 for item in items):
        return [np.asarray(items, dtype=np.float64)] * n
    return [np.asarray(item, dtype=np.float64) for item in items]


def _as_array(value: object) -> np.ndarray:
    if hasattr(value, "detach"):
        value = value.detach().cpu().numpy()  # type: ignore[attr-defined]
    return np.asarray(value)


def _describe(values: np.ndarray, level: str, bootstrap: BootstrapSettings | None) -> dict:
    if bootstrap is None:
        ci = median_ci(values, n_resamples=0)
    else:
        ci = median_ci(
            values,
            n_resamples=bootstrap.n_resamples,
            confidence_level=bootstrap.confidence_level,
            seed=bootstrap.seed,
        )
    return {"level": level, **ci.to_dict(), "mean": _mean_or_nan(values)}


def _mean_or_nan(values: Sequence[float] | np.ndarray) -> float:
    x = np.asarray(values, dtype=np.float64)
    x = x[np.isfinite(x)]
    return float(x.mean()) if x.size else math.nan


def _pooled_dice(columns: dict[str, np.ndarray]) -> float:
    total = columns["ref_volume_ml"].sum() + columns["pred_volume_ml"].sum()
    return float(2 * columns["intersection_volume_ml"].sum() / total) if total else 1.0


def _json_ready(value: object) -> object:
    """Replace NaN/inf by None and numpy scalars by Python ones, recursively."""
    if isinstance(value, dict):
        return {str(k): _json_ready(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_ready(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


__all__ = [
    "EXAM_METRICS",
    "LESION_METRICS",
    "SUMMARY_FORMAT",
    "DEFAULT_BOOTSTRAP",
    "BootstrapSettings",
    "Evaluation",
    "evaluate_exams",
    "froc_summary",
    "headline_metrics",
    "summarise",
]
