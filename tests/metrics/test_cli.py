"""`sap evaluate` on folders of NIfTI files: outputs, tuning, comparison and clear errors."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from scipy import stats as scipy_stats

from tests.helpers.metrics import AFFINE, run_evaluate_cli, save_nifti, two_lesions, write_study

run_cli = run_evaluate_cli


@pytest.fixture
def study(tmp_path):
    return write_study(tmp_path)


def evaluate(study, pred: str, out: str, *options: str) -> int:
    """``sap evaluate --pred STUDY/pred --ref STUDY/ref --out STUDY/out OPTIONS``."""
    paths = ["--pred", str(study / pred), "--ref", str(study / "ref"), "--out", str(study / out)]
    return run_cli([*paths, *options])


def read_csv(path):
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def test_evaluate_binary_predictions_writes_tables_summary_and_plots(study, capsys):
    out = study / "out"
    assert evaluate(study, "pred", "out", "--bootstrap", "50", "--no-progress") == 0
    assert {p.name for p in out.iterdir()} >= {
        "per_lesion.csv",
        "per_exam.csv",
        "false_positives.csv",
        "summary.json",
        "detection_by_volume.png",
        "volume_agreement.png",
        "cases",
    }
    assert sorted(p.name for p in (out / "cases").iterdir()) == [
        "case_a.png",
        "case_b.png",
        "case_c.png",
    ]
    lesion_rows = read_csv(out / "per_lesion.csv")
    assert len(lesion_rows) == 6
    first = next(r for r in lesion_rows if r["case_id"] == "case_a" and r["lesion_id"] == "1")
    assert float(first["volume_ml"]) == pytest.approx(64 * 4.5 / 1000)
    assert (
        first["detected"] == "True" and float(first["dice"]) == 1.0 and float(first["nsd"]) == 1.0
    )
    assert float(first["centroid_mm_x"]) == pytest.approx(3.5 * 1.5)  # scanner mm from the affine
    missed = next(r for r in lesion_rows if r["case_id"] == "case_a" and r["lesion_id"] == "2")
    assert missed["detected"] == "False" and missed["dice"] == ""
    exams = {r["case_id"]: r for r in read_csv(out / "per_exam.csv")}
    assert set(exams) == {"case_a", "case_b", "case_c"}
    assert (float(exams["case_c"]["tp"]), float(exams["case_c"]["fp"])) == (1.0, 1.0)
    summary = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    assert summary["skipped_cases"] == ["healthy_000"] and summary["prediction"] == "binary"
    assert summary["metrics"]["sensitivity"]["median"] == 0.5
    assert summary["metrics"]["sensitivity"]["pooled"] == pytest.approx(4 / 6)
    assert summary["metrics"]["fp_per_exam"]["pooled"] == pytest.approx(1 / 3)
    assert summary["settings"]["connectivity"] == 26 and "froc" not in summary
    assert summary["merged_predictions"] == 0 and summary["degenerate"] == {}
    assert summary["volume_ratio"] == pytest.approx((64 + 72 + 72) / (3 * 72))
    printed = capsys.readouterr().out
    assert "sensitivity, all lesions" in printed and "0.50" in printed
    assert "| predicted / reference volume | 1.00 [" in printed  # median of 0.89, 1, 1
    assert "| merged predictions (total, ≥ 2 lesions each) | 0 |" in printed
    assert "cases/ (3 pictures)" in printed


def test_evaluate_probabilities_with_a_tuned_threshold(study, capsys):
    out = study / "out_prob"
    options = ["--prob", "--tune-on", str(study / "tune"), "--bootstrap", "0", "--no-plots"]
    assert evaluate(study, "prob", "out_prob", *options, "--no-progress") == 0
    printed = capsys.readouterr()
    assert "sap evaluate: warning: 3 tuning case(s) are also evaluated" in printed.err
    assert "threshold: 0.255 (tuned)" in printed.out
    summary = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    tuning = summary["threshold_tuning"]
    # Lesions peak at 0.9 / 0.7 / 0.5, the false positive at 0.6 in every case: the best
    # mean F2 keeps all lesions (threshold <= 0.5), mid-way between 0.5 and min_prob.
    assert tuning["threshold"] == pytest.approx((0.5 + 0.01) / 2)
    assert summary["settings"]["threshold"] == pytest.approx(tuning["threshold"])
    assert summary["metrics"]["sensitivity"]["median"] == 1.0
    # Sensitivity 4/6 at 0 FP per exam (t in (0.6, 0.7]), 6/6 at 1 (t <= 0.5): the envelope
    # integrates to 4/6 * 1 + 1 * 14 up to 15 FP per exam.
    assert summary["froc"]["auc"] == pytest.approx(4 / 6 + 14)
    assert summary["froc"]["max_fp_per_exam"] == 15
    assert (out / "threshold_tuning.csv").read_text(encoding="utf-8").startswith("threshold,")


def test_compare_prints_the_paper_table_with_p_values(study, capsys):
    options = ["--bootstrap", "0", "--no-plots", "--no-progress"]
    assert evaluate(study, "pred", "model_a", *options) == 0
    assert evaluate(study, "prob", "model_b", *options, "--prob", "--threshold", "0.65") == 0
    capsys.readouterr()
    rc = run_cli(
        [
            "compare",
            str(study / "model_a" / "summary.json"),
            str(study / "model_b" / "summary.json"),
            "--out",
            str(study / "cmp"),
        ]
    )
    assert rc == 0
    table = capsys.readouterr().out
    assert "| metric | model_a | model_b | p model_b vs model_a (Bonferroni) |" in table
    assert "Dice, detected lesions" in table and "ICC(2,1)" in table
    rows = json.loads((study / "cmp" / "comparison.json").read_text(encoding="utf-8"))
    sensitivity = next(r for r in rows if r["metric"] == "sensitivity")
    # Per-patient sensitivities: model_a (a, b, c) = 0.5, 1, 0.5; model_b at 0.65 = 1, 1, 0.
    assert sensitivity["model_a"][0] == 0.5 and sensitivity["model_b"][0] == 1.0
    expected = scipy_stats.wilcoxon([0.5, 1.0, 0.5], [1.0, 1.0, 0.0]).pvalue
    assert sensitivity["p_model_b_bonferroni"] == pytest.approx(expected)


def test_missing_prediction_names_the_case(study, capsys):
    (study / "pred" / "case_a.nii.gz").unlink()
    rc = evaluate(study, "pred", "o")
    assert rc == 1
    assert "case_a" in capsys.readouterr().err


def test_grid_mismatch_names_the_case(study, capsys):
    shifted = AFFINE.copy()
    shifted[0, 3] = 3.0  # two voxels off
    save_nifti(study / "pred" / "case_a.nii.gz", two_lesions(), shifted)
    rc = evaluate(study, "pred", "o", "--no-progress")
    assert rc == 1
    err = capsys.readouterr().err
    assert "case_a" in err and "different affines" in err


def test_probability_maps_need_the_prob_flag(study, capsys):
    save_nifti(study / "pred" / "case_a.nii.gz", two_lesions() * np.float32(0.7))
    rc = evaluate(study, "pred", "o", "--no-progress")
    assert rc == 1
    assert "--prob" in capsys.readouterr().err


def test_required_options_and_flag_combinations_are_reported(capsys):
    assert run_cli(["--pred", "x"]) == 2
    assert "--ref, --out required" in capsys.readouterr().err
    assert run_cli(["--pred", "x", "--ref", "y", "--out", "z", "--threshold", "0.3"]) == 2
    assert "--threshold applies to probability maps" in capsys.readouterr().err
    assert run_cli(["compare", "a.json", "b.json", "--names", "only_one"]) == 2
    assert "got 1 names for 2 summaries" in capsys.readouterr().err


def test_healthy_cases_can_be_scored_as_lesion_free_exams(study):
    fp_only = np.zeros(two_lesions().shape, np.uint8)
    fp_only[1:3, 1:3, 1:3] = 1
    save_nifti(study / "pred" / "healthy_000.nii.gz", fp_only)
    out = study / "out_healthy"
    options = ["--healthy-as-empty", "--bootstrap", "0", "--no-plots", "--no-progress"]
    assert evaluate(study, "pred", "out_healthy", *options) == 0
    summary = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    assert summary["n_exams"] == 4 and summary["skipped_cases"] == []
    healthy = summary["per_exam"]["healthy_000"]
    assert healthy["fp_per_exam"] == 1.0 and healthy["sensitivity"] is None
