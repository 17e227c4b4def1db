"""``sap demo``: the whole SAP study in miniature, on synthetic whole-body MRI, on a CPU.

1. Generate a phantom cohort: healthy volunteers (skeleton labels) and metastatic patients
   (skeleton + lesion labels), the latter split into fine-tuning and held-out test cases.
2. Pretrain a skeleton model, then fine-tune two lesion models with identical budgets, one
   SAP-initialised and one from random weights
   (:func:`sap.experiments.pretrain_finetune.pretrain_then_finetune`).
3. Evaluate both on the held-out patients with the paper's lesion-level metrics and print a
   side-by-side table. Everything lands in one output folder: phantom, checkpoints, the
   configuration of every run and ``summary.json``.

The demo is a smoke test of the method, not a replication: tiny models, tiny budgets.
"""

from __future__ import annotations

import json
import math
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from sap.experiments.demo_table import format_table
from sap.experiments.pretrain_finetune import (
    PretrainFinetuneRuns,
    PretrainFinetuneSettings,
    pretrain_then_finetune,
)
from sap.experiments.trainer import set_torch_threads
from sap.io import OutputFolder, write_text_atomic
from sap.metrics.degenerate import DegeneratePredictionWarning

#: The command named in the marker of the demo's output folder.
COMMAND = "sap demo"

#: What the demo prints before each run of the experiment.
_STAGES = {
    "skeleton": "stage 1/3: skeleton pretraining on healthy phantoms",
    "lesion_sap": "stage 2/3: lesion fine-tuning, sap initialisation",
    "lesion_scratch": "stage 3/3: lesion fine-tuning, scratch initialisation",
}


@dataclass
class DemoSettings(PretrainFinetuneSettings):
    """Cohort sizes and budgets of the demo; the defaults finish in well under 15 minutes on 2 CPU cores.

    The budgets are tiny on purpose (a 2-core laptop, no GPU): ``tiny_unet`` on 32³ patches
    of a 5 x 5 x 6 mm phantom. Training settings: :class:`PretrainFinetuneSettings`.

    Args:
        healthy: healthy phantoms for pretraining.
        metastatic_train: metastatic phantoms for fine-tuning.
        metastatic_test: held-out metastatic phantoms for the evaluation.
        threshold: lesion probability above which a voxel is lesion.
        phantom_kwargs: extra arguments of :func:`sap.phantom.generate_cohort`.
    """

    healthy: int = 8
    metastatic_train: int = 8
    metastatic_test: int = 6
    threshold: float = 0.5
    phantom_kwargs: dict[str, Any] = field(default_factory=dict)


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


def run_demo(
    out_dir: str | Path,
    settings: DemoSettings | None = None,
    progress: bool = True,
    overwrite: bool = False,
) -> dict[str, Any]:
    """Run the miniature SAP study and return (and write) its summary.

    Args:
        out_dir: output folder; must be empty or absent unless ``overwrite``.
        settings: cohort sizes and budgets (default :class:`DemoSettings`).
        progress: show Lightning's progress bars.
        overwrite: reuse a non-empty ``out_dir``, replacing an earlier run's phantom cohort.

    Raises:
        ValueError: a setting that cannot be meant (:func:`check_settings`), before any work.
        sap.io.OutputFolderError: ``out_dir`` is not empty and not an earlier demo, or it is
            one and ``overwrite`` is False.
    """
    from sap.data.cases import discover_cases

    settings = settings or DemoSettings()
    check_settings(settings)
    out = Path(out_dir)
    folder = OutputFolder.open(out, COMMAND, overwrite=overwrite, resume=False)
    threads = set_torch_threads(settings.torch_threads)
    start = time.perf_counter()
    phantom = generate_demo_cohorts(out / "phantom", settings, overwrite=overwrite)
    timings = {"phantom_s": time.perf_counter() - start}
    print(f"[sap demo] phantom cohort written to {phantom} ({timings['phantom_s']:.0f} s)")

    test_cases = discover_cases(phantom / "lesions_test", require=("lesion",))
    runs = pretrain_then_finetune(
        phantom / "anatomy",
        phantom / "lesions_train",
        out,
        settings,
        progress=progress,
        on_stage=lambda name: print(f"[sap demo] {_STAGES[name]}"),
    )
    with warnings.catch_warnings():  # listed once per arm under the table instead
        warnings.simplefilter("ignore", DegeneratePredictionWarning)
        results = {
            arm: evaluate_lesion_model(run.module, test_cases, settings.threshold)
            for arm, run in runs.lesion.items()
        }
    summary = _summary(settings, test_cases, results, timings | runs.timings_s(), runs)
    summary["torch_threads"] = threads
    write_text_atomic(out / "summary.json", json.dumps(summary, indent=2, default=_json_default))
    folder.finish()
    print(format_table({arm: result["headline"] for arm, result in results.items()}))
    for line in degenerate_lines(results, len(test_cases)):
        print(f"[sap demo] {line}")
    print(f"[sap demo] summary written to {out / 'summary.json'}")
    return summary


def degenerate_lines(results: dict[str, Any], n_cases: int) -> list[str]:
    """One line per arm whose predictions were flagged as degenerate (see docs/metrics.md).

    Any-overlap detection rewards a model that labels too much as lesion; the flag says
    which arm's sensitivity and F2 are not to be trusted, and on which cases.

    >>> degenerate_lines({"scratch": {"summary": {"degenerate": {"m1": ["..."]}}}}, 6)
    ["scratch: degenerate prediction in 1 of 6 test cases (m1); its sensitivity and F2 are not to be trusted (see 'degenerate' in summary.json)"]
    """
    lines = []
    for arm, result in results.items():
        flagged = sorted(result["summary"].get("degenerate") or {})
        if flagged:
            lines.append(
                f"{arm}: degenerate prediction in {len(flagged)} of {n_cases} test cases "
                f"({', '.join(flagged)}); its sensitivity and F2 are not to be trusted "
                "(see 'degenerate' in summary.json)"
            )
    return lines


def check_settings(settings: DemoSettings) -> None:
    """Refuse numbers that cannot be meant before minutes of work; ValueError names each.

    >>> from dataclasses import replace
    >>> check_settings(replace(quick_settings(), skeleton_epochs=0))
    Traceback (most recent call last):
    ...
    ValueError: skeleton-epochs must be a whole number >= 1, got 0.
    """
    problems = []
    for name in _AT_LEAST_ONE:
        value = getattr(settings, name)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            problems.append(f"{_option(name)} must be a whole number >= 1, got {value!r}")
    if isinstance(settings.seed, bool) or not isinstance(settings.seed, int) or settings.seed < 0:
        problems.append(f"seed must be a whole number >= 0, got {settings.seed!r}")
    for name in ("skeleton_lr", "lesion_lr_decoder", "lesion_lr_encoder_sap"):
        value = getattr(settings, name)
        if not (isinstance(value, int | float) and math.isfinite(value) and value > 0):
            problems.append(f"{_option(name)} must be a positive number, got {value!r}")
    if not 0.0 < settings.threshold < 1.0:
        problems.append(f"threshold must be in (0, 1), got {settings.threshold!r}")
    if not 0.0 <= settings.sw_overlap < 1.0:
        problems.append(f"sw-overlap must be in [0, 1), got {settings.sw_overlap!r}")
    if not settings.negative_ratio >= 0:
        problems.append(f"negative-ratio must be >= 0, got {settings.negative_ratio!r}")
    if len(settings.patch_size) != 3 or any(int(n) < 1 for n in settings.patch_size):
        problems.append(f"patch-size must be 3 positive numbers, got {settings.patch_size!r}")
    if problems:
        raise ValueError("; ".join(problems) + ".")


#: Settings that count something (cases, epochs, patches) and so must be at least 1.
_AT_LEAST_ONE = (
    "healthy",
    "metastatic_train",
    "metastatic_test",
    "skeleton_epochs",
    "lesion_epochs",
    "batch_size",
    "skeleton_samples_per_volume",
    "sw_batch_size",
)


def _option(name: str) -> str:
    return name.replace("_", "-")


def generate_demo_cohorts(folder: Path, settings: DemoSettings, overwrite: bool = False) -> Path:
    """``anatomy`` (healthy), ``lesions_train`` and ``lesions_test`` (metastatic) under ``folder``.

    Each cohort has its own seed, so test patients are never training patients.
    """
    from sap.phantom import generate_cohort

    cohorts = (
        ("anatomy", settings.healthy, 0),
        ("lesions_train", 0, settings.metastatic_train),
        ("lesions_test", 0, settings.metastatic_test),
    )
    for offset, (name, healthy, metastatic) in enumerate(cohorts):
        generate_cohort(
            folder / name,
            healthy=healthy,
            metastatic=metastatic,
            seed=settings.seed + offset,
            overwrite=overwrite,
            **settings.phantom_kwargs,
        )
    return folder


def evaluate_lesion_model(module: Any, cases: list[Any], threshold: float) -> dict[str, Any]:
    """Lesion metrics of a lesion task on whole held-out volumes, on the preprocessed grid.

    Each volume is predicted by the task's sliding window
    (:meth:`sap.tasks.SegmentationTask.predict_volume`); ``evaluate_exams`` scores the
    thresholded lesion probability against the reference lesions.
    """
    from sap.data.cases import case_to_subject
    from sap.data.preprocess import preprocessing, stack_channels
    from sap.metrics import evaluate_exams, headline_metrics

    transform = preprocessing(channels=module.channels, spacing_mm=module.spacing_mm)
    predictions, probabilities, references, spacings = [], [], [], []
    module.eval()
    for case in cases:
        subject = transform(case_to_subject(case))
        image = stack_channels(subject, module.channels).float()
        result = module.predict_volume(image, keep_probabilities=(1,))
        probability = result.probabilities[0].astype(np.float32)
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


def _summary(
    settings: DemoSettings,
    test_cases: list[Any],
    results: dict[str, Any],
    timings: dict[str, float],
    runs: PretrainFinetuneRuns,
) -> dict[str, Any]:
    checkpoints = {"skeleton": str(runs.skeleton.checkpoint)}
    checkpoints.update({f"lesion_{arm}": str(run.checkpoint) for arm, run in runs.lesion.items()})
    return {
        "settings": json.loads(json.dumps(asdict(settings), default=list)),
        "test_cases": [case.case_id for case in test_cases],
        "threshold": settings.threshold,
        "results": results,
        "timings_s": {key: round(value, 1) for key, value in timings.items()},
        "checkpoints": checkpoints,
    }


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return str(value)


__all__ = [
    "DemoSettings",
    "check_settings",
    "degenerate_lines",
    "evaluate_lesion_model",
    "generate_demo_cohorts",
    "quick_settings",
    "run_demo",
]
