"""sap benchmark: stages run once, resume after a kill, the config is one tree of options."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from sap.cli.benchmark import build_parser, expand_preset
from sap.experiments.benchmark import STAGE_FILE, Stages
from sap.experiments.benchmark_config import ArmConfig, BenchmarkConfig, stage_key
from sap.experiments.benchmark_folds import choose_on_tuning_fold
from sap.experiments.cv_splits import stratified_folds
from tests.helpers.experiments import TINY_PHANTOM


def test_a_finished_stage_is_skipped_and_a_changed_one_redone(tmp_path: Path) -> None:
    calls = []
    stages = Stages(tmp_path, calls.append)

    def work() -> dict:
        (tmp_path / "stage" / "partial.txt").parent.mkdir(exist_ok=True)
        return {"value": len(calls)}

    first = stages.run("stage", tmp_path / "stage", "key-1", work)
    assert stages.run("stage", tmp_path / "stage", "key-1", work) == first
    assert stages.skipped == ["stage"] and stages.ran == ["stage"]
    (tmp_path / "stage" / "leftover.txt").write_text("from the old run")
    stages.run("stage", tmp_path / "stage", "key-2", work)
    assert not (tmp_path / "stage" / "leftover.txt").exists(), "an outdated stage starts clean"
    assert json.loads((tmp_path / "stage" / STAGE_FILE).read_text())["key"] == "key-2"
    with pytest.raises(ValueError, match="outside the benchmark folder"):
        stages.run("elsewhere", tmp_path.parent / "elsewhere", "k", work)


def test_stage_keys_change_with_inputs_only() -> None:
    config = BenchmarkConfig()
    assert stage_key(config.training) == stage_key(BenchmarkConfig().training)
    config.training.lesion_epochs += 1
    assert stage_key(config.training) != stage_key(BenchmarkConfig().training)


def test_every_field_is_an_option_and_presets_come_first(tmp_path: Path) -> None:
    mine = tmp_path / "mine.yaml"
    mine.write_text("seeds: [5]\ncv:\n  folds: 4\n", encoding="utf-8")
    argv = expand_preset(
        ["--preset", "quick", "--config", str(mine), "--cv.tuning_fold", "2", "OUT"]
    )
    assert argv[:2] == ["--config", str(Path(argv[1]))] and argv[1].endswith("benchmark/quick.yaml")
    options = build_parser().parse_args(argv)
    assert options.seeds == [5] and options.cv.folds == 4 and options.cv.tuning_fold == 2
    assert options.training.backbone == "tiny_unet"  # from the preset
    assert set(options.arms) == {"scratch", "ssl", "sap"} and options.out == "OUT"


def test_a_config_that_cannot_work_is_refused() -> None:
    with pytest.raises(ValueError, match="reference_arm 'sap' is not one of the arms"):
        BenchmarkConfig(arms={}).check()
    with pytest.raises(ValueError, match="seeds must be distinct"):
        BenchmarkConfig(seeds=[1, 1]).check()


def test_an_encoder_rate_list_must_hold_distinct_positive_rates() -> None:
    for bad in ([], [1e-3, 1e-3], [1e-3, 1.0000001e-3], [1e-3, 0.0], -1e-4):
        config = BenchmarkConfig(arms={"sap": ArmConfig("sap", bad)})
        with pytest.raises(ValueError, match="arm 'sap': lr_encoder must be"):
            config.check()
    options = build_parser().parse_args(
        expand_preset(["--preset", "quick", "--arms.sap.lr_encoder", "[1e-4, 2e-4, 3e-3]", "O"])
    )
    assert BenchmarkConfig(arms=options.arms).arms["sap"].lr_encoder == [1e-4, 2e-4, 3e-3]


def test_the_tested_run_is_the_candidate_best_on_the_tuning_fold() -> None:
    runs = [
        {"lr_encoder": 6e-4, "tuning_f_beta": 0.41},
        {"lr_encoder": 1e-3, "tuning_f_beta": float("nan")},  # tuning scored nothing
        {"lr_encoder": 3e-3, "tuning_f_beta": 0.52},
        {"lr_encoder": 5e-3, "tuning_f_beta": 0.52},  # a tie: the earlier listed wins
    ]
    assert choose_on_tuning_fold(runs)["lr_encoder"] == 3e-3
    assert choose_on_tuning_fold(runs[:2])["lr_encoder"] == 6e-4
    assert choose_on_tuning_fold(runs[1:2])["lr_encoder"] == 1e-3
    with pytest.raises(ValueError, match="no candidate"):
        choose_on_tuning_fold([])


def _fake_fold_job(config, files, tuning_fold, fold, arm, seed, init, folder, progress) -> dict:
    """A fine-tuning run in no time: the tuning F2 peaks at encoder rate 1e-3."""
    rate = arm.lr_encoder
    assert isinstance(rate, float) and tuning_fold == 0, "one run, one rate, tuned on fold 0"
    folder.mkdir(parents=True)
    return {
        "folder": str(folder),
        "threshold": 0.5,
        "tuning_f_beta": 1.0 - abs(math.log10(rate) + 3.0) - 0.01 * fold,
        "train": {"seconds": 1.0, "steps": 2},
        "predict_s": 0.5,
    }


def test_candidate_rates_are_each_fine_tuned_and_the_tuning_fold_chooses(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import sap.experiments.benchmark as benchmark

    monkeypatch.setattr(benchmark, "_fold_job", _fake_fold_job)
    split = stratified_folds({f"patient_{i}": i % 3 for i in range(9)}, folds=3, seed=0)
    pretrained = {"sap": {"key": "skeleton", "checkpoint": str(tmp_path / "skeleton.ckpt")}}
    config = BenchmarkConfig(
        seeds=[0],
        arms={"scratch": ArmConfig("scratch", 3e-3), "sap": ArmConfig("sap", [1e-4, 1e-3])},
    )
    log: list[str] = []
    runs = benchmark._finetune(config, split, None, pretrained, Stages(tmp_path, log.append),
                               False, tmp_path)  # fmt: skip
    sap_run = runs["sap"]["0"][1]
    assert sap_run["lr_encoder"] == 1e-3 and [c["lr_encoder"] for c in sap_run["candidates"]] == [
        1e-4, 1e-3,
    ]  # fmt: skip
    assert Path(sap_run["folder"]) == tmp_path / "finetune/sap/seed_0/fold_1/lr_encoder_0.001"
    assert runs["scratch"]["0"][2]["lr_encoder"] == 3e-3
    assert len(runs["scratch"]["0"][2]["candidates"]) == 1
    assert sum("running" in line for line in log) == 2 * (1 + 2)  # 2 test folds x 3 runs
    # A third candidate later: only its runs are new, and it wins where it is better.
    config.arms["sap"] = ArmConfig("sap", [1e-4, 1e-3, 1.1e-3])
    log.clear()
    runs = benchmark._finetune(config, split, None, pretrained, Stages(tmp_path, log.append),
                               False, tmp_path)  # fmt: skip
    assert [line for line in log if "running" in line] == [
        f"fine-tuning sap, seed 0, fold {fold}, encoder rate 0.0011: running" for fold in (1, 2)
    ]
    assert runs["sap"]["0"][1]["lr_encoder"] == 1e-3  # 1.1e-3 scores lower than 1e-3
    assert runs["sap"]["0"][1]["key"] == sap_run["key"], "scoring of the chosen run is reused"


def tiny_config(seeds=(0,)) -> dict:
    """The smallest benchmark that still has all three arms and two test folds."""
    return {
        "seeds": list(seeds),
        "cohort": {
            "phantom_healthy": 2,
            "phantom_metastatic": 6,
            "phantom_kwargs": {**TINY_PHANTOM, "min_lesion_voxels": 2},
        },
        "cv": {"folds": 3},
        "training": {
            "backbone": "tiny_unet",
            "patch_size": [16, 16, 32],
            "batch_size": 2,
            "skeleton_epochs": 1,
            "skeleton_samples_per_volume": 2,
            "ssl_epochs": 1,
            "ssl_samples_per_volume": 2,
            "lesion_epochs": 1,
            "sw_batch_size": 4,
            "torch_threads": 1,
        },  # fmt: skip
        "arms": {
            "scratch": {"init": "scratch", "lr_encoder": 3e-3},
            "ssl": {"init": "ssl", "lr_encoder": 1.5e-3},
            "sap": {"init": "sap", "lr_encoder": [6e-4, 3e-3]},
        },
        "evaluation": {"bootstrap_resamples": 20, "predict_batch_size": 4},
        "features": {"patches_per_class": 4},
    }


def _benchmark(config: Path, out: Path) -> subprocess.Popen:
    env = {**os.environ, "JSONARGPARSE_DEPRECATION_WARNINGS": "off"}
    return subprocess.Popen(
        [sys.executable, "-m", "sap.cli", "benchmark", "--config", str(config), str(out)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
    )  # fmt: skip


@pytest.mark.slow
def test_killed_benchmark_resumes_and_gives_the_numbers_of_an_uninterrupted_run(
    tmp_path: Path,
) -> None:
    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump(tiny_config()), encoding="utf-8")
    # An uninterrupted run, for reference.
    reference = _benchmark(config, tmp_path / "reference")
    assert reference.wait(timeout=900) == 0, reference.stdout.read()
    # A run killed as soon as its first fine-tuning fold is finished.
    killed = _benchmark(config, tmp_path / "resumed")
    first_fold = (
        tmp_path / "resumed" / "finetune" / "scratch" / "seed_0" / "fold_1" / "lr_encoder_0.003"
        / STAGE_FILE
    )  # fmt: skip
    deadline = time.monotonic() + 900
    while not first_fold.exists() and time.monotonic() < deadline and killed.poll() is None:
        time.sleep(0.2)
    killed.send_signal(signal.SIGKILL)
    killed.wait()
    assert first_fold.exists() and not (tmp_path / "resumed" / "results.json").exists()
    finished_at = first_fold.stat().st_mtime_ns
    resumed = _benchmark(config, tmp_path / "resumed")
    log, _ = resumed.communicate(timeout=900)
    assert resumed.returncode == 0, log
    assert "pretraining sap: finished earlier" in log and "pretraining ssl: finished earlier" in log
    assert "fine-tuning scratch, seed 0, fold 1: finished earlier" in log
    assert "fine-tuning sap, seed 0, fold 2, encoder rate 0.003: running" in log
    assert first_fold.stat().st_mtime_ns == finished_at
    numbers = [
        json.loads((tmp_path / run / "results.json").read_text(encoding="utf-8"))
        for run in ("reference", "resumed")
    ]
    for key in ("per_seed", "combined", "comparison", "per_patient", "features", "selection"):
        assert numbers[0][key] == numbers[1][key], key
    # SAP ran both encoder rates; the one tested is the better on the tuning fold.
    for fold in ("1", "2"):
        entry = numbers[1]["selection"]["sap"]["0"][fold]
        scores = entry["tuning_f_beta"]
        assert set(scores) == {"0.0006", "0.003"}
        best = max(scores, key=lambda rate: (scores[rate], rate == "0.0006"))
        assert f"{entry['chosen']:g}" == best
        assert numbers[1]["per_seed"]["sap"]["0"]["thresholds"][fold] == json.loads(
            (tmp_path / "resumed" / "finetune" / "sap" / "seed_0" / f"fold_{fold}"
             / f"lr_encoder_{best}" / STAGE_FILE).read_text(encoding="utf-8")
        )["result"]["threshold"], "the tested model keeps the threshold it froze"  # fmt: skip
    assert numbers[1]["compute"]["finetuning"]["sap"]["runs"] == 4
    # Phantoms carry skeleton labels: the skeleton model is checked on the 2 tuning patients,
    # and every test patient's false positives are split by bone.
    assert numbers[1]["skeleton_model"]["cases"] == 2
    assert 0.0 <= numbers[1]["skeleton_model"]["foreground_dice"] <= 1.0
    assert {arm: v["exams"] for arm, v in numbers[1]["fp_location"].items()} == {
        "scratch": 4, "ssl": 4, "sap": 4,
    }  # fmt: skip
    report = (tmp_path / "resumed" / "report.md").read_text(encoding="utf-8")
    assert "## Where the false positives lie" in report and "## SAP's skeleton model" in report
