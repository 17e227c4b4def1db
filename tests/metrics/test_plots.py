"""Figures of evaluations and cases: returned as Figures, saved when asked, no pyplot state."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pytest

from sap.metrics import evaluate_folders
from sap.metrics.case_plots import DETECTION_COLOURS, detection_categories, plot_detections
from sap.metrics.plots import (
    plot_case,
    plot_detection_by_volume,
    plot_froc,
    plot_volume_agreement,
)
from tests.helpers.metrics import AFFINE, FP_BLOCK, two_lesions, write_study


@pytest.fixture
def prob_result(tmp_path):
    study = write_study(tmp_path)
    return evaluate_folders(study / "prob", study / "ref", prob=True, bootstrap=None)


def test_evaluation_figures_come_from_the_evaluation_and_leave_no_pyplot_figure(
    prob_result, tmp_path
):
    before = plt.get_fignums()
    froc = plot_froc(prob_result, path=tmp_path / "froc.png")
    legend = [t.get_text() for t in froc.axes[0].get_legend().get_texts()]
    assert legend[0].startswith("all lesions (n=6): AUC to 15 FP/exam = ")
    assert (tmp_path / "froc.png").read_bytes().startswith(b"\x89PNG")
    by_volume = plot_detection_by_volume(prob_result)
    assert [ax.get_title() for ax in by_volume.axes][0] == "sensitivity vs reference lesion volume"
    volumes = plot_volume_agreement(prob_result)
    (points,) = volumes.axes[0].collections
    assert points.get_offsets().shape == (3, 2)  # one dot per exam
    assert plt.get_fignums() == before


def test_froc_of_binary_evaluation_is_a_clear_error(tmp_path):
    study = write_study(tmp_path)
    binary = evaluate_folders(study / "pred", study / "ref", bootstrap=None)
    with pytest.raises(ValueError, match="no probability maps"):
        plot_froc(binary)


def test_detection_categories_follow_the_evaluation_numbering():
    ref = two_lesions()
    pred = np.zeros_like(ref)
    pred[2:6, 2:6, 2:6] = 1  # finds lesion 1, misses lesion 2
    pred[FP_BLOCK] = 1
    codes, marks = detection_categories(pred, ref)
    assert [(m.text, m.category) for m in marks] == [
        ("1", "detected"),
        ("2", "missed"),
        ("FP1", "false positive"),
    ]
    assert np.count_nonzero(codes == 1) == 64 and np.count_nonzero(codes == 3) == 8
    assert np.count_nonzero(codes == 2) == 8
    fig = plot_detections(pred, ref, AFFINE, title="case_c")
    labels = [t.get_text() for t in fig.legends[0].get_texts()]
    assert labels == ["detected (1)", "missed (1)", "false positive (1)"]
    assert list(DETECTION_COLOURS) == ["detected", "missed", "false positive"]


def test_plot_case_draws_three_panels_with_reference_categories():
    ref = two_lesions()
    pred = ref.copy()
    pred[10:12, 10:12, 8:10] = 0
    image = np.random.default_rng(0).random(ref.shape)
    fig = plot_case(image, AFFINE, lesion=pred, reference=ref, title="case")
    assert [ax.get_title() for ax in fig.axes] == ["coronal MIP", "coronal slice", "axial slice"]
    for ax in fig.axes:
        assert {t.get_text() for t in ax.texts} >= {"R", "L"}
    assert {"1", "2"} <= {t.get_text() for t in fig.axes[0].texts}
    with pytest.raises(ValueError, match="panels must be some of"):
        plot_case(image, AFFINE, panels=("sagittal",))
