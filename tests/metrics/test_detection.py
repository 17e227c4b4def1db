"""Lesion matching and per-lesion scores on cases whose answer is known by construction."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import ndimage

from sap.metrics import DetectionSettings, evaluate_exam
from sap.metrics.overlap import surface_dice
from sap.volume import min_voxels_for_volume

ISO = (1.0, 1.0, 1.0)


def box(shape, *slices):
    mask = np.zeros(shape, dtype=bool)
    mask[tuple(slices)] = True
    return mask


def test_lesion_detected_when_any_voxel_overlaps():
    ref = box((10, 10, 10), slice(2, 5), slice(2, 5), slice(2, 5))
    pred = box((10, 10, 10), slice(4, 8), slice(4, 8), slice(4, 8))  # one shared voxel (4,4,4)
    result = evaluate_exam(pred, ref, ISO)
    assert (result.tp, result.fn, result.fp) == (1, 0, 0)
    lesion = result.lesions[0]
    assert lesion.detected and lesion.n_pred_components == 1
    assert lesion.dice == pytest.approx(2 * 1 / (27 + 64))


def test_corner_touching_lesions_are_one_lesion_at_26_but_two_at_6_connectivity():
    ref = box((10, 10, 10), slice(2, 4), slice(2, 4), slice(2, 4))
    ref |= box((10, 10, 10), slice(4, 6), slice(4, 6), slice(4, 6))
    pred = box((10, 10, 10), slice(2, 4), slice(2, 4), slice(2, 4))
    at26 = evaluate_exam(pred, ref, ISO, DetectionSettings(connectivity=26))
    assert (at26.n_lesions, at26.tp, at26.fn) == (1, 1, 0)
    assert at26.lesions[0].dice == pytest.approx(2 * 8 / (16 + 8))
    at6 = evaluate_exam(pred, ref, ISO, DetectionSettings(connectivity=6))
    assert (at6.n_lesions, at6.tp, at6.fn) == (2, 1, 1)
    assert at6.metrics()["sensitivity"] == 0.5
    assert at6.metrics()["mean_lesion_dice"] == pytest.approx((1.0 + 0.0) / 2)


def test_face_touching_lesions_merge_into_one_lesion():
    # Two lesions drawn side by side are one connected component in any connectivity:
    # the limit of connected-component evaluation, stated here so nobody is surprised.
    ref = box((10, 10, 10), slice(2, 4), slice(2, 4), slice(2, 4))
    ref |= box((10, 10, 10), slice(4, 6), slice(2, 4), slice(2, 4))
    for connectivity in (6, 18, 26):
        result = evaluate_exam(
            np.zeros_like(ref), ref, ISO, DetectionSettings(connectivity=connectivity)
        )
        assert result.n_lesions == 1 and result.fn == 1


def test_lesion_split_by_prediction_is_one_tp_and_no_fp():
    ref = box((8, 8, 12), slice(2, 4), slice(2, 6), slice(2, 10))  # 2*4*8 = 64 voxels
    pred = box((8, 8, 12), slice(2, 4), slice(2, 6), slice(2, 5))
    pred |= box((8, 8, 12), slice(2, 4), slice(2, 6), slice(7, 10))  # two parts of 24
    result = evaluate_exam(pred, ref, ISO)
    assert (result.tp, result.fn, result.fp) == (1, 0, 0)
    assert (result.n_pred_components, result.n_pred_matched) == (2, 2)
    lesion = result.lesions[0]
    assert lesion.n_pred_components == 2
    assert lesion.dice == pytest.approx(2 * 48 / (64 + 48))
    metrics = result.metrics()
    assert metrics["precision"] == 1.0 and metrics["f_beta"] == 1.0


def test_prediction_bridging_two_lesions_detects_both():
    ref = box((6, 6, 10), slice(1, 3), slice(1, 3), slice(1, 3))
    ref |= box((6, 6, 10), slice(1, 3), slice(1, 3), slice(5, 7))
    pred = box((6, 6, 10), slice(1, 3), slice(1, 3), slice(1, 7))  # 24 voxels over both + gap
    result = evaluate_exam(pred, ref, ISO)
    assert (result.n_lesions, result.tp, result.fn, result.fp) == (2, 2, 0, 0)
    # Each lesion against the whole bridging component: the other lesion counts against it.
    assert [lesion.dice for lesion in result.lesions] == pytest.approx([2 * 8 / (8 + 24)] * 2)
    metrics = result.metrics()
    assert metrics["mean_lesion_dice"] == pytest.approx(0.5)
    assert metrics["global_dice"] == pytest.approx(2 * 16 / (16 + 24))


def test_empty_reference_counts_only_false_positives():
    ref = np.zeros((10, 10, 10), dtype=bool)
    pred = box(ref.shape, slice(1, 3), slice(1, 3), slice(1, 3)) | box(
        ref.shape, slice(6, 8), slice(6, 8), slice(6, 8)
    )
    metrics = evaluate_exam(pred, ref, ISO).metrics()
    assert (metrics["tp"], metrics["fn"], metrics["fp"]) == (0, 0, 2)
    assert math.isnan(metrics["sensitivity"]) and math.isnan(metrics["mean_lesion_dice"])
    assert (
        metrics["precision"] == 0.0 and metrics["f_beta"] == 0.0 and metrics["global_dice"] == 0.0
    )


def test_empty_prediction_misses_every_lesion():
    ref = box((10, 10, 10), slice(1, 3), slice(1, 3), slice(1, 3)) | box(
        (10, 10, 10), slice(6, 8), slice(6, 8), slice(6, 8)
    )
    result = evaluate_exam(np.zeros_like(ref), ref, ISO)
    metrics = result.metrics()
    assert (metrics["tp"], metrics["fn"], metrics["fp"]) == (0, 2, 0)
    assert metrics["sensitivity"] == 0.0 and math.isnan(metrics["precision"])
    assert (
        metrics["f_beta"] == 0.0
        and metrics["mean_lesion_dice"] == 0.0
        and metrics["global_dice"] == 0.0
    )
    assert all(math.isnan(lesion.dice) and math.isnan(lesion.nsd) for lesion in result.lesions)


def test_both_empty_is_a_perfect_lesion_free_exam():
    empty = np.zeros((6, 6, 6), dtype=bool)
    metrics = evaluate_exam(empty, empty, ISO).metrics()
    assert metrics["f_beta"] == 1.0 and metrics["global_dice"] == 1.0 and metrics["fp"] == 0
    assert math.isnan(metrics["sensitivity"]) and math.isnan(metrics["precision"])


def test_f2_weights_sensitivity_four_times_precision():
    ref = box((12, 12, 12), slice(1, 3), slice(1, 3), slice(1, 3))
    ref |= box((12, 12, 12), slice(8, 10), slice(8, 10), slice(8, 10))
    pred = box((12, 12, 12), slice(1, 3), slice(1, 3), slice(1, 3))
    pred |= box((12, 12, 12), slice(5, 6), slice(1, 2), slice(9, 10))
    pred |= box((12, 12, 12), slice(1, 2), slice(9, 10), slice(5, 6))
    metrics = evaluate_exam(pred, ref, ISO).metrics()  # TP 1, FN 1, FP 2
    assert metrics["f_beta"] == pytest.approx(5 * 1 / (5 * 1 + 4 * 1 + 2))
    f1 = evaluate_exam(pred, ref, ISO, DetectionSettings(beta=1.0)).metrics()["f_beta"]
    assert f1 == pytest.approx(2 * 1 / (2 * 1 + 1 + 2))


def test_one_ml_boundary_is_inclusive():
    spacing = (2.0, 2.0, 2.0)  # 8 mm³ voxels: 125 voxels are exactly 1 mL
    assert min_voxels_for_volume(1.0, spacing) == 125
    assert min_voxels_for_volume(1.0, (1.2, 1.2, 1.2)) == 579  # 578.7 voxels of 1.728 mm³
    shape = (20, 20, 20)
    exactly = box(shape, slice(1, 6), slice(1, 6), slice(1, 6))  # 125 voxels
    just_under = exactly.copy()
    just_under[1, 1, 1] = False  # 124 voxels
    ref = exactly.copy()
    ref[10:15, 10:15, 10:15] = just_under[1:6, 1:6, 1:6]
    pred = np.zeros(shape, dtype=bool)
    result = evaluate_exam(pred, ref, spacing)
    assert [lesion.large for lesion in result.lesions] == [True, False]
    assert [lesion.volume_ml for lesion in result.lesions] == pytest.approx([1.0, 0.992])
    assert (result.n_lesions_large, result.fn_large) == (1, 1)
    # The same shapes as false positives: only the 1 mL one counts in the large subset.
    fp_only = evaluate_exam(ref, np.zeros(shape, dtype=bool), spacing)
    assert (fp_only.fp, fp_only.fp_large) == (2, 1)
    assert sorted(fp_only.fp_volumes_ml) == pytest.approx([0.992, 1.0])


def test_large_subset_counts_detection_by_any_component():
    spacing = (2.0, 2.0, 2.0)
    ref = box((20, 20, 20), slice(1, 6), slice(1, 6), slice(1, 6))  # 1 mL lesion
    pred = box((20, 20, 20), slice(1, 2), slice(1, 2), slice(1, 2))  # one voxel inside it
    pred |= box((20, 20, 20), slice(10, 12), slice(10, 12), slice(10, 12))  # small FP
    result = evaluate_exam(pred, ref, spacing)
    assert (result.tp_large, result.fn_large, result.fp, result.fp_large) == (1, 0, 1, 0)
    assert result.metrics()["sensitivity_large"] == 1.0
    assert result.metrics()["precision_large"] == 1.0


def test_volumes_use_anisotropic_spacing():
    ref = box((10, 10, 10), slice(0, 5), slice(0, 5), slice(0, 4))  # 100 voxels
    result = evaluate_exam(ref, ref, (0.5, 2.0, 5.0))  # 5 mm³ per voxel
    assert result.lesions[0].volume_ml == pytest.approx(0.5)
    assert result.ref_volume_ml == pytest.approx(0.5)
    assert result.lesions[0].centroid_voxel == pytest.approx((2.0, 2.0, 1.5))


def test_lesion_nsd_uses_spacing_in_array_axis_order():
    # The prediction is the lesion shifted by one voxel along axis 2.
    ref = box((8, 8, 8), slice(2, 6), slice(2, 6), slice(2, 5))
    pred = box((8, 8, 8), slice(2, 6), slice(2, 6), slice(3, 6))
    thin_axis2 = evaluate_exam(pred, ref, (1.0, 1.0, 0.5), DetectionSettings(nsd_tolerance_mm=0.5))
    thick_axis2 = evaluate_exam(pred, ref, (0.5, 0.5, 4.0), DetectionSettings(nsd_tolerance_mm=0.5))
    assert thin_axis2.lesions[0].nsd == 1.0  # every boundary voxel within 0.5 mm
    assert thick_axis2.lesions[0].nsd < 1.0
    assert thick_axis2.lesions[0].nsd == pytest.approx(
        surface_dice(pred, ref, (0.5, 0.5, 4.0), tolerance_mm=0.5)
    )


def test_settings_are_checked():
    with pytest.raises(ValueError, match="connectivity"):
        DetectionSettings(connectivity=8)
    with pytest.raises(ValueError, match="variant"):
        DetectionSettings(nsd_variant="hausdorff")
    with pytest.raises(ValueError, match="same voxel grid"):
        evaluate_exam(np.zeros((4, 4, 4)), np.zeros((4, 4, 5)), ISO)
    with pytest.raises(ValueError, match="spacing_mm"):
        evaluate_exam(np.zeros((4, 4, 4)), np.zeros((4, 4, 4)), (1.0, 0.0, 1.0))
    with pytest.raises(ValueError, match="3D"):
        evaluate_exam(np.zeros((2, 4, 4, 4)), np.zeros((2, 4, 4, 4)), ISO)


# Cross-check against an independent, straightforward implementation ---------------------
def reference_exam(pred, ref, spacing, tolerance_mm):
    """scipy labels + loops over full-volume masks; NSD by MONAI."""
    import torch
    from monai.metrics import compute_surface_dice

    structure = np.ones((3, 3, 3), dtype=bool)
    ref_lab, n_ref = ndimage.label(ref, structure)
    pred_lab, n_pred = ndimage.label(pred, structure)
    lesions = []
    for i in range(1, n_ref + 1):
        lesion = ref_lab == i
        touching = [j for j in np.unique(pred_lab[lesion]) if j]
        union = np.isin(pred_lab, touching)
        dice = nsd = math.nan
        if touching:
            dice = 2 * np.sum(lesion & union) / (lesion.sum() + union.sum())
            padded = [
                torch.from_numpy(np.pad(m, 1)[None, None].astype(np.float32))
                for m in (union, lesion)
            ]
            nsd = float(
                compute_surface_dice(
                    *padded,
                    class_thresholds=[tolerance_mm],
                    include_background=True,
                    spacing=list(spacing),
                )[0, 0]
            )
        lesions.append((int(lesion.sum()), bool(touching), dice, nsd))
    fp = sum(not ref[pred_lab == j].any() for j in range(1, n_pred + 1))
    return lesions, fp


@pytest.mark.filterwarnings("ignore::FutureWarning")  # MONAI-internal deprecation
@pytest.mark.parametrize("seed", range(4))
def test_matches_a_straightforward_reference_on_random_cases(seed):
    rng = np.random.default_rng(seed)
    shape = (24, 28, 20)
    spacing = (0.8, 1.1, 2.5)
    ref = ndimage.gaussian_filter(rng.random(shape), 1.2) > 0.56
    pred = ndimage.gaussian_filter(rng.random(shape) + 0.5 * ref, 1.2) > 0.6
    result = evaluate_exam(pred, ref, spacing, DetectionSettings(nsd_tolerance_mm=1.7))
    lesions, fp = reference_exam(pred, ref, spacing, 1.7)
    assert result.fp == fp
    ours = sorted(
        (
            round(lesion.volume_ml / np.prod(spacing) * 1000),
            lesion.detected,
            lesion.dice,
            lesion.nsd,
        )
        for lesion in result.lesions
    )
    theirs = sorted(lesions)
    assert len(ours) == len(theirs) > 3
    for (v1, d1, dice1, nsd1), (v2, d2, dice2, nsd2) in zip(ours, theirs):
        assert (v1, d1) == (v2, d2)
        if d1:
            assert dice1 == pytest.approx(dice2, abs=1e-12)
            assert nsd1 == pytest.approx(nsd2, abs=1e-6)


def one_to_one_case(rng):
    """Lesions and predictions in separate 10-voxel cells: every overlap is one-to-one."""
    shape = (30, 30, 20)
    ref = np.zeros(shape, dtype=bool)
    pred = np.zeros(shape, dtype=bool)
    grid = np.indices((10, 10, 10)) - 4.5
    for cell in np.ndindex(3, 3, 2):
        kind = rng.integers(4)  # 0 empty, 1 hit, 2 missed, 3 false positive
        crop = tuple(slice(10 * c, 10 * c + 10) for c in cell)
        radius = rng.uniform(2.0, 3.5)
        shift = rng.integers(-1, 2, size=3)
        lesion = (grid**2).sum(axis=0) <= radius**2
        moved = ((grid - shift[:, None, None, None]) ** 2).sum(axis=0) <= (
            radius * rng.uniform(0.7, 1.2)
        ) ** 2
        if kind in (1, 2):
            ref[crop] |= lesion
        if kind in (1, 3):
            pred[crop] |= moved
    return ref, pred


@pytest.mark.parametrize("seed", range(3))
def test_one_to_one_cases_agree_with_panoptica(seed):
    panoptica = pytest.importorskip("panoptica")
    panoptica.disable_citation_reminder()
    ref, pred = one_to_one_case(np.random.default_rng(seed))
    evaluator = panoptica.Panoptica_Evaluator(
        expected_input=panoptica.InputType.SEMANTIC,
        instance_approximator=panoptica.ConnectedComponentsInstanceApproximator(
            cca_backend=panoptica.CCABackend.cc3d
        ),
        instance_matcher=panoptica.NaiveThresholdMatching(
            matching_metric=panoptica.Metric.IOU, matching_threshold=1e-9, allow_many_to_one=True
        ),
        instance_metrics=[panoptica.Metric.DSC],
        verbose=False,
    )
    theirs = evaluator.evaluate(pred.astype(np.uint8), ref.astype(np.uint8), verbose=False)[
        "ungrouped"
    ]
    ours = evaluate_exam(pred, ref, ISO)
    assert (ours.tp, ours.fp, ours.fn) == (theirs.tp, theirs.fp, theirs.fn)
    assert ours.metrics()["global_dice"] == pytest.approx(theirs.global_bin_dsc)
    if ours.tp:
        assert ours.metrics()["dice_detected_mean"] == pytest.approx(theirs.sq_dsc)


def test_evaluate_exams_checks_lengths_and_names_the_case():
    from sap.metrics import Evaluation, evaluate_exams

    ref = box((6, 6, 6), slice(1, 3), slice(1, 3), slice(1, 3))
    with pytest.raises(ValueError, match="one prediction, reference"):
        evaluate_exams([ref, ref], [ref], ISO)
    with pytest.raises(ValueError, match="'bad_case'"):
        evaluate_exams([ref], [ref[:5]], ISO, case_ids=["bad_case"])
    evaluation = Evaluation()
    evaluation.add("a", ref, ref, ISO)
    with pytest.raises(ValueError, match="added twice"):
        evaluation.add("a", ref, ref, ISO)
    summary = evaluate_exams(
        [ref, ref], [ref, np.zeros_like(ref)], [ISO, (2.0, 2.0, 2.0)], bootstrap=None
    )
    assert summary["n_exams"] == 2 and summary["per_exam"]["exam_001"]["fp_per_exam"] == 1.0
    assert summary["metrics"]["ref_volume_ml"]["pooled"] == pytest.approx(0.008)


def test_headline_metrics_flatten_the_summary():
    from sap.metrics import evaluate_exams, headline_metrics

    ref = box((8, 8, 8), slice(1, 3), slice(1, 3), slice(1, 3)) | box(
        (8, 8, 8), slice(5, 7), slice(5, 7), slice(5, 7)
    )
    pred = box((8, 8, 8), slice(1, 3), slice(1, 3), slice(1, 3))
    summary = evaluate_exams([pred], [ref], ISO, bootstrap=None)
    flat = headline_metrics(summary)
    assert flat["sensitivity"] == 0.5 and flat["f_beta"] == pytest.approx(5 / 9)
    assert flat["dice_detected"] == 1.0 and flat["mean_lesion_dice"] == 0.5
    assert flat["precision_large"] is None and flat["icc_2_1_total_volume"] is None
    assert headline_metrics(summary, "pooled")["fp_per_exam"] == 0.0


def test_body_sized_prediction_detects_every_lesion_without_false_positives():
    # The documented weakness of any-overlap matching (docs/metrics.md): one prediction
    # covering the whole volume scores perfectly on detection; only Dice shows it.
    ref = box((12, 12, 12), slice(1, 3), slice(1, 3), slice(1, 3))
    ref |= box((12, 12, 12), slice(8, 10), slice(8, 10), slice(8, 10))
    metrics = evaluate_exam(np.ones_like(ref), ref, ISO).metrics()
    assert (metrics["tp"], metrics["fn"], metrics["fp"]) == (2, 0, 0)
    assert metrics["sensitivity"] == metrics["precision"] == metrics["f_beta"] == 1.0
    assert metrics["global_dice"] == pytest.approx(2 * 16 / (16 + 12**3))
