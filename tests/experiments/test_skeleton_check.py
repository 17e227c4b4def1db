"""The benchmark's check of SAP's premise: the skeleton model's bone Dice on unseen patients."""

from __future__ import annotations

import math
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

import sap.inference
from sap.data.cases import Case
from sap.experiments.skeleton_check import skeleton_quality
from sap.io import save_nifti_atomic


def _case(folder: Path, name: str, skeleton: np.ndarray | None) -> Case:
    """A case folder on disk: two channels and, when given, a skeleton label map."""
    images = {}
    for channel in ("T1", "b1000"):
        images[channel] = save_nifti_atomic(
            np.ones((8, 8, 8), np.float32), np.eye(4), folder / name / f"{channel}.nii.gz"
        )
    path = None
    if skeleton is not None:
        path = save_nifti_atomic(skeleton, np.eye(4), folder / name / "skeleton.nii.gz")
    return Case(name, images, skeleton=path)


def _reference() -> np.ndarray:
    labels = np.zeros((8, 8, 8), np.uint8)
    labels[1:4, 1:4, 1:4] = 1  # cervical spine, 27 voxels
    labels[5:7, 5:7, 5:7] = 2  # thoracic spine, 8 voxels
    return labels


class _Oracle:
    """A 'model' whose prediction of each case is given: the pipeline around it is real."""

    predictions: dict[str, np.ndarray] = {}

    def __init__(self, model, **kwargs) -> None:
        assert kwargs["memory_limit_bytes"] is None

    def predict(self, case: Case) -> SimpleNamespace:
        return SimpleNamespace(labels=self.predictions[case.case_id])


@pytest.fixture
def oracle(monkeypatch: pytest.MonkeyPatch) -> type[_Oracle]:
    monkeypatch.setattr(sap.inference, "Predictor", _Oracle)
    monkeypatch.setattr(sap.inference, "load_model", lambda *args, **kwargs: None)
    return _Oracle


def test_a_perfect_and_a_region_confusing_skeleton_model_are_told_apart(
    tmp_path: Path, oracle: type[_Oracle]
) -> None:
    reference = _reference()
    swapped = np.where(reference == 1, 2, np.where(reference == 2, 1, 0)).astype(np.uint8)
    doubled = reference.copy()
    doubled[4, :, :] = 1  # 64 extra bone voxels: too much bone
    cases = [
        _case(tmp_path, "exact", reference),
        _case(tmp_path, "swapped", reference),
        _case(tmp_path, "too_much", reference),
        _case(tmp_path, "unlabelled", None),
    ]
    oracle.predictions = {"exact": reference, "swapped": swapped, "too_much": doubled}
    check = skeleton_quality("model.ckpt", cases)
    assert check["cases"] == 3, "a case without a skeleton label map is left out"
    exact, swapped_case = check["per_case"]["exact"], check["per_case"]["swapped"]
    assert exact == {"foreground_dice": 1.0, "volume_ratio": 1.0, "mean_region_dice": 1.0}
    assert swapped_case["foreground_dice"] == 1.0 and swapped_case["mean_region_dice"] == 0.0
    too_much = check["per_case"]["too_much"]
    assert too_much["volume_ratio"] == pytest.approx((35 + 64) / 35)
    assert too_much["foreground_dice"] == pytest.approx(2 * 35 / (35 + 35 + 64))
    assert check["foreground_dice"] == 1.0 and check["mean_region_dice"] == pytest.approx(
        too_much["mean_region_dice"]
    )  # medians over the three cases
    # Pooled over the cases: cervical 27 + 0 + 27 right, predicted 27 + 8 + 91 voxels.
    cervical = check["region_dice"]["cervical_spine"]
    assert cervical == pytest.approx(2 * 54 / (3 * 27 + 27 + 8 + 27 + 64))
    assert check["region_dice"]["sternum"] is None, "a region absent everywhere is not a zero"
    assert not any(isinstance(v, float) and math.isnan(v) for v in check["region_dice"].values())


def test_no_labelled_case_gives_an_empty_check_and_a_wrong_grid_names_the_file(
    tmp_path: Path, oracle: type[_Oracle]
) -> None:
    assert skeleton_quality("model.ckpt", [_case(tmp_path, "a", None)])["cases"] == 0
    case = _case(tmp_path, "b", _reference())
    oracle.predictions = {"b": np.zeros((8, 8, 9), np.uint8)}
    with pytest.raises(ValueError, match=r"b/skeleton.nii.gz: skeleton label map of shape"):
        skeleton_quality("model.ckpt", [case])
