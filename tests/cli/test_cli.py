"""The ``sap`` command end to end: help, packaged configs, fit -> SAP fine-tune -> validate."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from sap.cli import main
from sap.configs import config_path, list_configs, resolve_config_argument
from sap.zoo import load_pretrained, read_checkpoint
from tests.helpers.training import cli_args, fit_args, load, logged_rows, run_sap, tiny_cohorts


@pytest.fixture(scope="module")
def cohort(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_cohorts(tmp_path_factory.mktemp("cohort"))


def test_help_lists_every_command() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "sap.cli", "--help"], capture_output=True, text=True, check=True
    )
    for command in (
        "fit",
        "validate",
        "test",
        "demo",
        "phantom",
        "evaluate",
        "predict",
        "zoo",
        "configs",
    ):
        assert command in result.stdout


def test_packaged_configs_are_listed_and_resolved(tmp_path: Path) -> None:
    assert {"skeleton", "lesion", "skeleton-cpu-small", "lesion-cpu-small"} <= set(list_configs())
    resolved = resolve_config_argument(["fit", "--config", "lesion-cpu-small"])
    assert resolved[2] == str(config_path("lesion-cpu-small"))
    own = tmp_path / "lesion-cpu-small"
    own.write_text("{}")
    assert resolve_config_argument(["fit", "--config", str(own)])[2] == str(own), (
        "a user's file wins"
    )
    with pytest.raises(FileNotFoundError, match="lesion-cpu-small"):
        config_path("lesion-cpu-smal")


@pytest.mark.parametrize("name", ["skeleton", "lesion", "skeleton-cpu-small", "lesion-cpu-small"])
def test_packaged_configs_parse_and_declare_patch_and_channels_once(
    name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", "--config", name, "--print_config"])
    assert exit_info.value.code == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed["model"]["init_args"]["channels"] == ["T1", "b1000"]
    assert len(printed["model"]["init_args"]["patch_size"]) == 3
    raw = yaml.safe_load(config_path(name).read_text(encoding="utf-8"))
    assert not {"patch_size", "channels"} & set(raw["data"]["init_args"]), "linked from the model"


def test_packaged_configs_save_last_checkpoint_every_epoch() -> None:
    for name in list_configs():
        callbacks = yaml.safe_load(config_path(name).read_text(encoding="utf-8"))["trainer"][
            "callbacks"
        ]
        keeping_last = [
            c["init_args"] for c in callbacks if c["init_args"].get("save_last") is True
        ]
        assert len(keeping_last) == 1, name
        assert keeping_last[0]["save_top_k"] != 0, "save_top_k 0 writes last.ckpt only at the end"
        assert keeping_last[0]["save_on_train_epoch_end"] is True, name


def test_fit_skeleton_then_sap_finetune_then_use_the_checkpoint_everywhere(
    cohort: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The checkpoints `sap fit` writes (LightningCLI hyper-parameters included) work for
    --model.init, load_pretrained, sap zoo export, sap predict and sap validate."""
    skeleton_dir = tmp_path / "skeleton"
    assert main(fit_args("skeleton-cpu-small", cohort / "anatomy", skeleton_dir)) == 0
    (skeleton_ckpt,) = skeleton_dir.rglob("last.ckpt")
    checkpoint = load(skeleton_ckpt)
    assert checkpoint["sap_recipe"]["task"] == "skeleton"
    assert checkpoint["sap_recipe"]["patch_size"] == [16, 16, 32]
    assert checkpoint["datamodule_hyper_parameters"]["patch_size"] == [16, 16, 32], (
        "the data module takes the model's patch size"
    )
    assert "_class_path" in checkpoint["hyper_parameters"], "written through LightningCLI"
    skeleton = load_pretrained(skeleton_ckpt)  # no LightningModule needed to load it
    assert skeleton.recipe.task == "skeleton" and skeleton.out_channels == 10

    lesion_dir = tmp_path / "lesion"
    init = ["--model.init", str(skeleton_ckpt)]
    assert main(fit_args("lesion-cpu-small", cohort / "lesions", lesion_dir, 2, *init)) == 0
    (lesion_ckpt,) = lesion_dir.rglob("last.ckpt")
    transfer = load(lesion_ckpt)["sap_transfer"]
    assert transfer["source"] == str(skeleton_ckpt)
    assert transfer["base_model"] == f"last.ckpt sha256:{_sha256(skeleton_ckpt)}"
    assert transfer["transfer"] == "encoder+decoder" and transfer["loaded"] > 0
    assert read_checkpoint(lesion_ckpt).base_model == transfer["base_model"]
    assert (lesion_ckpt.parent.parent / "config.yaml").is_file(), "config next to the run"

    validated = [row for row in logged_rows(lesion_dir) if row.get("val/dice_foreground")]
    assert len(validated) == 2, "one validation per epoch, on whole volumes"
    for row in validated:
        assert 0.0 <= float(row["val/dice_foreground"]) <= 1.0
        assert float(row["val/lesion_fp_per_exam"]) >= 0.0
        assert float(row["val/dice_foreground"]) == pytest.approx(float(row["val/dice_lesion"]))

    export = tmp_path / "export"
    assert main(["zoo", "export", str(lesion_ckpt), str(export)]) == 0
    assert load_pretrained(export).recipe.task == "lesion"
    predictions = tmp_path / "predictions"
    case = sorted(p for p in (cohort / "lesions").iterdir() if p.is_dir())[0]
    assert main(["predict", str(case), str(predictions), "--lesion-model", str(lesion_ckpt),
                 "--no-progress"]) == 0  # fmt: skip
    assert (predictions / case.name / "lesion.nii.gz").is_file()

    validate_dir = tmp_path / "validate"
    args = cli_args("validate", "lesion-cpu-small", cohort / "lesions", validate_dir)
    assert main([*args, "--ckpt_path", str(lesion_ckpt)]) == 0
    (row,) = [row for row in logged_rows(validate_dir) if row.get("val/dice_foreground")]
    assert float(row["val/dice_foreground"]) == pytest.approx(
        float(validated[-1]["val/dice_foreground"]), abs=1e-6
    ), "validating the last checkpoint repeats the last validation of fit"


def _sha256(path: Path) -> str:
    import hashlib

    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_fit_refuses_a_cohort_with_a_broken_file_in_one_message(
    cohort: Path, tmp_path: Path
) -> None:
    broken = tmp_path / "broken"
    for case in sorted((cohort / "anatomy").iterdir()):
        if case.is_dir():
            (broken / case.name).mkdir(parents=True)
            for file in case.iterdir():
                (broken / case.name / file.name).write_bytes(file.read_bytes())
    victim = sorted(broken.iterdir())[0] / "b1000.nii.gz"
    victim.write_bytes(victim.read_bytes()[: victim.stat().st_size // 2])
    result = run_sap(fit_args("skeleton-cpu-small", broken, tmp_path / "out"), cwd=tmp_path)
    assert result.returncode == 2, result.stderr[-2000:]
    error = result.stderr
    assert "b1000.nii.gz" in error and sorted(broken.iterdir())[0].name in error
    assert "Traceback" not in error
    assert not list((tmp_path / "out").rglob("*.ckpt")), "nothing may be trained on bad input"


@pytest.mark.slow
def test_sap_demo_quick_end_to_end(tmp_path: Path) -> None:
    out = tmp_path / "demo"
    result = subprocess.run(
        [sys.executable, "-m", "sap.cli", "demo", "--quick", "--out", str(out), "--no-progress"],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    assert set(summary["results"]) == {"sap", "scratch"}
    for arm in ("sap", "scratch"):
        headline = summary["results"][arm]["headline"]
        assert 0.0 <= headline["sensitivity"] <= 1.0
        assert headline["fp_per_exam"] >= 0.0
    assert "sensitivity, all lesions" in result.stdout
    for name in ("skeleton", "lesion_sap", "lesion_scratch"):
        assert (out / name / "checkpoints" / "last.ckpt").is_file()
        assert (out / name / "config.yaml").is_file()


@pytest.mark.slow
def test_changing_the_backbone_takes_the_one_fix_the_error_names(
    cohort: Path, tmp_path: Path
) -> None:
    """`--model.backbone unet_resnet18` fails in one line naming the patch-size fix; with that
    one extra flag (the data module follows the model) a training step runs."""
    base = ["fit", "--config", "lesion-cpu-small", "--data.data_dir", str(cohort / "lesions")]
    base += [
        "--trainer.default_root_dir",
        str(tmp_path / "out"),
        "--model.backbone",
        "unet_resnet18",
    ]
    refused = run_sap(base, cwd=tmp_path)
    assert refused.returncode == 2
    (message,) = [line for line in refused.stderr.splitlines() if line.startswith("sap fit:")]
    assert "--model.patch_size [32,32,64]" in message
    fixed = run_sap([*base, "--model.patch_size", "[32,32,64]", "--trainer.fast_dev_run", "true"],
                    cwd=tmp_path)  # fmt: skip
    assert fixed.returncode == 0, fixed.stderr[-3000:]
    assert "`Trainer.fit` stopped: `max_steps=1` reached." in fixed.stderr + fixed.stdout
