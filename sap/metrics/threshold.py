"""Choose the binarisation threshold that maximises mean patient-level F-beta on a tuning fold.

Candidates are all thresholds at which some patient's counts change (from the FROC
ingredients of :func:`sap.metrics.froc.exam_froc`), each reported mid-interval; ties go to
the highest threshold. Definition: ``docs/metrics.md`` ("Threshold tuning").
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from sap.metrics.froc import ExamFROC, candidate_thresholds

AGGREGATES: tuple[str, ...] = ("mean", "median")


@dataclass(frozen=True)
class ThresholdTuning:
    """The chosen threshold and the whole tuning curve.

    Attributes:
        threshold: the threshold to freeze (binarise with ``prob >= threshold``).
        score: aggregated patient-level F-beta at that threshold.
        thresholds: candidate thresholds, decreasing.
        scores: aggregated F-beta at each candidate.
        beta, aggregate: how the score was computed.
    """

    threshold: float
    score: float
    thresholds: np.ndarray
    scores: np.ndarray
    beta: float
    aggregate: str

    def to_dict(self) -> dict[str, object]:
        """JSON-friendly dict."""
        return {
            "threshold": self.threshold,
            "score": self.score,
            "beta": self.beta,
            "aggregate": self.aggregate,
            "thresholds": [float(t) for t in self.thresholds],
            "scores": [float(s) for s in self.scores],
        }


def patient_f_beta(
    exams: Sequence[ExamFROC], thresholds: np.ndarray, beta: float = 2.0
) -> np.ndarray:
    """Per-patient F-beta at each threshold: shape ``(n_exams, n_thresholds)``.

    F-beta = (1 + β²)TP / ((1 + β²)TP + β²FN + FP), 1.0 when nothing is to be found and
    nothing is found.
    """
    t = np.asarray(thresholds, dtype=np.float64)
    b2 = beta * beta
    rows = []
    for exam in exams:
        tp = exam.tp(t).astype(np.float64)
        fn = exam.n_lesions() - tp
        fp = exam.fp(t).astype(np.float64)
        denominator = (1 + b2) * tp + b2 * fn + fp
        with np.errstate(invalid="ignore", divide="ignore"):
            rows.append(np.where(denominator > 0, (1 + b2) * tp / denominator, 1.0))
    return np.vstack(rows) if rows else np.zeros((0, t.size))


def tune_threshold(
    exams: Sequence[ExamFROC],
    *,
    beta: float = 2.0,
    thresholds: Sequence[float] | np.ndarray | None = None,
    aggregate: str = "mean",
) -> ThresholdTuning:
    """Threshold maximising the aggregated patient-level F-beta over ``exams``.

    Args:
        exams: tuning-set exams from :func:`sap.metrics.froc.exam_froc`.
        beta: β of F-beta (2: sensitivity weighted four times precision).
        thresholds: candidates to try; default: every threshold where a count changes
            (only 1.0 when no voxel of any exam reaches ``min_prob``: a model that finds
            nothing is scored as finding nothing, not refused).
        aggregate: ``"mean"`` or ``"median"`` over patients.
    """
    if not exams:
        raise ValueError("tune_threshold needs at least one tuning exam.")
    if aggregate not in AGGREGATES:
        raise ValueError(f"aggregate must be one of {AGGREGATES}, got {aggregate!r}.")
    if thresholds is None:
        events = candidate_thresholds(exams)
        events = events[np.isfinite(events)]
        if events.size == 0:
            # No voxel reaches min_prob: every threshold predicts nothing; the highest is kept.
            evaluate_at = report = np.array([1.0])
        else:
            floor = max(exam.min_prob for exam in exams)
            lower = np.append(events[1:], floor)
            evaluate_at = events
            report = np.where(lower < events, (events + lower) / 2.0, events)
    else:
        evaluate_at = np.sort(np.asarray(thresholds, dtype=np.float64))[::-1]
        lowest = max(exam.min_prob for exam in exams)
        if evaluate_at.size == 0 or evaluate_at[-1] < lowest:
            raise ValueError(
                f"Candidate thresholds must be non-empty and >= min_prob={lowest} of the exams."
            )
        report = evaluate_at
    per_patient = patient_f_beta(exams, evaluate_at, beta)
    scores = per_patient.mean(axis=0) if aggregate == "mean" else np.median(per_patient, axis=0)
    best = int(np.argmax(scores))  # thresholds decrease: the first maximum is the highest
    return ThresholdTuning(
        threshold=float(report[best]),
        score=float(scores[best]),
        thresholds=report,
        scores=scores,
        beta=float(beta),
        aggregate=aggregate,
    )


__all__ = ["AGGREGATES", "ThresholdTuning", "patient_f_beta", "tune_threshold"]
