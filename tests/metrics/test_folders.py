"""evaluate_folders from Python: folders of NIfTI files in, tables, summary and files out."""

from __future__ import annotations

import gzip
import json
import math

import numpy as np
import pytest

from sap.metrics import compare_folders, evaluate_folders
from sap.metrics.case_files import EvaluationWarning, find_predictions, match_cases
from sap.metrics.folders import tune_threshold_on_folder
from tests.helpers.metrics import AFFINE, save_nifti, two_lesions, write_study


@pytest.fixture
def study(tmp_path):
    return write_study(tmp_path)


def test_binary_predictions_give_known_counts_volumes_and_dice(study):
    result = evaluate_folders(study / "pred", study / "ref", bootstrap=None)
    assert result.cases.case_ids == ["case_a", "case_b", "case_c"]
    assert result.cases.skipped == ("healthy_000",)
    exams = {row["case_id"]: row for row in result.exam_table()}
    assert [(exams[c]["tp"], exams[c]["fn"], exams[c]["fp"]) for c in sorted(exams)] == [
        (1, 1, 0),
        (2, 0, 0),
        (1, 1, 1),
    ]
    # case_a: 64 of 72 reference voxels predicted, nothing else.
    assert exams["case_a"]["global_dice"] == pytest.approx(2 * 64 / (64 + 72))
    assert exams["case_a"]["mean_lesion_dice"] == pytest.approx(0.5)  # missed lesion = 0
    assert exams["case_a"]["ref_volume_ml"] == pytest.approx(72 * 4.5 / 1000)
    large, small = (row for row in result.lesion_table() if row["case_id"] == "case_a")
    assert large["volume_ml"] == pytest.approx(64 * 4.5 / 1000) and large["dice"] == 1.0
    assert large["centroid_mm_x"] == pytest.approx(3.5 * 1.5)  # scanner mm from the affine
    assert not small["detected"] and math.isnan(small["dice"])
    metrics = result.summary["metrics"]
    assert metrics["sensitivity"]["median"] == 0.5
    assert metrics["sensitivity"]["pooled"] == pytest.approx(4 / 6)
    assert metrics["fp_per_exam"]["pooled"] == pytest.approx(1 / 3)
    assert result.summary["prediction"] == "binary" and result.threshold is None
    assert "froc" not in result.summary


def test_probability_maps_are_binarised_at_the_threshold_and_add_the_froc(study):
    at_default = evaluate_folders(study / "prob", study / "ref", prob=True, bootstrap=None)
    assert at_default.threshold == 0.5
    fp = [row["fp"] for row in at_default.exam_table()]
    assert at_default.summary["metrics"]["sensitivity"]["pooled"] == 1.0 and fp == [1, 1, 1]
    assert at_default.summary["froc"]["auc"] == pytest.approx(4 / 6 + 14)
    at_065 = evaluate_folders(
        study / "prob", study / "ref", prob=True, threshold=0.65, bootstrap=None
    )
    # case_c's lesions peak at 0.5 and the false positives at 0.6: all below 0.65.
    sensitivities = [row["sensitivity"] for row in at_065.exam_table()]
    assert sensitivities == [1.0, 1.0, 0.0]
    assert at_065.summary["metrics"]["fp_per_exam"]["pooled"] == 0.0
    assert at_065.summary["settings"]["threshold"] == 0.65


def test_tuned_threshold_is_used_written_and_warned_about_when_folds_overlap(study):
    with pytest.warns(EvaluationWarning, match="3 tuning case"):
        result = evaluate_folders(
            study / "prob", study / "ref", prob=True, tune_dir=study / "tune", bootstrap=None
        )
    # The best mean F2 keeps every lesion (threshold <= 0.5), mid-way between 0.5 and 0.01.
    assert result.threshold == pytest.approx((0.5 + 0.01) / 2)
    assert (
        result.tuning.threshold == tune_threshold_on_folder(study / "tune", study / "ref").threshold
    )
    assert result.summary["threshold_tuning"]["tune_dir"] == str(study / "tune")
    paths = result.write(study / "out", plots=False)
    assert sorted(p.name for p in paths.values()) == [
        "false_positives.csv",
        "per_exam.csv",
        "per_lesion.csv",
        "summary.json",
        "threshold_tuning.csv",
    ]
    written = json.loads((study / "out" / "summary.json").read_text(encoding="utf-8"))
    assert written == json.loads(json.dumps(result.summary))
    curve = (study / "out" / "threshold_tuning.csv").read_text(encoding="utf-8").splitlines()
    assert curve[0] == "threshold,mean_patient_f_beta" and len(curve) == 1 + 4


def test_healthy_cases_count_as_lesion_free_exams_when_asked(study):
    fp_only = np.zeros(two_lesions().shape, np.uint8)
    fp_only[1:3, 1:3, 1:3] = 1
    save_nifti(study / "pred" / "healthy_000.nii.gz", fp_only)
    result = evaluate_folders(study / "pred", study / "ref", healthy_as_empty=True, bootstrap=None)
    healthy = result.summary["per_exam"]["healthy_000"]
    assert healthy["fp_per_exam"] == 1.0 and healthy["sensitivity"] is None
    assert result.cases.skipped == ()


def test_compare_folders_puts_models_side_by_side(study):
    for case in ("case_a", "case_b", "case_c"):
        save_nifti(study / "perfect" / f"{case}.nii.gz", two_lesions())
    rows, markdown = compare_folders(
        [study / "pred", study / "perfect"], study / "ref", bootstrap=None
    )
    sensitivity = next(row for row in rows if row["metric"] == "sensitivity")
    assert sensitivity["pred"][0] == 0.5 and sensitivity["perfect"][0] == 1.0
    assert "| metric | pred | perfect |" in markdown


def test_a_prediction_on_another_grid_is_refused_with_the_case_named(study):
    shifted = AFFINE.copy()
    shifted[0, 3] = 3.0  # two voxels off
    save_nifti(study / "pred" / "case_b.nii.gz", two_lesions(), shifted)
    (study / "pred" / "case_b" / "lesion.nii.gz").unlink()
    with pytest.raises(ValueError, match="Case 'case_b'.*different affines"):
        evaluate_folders(study / "pred", study / "ref", bootstrap=None)


def test_a_truncated_prediction_is_refused_with_the_case_named(study):
    path = study / "pred" / "case_c.nii.gz"
    data = gzip.compress(gzip.decompress(path.read_bytes()))
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="Case 'case_c'.*truncated"):
        evaluate_folders(study / "pred", study / "ref", bootstrap=None)


def test_probability_maps_without_prob_and_logits_with_it_are_refused(study):
    with pytest.raises(ValueError, match="looks like a probability map"):
        evaluate_folders(study / "tune", study / "ref", bootstrap=None)
    save_nifti(study / "tune" / "case_a.nii.gz", two_lesions() * np.float32(3.0) - 1)
    with pytest.raises(ValueError, match=r"Case 'case_a'.*\[-1, 2\]"):
        evaluate_folders(study / "tune", study / "ref", prob=True, bootstrap=None)


def test_a_confident_map_as_sap_predict_writes_it_is_read_as_probabilities(study):
    # uint8 with scl_slope = 1/255 (float32 in the header) reads 255 as 1.00000006.
    from sap.inference.writer import save_probability_atomic
    from sap.metrics.case_files import CaseFiles, load_case

    path = study / "prob" / "case_a" / "lesion_probability.nii.gz"
    save_probability_atomic(two_lesions().astype(np.float32), AFFINE, path)
    case = CaseFiles("case_a", path, study / "ref" / "case_a" / "lesion.nii.gz")
    prob, _, _ = load_case(case, prob=True)
    assert prob.max() == 1.0 and prob.min() == 0.0
    result = evaluate_folders(study / "prob", study / "ref", prob=True, bootstrap=None)
    exams = {row["case_id"]: row for row in result.exam_table()}
    assert exams["case_a"]["global_dice"] == 1.0


def test_case_matching_names_what_is_missing_or_left_over(study):
    save_nifti(study / "pred" / "orphan.nii.gz", two_lesions())
    with pytest.warns(EvaluationWarning, match="ignoring 1 prediction.*orphan"):
        match_cases(study / "pred", study / "ref", prob=False)
    (study / "pred" / "case_a.nii.gz").unlink()
    with pytest.raises(FileNotFoundError, match="case_a.*Expected e.g."):
        match_cases(study / "pred", study / "ref", prob=False)
    save_nifti(study / "pred" / "case_b.nii.gz", two_lesions())  # case_b also has a folder
    with pytest.raises(ValueError, match="'case_b' has two predictions"):
        find_predictions(study / "pred", prob=False)
