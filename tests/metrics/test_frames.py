"""Evaluation results as pandas DataFrames: exams, lesions and the summary."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from sap.metrics import Evaluation, evaluate_folders
from sap.metrics.frames import SUMMARY_COLUMNS
from tests.helpers.metrics import two_lesions, write_study


@pytest.fixture
def result(tmp_path):
    study = write_study(tmp_path)
    return evaluate_folders(study / "pred", study / "ref", bootstrap=None)


def test_exam_frame_is_indexed_by_case_and_matches_the_table(result):
    exams = result.exams
    assert isinstance(exams, pd.DataFrame) and exams.index.name == "case_id"
    assert exams.index.tolist() == ["case_a", "case_b", "case_c"]
    assert exams[["tp", "fn", "fp"]].values.tolist() == [[1, 1, 0], [2, 0, 0], [1, 1, 1]]
    assert exams.loc["case_a", "volume_ratio"] == pytest.approx(64 / 72)
    assert exams["merged_predictions"].sum() == 0 and not exams["degenerate"].any()


def test_lesion_frame_is_indexed_by_case_and_lesion_id(result):
    lesions = result.lesions
    assert lesions.index.names == ["case_id", "lesion_id"] and len(lesions) == 6
    assert (
        bool(lesions.loc[("case_a", 1), "detected"]) and lesions.loc[("case_a", 1), "dice"] == 1.0
    )
    assert not lesions.loc[("case_a", 2), "detected"]
    assert math.isnan(lesions.loc[("case_a", 2), "dice"])


def test_summary_frame_has_one_row_per_metric(result):
    frame = result.to_dataframe()
    assert tuple(frame.columns) == SUMMARY_COLUMNS and frame.index.name == "metric"
    assert frame.loc["sensitivity", "median"] == 0.5
    assert frame.loc["sensitivity", "pooled"] == pytest.approx(4 / 6)
    assert frame.loc["merged_predictions", "pooled"] == 0.0
    assert math.isnan(frame.loc["sensitivity", "ci_low"])  # bootstrap=None: no CI
    assert frame.loc["dice_detected", "level"] == "lesion"


def test_evaluation_without_exams_gives_empty_frames():
    evaluation = Evaluation()
    assert evaluation.exams.empty and evaluation.lesions.empty
    ref = two_lesions()
    evaluation.add("only", ref, ref, (1.0, 1.0, 1.0))
    assert evaluation.to_dataframe(bootstrap=None).loc["f_beta", "median"] == 1.0
