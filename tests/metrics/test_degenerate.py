"""Degenerate predictions are visible: merged predictions, volume ratio, flags and warnings."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch

from sap.metrics import (
    DegeneratePredictionWarning,
    LesionDetection,
    LesionFROC,
    evaluate_exam,
    evaluate_exams,
    exam_froc,
)
from sap.metrics.degenerate import body_mask_from_image
from tests.helpers.metrics import three_lesions

SPACING = (2.0, 2.0, 2.0)  # 8 mm³ voxels


def test_all_ones_mask_scores_perfect_detection_but_is_flagged():
    ref = three_lesions()
    with pytest.warns(DegeneratePredictionWarning, match="covers 3 of 3 reference lesions"):
        result = evaluate_exam(np.ones(ref.shape, bool), ref, SPACING)
    row = result.metrics()
    # Any overlap: every lesion detected, no false positive, perfect F2 ...
    assert (row["sensitivity"], row["precision"], row["f_beta"], row["fp"]) == (1.0, 1.0, 1.0, 0.0)
    # ... and what exposes it.
    assert row["merged_predictions"] == 1.0 and row["max_lesions_per_prediction"] == 3.0
    assert row["volume_ratio"] == pytest.approx(ref.size / np.count_nonzero(ref))
    assert row["pred_fraction"] == 1.0 and row["degenerate"] == 1.0
    assert result.flags == (
        "one predicted component covers 3 of 3 reference lesions",
        "the prediction covers 100 % of the volume",
    )


def test_one_blob_over_three_lesions_counts_as_one_merged_prediction():
    ref = three_lesions()
    blob = np.zeros(ref.shape, bool)
    blob[2:20, 2:6, 2:6] = True  # a bar through all three lesions, 3 % of the volume
    with pytest.warns(DegeneratePredictionWarning) as caught:
        result = evaluate_exam(blob, ref, SPACING)
    assert [str(w.message).split(":")[0] for w in caught] == ["degenerate prediction"]
    assert (result.tp, result.fp, result.merged_predictions) == (3, 0, 1)
    assert result.flags == ("one predicted component covers 3 of 3 reference lesions",)
    assert result.volume_ratio == pytest.approx(18 * 16 / (3 * 8))


def test_two_of_four_lesions_bridged_is_flagged_as_half_of_them():
    ref = three_lesions()
    ref[2:4, 20:22, 20:22] = True  # a fourth lesion, far away
    bridge = np.zeros(ref.shape, bool)
    bridge[2:10, 2:4, 2:4] = True  # touches lesions 1 and 2 of four
    result = evaluate_exam(bridge, ref, SPACING, warn=False)
    assert result.merged_predictions == 1 and result.max_lesions_per_prediction == 2
    assert result.flags == ("one predicted component covers 2 of 4 reference lesions",)


def test_normal_prediction_has_no_flag_and_no_warning():
    ref = three_lesions()
    pred = ref.copy()
    pred[14:16, 2:4, 2:4] = False  # the third lesion is missed
    pred[20:22, 20:22, 20:22] = True  # one false positive of 8 voxels
    with warnings.catch_warnings():
        warnings.simplefilter("error", DegeneratePredictionWarning)
        result = evaluate_exam(pred, ref, SPACING)
    assert (result.tp, result.fn, result.fp) == (2, 1, 1)
    assert result.merged_predictions == 0 and result.flags == ()
    assert result.volume_ratio == pytest.approx((16 + 8) / 24)
    assert result.metrics()["degenerate"] == 0.0


def test_empty_reference_has_undefined_volume_ratio():
    ref = np.zeros((8, 8, 8), bool)
    result = evaluate_exam(ref, ref, 1.0)
    assert math.isnan(result.volume_ratio) and result.flags == ()


def test_body_covering_prediction_is_flagged_only_against_the_body():
    ref = three_lesions()
    body = np.zeros(ref.shape, bool)
    body[:, 1:9, :] = True  # the body fills a third of the field of view
    pred = body.copy()
    without = evaluate_exam(pred, ref, SPACING, warn=False)
    assert without.flags == ("one predicted component covers 3 of 3 reference lesions",)
    ref_small = np.zeros(ref.shape, bool)
    ref_small[2:4, 2:4, 2:4] = True  # one lesion: no merge, only the body flag can fire
    assert evaluate_exam(pred, ref_small, SPACING, warn=False).flags == ()
    with_body = evaluate_exam(pred, ref_small, SPACING, body_mask=body, warn=False)
    assert with_body.flags == ("the prediction covers 100 % of the body",)
    assert with_body.pred_fraction == 1.0


def test_body_mask_from_an_image_keeps_the_bright_part():
    image = np.zeros((10, 10, 10), np.float32)
    image[2:8, 2:8, 2:8] = 500.0
    image += np.random.default_rng(0).random(image.shape).astype(np.float32)  # background noise
    body = body_mask_from_image(image)
    assert body.sum() == 6**3
    assert body_mask_from_image(np.zeros((10, 10, 10))) is None  # blank: not trusted


def test_constant_probability_map_reaches_the_maximum_froc_auc_and_is_flagged():
    ref = three_lesions()
    constant = np.full(ref.shape, 0.3, np.float32)
    with pytest.warns(DegeneratePredictionWarning, match=r"constant \(0.3 everywhere\)"):
        summary = evaluate_exams(
            None, [ref], SPACING, prob_maps=[constant], case_ids=["flat"], bootstrap=None
        )
    froc = summary["froc"]
    assert froc["auc"] == 15.0 and froc["auc_normalised"] == 1.0  # the maximum
    assert froc["flagged_cases"] == ["flat"]
    assert "constant probability map" in froc["caveat"]
    assert summary["degenerate"]["flat"][0] == "the probability map is constant (0.3 everywhere)"


def test_near_constant_map_is_flagged_and_a_real_map_is_not():
    ref = three_lesions()
    rng = np.random.default_rng(0)
    near = (0.3 + 0.004 * rng.random(ref.shape)).astype(np.float32)
    flags = exam_froc(near, ref, SPACING, warn=False).flags
    assert flags[0].startswith("the probability map is near-constant (between 0.3 and 0.304)")
    real = np.where(ref, 0.9, 0.001).astype(np.float32)
    assert exam_froc(real, ref, SPACING, warn=False).flags == ()


def test_summary_reports_totals_and_lists_degenerate_cases():
    ref = three_lesions()
    with pytest.warns(DegeneratePredictionWarning, match="Case 'blob'"):
        summary = evaluate_exams(
            [np.ones(ref.shape, bool), ref],
            [ref, ref],
            SPACING,
            case_ids=["blob", "good"],
            bootstrap=None,
        )
    assert summary["merged_predictions"] == 1
    assert summary["volume_ratio"] == pytest.approx((ref.size + 24) / 48)
    assert list(summary["degenerate"]) == ["blob"]
    assert summary["metrics"]["volume_ratio"]["median"] == pytest.approx((ref.size / 24 + 1) / 2)
    assert summary["per_exam"]["good"]["merged_predictions"] == 0.0


def test_lesion_detection_reports_merged_predictions_volume_ratio_and_patient_dice():
    ref = three_lesions()
    half = ref.copy()
    half[14:16, 2:4, 2:4] = False  # lesion 3 missed: patient Dice (1 + 1 + 0) / 3
    metric = LesionDetection(spacing_mm=SPACING)
    metric.update(torch.from_numpy(half), torch.from_numpy(ref))
    metric.update(torch.ones(ref.shape), torch.from_numpy(ref))  # float 1.0 >= 0.5: all lesion
    with pytest.warns(DegeneratePredictionWarning, match="1 of 2 exams"):
        values = metric.compute()
    assert float(values["merged_predictions"]) == 1.0
    assert float(values["degenerate_exams"]) == 1.0
    assert float(values["volume_ratio"]) == pytest.approx((16 + ref.size) / 48)
    blob_dice = 2 * 8 / (ref.size + 8)  # each lesion against the whole-volume component
    assert float(values["patient_mean_dice"]) == pytest.approx((2 / 3 + blob_dice) / 2)
    assert float(values["sensitivity"]) == pytest.approx(5 / 6)


def test_lesion_froc_counts_flagged_maps():
    ref = three_lesions()
    metric = LesionFROC(spacing_mm=SPACING)
    metric.update(torch.full(ref.shape, 0.3), torch.from_numpy(ref))
    with pytest.warns(DegeneratePredictionWarning, match="reaches the maximum FROC-AUC"):
        values = metric.compute()
    assert float(values["froc_auc"]) == 15.0 and float(values["degenerate_exams"]) == 1.0
