"""The ``sap`` command end to end: help, packaged configs, fit -> SAP fine-tune -> validate."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from sap.cli import main
from sap.configs import config_path, list_configs, resolve_config_argument
from sap.phantom import generate_cohort
from sap.zoo import load_pretrained

# A whole-body phantom on a coarse grid: same field of view as the default, ~1/50 of the voxels.
TINY_PHANTOM = {"shape": (32, 20, 64), "spacing_mm": (15.0, 15.0, 18.0)}
PATCH = ["16", "16", "32"]


@pytest.fixture(scope="module")
def cohort(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("cohort")
    generate_cohort(root / "anatomy", healthy=3, metastatic=0, seed=3, **TINY_PHANTOM)
    generate_cohort(
        root / "lesions", healthy=0, metastatic=3, seed=4, min_lesion_voxels=2, **TINY_PHANTOM
    )
    return root


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
def test_packaged_configs_parse(name: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", "--config", name, "--print_config"])
    assert exit_info.value.code == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed["model"]["init_args"]["patch_size"] == printed["data"]["init_args"]["patch_size"]
    assert printed["model"]["init_args"]["channels"] == ["T1", "b1000"]


def _cli_args(command: str, config: str, data_dir: Path, out: Path, *extra: str) -> list[str]:
    """``sap <command>`` on a tiny cohort, logging to ``out`` as CSV."""
    return [
        command,
        "--config",
        config,
        "--data.data_dir",
        str(data_dir),
        "--data.patch_size",
        f"[{','.join(PATCH)}]",
        "--model.patch_size",
        f"[{','.join(PATCH)}]",
        "--data.val_fraction",
        "0.34",
        "--trainer.default_root_dir",
        str(out),
        "--trainer.logger",
        _csv_logger(out),
        *extra,
    ]


def _fit_args(config: str, data_dir: Path, out: Path, *extra: str) -> list[str]:
    return _cli_args(
        "fit",
        config,
        data_dir,
        out,
        "--trainer.max_epochs",
        "2",
        "--trainer.check_val_every_n_epoch",
        "1",
        "--trainer.enable_progress_bar",
        "false",
        *extra,
    )


def _csv_logger(folder: Path) -> str:
    return json.dumps(
        {
            "class_path": "lightning.pytorch.loggers.CSVLogger",
            "init_args": {"save_dir": str(folder)},
        }
    )


def _logged_rows(folder: Path) -> list[dict[str, str]]:
    (metrics_file,) = folder.rglob("metrics.csv")
    with open(metrics_file, encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle))


def test_fit_skeleton_then_sap_finetune_then_validate(cohort: Path, tmp_path: Path) -> None:
    skeleton_dir = tmp_path / "skeleton"
    main(_fit_args("skeleton-cpu-small", cohort / "anatomy", skeleton_dir))
    skeleton_ckpts = sorted(skeleton_dir.rglob("last.ckpt"))
    assert skeleton_ckpts, "fit must leave a last.ckpt"
    checkpoint = torch.load(skeleton_ckpts[0], weights_only=True)
    assert checkpoint["sap_recipe"]["task"] == "skeleton"
    assert checkpoint["sap_recipe"]["patch_size"] == [int(p) for p in PATCH]
    assert "_class_path" in checkpoint["hyper_parameters"], "written through LightningCLI"
    skeleton = load_pretrained(skeleton_ckpts[0])  # no LightningModule needed to load it
    assert skeleton.recipe.task == "skeleton" and skeleton.out_channels == 10

    lesion_dir = tmp_path / "lesion"
    main(
        _fit_args(
            "lesion-cpu-small",
            cohort / "lesions",
            lesion_dir,
            "--model.init",
            str(skeleton_ckpts[0]),
        )
    )
    lesion_ckpt = sorted(lesion_dir.rglob("last.ckpt"))[0]
    lesion_checkpoint = torch.load(lesion_ckpt, weights_only=True)
    assert lesion_checkpoint["sap_recipe"]["task"] == "lesion"
    assert lesion_checkpoint["sap_transfer"]["source"] == str(skeleton_ckpts[0])
    assert lesion_checkpoint["sap_transfer"]["loaded"] > 0

    validated = [row for row in _logged_rows(lesion_dir) if row.get("val/dice_foreground")]
    assert len(validated) == 2, "one validation per epoch, on whole volumes"
    for row in validated:
        assert 0.0 <= float(row["val/dice_foreground"]) <= 1.0
        assert float(row["val/lesion_fp_per_exam"]) >= 0.0
        assert float(row["val/dice_foreground"]) == pytest.approx(float(row["val/dice_lesion"]))

    main(
        _cli_args(
            "validate",
            "lesion-cpu-small",
            cohort / "lesions",
            tmp_path / "validate",
            "--ckpt_path",
            str(lesion_ckpt),
        )
    )
    (row,) = [row for row in _logged_rows(tmp_path / "validate") if row.get("val/dice_foreground")]
    assert float(row["val/dice_foreground"]) == pytest.approx(
        float(validated[-1]["val/dice_foreground"]), abs=1e-6
    ), "validating the last checkpoint repeats the last validation of fit"


def test_fit_refuses_a_cohort_with_a_broken_file(cohort: Path, tmp_path: Path) -> None:
    broken = tmp_path / "broken"
    broken.mkdir()
    for case in sorted((cohort / "anatomy").iterdir()):
        if case.is_dir():
            target = broken / case.name
            target.mkdir()
            for file in case.iterdir():
                (target / file.name).write_bytes(file.read_bytes())
    victim = sorted(broken.iterdir())[0] / "b1000.nii.gz"
    victim.write_bytes(victim.read_bytes()[: victim.stat().st_size // 2])
    with pytest.raises(Exception, match="b1000.nii.gz") as error:
        main(_fit_args("skeleton-cpu-small", broken, tmp_path / "out"))
    assert sorted(broken.iterdir())[0].name in str(error.value)
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


def test_wandb_sweep_overrides_are_valid_cli_options(capsys: pytest.CaptureFixture[str]) -> None:
    """Every parameter a packaged sweep varies must be an option 'sap fit' accepts."""
    sweep = yaml.safe_load(
        (config_path("lesion-cpu-small").parent / "sweeps" / "lesion-lr.yaml").read_text(
            encoding="utf-8"
        )
    )
    overrides = [
        f"--{name}={spec.get('min', (spec.get('values') or [None])[0])}"
        for name, spec in sweep["parameters"].items()
    ]
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", "--config", "lesion-cpu-small", *overrides, "--print_config"])
    assert exit_info.value.code == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed["model"]["init_args"]["lr_encoder"] == pytest.approx(1e-6)
    assert printed["data"]["init_args"]["negative_ratio"] == pytest.approx(0.5)
