"""``sap demo``: the whole SAP study in miniature, on synthetic whole-body MRI, on a CPU.

1. Generate a phantom cohort: healthy volunteers (skeleton labels) and metastatic patients
   (skeleton + lesion labels), the latter split into fine-tuning and held-out test cases.
2. Pretrain a skeleton model (10 classes) on the healthy cases.
3. Fine-tune two lesion models with identical budgets, seeds and data: one SAP-initialised
   (encoder + decoder from the skeleton model, fresh head, lower encoder learning rate), one
   from random weights.
4. Evaluate both on the held-out patients with the paper's lesion-level metrics and print a
   side-by-side table. Everything lands in one output folder: phantom, checkpoints, the
   configuration of every run and ``summary.json``.

The demo is a smoke test of the method, not a replication: tiny models, tiny budgets.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from sap.io import write_text_atomic


@dataclass
class DemoSettings:
    """Sizes and budgets of the demo; the defaults finish in well under 15 minutes on 2 CPU cores.

    The budgets are tiny on purpose (a 2-core laptop, no GPU): ``tiny_unet`` on 32³ patches
    of a 5 x 5 x 6 mm phantom. Both lesion arms get exactly the same data, epochs, seeds and
    decoder/head learning rate; they differ only in initialisation and encoder learning rate.
    """

    healthy: int = 8
    metastatic_train: int = 8
    metastatic_test: int = 6
    seed: int = 7
    backbone: str = "tiny_unet"
    backbone_kwargs: dict[str, Any] = field(default_factory=dict)
    patch_size: tuple[int, int, int] = (32, 32, 32)
    batch_size: int = 4
    skeleton_epochs: int = 12
    skeleton_samples_per_volume: int = 6
    lesion_epochs: int = 28
    negative_ratio: float = 1.0
    skeleton_lr: float = 3e-3
    lesion_lr_decoder: float = 3e-3
    lesion_lr_encoder_sap: float = 1e-3
    sw_overlap: float = 0.25
    sw_batch_size: int = 16
    batch_dice: bool = True
    skeleton_ce_background_weight: float = 0.05
    threshold: float = 0.5
    phantom_kwargs: dict[str, Any] = field(default_factory=dict)


def cpu_trainer(out_dir: Path, max_epochs: int, name: str, progress: bool) -> Any:
    """A single-CPU Trainer writing CSV logs and ``<out_dir>/<name>/checkpoints/last.ckpt``.

    Shared by the demo and the script that trains the bundled zoo models, so both record
    their runs the same way. No validation loop: both evaluate on held-out cases after fitting.
    """
    import lightning as L
    from lightning.pytorch.callbacks import ModelCheckpoint
    from lightning.pytorch.loggers import CSVLogger

    return L.Trainer(
        max_epochs=max_epochs,
        accelerator="cpu",
        devices=1,
        default_root_dir=str(out_dir),
        logger=CSVLogger(str(out_dir), name=name, version=""),
        callbacks=[
            ModelCheckpoint(
                dirpath=str(out_dir / name / "checkpoints"), save_last=True, save_top_k=0
            )
        ],
        limit_val_batches=0,
        num_sanity_val_steps=0,
        enable_progress_bar=progress,
        enable_model_summary=False,
        deterministic=False,
        log_every_n_steps=5,
    )


def _write_config(path: Path, module: Any, datamodule: Any, max_epochs: int) -> None:
    import yaml

    config = {
        "seed_everything": None,
        "trainer": {"max_epochs": max_epochs, "accelerator": "cpu"},
        "model": {
            "class_path": f"{type(module).__module__}.{type(module).__name__}",
            "init_args": dict(module.hparams),
        },
        "data": {
            "class_path": f"{type(datamodule).__module__}.{type(datamodule).__name__}",
            "init_args": dict(getattr(datamodule, "hparams", {})),
        },
    }
    write_text_atomic(
        path, yaml.safe_dump(json.loads(json.dumps(config, default=list)), sort_keys=False)
    )


def _evaluate(module: Any, cases: list[Any], threshold: float) -> dict[str, Any]:
    """Lesion metrics of ``module`` on whole held-out volumes (preprocessed grid)."""
    import torch

    from sap.data.cases import case_to_subject
    from sap.data.preprocess import preprocessing, stack_channels
    from sap.metrics import evaluate_exams, headline_metrics

    transform = preprocessing(channels=module.channels, spacing_mm=module.spacing_mm)
    predictions, probabilities, references, spacings = [], [], [], []
    module.eval()
    with torch.no_grad():
        for case in cases:
            subject = transform(case_to_subject(case))
            image = stack_channels(subject, module.channels).unsqueeze(0).float()
            probability = module.predict_volume(image)[0, 1].numpy()
            probabilities.append(probability)
            predictions.append(probability >= threshold)
            references.append(subject["lesion"].data[0].numpy() > 0)
            spacings.append(tuple(float(s) for s in subject["lesion"].spacing))
    summary = evaluate_exams(
        predictions,
        references,
        spacings,
        case_ids=[case.case_id for case in cases],
        prob_maps=probabilities,
        threshold=threshold,
    )
    return {"headline": headline_metrics(summary), "summary": summary}


def run_demo(
    out_dir: str | Path,
    settings: DemoSettings | None = None,
    progress: bool = True,
    overwrite: bool = False,
) -> dict[str, Any]:
    """Run the miniature SAP study and return (and write) its summary.

    ``overwrite`` lets a rerun replace the phantom cohort of an earlier run in ``out_dir``.
    """
    import lightning as L

    from sap.data.cases import discover_cases
    from sap.data.datamodules import LesionDataModule, SkeletonDataModule
    from sap.phantom import generate_cohort
    from sap.tasks import AnatomicalPretraining, LesionFinetuning

    settings = settings or DemoSettings()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    timings: dict[str, float] = {}
    patch = list(settings.patch_size)

    start = time.perf_counter()
    phantom = out / "phantom"
    # (folder, healthy, metastatic): each cohort has its own seed, so test patients are
    # never training patients.
    cohorts = (
        ("anatomy", settings.healthy, 0),
        ("lesions_train", 0, settings.metastatic_train),
        ("lesions_test", 0, settings.metastatic_test),
    )
    for offset, (name, healthy, metastatic) in enumerate(cohorts):
        generate_cohort(
            phantom / name,
            healthy=healthy,
            metastatic=metastatic,
            seed=settings.seed + offset,
            overwrite=overwrite,
            **settings.phantom_kwargs,
        )
    timings["phantom_s"] = time.perf_counter() - start
    print(f"[sap demo] phantom cohort written to {phantom} ({timings['phantom_s']:.0f} s)")

    # Stage 1: supervised anatomical pretraining on healthy volunteers.
    start = time.perf_counter()
    L.seed_everything(settings.seed, workers=True)
    skeleton_data = SkeletonDataModule(
        data_dir=str(phantom / "anatomy"),
        patch_size=patch,
        batch_size=settings.batch_size,
        samples_per_volume=settings.skeleton_samples_per_volume,
        val_fraction=0.0,
        seed=settings.seed,
        cache_subjects=True,
    )
    skeleton = AnatomicalPretraining(
        backbone=settings.backbone,
        backbone_kwargs=settings.backbone_kwargs,
        patch_size=patch,
        lr=settings.skeleton_lr,
        warmup_epochs=1,
        sw_overlap=settings.sw_overlap,
        sw_batch_size=settings.sw_batch_size,
        batch_dice=settings.batch_dice,
        ce_background_weight=settings.skeleton_ce_background_weight,
    )
    trainer = cpu_trainer(out, settings.skeleton_epochs, "skeleton", progress)
    print("[sap demo] stage 1/3: skeleton pretraining on healthy phantoms")
    trainer.fit(skeleton, datamodule=skeleton_data)
    skeleton_ckpt = out / "skeleton" / "checkpoints" / "last.ckpt"
    _write_config(
        out / "skeleton" / "config.yaml", skeleton, skeleton_data, settings.skeleton_epochs
    )
    timings["skeleton_s"] = time.perf_counter() - start

    # Stage 2: lesion fine-tuning, SAP-initialised and from scratch, identical budgets.
    results: dict[str, dict[str, Any]] = {}
    test_cases = discover_cases(phantom / "lesions_test", require=("lesion",))
    for arm, init, lr_encoder in (
        ("sap", str(skeleton_ckpt), settings.lesion_lr_encoder_sap),
        ("scratch", "scratch", settings.lesion_lr_decoder),
    ):
        start = time.perf_counter()
        L.seed_everything(settings.seed + 100, workers=True)
        lesion_data = LesionDataModule(
            data_dir=str(phantom / "lesions_train"),
            patch_size=patch,
            batch_size=settings.batch_size,
            negative_ratio=settings.negative_ratio,
            val_fraction=0.0,
            seed=settings.seed,
            cache_subjects=True,
        )
        lesion = LesionFinetuning(
            init=init,
            backbone=settings.backbone,
            backbone_kwargs=settings.backbone_kwargs,
            patch_size=patch,
            lr_encoder=lr_encoder,
            lr_decoder=settings.lesion_lr_decoder,
            lr_head=settings.lesion_lr_decoder,
            warmup_epochs=1,
            sw_overlap=settings.sw_overlap,
            sw_batch_size=settings.sw_batch_size,
            batch_dice=settings.batch_dice,
        )
        print(
            f"[sap demo] stage {2 if arm == 'sap' else 3}/3: lesion fine-tuning, {arm} initialisation"
        )
        trainer = cpu_trainer(out, settings.lesion_epochs, f"lesion_{arm}", progress)
        trainer.fit(lesion, datamodule=lesion_data)
        _write_config(
            out / f"lesion_{arm}" / "config.yaml", lesion, lesion_data, settings.lesion_epochs
        )
        timings[f"lesion_{arm}_s"] = time.perf_counter() - start
        results[arm] = _evaluate(lesion, test_cases, settings.threshold)

    summary = {
        "settings": json.loads(json.dumps(asdict(settings), default=list)),
        "test_cases": [case.case_id for case in test_cases],
        "threshold": settings.threshold,
        "results": results,
        "timings_s": {key: round(value, 1) for key, value in timings.items()},
        "checkpoints": {
            "skeleton": str(skeleton_ckpt),
            "lesion_sap": str(out / "lesion_sap" / "checkpoints" / "last.ckpt"),
            "lesion_scratch": str(out / "lesion_scratch" / "checkpoints" / "last.ckpt"),
        },
    }
    write_text_atomic(out / "summary.json", json.dumps(summary, indent=2, default=_json_default))
    print(format_table({arm: result["headline"] for arm, result in results.items()}))
    print(f"[sap demo] summary written to {out / 'summary.json'}")
    return summary


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return str(value)


#: Rows of the demo table: (label, key in the metrics summary).
TABLE_ROWS: tuple[tuple[str, str], ...] = (
    ("sensitivity, all lesions", "sensitivity"),
    ("precision", "precision"),
    ("FP per exam", "fp_per_exam"),
    ("F2", "f_beta"),
    ("Dice, detected lesions", "dice_detected"),
    ("NSD, detected lesions", "nsd_detected"),
    ("per-patient mean Dice", "mean_lesion_dice"),
    ("global Dice", "global_dice"),
    ("FROC-AUC (to 15 FP/exam)", "froc_auc"),
)


def format_table(results: dict[str, dict[str, Any]]) -> str:
    """Side-by-side table of the demo's arms (columns) and metrics (rows)."""
    arms = list(results)
    width = max(len(label) for label, _ in TABLE_ROWS) + 2
    lines = ["metric".ljust(width) + "".join(arm.rjust(10) for arm in arms)]
    for label, key in TABLE_ROWS:
        cells = []
        for arm in arms:
            value = results[arm].get(key)
            cells.append(
                "n/a".rjust(10)
                if value is None or (isinstance(value, float) and math.isnan(value))
                else f"{value:10.3f}"
            )
        lines.append(label.ljust(width) + "".join(cells))
    return "\n".join(lines)


def quick_settings() -> DemoSettings:
    """A minimal demo for smoke tests and CI: a few tiny cases, two epochs per stage."""
    return DemoSettings(
        healthy=3,
        metastatic_train=3,
        metastatic_test=2,
        skeleton_epochs=2,
        skeleton_samples_per_volume=2,
        lesion_epochs=2,
        batch_size=2,
    )
