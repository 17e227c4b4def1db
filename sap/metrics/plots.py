"""Figures of an evaluation, for reports and notebooks: FROC, detection by volume, volumes, cases.

- :func:`plot_froc` — FROC curves with their AUCs;
- :func:`plot_detection_by_volume` — sensitivity and false positives per volume bin (paper
  Fig. 6);
- :func:`plot_volume_agreement` — predicted against reference total lesion volume per exam;
- :func:`plot_case`, :func:`plot_detections` — one case (from :mod:`sap.metrics.case_plots`).

Each takes the curves or numbers it draws, or simply an :class:`~sap.metrics.Evaluation` /
:class:`~sap.metrics.FolderEvaluation`, returns a matplotlib Figure and, given ``path``,
saves it as PNG atomically. Figures use matplotlib's object API (no pyplot state): nothing
is shown or kept open, so they are safe in tests, scripts and notebooks (Jupyter displays a
returned Figure).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from sap.io import atomic_write
from sap.metrics.case_plots import plot_case, plot_detections
from sap.metrics.froc import (
    DEFAULT_MAX_FP_PER_EXAM,
    DEFAULT_MAX_FP_PER_EXAM_LARGE,
    FROCCurve,
    froc_curve,
)

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from sap.metrics.evaluation import Evaluation

#: Lesion-volume bin edges (mL) of the detection-by-volume figure.
DEFAULT_VOLUME_BINS_ML: tuple[float, ...] = (0.0, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, np.inf)


def _figure(size: tuple[float, float]) -> Figure:
    from matplotlib.figure import Figure

    return Figure(figsize=size, layout="constrained")


def _save(fig: Figure, path: str | Path | None) -> None:
    if path is not None:
        atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=150, format="png"))


def _evaluation(source: object) -> Evaluation | None:
    """The :class:`Evaluation` behind ``source`` (itself, or a FolderEvaluation's), or None."""
    if hasattr(source, "results") and hasattr(source, "frocs"):
        return source  # type: ignore[return-value]
    inner = getattr(source, "evaluation", None)
    return inner if hasattr(inner, "results") else None


def plot_froc(
    curve: FROCCurve | object,
    curve_large: FROCCurve | None = None,
    path: str | Path | None = None,
    *,
    max_fp_per_exam: float = DEFAULT_MAX_FP_PER_EXAM,
    max_fp_per_exam_large: float = DEFAULT_MAX_FP_PER_EXAM_LARGE,
    connectivity: int | None = None,
    min_volume_ml: float = 1.0,
) -> Figure:
    """FROC curves (envelope as steps, every threshold as a dot) with their AUCs.

    Args:
        curve: the curve of all lesions, or an evaluation with probability maps (both curves,
            connectivity and volume limit are then taken from it).
        curve_large: the curve of the large subset.
        path: save the figure here as PNG.
        max_fp_per_exam, max_fp_per_exam_large: AUC limits.
        connectivity, min_volume_ml: shown in the title and legend.
    """
    evaluation = _evaluation(curve)
    if evaluation is not None:
        if not evaluation.frocs:
            raise ValueError("This evaluation has no probability maps, hence no FROC curve.")
        exams = list(evaluation.frocs.values())
        curve, curve_large = froc_curve(exams), froc_curve(exams, large=True)
        connectivity = evaluation.settings.connectivity
        min_volume_ml = evaluation.settings.min_volume_ml
    if not isinstance(curve, FROCCurve):
        raise TypeError(f"plot_froc takes a FROCCurve or an evaluation, got {type(curve)}.")
    fig = _figure((6, 4.5))
    ax = fig.add_subplot()
    for c, limit, colour, label in (
        (curve, max_fp_per_exam, "tab:blue", "all lesions"),
        (curve_large, max_fp_per_exam_large, "tab:orange", f"lesions ≥ {min_volume_ml:g} mL"),
    ):
        if c is None or c.n_lesions == 0:
            continue
        x, s = c.envelope(limit)
        ax.step(
            np.append(x, limit),
            np.append(s, s[-1]),
            where="post",
            color=colour,
            label=f"{label} (n={c.n_lesions}): AUC to {limit:g} FP/exam = {c.auc(limit):.2f}",
        )
        keep = c.fp_per_exam <= limit
        ax.plot(
            c.fp_per_exam[keep], c.sensitivity[keep], ".", color=colour, alpha=0.3, markersize=3
        )
    ax.set_xlim(0, max(max_fp_per_exam, max_fp_per_exam_large))
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("false positives per exam")
    ax.set_ylabel("lesion sensitivity")
    title = f"FROC ({curve.n_exams} exams"
    title += f", {connectivity}-connectivity)" if connectivity else ")"
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    _save(fig, path)
    return fig


def plot_detection_by_volume(
    lesion_volumes_ml: Sequence[float] | object,
    lesion_detected: Sequence[bool] | None = None,
    fp_volumes_ml: Sequence[float] | None = None,
    n_exams: int | None = None,
    path: str | Path | None = None,
    bins_ml: Sequence[float] = DEFAULT_VOLUME_BINS_ML,
) -> Figure:
    """Sensitivity per lesion-volume bin and false positives per exam per component-volume bin.

    Give the lesion volumes, their detection, the false-positive volumes and the number of
    exams, or just an evaluation as the first argument.
    """
    evaluation = _evaluation(lesion_volumes_ml)
    if evaluation is not None:
        lesions = [lesion for result in evaluation.results for lesion in result.lesions]
        lesion_volumes_ml = [lesion.volume_ml for lesion in lesions]
        lesion_detected = [lesion.detected for lesion in lesions]
        fp_volumes_ml = evaluation.fp_volumes_ml()
        n_exams = len(evaluation.results)
    if lesion_detected is None or fp_volumes_ml is None or n_exams is None:
        raise ValueError(
            "Give lesion volumes, detections, FP volumes and n_exams, or an evaluation."
        )
    edges = np.asarray(bins_ml, dtype=np.float64)
    volumes = np.asarray(lesion_volumes_ml, dtype=np.float64)
    detected = np.asarray(lesion_detected, dtype=bool)
    fp = np.asarray(fp_volumes_ml, dtype=np.float64)
    which = np.clip(np.searchsorted(edges, volumes, side="right") - 1, 0, edges.size - 2)
    which_fp = np.clip(np.searchsorted(edges, fp, side="right") - 1, 0, edges.size - 2)
    n_bins = edges.size - 1
    counts = np.bincount(which, minlength=n_bins)
    hits = np.bincount(which, weights=detected, minlength=n_bins)
    fp_per_exam = np.bincount(which_fp, minlength=n_bins) / max(n_exams, 1)
    with np.errstate(invalid="ignore", divide="ignore"):
        sens = np.where(counts > 0, hits / counts, np.nan)
    labels = [
        f"{a:g}–{b:g}" if np.isfinite(b) else f"≥{a:g}" for a, b in zip(edges[:-1], edges[1:])
    ]
    fig = _figure((11, 4))
    ax1, ax2 = fig.subplots(1, 2)
    positions = np.arange(n_bins)
    ax1.bar(positions, np.nan_to_num(sens), color="tab:blue")
    for p, s, n in zip(positions, sens, counts):
        ax1.text(p, (0 if np.isnan(s) else s) + 0.02, f"n={n}", ha="center", fontsize=7)
    ax1.set_ylim(0, 1.1)
    ax1.set_ylabel("sensitivity")
    ax1.set_title("sensitivity vs reference lesion volume")
    ax2.bar(positions, fp_per_exam, color="tab:red")
    ax2.set_ylabel("false positives per exam")
    ax2.set_title("false positives vs predicted component volume")
    for ax in (ax1, ax2):
        ax.set_xticks(positions, labels, rotation=45, ha="right", fontsize=8)
        ax.set_xlabel("volume (mL)")
        ax.grid(axis="y", alpha=0.3)
    _save(fig, path)
    return fig


def plot_volume_agreement(
    ref_volumes_ml: Sequence[float] | object,
    pred_volumes_ml: Sequence[float] | None = None,
    path: str | Path | None = None,
    *,
    case_ids: Sequence[str] | None = None,
) -> Figure:
    """Predicted against reference total lesion volume, one dot per exam, log-log.

    The diagonal is perfect agreement; dots far above it are over-segmentation (a degenerate
    one-blob prediction sits at the top). Give both volume lists, or an evaluation.
    """
    evaluation = _evaluation(ref_volumes_ml)
    if evaluation is not None:
        ref_volumes_ml = [r.ref_volume_ml for r in evaluation.results]
        pred_volumes_ml = [r.pred_volume_ml for r in evaluation.results]
        case_ids = evaluation.case_ids
    if pred_volumes_ml is None:
        raise ValueError("Give reference and predicted volumes, or an evaluation.")
    ref = np.asarray(ref_volumes_ml, dtype=np.float64)
    pred = np.asarray(pred_volumes_ml, dtype=np.float64)
    positive = np.concatenate([ref[ref > 0], pred[pred > 0]])
    floor = float(positive.min()) / 2 if positive.size else 1e-3
    top = float(positive.max()) * 2 if positive.size else 1.0
    fig = _figure((5, 5))
    ax = fig.add_subplot()
    ax.plot([floor, top], [floor, top], color="grey", lw=1, label="agreement")
    ax.scatter(np.maximum(ref, floor), np.maximum(pred, floor), s=18, color="tab:purple")
    if case_ids is not None and len(case_ids) <= 30:
        for name, x, y in zip(case_ids, ref, pred):
            ax.annotate(name, (max(x, floor), max(y, floor)), fontsize=6, alpha=0.7)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlim(floor, top)
    ax.set_ylim(floor, top)
    ax.set_xlabel("reference total lesion volume (mL)")
    ax.set_ylabel("predicted total lesion volume (mL)")
    ax.set_title(f"total lesion volume per exam ({ref.size} exams; 0 drawn at the floor)")
    ax.grid(alpha=0.3, which="both")
    ax.legend(loc="upper left", fontsize=8)
    _save(fig, path)
    return fig


__all__ = [
    "DEFAULT_VOLUME_BINS_ML",
    "plot_case",
    "plot_detection_by_volume",
    "plot_detections",
    "plot_froc",
    "plot_volume_agreement",
]
