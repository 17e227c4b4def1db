"""Percentiles without a copy: the values np.percentile gives, bit for bit.

Training and prediction normalise every channel with them, so a difference of one ulp
would make prediction disagree with the preprocessing the model was trained on.
"""

from __future__ import annotations

import numpy as np
import pytest

from sap.data.transforms import rescale_percentiles_
from sap.volume.percentiles import order_statistics, percentiles


def _volumes(rng: np.random.Generator):
    yield rng.normal(size=(17, 13, 11)).astype(np.float32)
    yield rng.integers(0, 4, size=(9, 8, 7)).astype(np.float32)  # many ties, like MRI air
    yield (rng.exponential(size=(30, 20, 10)) * 900 - 5).astype(np.float32)
    yield rng.normal(size=(12, 10, 14)).astype(np.float32)[::-1, :, ::2]  # a flipped view
    yield np.array([[[3.0]]], np.float32)
    yield np.array([-np.inf, 1, 2, np.inf], np.float32)


@pytest.mark.parametrize("q", [(1.0, 99.0), (0.0, 100.0), (50.0,), (0.5, 37.3, 99.9)])
def test_equals_numpy_bit_for_bit(q):
    rng = np.random.default_rng(3)
    for volume in _volumes(rng):
        ours = percentiles(volume, q)
        expected = np.percentile(volume, q)
        assert ours.dtype == expected.dtype == np.float64
        assert ours.tobytes() == np.asarray(expected).tobytes(), (volume.shape, q)


def test_input_is_not_changed_and_chunks_cover_large_volumes():
    volume = np.random.default_rng(0).normal(size=(3, 600, 1000)).astype(np.float32)  # > 1 chunk
    before = volume.copy()
    assert percentiles(volume, (1, 99)).tolist() == np.percentile(volume, (1, 99)).tolist()
    assert np.array_equal(volume, before)


def test_nan_gives_nan_like_numpy():
    volume = np.array([1.0, np.nan, 3.0], np.float32)
    assert np.isnan(percentiles(volume, (1, 99))).all()


def test_order_statistics_and_refusals():
    values = np.array([5, -1, 3, 3, 0, -0.0], np.float32)
    assert order_statistics(values, [0, 3, 5]) == [-1.0, 3.0, 5.0]
    with pytest.raises(TypeError, match="float32"):
        percentiles(values.astype(np.float64), (1, 99))
    with pytest.raises(ValueError, match="outside"):
        order_statistics(values, [6])


def test_rescale_equals_the_numpy_formula():
    volume = np.random.default_rng(1).gamma(2.0, 300.0, size=(20, 16, 24)).astype(np.float32)
    expected = volume.copy()
    low, high = np.percentile(expected, (1, 99))
    np.clip(expected, low, high, out=expected)
    expected -= expected.min()
    expected /= expected.max()
    assert rescale_percentiles_(volume, (1, 99)).tobytes() == expected.tobytes()
