"""Run a lesion model (and optionally a skeleton model) over cases and write everything.

:func:`predict_from_files` is what ``sap predict`` runs: load the models, find the cases in
the input (:func:`~sap.inference.inputs.resolve_inputs`), refuse before any work if an output
exists already (unless ``overwrite``), then per case (:func:`predict_case`): skeleton
prediction, lesion prediction (sharing the preprocessed input when both recipes preprocess
alike), label maps and probabilities as NIfTI on the input T1 grid, the lesion report (CSV +
JSON) with bone regions, and optionally an overview PNG. A case that fails is reported and
the others go on.

Output layout, per case ``OUT/<case_id>/``: ``lesion.nii.gz``, ``skeleton.nii.gz``,
``lesion_probability.nii.gz`` (with probabilities), ``lesions.csv``, ``lesions.json``,
``overview.png``; and ``OUT/summary.csv`` with the totals of every case.
"""

from __future__ import annotations

import traceback
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sap.inference.inputs import CaseSource, InputError, resolve_inputs
from sap.inference.loading import load_model
from sap.inference.prediction import Prediction, PreparedInput
from sap.inference.predictor import Predictor
from sap.inference.preparation import preprocessing_key
from sap.inference.report import (
    LesionReport,
    build_lesion_report,
    render_overview,
    write_cohort_summary,
)
from sap.inference.writer import check_outputs_free, prediction_paths

REPORT_CSV = "lesions.csv"
REPORT_JSON = "lesions.json"
OVERVIEW_PNG = "overview.png"
SUMMARY_CSV = "summary.csv"


@dataclass
class PipelineResult:
    """What :func:`predict_cases` did: reports of the cases that worked, errors of the others."""

    reports: list[LesionReport] = field(default_factory=list)
    errors: dict[str, str] = field(default_factory=dict)
    written: list[Path] = field(default_factory=list)


def planned_outputs(
    case_dir: Path,
    lesion: Predictor,
    skeleton: Predictor | None,
    *,
    save_probabilities: bool,
    png: bool,
) -> list[Path]:
    """Every file one case will write."""
    lesion_names = [lesion.recipe.labels[k] for k in lesion.keep_probabilities]
    paths = list(
        prediction_paths(case_dir, lesion.recipe.task, lesion_names, save_probabilities).values()
    )
    if skeleton is not None:
        names = [skeleton.recipe.labels[k] for k in skeleton.keep_probabilities]
        paths += list(
            prediction_paths(case_dir, skeleton.recipe.task, names, save_probabilities).values()
        )
    paths += [case_dir / REPORT_CSV, case_dir / REPORT_JSON]
    if png:
        paths.append(case_dir / OVERVIEW_PNG)
    return paths


def _lesion_report(
    case_id: str,
    lesion: Prediction,
    skeleton: Prediction | None,
    metadata: Mapping[str, Any] | None,
) -> LesionReport:
    return build_lesion_report(
        case_id,
        lesion.labels,
        lesion.affine,
        probability=lesion.probabilities.get(lesion.label_names[1]),
        skeleton=None if skeleton is None else skeleton.labels,
        skeleton_labels=None if skeleton is None else skeleton.label_names,
        metadata={
            **dict(metadata or {}),
            "lesion_settings": lesion.info,
            "skeleton_settings": None if skeleton is None else skeleton.info,
            "shape": list(lesion.shape),
        },
    )


def _overview(
    path: Path,
    prepared: PreparedInput,
    report: LesionReport,
    lesion: Prediction,
    skeleton: Prediction | None,
) -> Path:
    """Coronal MIP of b1000 (or the last channel) with lesions and bones on top."""
    channel = "b1000" if "b1000" in prepared.channels else prepared.channels[-1]
    return render_overview(
        path,
        prepared.channel_on_input_grid(channel),
        lesion.affine,
        lesion_mask=lesion.labels,
        skeleton=None if skeleton is None else skeleton.labels,
        title=f"{report.case_id}: {report.lesion_count} lesion(s), "
        f"{report.total_volume_ml:.1f} mL ({channel} coronal MIP)",
    )


def predict_case(
    case: CaseSource,
    case_dir: Path,
    lesion: Predictor,
    skeleton: Predictor | None = None,
    *,
    save_probabilities: bool = False,
    png: bool = False,
    metadata: Mapping[str, Any] | None = None,
) -> tuple[LesionReport, list[Path]]:
    """Predict one case with the lesion (and skeleton) model and write all its outputs.

    Files in ``case_dir`` are replaced; :func:`predict_cases` checks them for every case
    before anything runs.
    """
    prepared = lesion.prepare(case.source)
    written: list[Path] = []
    skeleton_prediction = None
    if skeleton is not None:
        shared = preprocessing_key(skeleton.recipe) == prepared.preprocessing_key
        skeleton_prediction = skeleton.predict(prepared if shared else case.source)
        written += skeleton_prediction.save(
            case_dir, save_probabilities=save_probabilities, overwrite=True
        )
    lesion_prediction = lesion.predict(prepared)
    written += lesion_prediction.save(
        case_dir, save_probabilities=save_probabilities, overwrite=True
    )
    report = _lesion_report(case.case_id, lesion_prediction, skeleton_prediction, metadata)
    written.append(report.write_csv(case_dir / REPORT_CSV))
    written.append(report.write_json(case_dir / REPORT_JSON))
    if png:
        overview = _overview(
            case_dir / OVERVIEW_PNG, prepared, report, lesion_prediction, skeleton_prediction
        )
        written.append(overview)
    return report, written


def predict_cases(
    cases: Sequence[CaseSource],
    out_dir: str | Path,
    lesion: Predictor,
    skeleton: Predictor | None = None,
    *,
    save_probabilities: bool = False,
    png: bool = False,
    overwrite: bool = False,
    metadata: Mapping[str, Any] | None = None,
    log: Callable[[str], None] = print,
    case_progress: Callable[[Sequence[CaseSource]], Any] | None = None,
) -> PipelineResult:
    """Predict every case into ``out_dir/<case_id>/`` and write ``out_dir/summary.csv``.

    Existing outputs are checked for all cases before anything runs; with ``overwrite``
    false, one existing file stops the whole run and nothing is written.
    """
    out_dir = Path(out_dir)
    ids = [c.case_id for c in cases]
    duplicates = sorted({i for i in ids if ids.count(i) > 1})
    if duplicates:
        raise InputError(f"Case ids {duplicates} occur more than once; outputs would collide.")
    planned = [out_dir / SUMMARY_CSV]
    for case in cases:
        planned += planned_outputs(
            out_dir / case.case_id, lesion, skeleton, save_probabilities=save_probabilities, png=png
        )
    check_outputs_free(planned, overwrite)

    result = PipelineResult()
    iterator = case_progress(cases) if case_progress is not None else cases
    for case in iterator:
        try:
            report, written = predict_case(
                case,
                out_dir / case.case_id,
                lesion,
                skeleton,
                save_probabilities=save_probabilities,
                png=png,
                metadata=metadata,
            )
        except (ValueError, OSError, MemoryError, RuntimeError) as error:
            result.errors[case.case_id] = f"{type(error).__name__}: {error}"
            log(f"case '{case.case_id}' failed: {error}")
            if not isinstance(error, ValueError | OSError | MemoryError):
                log(traceback.format_exc())
            continue
        result.reports.append(report)
        result.written += written
        log(
            f"case '{case.case_id}': {report.lesion_count} lesion(s), "
            f"{report.total_volume_ml:.2f} mL, {report.count_at_least_1ml} >= 1 mL"
        )
    if result.reports:
        result.written.append(write_cohort_summary(result.reports, out_dir / SUMMARY_CSV))
    return result


def predict_from_files(
    source: str | Path,
    out_dir: str | Path,
    lesion_model: str | Path,
    skeleton_model: str | Path | None = None,
    *,
    device: str = "cpu",
    overlap: float = 0.5,
    blending: str = "gaussian",
    batch_size: int = 2,
    tta: bool = False,
    min_volume_ml: float = 0.1,
    threshold: float | None = None,
    dicom_series: Mapping[str, str] | None = None,
    memory_check: bool = True,
    save_probabilities: bool = False,
    png: bool = False,
    overwrite: bool = False,
    progress: bool = False,
    log: Callable[[str], None] | None = None,
) -> PipelineResult:
    """Load the models, find the cases in ``source`` and predict them all into ``out_dir``.

    Args:
        source: a case folder, a folder of case folders, a CSV manifest or DICOM series
            folders (:func:`~sap.inference.inputs.resolve_inputs`).
        out_dir: output folder (layout in the module docstring).
        lesion_model, skeleton_model: zoo name, export folder or Lightning ``.ckpt``
            (:func:`~sap.inference.loading.load_model`); the skeleton model gives the bone
            regions of the report.
        memory_check: refuse cases whose estimated RAM exceeds what is available.
        progress: progress bars over cases and windows.
        log: where a line per case goes; default ``print`` (``tqdm.write`` with progress bars).
        The other arguments are those of :class:`Predictor` and :func:`predict_cases`.

    Raises:
        ValueError: a model of the wrong task, or no usable input.
        OutputExistsError: an output exists already and ``overwrite`` is false.
    """
    settings = {
        "device": device,
        "overlap": overlap,
        "blending": blending,
        "batch_size": batch_size,
        "tta": tta,
        "memory_limit_bytes": "auto" if memory_check else None,
        "dicom_series": dict(dicom_series or {}),
        "progress": progress,
    }
    lesion = Predictor(
        load_model(lesion_model, device, task="lesion"),
        min_volume_ml=min_volume_ml,
        threshold=threshold,
        **settings,
    )
    skeleton = None
    if skeleton_model is not None:
        skeleton = Predictor(load_model(skeleton_model, device, task="skeleton"), **settings)
    cases = resolve_inputs(source, lesion.recipe.channels, dicom_series)
    case_progress = None
    if progress:
        from tqdm.auto import tqdm

        log = log or tqdm.write

        def case_progress(items: Sequence[CaseSource]) -> Any:
            return tqdm(items, desc="cases", unit="case")

    return predict_cases(
        cases,
        out_dir,
        lesion,
        skeleton,
        save_probabilities=save_probabilities,
        png=png,
        overwrite=overwrite,
        metadata={
            "lesion_model": str(lesion_model),
            "skeleton_model": None if skeleton_model is None else str(skeleton_model),
        },
        log=log or print,
        case_progress=case_progress,
    )


__all__ = [
    "OVERVIEW_PNG",
    "PipelineResult",
    "REPORT_CSV",
    "REPORT_JSON",
    "SUMMARY_CSV",
    "planned_outputs",
    "predict_case",
    "predict_cases",
    "predict_from_files",
]
