"""False positives split by bone: inside plus outside is exactly what the detection counts."""

from __future__ import annotations

import numpy as np
import pytest

from sap.metrics.detection import DetectionSettings, evaluate_exam
from sap.metrics.fp_location import false_positives_by_region


def test_a_false_positive_is_inside_when_it_touches_the_region() -> None:
    ref = np.zeros((12, 12, 12), bool)
    ref[2, 2, 2] = True
    pred = np.zeros_like(ref)
    pred[2, 2, 2:4] = True  # finds the lesion: not a false positive, wherever it lies
    pred[6:8, 6, 6] = True  # half in bone
    pred[10, 10, 10] = True  # outside bone
    pred[10, 1, 1] = pred[10, 1, 3] = True  # two outside bone
    bone = np.zeros_like(ref)
    bone[7:9, :, :] = True
    bone[2, :, :] = True
    location = false_positives_by_region(pred, ref, bone)
    assert (location.inside, location.outside, location.total) == (1, 3, 4)
    assert false_positives_by_region(pred, ref, np.zeros_like(ref)).outside == 4
    assert false_positives_by_region(pred, ref, np.ones_like(ref)).inside == 4


@pytest.mark.parametrize("connectivity", [6, 26])
def test_inside_plus_outside_equals_the_detection_false_positives(connectivity: int) -> None:
    rng = np.random.default_rng(connectivity)
    settings = DetectionSettings(connectivity=connectivity)
    for _ in range(5):
        ref = rng.random((16, 16, 16)) > 0.97
        pred = rng.random((16, 16, 16)) > 0.95
        bone = rng.random((16, 16, 16)) > 0.5
        location = false_positives_by_region(pred, ref, bone, settings)
        assert location.total == evaluate_exam(pred, ref, 1.0, settings, warn=False).fp
        assert location.inside > 0 and location.outside >= 0


def test_masks_on_different_grids_are_refused() -> None:
    with pytest.raises(ValueError, match="same voxel grid"):
        false_positives_by_region(np.zeros((4, 4, 4)), np.zeros((4, 4, 4)), np.zeros((4, 4, 5)))
