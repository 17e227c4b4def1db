"""Fault catalogue, metrics: predictions that score well for the wrong reason are flagged (#9).

| # | input / fault | expected outcome | test |
| --- | --- | --- | --- |
| M1 | `sap evaluate` on all-ones masks (one blob over everything) | exit 0; sensitivity, precision, F2 = 1 and 0 FP are still reported (any overlap is the paper's rule) but every case is flagged: one `sap evaluate: warning: Case '<id>': degenerate prediction: one predicted component covers 2 of 2 reference lesions; the prediction covers 100 % of the volume ...` line per case, `degenerate predictions: 3 case(s)` on stdout, `summary.json` lists them under `degenerate` with `merged_predictions` 3 and `volume_ratio` = volume / reference volume; inputs unchanged | `test_all_ones_masks_are_flagged_by_sap_evaluate` |
| M2 | `sap evaluate --prob` on constant 0.3 probability maps | exit 0; FROC-AUC 15 (the maximum) reported with `froc.flagged_cases` = every case and the `froc.caveat` sentence; warnings name each case and say "constant (0.3 everywhere)"; inputs unchanged | `test_constant_probability_maps_reach_the_maximum_froc_auc_and_are_flagged` |
| M3 | one predicted component bridging 3 lesions (3 % of the volume) | TP 3, FP 0, `merged_predictions` 1, a `DegeneratePredictionWarning` "covers 3 of 3 reference lesions" | `test_one_blob_over_three_lesions_is_one_merged_prediction` |
| M4 | a prediction covering the whole body (a third of the field of view), T1 in the reference case folder | flagged "covers 100 % of the body" (body mask from the case's T1); without a T1 only the volume counts and it is not flagged | `test_prediction_of_the_whole_body_is_flagged_with_the_cases_t1` |
| M5 | reference folder's T1 unreadable (truncated) | evaluation goes on, exit 0, one warning naming the T1 file and saying the whole volume is used instead | `test_unreadable_t1_only_costs_the_body_mask` |
| M6 | validation metric `LesionDetection` fed a model output of all 1.0 | `sensitivity` 1 and `f_beta` 1, but `merged_predictions` 1, `volume_ratio` 42.7 (3072 / 72 voxels), `patient_mean_dice` 0.023, `degenerate_exams` 1, and one `DegeneratePredictionWarning` per `compute()` | `test_validation_metric_exposes_an_all_lesion_model` |
| M7 | validation metric `LesionFROC` fed a constant map | `froc_auc` 15, `degenerate_exams` 1, a warning saying the AUC is not meaningful | `test_validation_froc_flags_a_constant_map` |
| M8 | a normal prediction (one lesion missed, one false positive) | no warning at all, `degenerate` empty, `merged_predictions` 0 | `test_normal_predictions_raise_no_flag` |
"""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
import torch

from sap.metrics import (
    DegeneratePredictionWarning,
    LesionDetection,
    LesionFROC,
    evaluate_exam,
    evaluate_folders,
)
from tests.helpers.faults import tree_digest
from tests.helpers.metrics import (
    SHAPE,
    run_evaluate_cli,
    save_nifti,
    three_lesions,
    two_lesions,
    write_study,
)

CASES = ("case_a", "case_b", "case_c")


def sap_evaluate(study, pred: str, out, *options: str) -> int:
    """``sap evaluate --pred STUDY/PRED --ref STUDY/ref --out OUT`` without bootstrap or plots."""
    paths = ["--pred", str(study / pred), "--ref", str(study / "ref"), "--out", str(out)]
    return run_evaluate_cli([*paths, "--bootstrap", "0", "--no-progress", "--no-plots", *options])


@pytest.fixture
def study(tmp_path):
    root = write_study(tmp_path / "study")
    for case in CASES:
        save_nifti(root / "ones" / f"{case}.nii.gz", np.ones(SHAPE, np.uint8))
        save_nifti(root / "flat" / case / "lesion_probability.nii.gz", np.full(SHAPE, 0.3))
    return root


def test_all_ones_masks_are_flagged_by_sap_evaluate(study, tmp_path, capsys):
    before = tree_digest(study)
    out = tmp_path / "out"
    assert sap_evaluate(study, "ones", out) == 0
    printed = capsys.readouterr()
    for case in CASES:
        assert (
            f"sap evaluate: warning: Case '{case}': degenerate prediction: one predicted "
            "component covers 2 of 2 reference lesions; the prediction covers 100 % of the "
            "volume." in printed.err
        )
    assert "degenerate predictions: 3 case(s) (case_a, case_b, case_c)" in printed.out
    summary = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    for name in ("sensitivity", "precision", "f_beta"):
        assert summary["metrics"][name]["median"] == 1.0
    assert summary["metrics"]["fp_per_exam"]["median"] == 0.0
    assert summary["merged_predictions"] == 3 and sorted(summary["degenerate"]) == list(CASES)
    assert summary["volume_ratio"] == pytest.approx(np.prod(SHAPE) / 72)
    assert tree_digest(study) == before


def test_constant_probability_maps_reach_the_maximum_froc_auc_and_are_flagged(
    study, tmp_path, capsys
):
    before = tree_digest(study)
    out = tmp_path / "out"
    assert sap_evaluate(study, "flat", out, "--prob") == 0
    err = capsys.readouterr().err
    for case in CASES:
        assert (
            f"Case '{case}': degenerate prediction: the probability map is constant (0.3 everywhere)"
            in err
        )
    froc = json.loads((out / "summary.json").read_text(encoding="utf-8"))["froc"]
    assert froc["auc"] == 15.0 and froc["flagged_cases"] == list(CASES)
    assert froc["caveat"].startswith("A constant probability map (any constant >= min_prob)")
    assert tree_digest(study) == before


def test_one_blob_over_three_lesions_is_one_merged_prediction():
    ref = three_lesions()
    blob = np.zeros(ref.shape, bool)
    blob[2:20, 2:6, 2:6] = True
    with pytest.warns(DegeneratePredictionWarning, match="covers 3 of 3 reference lesions"):
        result = evaluate_exam(blob, ref, 2.0)
    assert (result.tp, result.fp, result.merged_predictions) == (3, 0, 1)


def test_prediction_of_the_whole_body_is_flagged_with_the_cases_t1(tmp_path):
    ref = np.zeros(SHAPE, np.uint8)
    ref[4:6, 4:6, 4:6] = 1
    body = np.zeros(SHAPE, np.float32)
    body[:, 2:7, :] = 400.0  # a third of the field of view
    save_nifti(tmp_path / "ref" / "case_a" / "lesion.nii.gz", ref)
    save_nifti(tmp_path / "pred" / "case_a.nii.gz", (body > 0).astype(np.uint8))
    before = tree_digest(tmp_path)
    with warnings.catch_warnings():
        warnings.simplefilter("error", DegeneratePredictionWarning)
        plain = evaluate_folders(tmp_path / "pred", tmp_path / "ref", bootstrap=None)
    assert plain.summary["degenerate"] == {}
    save_nifti(tmp_path / "ref" / "case_a" / "T1.nii.gz", body)
    with pytest.warns(DegeneratePredictionWarning, match="covers 100 % of the body"):
        flagged = evaluate_folders(tmp_path / "pred", tmp_path / "ref", bootstrap=None)
    assert flagged.summary["degenerate"] == {"case_a": ["the prediction covers 100 % of the body"]}
    after = tree_digest(tmp_path)
    after.pop("ref/case_a/T1.nii.gz")  # added by this test between the two runs
    assert after == before


def test_unreadable_t1_only_costs_the_body_mask(study, tmp_path, capsys):
    t1 = study / "ref" / "case_a" / "T1.nii.gz"
    save_nifti(t1, np.ones(SHAPE, np.float32))
    t1.write_bytes(t1.read_bytes()[:60])  # truncated
    before = tree_digest(study)
    out = tmp_path / "out"
    assert sap_evaluate(study, "pred", out) == 0
    err = capsys.readouterr().err
    assert f"sap evaluate: warning: case 'case_a': {t1}" in err
    assert "uses the whole volume instead of the body" in err
    assert tree_digest(study) == before


def test_validation_metric_exposes_an_all_lesion_model():
    ref = torch.from_numpy(two_lesions().astype(bool))
    metric = LesionDetection(spacing_mm=(1.5, 1.5, 2.0))
    metric.update(torch.ones((1, 1, *SHAPE)), ref[None, None])
    with pytest.warns(DegeneratePredictionWarning, match="1 of 1 exams look like degenerate"):
        values = {k: float(v) for k, v in metric.compute().items()}
    assert values["sensitivity"] == 1.0 and values["f_beta"] == 1.0
    assert values["merged_predictions"] == 1.0 and values["degenerate_exams"] == 1.0
    assert values["volume_ratio"] == pytest.approx(np.prod(SHAPE) / 72)
    n = np.prod(SHAPE)
    assert values["patient_mean_dice"] == pytest.approx((2 * 64 / (n + 64) + 2 * 8 / (n + 8)) / 2)


def test_validation_froc_flags_a_constant_map():
    metric = LesionFROC(spacing_mm=(1.5, 1.5, 2.0))
    metric.update(torch.full(SHAPE, 0.3), torch.from_numpy(two_lesions()))
    with pytest.warns(DegeneratePredictionWarning, match="this AUC is not meaningful"):
        values = metric.compute()
    assert float(values["froc_auc"]) == 15.0 and float(values["degenerate_exams"]) == 1.0


def test_normal_predictions_raise_no_flag(study):
    with warnings.catch_warnings():
        warnings.simplefilter("error", DegeneratePredictionWarning)
        result = evaluate_folders(study / "pred", study / "ref", bootstrap=None)
    assert result.summary["degenerate"] == {} and result.summary["merged_predictions"] == 0
