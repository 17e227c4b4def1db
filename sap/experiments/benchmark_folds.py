"""One cell of the benchmark: fine-tune one arm for one test fold and seed, predict, tune.

The model trains on the fold's training manifest
(:func:`sap.experiments.pretrain_finetune.finetune_lesion`), predicts the tuning fold and
its test fold through :mod:`sap.inference` (lesion probability maps on each scan's own
grid), and picks its binarisation threshold on the tuning fold (maximum mean patient-level
F-beta, :func:`sap.metrics.folders.tune_threshold_on_folder`). The threshold is then frozen;
scoring happens once all folds are done (:mod:`sap.experiments.benchmark_results`).
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from sap.experiments.benchmark_config import ArmConfig, BenchmarkConfig
from sap.experiments.benchmark_data import FoldFiles
from sap.experiments.pretrain_finetune import finetune_lesion

#: Prediction folders of a fold run.
TUNING_PREDICTIONS = "predictions_tuning"
TEST_PREDICTIONS = "predictions_test"


def run_fold(
    config: BenchmarkConfig,
    files: FoldFiles,
    tuning_fold: int,
    fold: int,
    arm: ArmConfig,
    seed: int,
    init: Path | None,
    folder: Path,
    progress: bool = False,
) -> dict[str, Any]:
    """Fine-tune, predict and tune the threshold of one arm on one test fold; returns the record.

    Args:
        config: the benchmark configuration.
        files: the fold files.
        tuning_fold, fold: the tuning fold and the test fold.
        arm: the arm (initialisation and encoder learning rate).
        seed: the fine-tuning seed (data order, augmentation, head initialisation).
        init: the pretrained checkpoint, ``None`` for scratch.
        folder: where the run writes (checkpoints, logs, predictions).
        progress: show Lightning's progress bars.
    """
    rates = arm.candidate_rates()
    if len(rates) != 1:
        raise ValueError(f"one fine-tuning run takes one encoder rate, got {arm.lr_encoder!r}")
    settings = dataclasses.replace(config.training, seed=int(seed))
    trained = finetune_lesion(
        files.training_manifest(fold),
        folder.parent,
        settings,
        init=init,
        name=folder.name,
        progress=progress,
        transfer=arm.transfer_mode(),
        lr_encoder=rates[0],
    )
    start = time.perf_counter()
    predictor = _predictor(trained.checkpoint, config)
    for which, fold_index in ((TUNING_PREDICTIONS, tuning_fold), (TEST_PREDICTIONS, fold)):
        _predict(predictor, files.manifest(fold_index), folder / which)
    predict_s = time.perf_counter() - start
    tuning = _tune(folder / TUNING_PREDICTIONS, files.references(tuning_fold), config)
    transfer = getattr(trained.module, "transfer_report", None)
    return {
        "threshold": tuning.threshold,
        "tuning_f_beta": tuning.score,
        "train": trained.compute(),
        "predict_s": round(predict_s, 1),
        "checkpoint": str(trained.checkpoint),
        "transferred_tensors": None if transfer is None else len(transfer.loaded),
    }


def choose_on_tuning_fold(records: Sequence[Mapping[str, Any]]) -> Mapping[str, Any]:
    """The candidate run with the highest tuning-fold F-beta; ties go to the first listed.

    Each record is one fine-tuning of the same arm, seed and test fold with another encoder
    learning rate, scored on the tuning fold only (``tuning_f_beta`` at its own tuned
    threshold). Nothing of the test fold enters the choice, so the tested model is chosen
    the way a user without test labels would choose it.

    >>> choose_on_tuning_fold([{"lr_encoder": 1, "tuning_f_beta": 0.4},
    ...                        {"lr_encoder": 2, "tuning_f_beta": 0.5}])["lr_encoder"]
    2
    """
    if not records:
        raise ValueError("no candidate runs to choose from")

    def score(record: Mapping[str, Any]) -> float:
        value = record.get("tuning_f_beta")
        return -math.inf if value is None or math.isnan(float(value)) else float(value)

    best = records[0]
    for record in records[1:]:
        if score(record) > score(best):
            best = record
    return best


def _predictor(checkpoint: Path, config: BenchmarkConfig) -> Any:
    from sap.inference import Predictor, load_model

    device = "cpu" if config.training.accelerator == "cpu" else _gpu_or_cpu()
    return Predictor(
        load_model(checkpoint, device, task="lesion"),
        device=device,
        overlap=config.training.sw_overlap,
        batch_size=config.evaluation.predict_batch_size,
        memory_limit_bytes=None,
    )


def _gpu_or_cpu() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def _predict(predictor: Any, manifest: Path, out_dir: Path) -> None:
    from sap.inference import predict_cases, resolve_inputs

    cases = resolve_inputs(manifest, predictor.recipe.channels)
    result = predict_cases(
        cases, out_dir, predictor, save_probabilities=True, overwrite=True, log=lambda line: None
    )
    if result.errors:
        failed = "; ".join(f"{case}: {error}" for case, error in result.errors.items())
        raise RuntimeError(
            f"Prediction failed for {len(result.errors)} case(s) of {manifest}: {failed}"
        )


def _tune(pred_dir: Path, ref_dir: Path, config: BenchmarkConfig) -> Any:
    from sap.metrics.folders import tune_threshold_on_folder

    return tune_threshold_on_folder(
        pred_dir,
        ref_dir,
        settings=detection_settings(config),
        min_prob=config.evaluation.min_prob,
    )


def detection_settings(config: BenchmarkConfig) -> Any:
    """The detection settings every fold is tuned and scored with."""
    from sap.metrics import DetectionSettings

    return DetectionSettings(
        min_volume_ml=config.evaluation.min_volume_ml, beta=config.evaluation.beta
    )


__all__ = [
    "TEST_PREDICTIONS",
    "TUNING_PREDICTIONS",
    "choose_on_tuning_fold",
    "detection_settings",
    "run_fold",
]
