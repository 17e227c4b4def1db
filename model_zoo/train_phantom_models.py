"""Train, evaluate and bundle the demo models of the sap model zoo (synthetic phantoms only).

Makes the two models shipped inside the package:

- ``sap-skeleton-phantom``: 10-class skeleton model (supervised anatomical pretraining) on
  healthy phantoms;
- ``sap-lesion-phantom``: lesion model fine-tuned from it the SAP way (encoder and decoder
  from the skeleton model, fresh 2-class head, lower encoder learning rate).

Both are small ``tiny_unet`` networks (well under 5 MB each) trained on CPU. They are for
demos, tests and tutorials, and their model cards say so: synthetic data says nothing about real
scans.

Run from the repository root (seeded; rerunning gives the same cohorts and settings):

    python model_zoo/train_phantom_models.py

Training is :func:`sap.experiments.pretrain_then_finetune` (the SAP arm only). It writes
the export folders into ``sap/zoo_bundled/<name>/``, the catalogue entries
``model_zoo/<name>.yaml`` (sha256, size, metrics, command, runtime, evaluation cohort) and
regenerates ``model_zoo/README.md``. Intermediate files (phantoms, checkpoints, logs) go to
``--work-dir`` (default ``runs/phantom_zoo``). ``--quick`` is a smoke run that writes only
into the work folder. ``--recard`` trains nothing: it rewrites the bundled models'
``config.json`` and model cards from the texts below (same weights, same sha256, same
measured metrics).

Metrics are measured the way a user would get them: :class:`sap.inference.Predictor` on the
bundled model (Gaussian sliding window, overlap 0.5, skeleton majority vote) on held-out
phantoms generated with their own seed. ``tests/zoo/test_bundled.py`` regenerates that
cohort and checks the skeleton entry's whole-skeleton Dice with :func:`evaluate_skeleton`.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sap.experiments import PretrainFinetuneSettings, TrainedRun, pretrain_then_finetune

REPO = Path(__file__).resolve().parents[1]
SKELETON_NAME = "sap-skeleton-phantom"
LESION_NAME = "sap-lesion-phantom"
COMMAND = "python model_zoo/train_phantom_models.py"
MAX_BUNDLED_BYTES = 5_000_000
#: Sliding windows per forward pass in evaluation: on a CPU, batches of 2 small windows
#: are several times slower per window than batches of 16.
WINDOW_BATCH_SIZE = 16


@dataclass
class Settings(PretrainFinetuneSettings):
    """Everything that decides the bundled models; recorded in their catalogue entries.

    Training settings: :class:`sap.experiments.PretrainFinetuneSettings`, with this script's
    seed, network and budget; the cohorts below.
    """

    seed: int = 2025
    backbone_kwargs: dict[str, Any] = field(
        default_factory=lambda: {"base_channels": 8, "depth": 3, "residual": True}
    )
    skeleton_epochs: int = 15
    lesion_seed_offset: int = 1
    healthy: int = 8
    metastatic: int = 8
    eval_healthy: int = 2
    eval_metastatic: int = 3
    phantom_kwargs: dict[str, Any] = field(default_factory=dict)
    threshold: float = 0.5


def quick_settings() -> Settings:
    """A smoke run of the whole pipeline (about a minute); never written into the package."""
    return Settings(
        healthy=3,
        metastatic=3,
        eval_healthy=1,
        eval_metastatic=1,
        skeleton_epochs=1,
        skeleton_samples_per_volume=2,
        lesion_epochs=1,
        batch_size=2,
    )


# ---------------------------------------------------------------------------- evaluation


def evaluate_skeleton(model: Any, cases: list[Any]) -> dict[str, float]:
    """Mean whole-skeleton and mean per-region Dice of ``model`` over ``cases``.

    Prediction with the default :class:`sap.inference.Predictor`, on each case's input grid,
    against its ``skeleton.nii.gz``.
    """
    import nibabel as nib
    import numpy as np

    from sap.inference.predictor import Predictor
    from sap.metrics import class_dice

    predictor = Predictor(model, memory_limit_bytes=None, batch_size=WINDOW_BATCH_SIZE)
    whole, regions = [], []
    for case in cases:
        prediction = predictor.predict(case)
        reference = np.asarray(nib.load(str(case.skeleton)).dataobj).astype(np.int64)
        scores = class_dice(prediction.labels, reference, model.recipe.labels)
        whole.append(scores["foreground"])
        regions.append(scores["mean_class_dice"])
    return {
        "whole_skeleton_dice": round(float(np.mean(whole)), 4),
        "mean_region_dice": round(float(np.nanmean(regions)), 4),
    }


def evaluate_lesions(model: Any, cases: list[Any], threshold: float) -> dict[str, float]:
    """Median lesion-level metrics (paper protocol) of ``model`` over ``cases``."""
    import math

    import nibabel as nib
    import numpy as np

    from sap.inference.predictor import Predictor
    from sap.metrics import evaluate_exams

    predictor = Predictor(
        model, memory_limit_bytes=None, threshold=threshold, batch_size=WINDOW_BATCH_SIZE
    )
    predictions, references, spacings = [], [], []
    for case in cases:
        prediction = predictor.predict(case)
        image = nib.load(str(case.lesion))
        predictions.append(prediction.labels > 0)
        references.append(np.asarray(image.dataobj) > 0)
        spacings.append(tuple(float(s) for s in image.header.get_zooms()[:3]))
    summary = evaluate_exams(predictions, references, spacings, bootstrap=None)
    metrics = {}
    for name in ("sensitivity", "precision", "fp_per_exam", "f2", "dice_detected", "global_dice"):
        value = summary["metrics"].get(name, {}).get("median")
        if value is not None and math.isfinite(value):
            metrics[f"median_{name}"] = round(float(value), 4)
    return metrics


def evaluation_cases(work: Path, settings: Settings, kind: str) -> list[Any]:
    """The held-out cohort of ``kind`` ("skeleton" or "lesion"), generated if absent."""
    from sap.data.cases import discover_cases
    from sap.phantom import generate_cohort

    folder = work / f"eval_{kind}"
    if not folder.is_dir():
        if kind == "skeleton":
            counts = {"healthy": settings.eval_healthy, "metastatic": 0}
        else:
            counts = {"healthy": 0, "metastatic": settings.eval_metastatic}
        generate_cohort(folder, seed=eval_seed(settings, kind), **counts, **settings.phantom_kwargs)
    return discover_cases(folder, require=("skeleton",) if kind == "skeleton" else ("lesion",))


def eval_seed(settings: Settings, kind: str) -> int:
    return settings.seed + (1000 if kind == "skeleton" else 2000)


# ---------------------------------------------------------------------------- training


def training_cohorts(work: Path, settings: Settings) -> tuple[Path, Path]:
    """The healthy (pretraining) and metastatic (fine-tuning) cohorts, generated if absent."""
    from sap.phantom import generate_cohort

    anatomy, lesions = work / "anatomy", work / "lesions"
    if not anatomy.is_dir():
        generate_cohort(
            anatomy,
            healthy=settings.healthy,
            metastatic=0,
            seed=settings.seed,
            **settings.phantom_kwargs,
        )
    if not lesions.is_dir():
        generate_cohort(
            lesions,
            healthy=0,
            metastatic=settings.metastatic,
            seed=settings.seed + 1,
            **settings.phantom_kwargs,
        )
    return anatomy, lesions


# ---------------------------------------------------------------------------- bundling


def skeleton_card(settings: Settings) -> dict[str, Any]:
    """Model-card metadata of the skeleton model (everything but its measured metrics)."""
    from sap.zoo import TrainingData

    return {
        "name": SKELETON_NAME,
        "description": "Demo skeleton model: a tiny U-Net trained to segment 9 bone regions on "
        "synthetic whole-body MRI phantoms (T1 + DWI b1000). For demos, tests and tutorials only.",
        "training_data": TrainingData(
            f"{settings.healthy} healthy phantoms from sap.phantom.generate_cohort (seed "
            f"{settings.seed}); synthetic T1 and b1000 volumes with a 10-label skeleton.",
            synthetic=True,
            num_cases=settings.healthy,
        ),
        "metrics_description": f"Mean over {settings.eval_healthy} held-out healthy phantoms "
        f"(generate_cohort seed {eval_seed(settings, 'skeleton')}); "
        + EVALUATION_TEXT.format(extra=", connected-component majority vote"),
        "base_model": "",
    }


def lesion_card(settings: Settings) -> dict[str, Any]:
    """Model-card metadata of the lesion model (everything but its measured metrics)."""
    from sap.zoo import TrainingData

    return {
        "name": LESION_NAME,
        "description": f"Demo lesion model: fine-tuned from {SKELETON_NAME} the SAP way (encoder "
        "and decoder transferred, fresh 2-class head, lower encoder learning rate) on synthetic "
        "metastatic phantoms. For demos, tests and tutorials only.",
        "training_data": TrainingData(
            f"{settings.metastatic} metastatic phantoms from sap.phantom.generate_cohort "
            f"(seed {settings.seed + 1}); initialised from {SKELETON_NAME}.",
            synthetic=True,
            num_cases=settings.metastatic,
        ),
        "metrics_description": f"Medians over {settings.eval_metastatic} held-out metastatic "
        f"phantoms (generate_cohort seed {eval_seed(settings, 'lesion')}); lesion-level "
        "detection as in the paper; "
        + EVALUATION_TEXT.format(extra=f", threshold {settings.threshold}"),
        "base_model": SKELETON_NAME,
    }


def recard(bundled_dir: Path, settings: Settings) -> list[Path]:
    """Rewrite the bundled models' metadata and cards; weights and metrics stay."""
    from sap.zoo.export import rewrite_metadata

    folders = []
    for card in (skeleton_card(settings), lesion_card(settings)):
        folder = bundled_dir / card["name"]
        rewrite_metadata(folder, **card)
        folders.append(folder)
    return folders


def bundle(
    checkpoint: Path, out_dir: Path, card: dict[str, Any], metrics: dict[str, float]
) -> Path:
    """Export ``checkpoint`` into ``out_dir`` with its model-card metadata."""
    from sap.zoo import export_checkpoint, read_config

    folder = export_checkpoint(checkpoint, out_dir, **card, metrics=metrics, overwrite=True)
    size = read_config(folder).weights.size_bytes
    if size > MAX_BUNDLED_BYTES:
        raise SystemExit(
            f"{folder}: weights are {size / 1e6:.1f} MB, over the {MAX_BUNDLED_BYTES / 1e6:.0f} MB budget."
        )
    return folder


def write_entry(folder: Path, zoo_dir: Path, summary: str, training: dict[str, Any]) -> Path:
    """``model_zoo/<name>.yaml`` from the bundled folder's config, plus how it was made."""
    from sap.io import write_text_atomic
    from sap.zoo.catalogue import entry_from_export

    entry = dataclasses.replace(entry_from_export(folder, summary=summary), training=training)
    return write_text_atomic(zoo_dir / f"{entry.name}.yaml", entry.to_yaml())


EVALUATION_TEXT = "default sap.inference.Predictor (Gaussian sliding window, overlap 0.5{extra})"


def bundle_skeleton(
    run: TrainedRun,
    work: Path,
    settings: Settings,
    bundled_dir: Path,
    zoo_dir: Path,
    environment: str,
) -> Path:
    """Evaluate, export and describe the skeleton model; return its bundled folder."""
    from sap.zoo import load_pretrained

    cases = evaluation_cases(work, settings, "skeleton")
    metrics = evaluate_skeleton(load_pretrained(run.checkpoint), cases)
    folder = bundle(run.checkpoint, bundled_dir / SKELETON_NAME, skeleton_card(settings), metrics)
    write_entry(
        folder,
        zoo_dir,
        "10-class skeleton model trained on synthetic phantoms (demo).",
        {
            "command": COMMAND,
            "runtime": f"{run.seconds / 60:.0f} min training on {environment}",
            "seed": settings.seed,
            "settings": json.loads(json.dumps(dataclasses.asdict(settings), default=list)),
            "evaluation": {
                "seed": eval_seed(settings, "skeleton"),
                "healthy": settings.eval_healthy,
                "metastatic": 0,
                "phantom_kwargs": settings.phantom_kwargs,
            },
        },
    )
    print(f"{SKELETON_NAME}: {metrics} ({run.seconds / 60:.1f} min)")
    return folder


def bundle_lesion(
    run: TrainedRun,
    work: Path,
    settings: Settings,
    bundled_dir: Path,
    zoo_dir: Path,
    environment: str,
) -> Path:
    """Evaluate, export and describe the SAP lesion model; return its bundled folder."""
    from sap.zoo import load_pretrained

    cases = evaluation_cases(work, settings, "lesion")
    metrics = evaluate_lesions(load_pretrained(run.checkpoint), cases, settings.threshold)
    lesion_seed = settings.seed + settings.lesion_seed_offset
    folder = bundle(run.checkpoint, bundled_dir / LESION_NAME, lesion_card(settings), metrics)
    write_entry(
        folder,
        zoo_dir,
        f"2-class lesion model fine-tuned from {SKELETON_NAME} on synthetic phantoms (demo).",
        {
            "command": COMMAND,
            "runtime": f"{run.seconds / 60:.0f} min fine-tuning on {environment}",
            "seed": lesion_seed,
            "initialisation": SKELETON_NAME,
            "evaluation": {
                "seed": eval_seed(settings, "lesion"),
                "healthy": 0,
                "metastatic": settings.eval_metastatic,
                "phantom_kwargs": settings.phantom_kwargs,
            },
        },
    )
    print(f"{LESION_NAME}: {metrics} ({run.seconds / 60:.1f} min)")
    return folder


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work-dir", type=Path, default=REPO / "runs" / "phantom_zoo")
    parser.add_argument("--bundled-dir", type=Path, default=REPO / "sap" / "zoo_bundled")
    parser.add_argument("--zoo-dir", type=Path, default=REPO / "model_zoo")
    parser.add_argument(
        "--quick", action="store_true", help="smoke run; writes only into --work-dir"
    )
    parser.add_argument(
        "--recard",
        action="store_true",
        help="rewrite the bundled models' config.json and cards only (no training)",
    )
    args = parser.parse_args(argv)
    if args.recard:
        for folder in recard(args.bundled_dir, Settings()):
            print(f"rewrote the metadata and card of {folder}")
        return 0

    import torch

    from sap.zoo.catalogue_readme import write_zoo_readme

    settings = quick_settings() if args.quick else Settings()
    work: Path = args.work_dir / ("quick" if args.quick else "full")
    bundled_dir = work / "bundled" if args.quick else args.bundled_dir
    zoo_dir = work / "catalogue" if args.quick else args.zoo_dir
    work.mkdir(parents=True, exist_ok=True)
    zoo_dir.mkdir(parents=True, exist_ok=True)
    environment = (
        f"{platform.machine()}, {torch.get_num_threads()} CPU threads, torch {torch.__version__}"
    )
    anatomy, lesions = training_cohorts(work, settings)
    runs = pretrain_then_finetune(
        anatomy, lesions, work, settings, arms=("sap",), progress=sys.stderr.isatty()
    )
    skeleton = bundle_skeleton(runs.skeleton, work, settings, bundled_dir, zoo_dir, environment)
    lesion = bundle_lesion(runs.lesion["sap"], work, settings, bundled_dir, zoo_dir, environment)
    write_zoo_readme(zoo_dir / "README.md", zoo_dir)
    print(f"wrote {skeleton}, {lesion}, catalogue entries and {zoo_dir / 'README.md'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
