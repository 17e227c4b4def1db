"""The summary of an evaluation: medians with bootstrap CIs, pooled values, ICC, FROC.

One JSON-ready dict per evaluation, built from its per-exam and per-lesion rows; which
statistic summarises which metric is defined in ``docs/metrics.md`` ("Summary").
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from sap.metrics.agreement import volume_icc
from sap.metrics.detection import DetectionSettings, f_beta, precision, sensitivity
from sap.metrics.froc import (
    DEFAULT_MAX_FP_PER_EXAM,
    DEFAULT_MAX_FP_PER_EXAM_LARGE,
    ExamFROC,
    froc_curve,
)
from sap.metrics.stats import (
    DEFAULT_CONFIDENCE_LEVEL,
    DEFAULT_N_RESAMPLES,
    DEFAULT_SEED,
    median_ci,
)

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
    "volume_ratio": "volume_ratio",
    "merged_predictions": "merged_predictions",
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


def summarise(
    exam_rows: Sequence[dict],
    lesion_rows: Sequence[dict],
    settings: DetectionSettings,
    bootstrap: BootstrapSettings | None = DEFAULT_BOOTSTRAP,
    degenerate: dict[str, Sequence[str]] | None = None,
) -> dict:
    """Summary dict from per-exam rows (:meth:`ExamResult.metrics` plus ``case_id``) and
    per-lesion rows (``detected``, ``dice``, ``nsd``, ...); ``bootstrap=None``: no CIs.

    ``degenerate`` maps flagged case ids to their reasons (default: the exam rows whose
    ``degenerate`` column is set, without reasons); the summary lists them under
    ``"degenerate"``, next to the totals ``merged_predictions`` and ``volume_ratio``."""
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
    pooled = _pooled(columns, totals, lesion_rows, n_exams, settings.beta)
    metrics: dict[str, dict] = {}
    for name, column in EXAM_METRICS.items():
        values = columns[column]
        metrics[name] = _describe(values, "exam", bootstrap) | {"pooled": pooled[name]}
    detected = [row for row in lesion_rows if row["detected"]]
    for name, column in LESION_METRICS.items():
        values = np.asarray([row[column] for row in detected], dtype=np.float64)
        metrics[name] = _describe(values, "lesion", bootstrap) | {"pooled": _mean_or_nan(values)}
    case_ids = [str(row["case_id"]) for row in exam_rows]
    if degenerate is None:
        degenerate = {
            case_id: []
            for case_id, row in zip(case_ids, exam_rows)
            if row.get("degenerate", 0.0) > 0
        }
    return {
        "format": SUMMARY_FORMAT,
        "settings": settings.to_dict()
        | {"bootstrap": None if bootstrap is None else vars(bootstrap).copy()},
        "n_exams": n_exams,
        "n_lesions": int(totals["tp"] + totals["fn"]),
        "n_lesions_large": int(totals["tp_large"] + totals["fn_large"]),
        "n_detected": int(totals["tp"]),
        "merged_predictions": int(pooled["merged_predictions"]),
        "volume_ratio": pooled["volume_ratio"],
        "degenerate": {case_id: list(reasons) for case_id, reasons in degenerate.items()},
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


def _pooled(
    columns: dict[str, np.ndarray],
    totals: dict[str, float],
    lesion_rows: Sequence[dict],
    n_exams: int,
    beta: float,
) -> dict[str, float]:
    """Dataset-level value of each exam metric: ratios of counts summed over exams."""
    tp, fn, fp = totals["tp"], totals["fn"], totals["fp"]
    tp_large, fn_large, fp_large = totals["tp_large"], totals["fn_large"], totals["fp_large"]
    return {
        "sensitivity": sensitivity(tp, fn),
        "precision": precision(tp, fp),
        "fp_per_exam": fp / n_exams,
        "f_beta": f_beta(tp, fn, fp, beta),
        "sensitivity_large": sensitivity(tp_large, fn_large),
        "precision_large": precision(tp_large, fp_large),
        "fp_per_exam_large": fp_large / n_exams,
        "f_beta_large": f_beta(tp_large, fn_large, fp_large, beta),
        "global_dice": _pooled_dice(columns),
        "mean_lesion_dice": _mean_or_nan(
            [row["dice"] if row["detected"] else 0.0 for row in lesion_rows]
        ),
        "ref_volume_ml": float(np.sum(columns["ref_volume_ml"])),
        "pred_volume_ml": float(np.sum(columns["pred_volume_ml"])),
        "volume_ratio": _ratio(columns["pred_volume_ml"].sum(), columns["ref_volume_ml"].sum()),
        "merged_predictions": float(np.sum(columns["merged_predictions"])),
    }


def _ratio(numerator: float, denominator: float) -> float:
    return float(numerator / denominator) if denominator else math.nan


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


#: Said in every FROC summary: what the FROC-AUC cannot see (docs/metrics.md, "FROC").
FROC_CAVEAT = (
    "A constant probability map (any constant >= min_prob) reaches the maximum FROC-AUC: at "
    "low thresholds it is one component touching every lesion, sensitivity 1 at 0 FP per exam. "
    "Read FROC-AUC with the detection numbers, Dice and volume_ratio; flagged_cases lists the "
    "exams whose maps look like that (docs/metrics.md, 'Degenerate predictions')."
)


def froc_summary(
    exams: Sequence[ExamFROC],
    max_fp_per_exam: float = DEFAULT_MAX_FP_PER_EXAM,
    max_fp_per_exam_large: float = DEFAULT_MAX_FP_PER_EXAM_LARGE,
    case_ids: Sequence[str] | None = None,
) -> dict:
    """FROC curves (all lesions and large subset) with AUCs, as a JSON-ready dict.

    ``caveat`` states the FROC-AUC's blind spot; ``flagged_cases`` lists the exams (by
    ``case_ids``, default their index) whose probability maps are flagged as degenerate.
    """
    curve = froc_curve(exams)
    curve_large = froc_curve(exams, large=True)
    ids = list(case_ids) if case_ids is not None else [str(i) for i in range(len(exams))]
    return {
        "auc": curve.auc(max_fp_per_exam),
        "auc_normalised": curve.auc(max_fp_per_exam) / max_fp_per_exam,
        "max_fp_per_exam": max_fp_per_exam,
        "extended": curve.extended(max_fp_per_exam),
        "auc_large": curve_large.auc(max_fp_per_exam_large),
        "auc_large_normalised": curve_large.auc(max_fp_per_exam_large) / max_fp_per_exam_large,
        "max_fp_per_exam_large": max_fp_per_exam_large,
        "extended_large": curve_large.extended(max_fp_per_exam_large),
        "caveat": FROC_CAVEAT,
        "flagged_cases": [case_id for case_id, exam in zip(ids, exams) if exam.flags],
        "curve": curve.to_dict(),
        "curve_large": curve_large.to_dict(),
    }


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


def json_ready(value: object) -> object:
    """Replace NaN/inf by None and numpy scalars by Python ones, recursively."""
    if isinstance(value, dict):
        return {str(k): json_ready(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_ready(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


__all__ = [
    "DEFAULT_BOOTSTRAP",
    "EXAM_METRICS",
    "FROC_CAVEAT",
    "LESION_METRICS",
    "SUMMARY_FORMAT",
    "BootstrapSettings",
    "froc_summary",
    "headline_metrics",
    "json_ready",
    "summarise",
]
