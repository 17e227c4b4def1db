"""Agreement of total tumour volume between reference and prediction: ICC(2,1).

Two-way random effects, absolute agreement, single measures, computed from its ANOVA
definition (formula in ``docs/metrics.md``, "Agreement of total tumour volume").
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def icc_2_1(ratings: np.ndarray | Sequence[Sequence[float]]) -> float:
    """ICC(2,1) of an ``(n_subjects, k_raters)`` table; NaN when undefined.

    Undefined: fewer than 2 subjects or raters, missing values, or zero variance overall.

    >>> round(icc_2_1([[9, 2, 5, 8], [6, 1, 3, 2], [8, 4, 6, 8],
    ...                [7, 1, 2, 6], [10, 5, 6, 9], [6, 2, 4, 7]]), 2)
    0.29
    """
    y = np.asarray(ratings, dtype=np.float64)
    if y.ndim != 2:
        raise ValueError(f"ratings must be a 2D table (subjects x raters), got shape {y.shape}.")
    n, k = y.shape
    if n < 2 or k < 2 or not np.all(np.isfinite(y)):
        return float("nan")
    grand = y.mean()
    ss_rows = k * np.sum((y.mean(axis=1) - grand) ** 2)
    ss_cols = n * np.sum((y.mean(axis=0) - grand) ** 2)
    ss_total = np.sum((y - grand) ** 2)
    ss_error = ss_total - ss_rows - ss_cols
    ms_rows = ss_rows / (n - 1)
    ms_cols = ss_cols / (k - 1)
    ms_error = ss_error / ((n - 1) * (k - 1))
    denominator = ms_rows + (k - 1) * ms_error + k * (ms_cols - ms_error) / n
    if denominator <= 0:
        return float("nan")
    return float((ms_rows - ms_error) / denominator)


def volume_icc(ref_volumes_ml: Sequence[float], pred_volumes_ml: Sequence[float]) -> float:
    """ICC(2,1) between reference and predicted total tumour volumes, one pair per exam."""
    ref = np.asarray(ref_volumes_ml, dtype=np.float64).reshape(-1)
    pred = np.asarray(pred_volumes_ml, dtype=np.float64).reshape(-1)
    if ref.shape != pred.shape:
        raise ValueError(
            f"Need one predicted volume per reference volume; got {ref.size} and {pred.size}."
        )
    return icc_2_1(np.column_stack([ref, pred]))


__all__ = ["icc_2_1", "volume_icc"]
