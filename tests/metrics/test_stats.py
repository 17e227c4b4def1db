"""ICC(2,1), bootstrap medians, rank tests, Bonferroni, and class Dice."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as scipy_stats

from sap.metrics import class_dice, icc_2_1, volume_icc
from sap.metrics.segmentation import confusion_matrix
from sap.metrics.stats import bonferroni, mann_whitney, median_ci, wilcoxon_paired

# Shrout & Fleiss (1979), Table 2: 6 targets rated by 4 judges; ICC(2,1) = 0.29.
SHROUT_FLEISS = np.array(
    [[9, 2, 5, 8], [6, 1, 3, 2], [8, 4, 6, 8], [7, 1, 2, 6], [10, 5, 6, 9], [6, 2, 4, 7]], float
)


def test_icc_reproduces_shrout_and_fleiss():
    assert icc_2_1(SHROUT_FLEISS) == pytest.approx(0.2898, abs=1e-4)


def anova_icc(y):
    """ICC(2,1) from a two-way ANOVA fitted by least squares (dummy-coded rows and columns)."""
    n, k = y.shape
    rows = np.repeat(np.eye(n), k, axis=0)
    cols = np.tile(np.eye(k), (n, 1))
    target = y.reshape(-1)
    full = np.column_stack([rows, cols[:, 1:]])
    residual = target - full @ np.linalg.lstsq(full, target, rcond=None)[0]
    only_rows = target - rows @ np.linalg.lstsq(rows, target, rcond=None)[0]
    only_cols = target - cols @ np.linalg.lstsq(cols, target, rcond=None)[0]
    sse = residual @ residual
    msr = (only_cols @ only_cols - sse) / (n - 1)
    msc = (only_rows @ only_rows - sse) / (k - 1)
    mse = sse / ((n - 1) * (k - 1))
    return (msr - mse) / (msr + (k - 1) * mse + k * (msc - mse) / n)


@pytest.mark.parametrize("seed", range(3))
def test_icc_agrees_with_a_least_squares_anova(seed):
    rng = np.random.default_rng(seed)
    truth = rng.gamma(2.0, 5.0, size=12)
    y = np.column_stack([truth, 1.3 * truth + rng.normal(0, 2, 12)])
    assert icc_2_1(y) == pytest.approx(anova_icc(y), abs=1e-10)


def test_icc_is_one_for_identical_volumes_and_punishes_bias():
    volumes = np.array([1.0, 5.0, 2.5, 10.0])
    assert volume_icc(volumes, volumes) == pytest.approx(1.0)
    assert volume_icc(volumes, 2 * volumes) < volume_icc(volumes, volumes + 0.1)
    assert math.isnan(volume_icc([1.0], [1.0]))
    with pytest.raises(ValueError, match="one predicted volume"):
        volume_icc([1.0, 2.0], [1.0])


def test_median_ci_is_seeded_and_brackets_the_median():
    values = np.random.default_rng(0).normal(size=40)
    first = median_ci(values, seed=3)
    assert first == median_ci(values, seed=3)
    assert first != median_ci(values, seed=4)
    assert first.ci_low <= first.median <= first.ci_high and first.n == 40
    direct = scipy_stats.bootstrap(
        (values,), np.median, n_resamples=1000, method="percentile", rng=np.random.default_rng(3)
    ).confidence_interval
    assert (first.ci_low, first.ci_high) == pytest.approx((direct.low, direct.high))


def test_median_ci_drops_nan_and_handles_degenerate_samples():
    assert median_ci([1.0, math.nan, 3.0]).n == 2
    constant = median_ci([0.5, 0.5, 0.5])
    assert (constant.median, constant.ci_low, constant.ci_high) == (0.5, 0.5, 0.5)
    single = median_ci([2.0])
    assert single.median == 2.0 and math.isnan(single.ci_low)
    assert math.isnan(median_ci([]).median)


def test_rank_tests_are_scipys():
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=15), rng.normal(0.8, 1, size=15)
    assert wilcoxon_paired(a, b) == pytest.approx(scipy_stats.wilcoxon(a, b).pvalue)
    assert mann_whitney(a, b[:9]) == pytest.approx(scipy_stats.mannwhitneyu(a, b[:9]).pvalue)
    assert wilcoxon_paired([1.0, 2.0, math.nan], [1.0, 2.0, 5.0]) == 1.0
    assert math.isnan(mann_whitney([], [1.0]))
    with pytest.raises(ValueError, match="same length"):
        wilcoxon_paired([1.0], [1.0, 2.0])


def test_bonferroni_multiplies_by_the_number_of_tests():
    np.testing.assert_allclose(bonferroni([0.01, 0.2, 0.6]), [0.03, 0.6, 1.0])
    np.testing.assert_allclose(bonferroni([0.01, math.nan]), [0.01, math.nan])
    np.testing.assert_allclose(bonferroni([0.01], n_tests=5), [0.05])


def test_class_dice_per_class_mean_and_foreground():
    names = ("background", "spine", "pelvis", "femurs")
    ref = np.zeros((4, 4, 4), int)
    ref[0] = 1
    ref[1] = 2
    pred = ref.copy()
    pred[1, :2] = 1  # half the pelvis called spine
    pred[3, 0, 0] = 2  # one extra pelvis voxel in background
    result = class_dice(pred, ref, names)
    assert result["spine"] == pytest.approx(2 * 16 / (16 + 24))
    assert result["pelvis"] == pytest.approx(2 * 8 / (16 + 9))
    assert math.isnan(result["femurs"])  # absent from both: left out of the mean
    assert result["mean_class_dice"] == pytest.approx((result["spine"] + result["pelvis"]) / 2)
    assert result["foreground"] == pytest.approx(2 * 32 / (32 + 33))
    matrix = confusion_matrix(pred, ref, 4)
    assert matrix.sum() == 64 and matrix[0, 0] == 31
    with pytest.raises(ValueError, match="outside 0..3"):
        class_dice(pred + 4 * (pred > 0), ref, names)
    with pytest.raises(ValueError, match="collide"):
        class_dice(pred, ref, ("background", "foreground", "b", "c"))
