"""``sap predict`` end to end: folders, manifests, reports, and no silent overwrites."""

from __future__ import annotations

import csv
import json

import nibabel as nib
import numpy as np
import pytest
import torch

from sap.cli import main
from tests.helpers.inference import blob_volume, dwi_affine, oblique_lps_affine, write_case


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    """A lesion and a skeleton checkpoint as ``sap fit`` writes them (tiny, untrained)."""
    from sap.tasks import AnatomicalPretraining, LesionFinetuning

    folder = tmp_path_factory.mktemp("models")
    paths = {}
    for name, task_class in (("lesion", LesionFinetuning), ("skeleton", AnatomicalPretraining)):
        torch.manual_seed(0)
        module = task_class(
            backbone="tiny_unet",
            backbone_kwargs={"base_channels": 4, "depth": 2},
            patch_size=(16, 16, 16),
        )
        paths[name] = folder / f"{name}.ckpt"
        torch.save(
            {
                "state_dict": module.state_dict(),
                "hyper_parameters": dict(module.hparams),
                "sap_recipe": module.recipe().to_dict(),
            },
            paths[name],
        )
    return paths


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    root = tmp_path_factory.mktemp("cohort")
    write_case(
        root / "oblique",
        blob_volume((30, 24, 20), seed=1),
        oblique_lps_affine(),
        blob_volume((24, 24, 20), seed=2),
        dwi_affine(),
    )
    write_case(root / "plain", blob_volume((20, 22, 26), seed=3), np.diag([2.0, 2.0, 2.5, 1.0]))
    return root


def test_predict_writes_maps_on_the_input_grid_reports_and_summary(
    cohort, checkpoints, tmp_path, capsys
):
    out = tmp_path / "out"
    code = main(
        [
            "predict",
            str(cohort),
            str(out),
            "--lesion-model",
            str(checkpoints["lesion"]),
            "--skeleton-model",
            str(checkpoints["skeleton"]),
            "--save-probabilities",
            "--png",
            "--min-volume-ml",
            "0",
            "--threshold",
            "0.3",
            "--no-progress",
        ]
    )
    assert code == 0, capsys.readouterr()
    for case in ("oblique", "plain"):
        t1 = nib.load(cohort / case / "T1.nii.gz")
        for name in ("lesion.nii.gz", "skeleton.nii.gz", "lesion_probability.nii.gz"):
            image = nib.load(out / case / name)
            assert image.shape == t1.shape
            np.testing.assert_allclose(image.affine, t1.affine, atol=1e-5)
        lesion = np.asarray(nib.load(out / case / "lesion.nii.gz").dataobj)
        report = json.loads((out / case / "lesions.json").read_text(encoding="utf-8"))
        voxel_ml = abs(np.linalg.det(t1.affine[:3, :3])) / 1000
        assert report["total_volume_ml"] == pytest.approx(lesion.sum() * voxel_ml)
        assert report["metadata"]["lesion_settings"]["threshold"] == 0.3
        assert (out / case / "lesions.csv").is_file()
        assert (out / case / "overview.png").read_bytes()[:4] == b"\x89PNG"
    with open(out / "summary.csv", newline="") as handle:
        assert [row["case_id"] for row in csv.DictReader(handle)] == ["oblique", "plain"]


def test_a_rerun_resumes_other_settings_need_overwrite(cohort, checkpoints, tmp_path, capsys):
    out = tmp_path / "out"
    args = [
        "predict",
        str(cohort / "plain"),
        str(out),
        "--lesion-model",
        str(checkpoints["lesion"]),
        "--no-progress",
    ]
    assert main(args) == 0
    written = out / "plain" / "lesion.nii.gz"
    before = written.stat().st_mtime_ns
    capsys.readouterr()
    assert main(args) == 0  # same settings: the finished case is skipped
    assert "1 case(s) finished by an earlier run are skipped (plain)" in capsys.readouterr().out
    assert written.stat().st_mtime_ns == before
    assert main([*args, "--threshold", "0.3"]) == 2  # other settings: refused
    error = capsys.readouterr().err
    assert "made with other settings (threshold: 0.5 -> 0.3)" in error and "--overwrite" in error
    assert written.stat().st_mtime_ns == before
    assert main([*args, "--threshold", "0.3", "--overwrite"]) == 0
    assert written.stat().st_mtime_ns != before


def test_manifest_input(cohort, checkpoints, tmp_path):
    manifest = tmp_path / "cases.csv"
    manifest.write_text(
        "case_id,T1,b1000\n"
        f"first,{cohort / 'plain' / 'T1.nii.gz'},{cohort / 'plain' / 'b1000.nii.gz'}\n"
    )
    out = tmp_path / "out"
    args = ["predict", str(manifest), str(out), "--lesion-model", str(checkpoints["lesion"])]
    assert main([*args, "--no-progress", "--tta"]) == 0
    assert nib.load(out / "first" / "lesion.nii.gz").shape == (20, 22, 26)


def test_a_skeleton_model_is_refused_as_lesion_model(cohort, checkpoints, tmp_path, capsys):
    args = ["predict", str(cohort), str(tmp_path), "--lesion-model", str(checkpoints["skeleton"])]
    assert main(args) == 2
    assert "expected a two-class lesion model" in capsys.readouterr().err


def test_an_unusable_case_is_reported_and_the_others_are_predicted(
    cohort, checkpoints, tmp_path, capsys
):
    import shutil

    cases = tmp_path / "cases"
    shutil.copytree(cohort / "plain", cases / "good")
    bad = blob_volume((20, 22, 26), seed=3)
    bad[0, 0, 0] = np.nan
    write_case(cases / "bad", bad, np.eye(4))
    out = tmp_path / "out"
    args = ["predict", str(cases), str(out), "--lesion-model", str(checkpoints["lesion"])]
    assert main([*args, "--no-progress"]) == 1
    captured = capsys.readouterr()
    assert "case 'bad' failed" in captured.out + captured.err
    assert (out / "good" / "lesion.nii.gz").is_file()
    assert not (out / "bad" / "lesion.nii.gz").exists()


def test_zoo_export_folder_is_accepted_and_unknown_names_are_reported(cohort, tmp_path, capsys):
    from sap.zoo import ModelConfig, save_pretrained
    from tests.helpers.inference import tiny_model

    model = tiny_model("lesion")
    export = save_pretrained(model, tmp_path / "lesion_export", ModelConfig(recipe=model.recipe))
    out = tmp_path / "out"
    args = ["predict", str(cohort / "plain"), str(out), "--no-progress", "--lesion-model"]
    assert main([*args, str(export)]) == 0
    assert nib.load(out / "plain" / "lesion.nii.gz").shape == (20, 22, 26)
    capsys.readouterr()
    assert main([*args, "no-such-model-anywhere", "--overwrite"]) == 2
    assert "no-such-model-anywhere" in capsys.readouterr().err
