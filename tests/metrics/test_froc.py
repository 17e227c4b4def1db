"""FROC: exact counts at every threshold, pooled curves, AUC integration and threshold tuning."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import ndimage

from sap.metrics import DetectionSettings, evaluate_exam, exam_froc, froc_curve, tune_threshold
from sap.metrics.froc import FROCCurve
from sap.volume import min_voxels_for_volume


def brute_force_counts(prob, ref, threshold, connectivity, min_voxels):
    """Relabel {prob >= t} with scipy and loop over its components."""
    structure = ndimage.generate_binary_structure(3, {6: 1, 18: 2, 26: 3}[connectivity])
    labels, count = ndimage.label(prob >= np.float64(threshold), structure)
    fp = fp_large = 0
    for label in range(1, count + 1):
        component = labels == label
        if not ref[component].any():
            fp += 1
            fp_large += int(component.sum() >= min_voxels)
    return fp, fp_large


def smooth_map(rng, shape, kind):
    prob = ndimage.gaussian_filter(rng.random(shape), 1.0)
    prob = (prob - prob.min()) / (prob.max() - prob.min())
    if kind == "plateaus":
        prob = np.round(prob * 5) / 5
    elif kind == "noise":
        prob = rng.random(shape)
    return prob


@pytest.mark.parametrize(
    ("seed", "connectivity", "kind"),
    [
        (0, 26, "smooth"),
        (1, 6, "plateaus"),
        (2, 18, "noise"),
        (3, 26, "plateaus"),
        (4, 26, "noise"),
    ],
)
def test_false_positive_counts_equal_relabelling_at_every_threshold(seed, connectivity, kind):
    rng = np.random.default_rng(seed)
    shape = (10, 12, 9)
    spacing = (1.0, 1.0, 2.0)
    prob = smooth_map(rng, shape, kind)
    ref = ndimage.gaussian_filter(rng.random(shape), 1.0) > 0.55
    froc = exam_froc(
        prob, ref, spacing, connectivity=connectivity, min_volume_ml=0.02, min_prob=0.05
    )
    min_voxels = min_voxels_for_volume(0.02, spacing)
    values = np.unique(prob[prob >= 0.05])
    thresholds = np.concatenate([values, (values[1:] + values[:-1]) / 2, [0.05]])
    thresholds = rng.choice(thresholds, size=min(30, thresholds.size), replace=False)
    fp, fp_large, tp = froc.fp(thresholds), froc.fp(thresholds, large=True), froc.tp(thresholds)
    for i, t in enumerate(thresholds):
        assert (fp[i], fp_large[i]) == brute_force_counts(prob, ref, t, connectivity, min_voxels)
        result = evaluate_exam(
            prob >= t,
            ref,
            spacing,
            DetectionSettings(connectivity=connectivity, min_volume_ml=0.02),
        )
        assert (tp[i], fp[i], fp_large[i]) == (result.tp, result.fp, result.fp_large)


def test_lesion_detected_at_threshold_up_to_its_highest_probability():
    ref = np.zeros((12, 12, 12), dtype=bool)
    ref[2:5, 2:5, 2:5] = True
    ref[8:11, 8:11, 8:11] = True
    prob = np.zeros(ref.shape)
    prob[3, 3, 3] = 0.9  # inside lesion 1
    prob[9, 9, 9] = 0.4  # inside lesion 2
    prob[2, 9, 2] = 0.7  # a false positive
    froc = exam_froc(prob, ref, 1.0)
    assert sorted(froc.lesion_max_prob) == [0.4, 0.9]
    thresholds = np.array([0.95, 0.9, 0.8, 0.7, 0.5, 0.4, 0.1])
    assert froc.tp(thresholds).tolist() == [0, 1, 1, 1, 1, 2, 2]
    assert froc.fp(thresholds).tolist() == [0, 0, 0, 1, 1, 1, 1]


def test_false_positive_merging_into_a_lesion_stops_counting():
    # A false-positive peak joined to a lesion through a saddle at 0.3.
    prob = np.zeros((3, 3, 9))
    prob[1, 1, :] = [0.0, 0.8, 0.8, 0.3, 0.6, 0.6, 0.0, 0.0, 0.0]
    ref = np.zeros(prob.shape, dtype=bool)
    ref[1, 1, 1:3] = True
    froc = exam_froc(prob, ref, 1.0)
    assert froc.fp(np.array([0.7, 0.6, 0.5, 0.3, 0.1])).tolist() == [0, 1, 1, 0, 0]
    assert froc.tp(np.array([0.7, 0.3])).tolist() == [1, 1]


def test_large_false_positives_count_once_they_reach_the_volume():
    prob = np.zeros((3, 3, 12))
    prob[1, 1, 1:11] = [0.2, 0.3, 0.5, 0.7, 0.9, 0.8, 0.6, 0.4, 0.3, 0.2]
    ref = np.zeros(prob.shape, dtype=bool)
    froc = exam_froc(prob, ref, (10.0, 10.0, 10.0), min_volume_ml=4.0)  # 1 voxel = 1 mL
    thresholds = np.array([0.9, 0.7, 0.6, 0.5, 0.2])
    assert froc.fp(thresholds).tolist() == [1, 1, 1, 1, 1]
    # Voxels >= t: 0.9 -> 1, 0.7 -> 3, 0.6 -> 4, 0.5 -> 5, 0.2 -> 10.
    assert froc.fp(thresholds, large=True).tolist() == [0, 0, 1, 1, 1]


def test_float32_maps_match_binarisation_in_float64():
    rng = np.random.default_rng(7)
    prob = ndimage.gaussian_filter(rng.random((12, 12, 12)), 1.0).astype(np.float32)
    prob = (prob - prob.min()) / (prob.max() - prob.min())
    ref = prob > 0.8
    froc = exam_froc(prob, ref, 1.0, min_prob=0.05)
    for t in (0.3, float(np.float32(0.55)), 0.7):
        result = evaluate_exam(prob >= np.float64(t), ref, 1.0)
        assert (froc.tp(np.array([t]))[0], froc.fp(np.array([t]))[0]) == (result.tp, result.fp)


def test_pooled_curve_adds_counts_over_exams():
    rng = np.random.default_rng(11)
    exams = []
    for _ in range(3):
        prob = smooth_map(rng, (10, 10, 10), "smooth")
        exams.append(exam_froc(prob, prob > 0.75, 1.0, min_prob=0.05))
    curve = froc_curve(exams)
    assert curve.thresholds[0] == np.inf and curve.fp_per_exam[0] == 0 and curve.sensitivity[0] == 0
    assert np.all(np.diff(curve.thresholds) < 0)
    t = curve.thresholds[5:8]
    n_lesions = sum(e.n_lesions() for e in exams)
    assert curve.n_lesions == n_lesions
    expected_sens = sum(e.tp(t) for e in exams) / n_lesions
    expected_fppi = sum(e.fp(t) for e in exams) / 3
    np.testing.assert_allclose(curve.sensitivity[5:8], expected_sens)
    np.testing.assert_allclose(curve.fp_per_exam[5:8], expected_fppi)
    with pytest.raises(ValueError, match="min_prob"):
        froc_curve(exams, thresholds=[0.5, 0.01])


def curve(fppi, sens):
    return FROCCurve(
        thresholds=np.linspace(1, 0, len(fppi)),
        sensitivity=np.asarray(sens, float),
        fp_per_exam=np.asarray(fppi, float),
        n_exams=1,
        n_lesions=10,
    )


def test_auc_integrates_the_step_envelope_and_extends_it_flat():
    c = curve([0, 1, 2, 4], [0.0, 0.5, 0.6, 0.8])
    # 0.0 on [0,1), 0.5 on [1,2), 0.6 on [2,4), 0.8 on [4,15]
    assert c.auc(15) == pytest.approx(0.5 + 0.6 * 2 + 0.8 * 11)
    assert c.auc(4) == pytest.approx(0.5 + 0.6 * 2)
    assert c.auc(3) == pytest.approx(0.5 + 0.6)
    assert c.extended(15) and not c.extended(4)
    assert c.sensitivity_at(2.5) == 0.6


def test_auc_uses_the_best_sensitivity_when_the_curve_turns_back():
    # Lowering the threshold merged false positives: FP per exam went 3 -> 1 while
    # sensitivity rose; the envelope takes the best operating point at each FP level.
    c = curve([0, 2, 3, 1], [0.0, 0.4, 0.5, 0.7])
    assert c.auc(4) == pytest.approx(0.7 * 3)
    x, s = c.envelope(4)
    assert x.tolist() == [0, 1, 2, 3] and s.tolist() == [0.0, 0.7, 0.7, 0.7]


def test_perfect_detector_reaches_the_limit():
    ref = np.zeros((8, 8, 8), dtype=bool)
    ref[2:4, 2:4, 2:4] = True
    prob = ref * 0.9
    exams = [exam_froc(prob, ref, 1.0)]
    assert froc_curve(exams).auc(15) == pytest.approx(15.0)
    assert math.isnan(froc_curve(exams, large=True).sensitivity[-1])  # no lesion >= 1 mL


def test_tuning_finds_the_threshold_that_maximises_f2():
    # Two lesions with peaks 0.8 and 0.35, false positives with peaks 0.6 and 0.2.
    ref = np.zeros((4, 4, 20), dtype=bool)
    prob = np.zeros(ref.shape)
    for z, peak, lesion in ((1, 0.8, True), (5, 0.35, True), (9, 0.6, False), (13, 0.2, False)):
        prob[1, 1, z] = peak
        ref[1, 1, z] = lesion
    exams = [exam_froc(prob, ref, 1.0)]
    tuning = tune_threshold(exams)
    # t in (0.2, 0.35]: TP 2, FN 0, FP 1 -> F2 = 10 / 11, the best; reported mid-interval.
    assert tuning.score == pytest.approx(10 / 11)
    assert tuning.threshold == pytest.approx((0.35 + 0.2) / 2)
    result = evaluate_exam(prob >= tuning.threshold, ref, 1.0)
    assert (result.tp, result.fp) == (2, 1)
    grid = tune_threshold(exams, thresholds=[0.9, 0.7, 0.5, 0.3, 0.1])
    assert grid.threshold == 0.3 and grid.score == pytest.approx(10 / 11)


def test_tuning_a_model_that_finds_nothing_freezes_the_highest_threshold():
    ref = np.zeros((3, 3, 3), dtype=bool)
    ref[1, 1, 1] = True
    quiet = np.full(ref.shape, 0.001)  # below min_prob everywhere
    exams = [exam_froc(quiet, ref, 1.0), exam_froc(quiet, np.zeros_like(ref), 1.0)]
    tuning = tune_threshold(exams)
    # The patient with a lesion scores F2 = 0, the lesion-free one 1.
    assert tuning.threshold == 1.0 and tuning.score == 0.5


def test_tuning_averages_patients_and_breaks_ties_towards_higher_thresholds():
    ref = np.zeros((3, 3, 3), dtype=bool)
    ref[1, 1, 1] = True
    prob = np.zeros(ref.shape)
    prob[1, 1, 1] = 0.5
    exams = [exam_froc(prob, ref, 1.0), exam_froc(prob, ref, 1.0)]
    tuning = tune_threshold(exams, thresholds=[0.4, 0.3, 0.2])
    assert tuning.threshold == 0.4 and tuning.score == 1.0
    with pytest.raises(ValueError, match="aggregate"):
        tune_threshold(exams, aggregate="max")


def test_constant_probability_map_reaches_the_maximum_froc_auc():
    # The documented weakness (docs/metrics.md): at or below the constant, the whole volume
    # is one component touching every lesion, so sensitivity is 1 at 0 FP per exam.
    ref = np.zeros((12, 12, 12), dtype=bool)
    ref[1:6, 1:6, 1:6] = True  # 125 voxels of 8 mm³: 1 mL, in the large subset
    ref[8:10, 8:10, 8:10] = True
    exams = [exam_froc(np.full(ref.shape, 0.3), ref, 2.0)]
    assert froc_curve(exams).auc(15) == 15.0
    assert froc_curve(exams, large=True).auc(4) == 4.0
