"""FROC: lesion sensitivity against false positives per exam while the threshold sweeps.

Exact at every threshold ``>= min_prob``: one maximum per lesion gives its detection, one
merge tree of the probability map (:mod:`sap.metrics.false_positives`) the false-positive
counts. The AUC integrates the curve's upper envelope up to 15 FP per exam (4 for the
≥ 1 mL subset), not normalised. Definitions and caveats: ``docs/metrics.md`` ("FROC"). A
constant probability map reaches the maximum AUC; :func:`exam_froc` flags such maps
(``ExamFROC.flags``, a :class:`~sap.metrics.degenerate.DegeneratePredictionWarning`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from sap.metrics.degenerate import probability_flags, warn_degenerate
from sap.metrics.false_positives import count_at, false_positive_events
from sap.volume import (
    DEFAULT_CONNECTIVITY,
    as_mask,
    check_connectivity,
    check_spacing,
    find_components,
    min_voxels_for_volume,
    voxel_volume_ml,
)

#: Lowest threshold swept by default: voxels with p < 0.01 are never lesion candidates.
DEFAULT_MIN_PROB = 0.01
#: FROC-AUC integration limits in FP per exam (paper: 15 for all lesions, 4 for ≥ 1 mL).
DEFAULT_MAX_FP_PER_EXAM = 15.0
DEFAULT_MAX_FP_PER_EXAM_LARGE = 4.0


@dataclass(frozen=True)
class ExamFROC:
    """Everything the FROC needs from one exam, at every threshold ``>= min_prob``.

    Attributes:
        lesion_max_prob: highest probability inside each reference lesion.
        lesion_volume_ml: volume of each reference lesion.
        lesion_large: volume ≥ ``min_volume_ml``.
        fp_values, fp_deltas: events of the false-positive count (see
            :class:`sap.metrics.false_positives.FalsePositiveEvents`).
        fp_large_values, fp_large_deltas: the same for predicted components ≥ ``min_volume_ml``.
        min_prob: lowest exact threshold.
        connectivity, min_volume_ml: the settings used.
        flags: why the map looks degenerate (empty when it does not; see
            :func:`sap.metrics.degenerate.probability_flags`).
    """

    lesion_max_prob: np.ndarray
    lesion_volume_ml: np.ndarray
    lesion_large: np.ndarray
    fp_values: np.ndarray
    fp_deltas: np.ndarray
    fp_large_values: np.ndarray
    fp_large_deltas: np.ndarray
    min_prob: float
    connectivity: int
    min_volume_ml: float
    flags: tuple[str, ...] = ()

    def tp(self, thresholds: np.ndarray, large: bool = False) -> np.ndarray:
        """Detected reference lesions at each threshold."""
        probs = self.lesion_max_prob[self.lesion_large] if large else self.lesion_max_prob
        probs = np.sort(probs)
        t = np.asarray(thresholds, dtype=np.float64)
        return probs.size - np.searchsorted(probs, t, side="left")

    def fp(self, thresholds: np.ndarray, large: bool = False) -> np.ndarray:
        """False-positive components at each threshold."""
        if large:
            return count_at(self.fp_large_values, self.fp_large_deltas, thresholds)
        return count_at(self.fp_values, self.fp_deltas, thresholds)

    def n_lesions(self, large: bool = False) -> int:
        """Number of reference lesions (in the large subset if ``large``)."""
        return int(self.lesion_large.sum()) if large else int(self.lesion_max_prob.size)

    def event_thresholds(self) -> np.ndarray:
        """Thresholds at which any of this exam's counts can change."""
        return np.unique(
            np.concatenate([self.lesion_max_prob, self.fp_values, self.fp_large_values])
        )


def exam_froc(
    prob: object,
    ref_mask: object,
    spacing_mm: Sequence[float] | np.ndarray | float,
    *,
    connectivity: int = DEFAULT_CONNECTIVITY,
    min_volume_ml: float = 1.0,
    min_prob: float = DEFAULT_MIN_PROB,
    body_mask: object | None = None,
    warn: bool = True,
) -> ExamFROC:
    """Reduce one exam's probability map to its exact FROC ingredients.

    Args:
        prob: 3D lesion probability map (array or tensor), values in [0, 1].
        ref_mask: reference lesion mask on the same grid.
        spacing_mm: voxel size in mm along array axes 0, 1, 2.
        connectivity: 6, 18 or 26 (the same for prediction and reference).
        min_volume_ml: volume limit of the large subset.
        min_prob: lowest threshold of interest (> 0).
        body_mask: the patient's body on the same grid (optional), for the flags.
        warn: raise a :class:`~sap.metrics.degenerate.DegeneratePredictionWarning` when the
            map is flagged (``.flags``): (near-)constant, or >= ``min_prob`` over most of the
            volume (body).
    """
    if hasattr(prob, "detach"):
        prob = prob.detach().cpu().numpy()  # type: ignore[attr-defined]
    prob_array = np.asarray(prob)
    if prob_array.ndim != 3:
        raise ValueError(
            f"prob must be a 3D probability map (D, H, W); got shape {prob_array.shape}."
        )
    if prob_array.dtype.kind != "f":
        prob_array = prob_array.astype(np.float64)
    # Comparisons below are made in float64 (np.float64 thresholds are "strong" scalars), so
    # float32 maps give exactly the counts of `prob >= np.float64(t)` at every threshold.
    ref = as_mask(ref_mask, "ref_mask")
    if ref.shape != prob_array.shape:
        raise ValueError(
            f"Probability map and reference must be on the same voxel grid; got shapes "
            f"{prob_array.shape} and {ref.shape}."
        )
    check_connectivity(connectivity)
    spacing = check_spacing(spacing_mm)
    if not math.isfinite(min_prob) or min_prob <= 0:
        raise ValueError(f"min_prob must be a positive threshold, got {min_prob!r}.")
    min_voxels = min_voxels_for_volume(min_volume_ml, spacing)
    body = None if body_mask is None else as_mask(body_mask, "body_mask")
    flags = probability_flags(prob_array, min_prob, body)
    if warn:
        warn_degenerate(flags)

    ref_c = find_components(ref, connectivity)
    lesion_max = np.full(ref_c.count + 1, -np.inf)
    np.maximum.at(lesion_max, ref_c.flat_label, prob_array.reshape(-1)[ref_c.flat_index])
    events = false_positive_events(prob_array, ref, connectivity, min_prob, min_voxels)
    return ExamFROC(
        lesion_max_prob=lesion_max[1:],
        lesion_volume_ml=ref_c.voxel_counts[1:] * voxel_volume_ml(spacing),
        lesion_large=ref_c.voxel_counts[1:] >= min_voxels,
        fp_values=events.values,
        fp_deltas=events.deltas,
        fp_large_values=events.large_values,
        fp_large_deltas=events.large_deltas,
        min_prob=float(min_prob),
        connectivity=connectivity,
        min_volume_ml=float(min_volume_ml),
        flags=flags,
    )


@dataclass(frozen=True)
class FROCCurve:
    """A pooled FROC curve: one point per threshold, thresholds in decreasing order.

    Attributes:
        thresholds: decreasing; the first is +inf (nothing predicted).
        sensitivity: pooled lesion sensitivity at each threshold.
        fp_per_exam: mean false positives per exam at each threshold.
        n_exams, n_lesions: what was pooled.
        large: whether this is the curve of the large subset.
    """

    thresholds: np.ndarray
    sensitivity: np.ndarray
    fp_per_exam: np.ndarray
    n_exams: int
    n_lesions: int
    large: bool = False

    def auc(self, max_fp_per_exam: float | None = None) -> float:
        """Area under the FROC envelope from 0 to ``max_fp_per_exam`` (not normalised)."""
        limit = self._limit(max_fp_per_exam)
        x, s = self.envelope(limit)
        widths = np.diff(np.append(x, limit))
        return float(np.sum(s * widths))

    def envelope(self, max_fp_per_exam: float | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Upper envelope as steps: sensitivity ``s[i]`` holds on ``[x[i], x[i+1])``."""
        limit = self._limit(max_fp_per_exam)
        fppi = np.concatenate([[0.0], self.fp_per_exam])
        sens = np.concatenate([[0.0], np.nan_to_num(self.sensitivity, nan=0.0)])
        keep = fppi <= limit
        order = np.argsort(fppi[keep], kind="stable")
        x = fppi[keep][order]
        s = np.maximum.accumulate(sens[keep][order])
        last = np.r_[x[1:] != x[:-1], True]
        return x[last], s[last]

    def extended(self, max_fp_per_exam: float | None = None) -> bool:
        """True when the curve stops before the limit and is extended flat to it."""
        return bool(np.max(self.fp_per_exam, initial=0.0) < self._limit(max_fp_per_exam))

    def sensitivity_at(self, fp_per_exam: float) -> float:
        """Best pooled sensitivity at no more than ``fp_per_exam`` false positives per exam."""
        x, s = self.envelope(fp_per_exam)
        return float(s[-1])

    def _limit(self, max_fp_per_exam: float | None) -> float:
        if max_fp_per_exam is None:
            max_fp_per_exam = (
                DEFAULT_MAX_FP_PER_EXAM_LARGE if self.large else DEFAULT_MAX_FP_PER_EXAM
            )
        if not math.isfinite(max_fp_per_exam) or max_fp_per_exam <= 0:
            raise ValueError(f"max_fp_per_exam must be a positive number, got {max_fp_per_exam!r}.")
        return float(max_fp_per_exam)

    def to_dict(self) -> dict[str, object]:
        """JSON-friendly dict (the +inf threshold written as null)."""
        return {
            "thresholds": [None if not math.isfinite(t) else float(t) for t in self.thresholds],
            "sensitivity": [float(s) for s in self.sensitivity],
            "fp_per_exam": [float(f) for f in self.fp_per_exam],
            "n_exams": self.n_exams,
            "n_lesions": self.n_lesions,
            "large": self.large,
        }


def candidate_thresholds(exams: Sequence[ExamFROC]) -> np.ndarray:
    """All thresholds (decreasing, +inf first) where some count of some exam changes."""
    if not exams:
        return np.array([np.inf])
    min_prob = max(exam.min_prob for exam in exams)
    values = np.unique(np.concatenate([exam.event_thresholds() for exam in exams]))
    values = values[values >= min_prob]
    return np.concatenate([[np.inf], values[::-1]])


def froc_curve(
    exams: Sequence[ExamFROC],
    thresholds: Sequence[float] | np.ndarray | None = None,
    large: bool = False,
) -> FROCCurve:
    """Pool exams into one FROC curve.

    Args:
        exams: per-exam results of :func:`exam_froc`.
        thresholds: thresholds to evaluate; default: every threshold where a count changes
            (the exact curve). All must be ``>= min_prob`` of every exam.
        large: the curve of the large subset (lesions and false positives ≥ ``min_volume_ml``).
    """
    if not exams:
        raise ValueError("froc_curve needs at least one exam.")
    _check_same_settings(exams)
    if thresholds is None:
        t = candidate_thresholds(exams)
    else:
        t = np.sort(np.asarray(thresholds, dtype=np.float64))[::-1]
        lowest = max(exam.min_prob for exam in exams)
        if t.size and t[-1] < lowest:
            raise ValueError(
                f"Threshold {t[-1]} is below min_prob={lowest} used for the exams; FP counts are "
                f"only exact above it. Recompute exam_froc with a lower min_prob."
            )
    return pooled_froc_curve(pool_exams(exams), len(exams), t, large)


def pool_exams(exams: Sequence[ExamFROC]) -> ExamFROC:
    """One pseudo-exam holding every lesion and every event of ``exams``.

    Counts add up over exams, so the pooled curve only needs this and the number of exams
    (this is also how :class:`sap.metrics.LesionFROC` accumulates across processes).
    """
    _check_same_settings(exams)
    first = exams[0]
    return ExamFROC(
        lesion_max_prob=np.concatenate([e.lesion_max_prob for e in exams]),
        lesion_volume_ml=np.concatenate([e.lesion_volume_ml for e in exams]),
        lesion_large=np.concatenate([e.lesion_large for e in exams]),
        fp_values=np.concatenate([e.fp_values for e in exams]),
        fp_deltas=np.concatenate([e.fp_deltas for e in exams]),
        fp_large_values=np.concatenate([e.fp_large_values for e in exams]),
        fp_large_deltas=np.concatenate([e.fp_large_deltas for e in exams]),
        min_prob=max(e.min_prob for e in exams),
        connectivity=first.connectivity,
        min_volume_ml=first.min_volume_ml,
    )


def pooled_froc_curve(
    pooled: ExamFROC,
    n_exams: int,
    thresholds: np.ndarray | None = None,
    large: bool = False,
) -> FROCCurve:
    """FROC curve of a pooled pseudo-exam (see :func:`pool_exams`) over ``n_exams`` exams."""
    if n_exams < 1:
        raise ValueError("A FROC curve needs at least one exam.")
    t = (
        candidate_thresholds([pooled])
        if thresholds is None
        else np.asarray(thresholds, dtype=np.float64)
    )
    n_lesions = pooled.n_lesions(large)
    tp = pooled.tp(t, large)
    sens = tp / n_lesions if n_lesions else np.full(t.shape, np.nan)
    return FROCCurve(
        thresholds=t,
        sensitivity=np.asarray(sens, dtype=np.float64),
        fp_per_exam=pooled.fp(t, large) / n_exams,
        n_exams=int(n_exams),
        n_lesions=n_lesions,
        large=large,
    )


def froc_auc(
    exams: Sequence[ExamFROC], max_fp_per_exam: float | None = None, large: bool = False
) -> float:
    """FROC-AUC over [0, ``max_fp_per_exam``] (15 for all lesions, 4 for large by default)."""
    return froc_curve(exams, large=large).auc(max_fp_per_exam)


def _check_same_settings(exams: Sequence[ExamFROC]) -> None:
    settings = {(exam.connectivity, exam.min_volume_ml) for exam in exams}
    if len(settings) > 1:
        raise ValueError(
            f"Exams were reduced with different (connectivity, min_volume_ml) settings: "
            f"{sorted(settings)}; recompute them with the same settings before pooling."
        )


__all__ = [
    "DEFAULT_MAX_FP_PER_EXAM",
    "DEFAULT_MAX_FP_PER_EXAM_LARGE",
    "DEFAULT_MIN_PROB",
    "ExamFROC",
    "FROCCurve",
    "candidate_thresholds",
    "exam_froc",
    "froc_auc",
    "froc_curve",
    "pool_exams",
    "pooled_froc_curve",
]
