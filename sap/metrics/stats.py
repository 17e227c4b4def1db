"""Statistics of the paper's protocol, with scipy: bootstrap medians, rank tests, Bonferroni.

Percentile-bootstrap CIs of medians, Wilcoxon signed-rank for paired per-patient values,
Mann-Whitney U for lesion-level values; NaN values are dropped (pairwise when paired).
Choices and reasons: ``docs/metrics.md`` ("Statistics").
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
from scipy import stats as scipy_stats

#: Bootstrap defaults of the paper: 1000 resamples, 95 % interval; our fixed seed.
DEFAULT_N_RESAMPLES = 1000
DEFAULT_CONFIDENCE_LEVEL = 0.95
DEFAULT_SEED = 0


@dataclass(frozen=True)
class MedianCI:
    """Median of the finite values with its bootstrap confidence interval."""

    median: float
    ci_low: float
    ci_high: float
    n: int

    def to_dict(self) -> dict[str, float | int]:
        """JSON-friendly dict."""
        return asdict(self)


def _finite(values: Sequence[float] | np.ndarray) -> np.ndarray:
    x = np.asarray(values, dtype=np.float64).reshape(-1)
    return x[np.isfinite(x)]


def median_ci(
    values: Sequence[float] | np.ndarray,
    *,
    n_resamples: int = DEFAULT_N_RESAMPLES,
    confidence_level: float = DEFAULT_CONFIDENCE_LEVEL,
    seed: int = DEFAULT_SEED,
) -> MedianCI:
    """Median and percentile-bootstrap CI of the finite ``values``.

    No values: all NaN. One value, or ``n_resamples == 0``: the CI is NaN (not estimable).
    """
    x = _finite(values)
    if x.size == 0:
        return MedianCI(math.nan, math.nan, math.nan, 0)
    median = float(np.median(x))
    if x.size < 2 or n_resamples <= 0:
        return MedianCI(median, math.nan, math.nan, int(x.size))
    if np.all(x == x[0]):
        return MedianCI(median, median, median, int(x.size))
    result = scipy_stats.bootstrap(
        (x,),
        np.median,
        n_resamples=n_resamples,
        confidence_level=confidence_level,
        method="percentile",
        vectorized=True,
        rng=np.random.default_rng(seed),
    )
    interval = result.confidence_interval
    return MedianCI(median, float(interval.low), float(interval.high), int(x.size))


def wilcoxon_paired(a: Sequence[float] | np.ndarray, b: Sequence[float] | np.ndarray) -> float:
    """Two-sided Wilcoxon signed-rank p-value of paired samples ``a`` and ``b``.

    Pairs with a NaN are dropped. No pairs: NaN. All differences zero: 1.0 (no evidence of
    a difference; scipy would refuse).
    """
    x = np.asarray(a, dtype=np.float64).reshape(-1)
    y = np.asarray(b, dtype=np.float64).reshape(-1)
    if x.shape != y.shape:
        raise ValueError(f"Paired samples need the same length, got {x.size} and {y.size}.")
    keep = np.isfinite(x) & np.isfinite(y)
    x, y = x[keep], y[keep]
    if x.size == 0:
        return math.nan
    if np.all(x == y):
        return 1.0
    return float(scipy_stats.wilcoxon(x, y, alternative="two-sided").pvalue)


def mann_whitney(a: Sequence[float] | np.ndarray, b: Sequence[float] | np.ndarray) -> float:
    """Two-sided Mann-Whitney U p-value of independent samples; NaN if one is empty."""
    x, y = _finite(a), _finite(b)
    if x.size == 0 or y.size == 0:
        return math.nan
    return float(scipy_stats.mannwhitneyu(x, y, alternative="two-sided").pvalue)


def bonferroni(p_values: Sequence[float] | np.ndarray, n_tests: int | None = None) -> np.ndarray:
    """Bonferroni-adjusted p-values: ``min(1, p * n_tests)``; NaN stays NaN.

    ``n_tests`` defaults to the number of finite p-values given.
    """
    p = np.asarray(p_values, dtype=np.float64)
    m = int(np.isfinite(p).sum()) if n_tests is None else int(n_tests)
    return np.minimum(1.0, p * max(m, 1))


__all__ = [
    "DEFAULT_CONFIDENCE_LEVEL",
    "DEFAULT_N_RESAMPLES",
    "DEFAULT_SEED",
    "MedianCI",
    "bonferroni",
    "mann_whitney",
    "median_ci",
    "wilcoxon_paired",
]
