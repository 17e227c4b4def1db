"""The SAP experiment: one skeleton run, then lesion arms that differ only in initialisation."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml

from sap.experiments import PretrainFinetuneSettings, pretrain_then_finetune
from sap.phantom import generate_cohort
from tests.helpers.experiments import TINY_PHANTOM


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("experiment")
    generate_cohort(root / "anatomy", healthy=2, metastatic=0, seed=3, **TINY_PHANTOM)
    generate_cohort(
        root / "lesions", healthy=0, metastatic=2, seed=4, min_lesion_voxels=2, **TINY_PHANTOM
    )
    settings = PretrainFinetuneSettings(
        patch_size=(16, 16, 32),
        batch_size=2,
        skeleton_epochs=1,
        skeleton_samples_per_volume=2,
        lesion_epochs=1,
        lesion_lr_encoder_sap=1e-4,
        lesion_lr_decoder=2e-3,
    )
    stages: list[str] = []
    result = pretrain_then_finetune(
        root / "anatomy",
        root / "lesions",
        root / "runs",
        settings,
        progress=False,
        on_stage=stages.append,
    )
    return result, stages, root / "runs"


def test_runs_are_announced_and_recorded_in_order(runs) -> None:
    result, stages, out = runs
    assert stages == ["skeleton", "lesion_sap", "lesion_scratch"]
    assert result.skeleton.checkpoint == out / "skeleton" / "checkpoints" / "last.ckpt"
    for name in stages:
        assert (out / name / "checkpoints" / "last.ckpt").is_file()
        assert (out / name / "metrics.csv").is_file()
    assert set(result.timings_s()) == {"skeleton_s", "lesion_sap_s", "lesion_scratch_s"}


def test_sap_arm_starts_from_the_skeleton_model_and_scratch_does_not(runs) -> None:
    result, _, out = runs
    sap, scratch = result.lesion["sap"].module, result.lesion["scratch"].module
    assert sap.transfer_report is not None and not sap.transfer_report.missing
    assert scratch.transfer_report is None
    sap_config = yaml.safe_load((out / "lesion_sap" / "config.yaml").read_text(encoding="utf-8"))
    scratch_config = yaml.safe_load(
        (out / "lesion_scratch" / "config.yaml").read_text(encoding="utf-8")
    )
    assert sap_config["model"]["init_args"]["init"] == str(result.skeleton.checkpoint)
    assert sap_config["model"]["init_args"]["lr_encoder"] == pytest.approx(1e-4)
    assert scratch_config["model"]["init_args"]["init"] == "scratch"
    assert scratch_config["model"]["init_args"]["lr_encoder"] == pytest.approx(2e-3)
    differing = {
        key
        for key in sap_config["model"]["init_args"]
        if sap_config["model"]["init_args"][key] != scratch_config["model"]["init_args"][key]
    }
    assert differing == {"init", "lr_encoder"}, "the arms differ only in initialisation"
    assert sap_config["data"] == scratch_config["data"]


def test_an_unknown_arm_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="Unknown arm"):
        pretrain_then_finetune(
            tmp_path, tmp_path, tmp_path, PretrainFinetuneSettings(), arms=("pretrained",)
        )


def test_checkpoints_hold_the_trained_weights(runs) -> None:
    result, _, _ = runs
    stored = torch.load(result.lesion["sap"].checkpoint, weights_only=True)["state_dict"]
    live = result.lesion["sap"].module.model.state_dict()
    assert all(torch.equal(stored[f"model.{key}"], value) for key, value in live.items())
