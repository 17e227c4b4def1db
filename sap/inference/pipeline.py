"""Run a lesion model (and optionally a skeleton model) over cases and write everything.

:func:`predict_from_files` is what ``sap predict`` runs: load the models, find the cases in
the input (:func:`~sap.inference.inputs.resolve_inputs`), claim the output folder, then per
case (:func:`predict_case`): skeleton prediction, lesion prediction (sharing the preprocessed
input when both recipes preprocess alike), label maps and probabilities as NIfTI on the input
T1 grid, the lesion report (CSV + JSON) with bone regions, and optionally an overview PNG.

Output safety (:mod:`sap.io`): case ids are plain names; the output folder lies outside every
input folder and is new, empty or an earlier ``sap predict`` output (marked by
``.sap-output.json``). Each case is written into a hidden folder inside OUT and renamed into
place, so its outputs appear together; ``overwrite`` replaces them as a unit. A rerun with the
same settings resumes: finished cases are skipped. A case that fails is reported (in the log
and in ``summary.csv``) and the others go on.

Output layout, per case ``OUT/<case_id>/``: ``lesion.nii.gz``, ``skeleton.nii.gz``,
``lesion_probability.nii.gz`` (with probabilities), ``lesions.csv``, ``lesions.json``,
``overview.png``; and ``OUT/summary.csv`` with one row per case: its status (``ok`` or
``failed``), totals, and the error of a failed case.
"""

from __future__ import annotations

import csv
import io
import json
import traceback
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sap.data.validation import ImplausibleSpacingWarning
from sap.inference.inputs import CaseSource, InputError, resolve_inputs
from sap.inference.loading import load_model
from sap.inference.prediction import Prediction, PreparedInput
from sap.inference.predictor import Predictor
from sap.inference.preparation import preprocessing_key
from sap.inference.report import LesionReport, build_lesion_report, render_overview
from sap.io import OutputFolder, UnsafeNameError, check_plain_name

REPORT_CSV = "lesions.csv"
REPORT_JSON = "lesions.json"
OVERVIEW_PNG = "overview.png"
SUMMARY_CSV = "summary.csv"
#: Columns of ``summary.csv``: one row per case, failed ones with their error.
SUMMARY_COLUMNS = (
    "case_id",
    "status",
    "lesion_count",
    "total_volume_ml",
    "count_at_least_1ml",
    "error",
)
#: The command named in the output folder's marker.
COMMAND = "sap predict"


@dataclass
class PipelineResult:
    """What :func:`predict_cases` did.

    Attributes:
        reports: lesion reports of the cases predicted by this run.
        errors: case id -> error of the cases that failed.
        written: files written by this run.
        skipped: cases finished by an earlier run into the same folder (resumed run).
    """

    reports: list[LesionReport] = field(default_factory=list)
    errors: dict[str, str] = field(default_factory=dict)
    written: list[Path] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)


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

    Files in ``case_dir`` are replaced; :func:`predict_cases` gives each case a fresh folder.
    Warnings about the input (an implausible voxel spacing) go into the report's metadata
    under ``"input_warnings"``, which :func:`predict_cases` logs.
    """
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ImplausibleSpacingWarning)
        prepared = lesion.prepare(case.source)
    notes = [str(w.message) for w in caught if issubclass(w.category, ImplausibleSpacingWarning)]
    for warning in caught:  # the input warnings travel in the report (and the log) instead
        if not issubclass(warning.category, ImplausibleSpacingWarning):
            warnings.warn_explicit(
                warning.message, warning.category, warning.filename, warning.lineno
            )
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
    metadata = {**dict(metadata or {}), "input_warnings": notes}
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
    inputs: Sequence[str | Path] = (),
) -> PipelineResult:
    """Predict every case into ``out_dir/<case_id>/`` and write ``out_dir/summary.csv``.

    Before anything runs, case ids must be unique plain names and ``out_dir`` must be a
    folder ``sap predict`` may write (:class:`sap.io.OutputFolder`): outside the input
    folders, and new, empty, or an earlier ``sap predict`` output. An earlier output made with
    the same settings is resumed (its finished cases are skipped); one made with other
    settings needs ``overwrite``, which replaces each case's outputs as a unit and removes the
    earlier run's cases that this run does not predict.

    Args:
        inputs: more input folders to keep ``out_dir`` out of (the source folder); the
            folders of every case's images are added.

    Raises:
        InputError: duplicate or unsafe case ids.
        sap.io.OutputFolderError: ``out_dir`` cannot be used; the message says why.
    """
    ids = [c.case_id for c in cases]
    duplicates = sorted({i for i in ids if ids.count(i) > 1})
    if duplicates:
        raise InputError(f"Case ids {duplicates} occur more than once; outputs would collide.")
    for case_id in ids:
        try:
            check_plain_name(case_id)
        except UnsafeNameError as error:
            raise InputError(f"Case {case_id!r}: {error}") from error
    settings = _settings(lesion, skeleton, save_probabilities, png, metadata)
    result = PipelineResult()
    with OutputFolder.open(
        out_dir,
        COMMAND,
        overwrite=overwrite,
        settings=settings,
        inputs=[*inputs, *_input_folders(cases)],
    ) as out:
        result.skipped = [case_id for case_id in ids if case_id in out.finished]
        if result.skipped:
            log(
                f"resuming {out.path}: {len(result.skipped)} case(s) finished by an earlier run "
                f"are skipped ({', '.join(result.skipped[:5])}"
                f"{', ...' if len(result.skipped) > 5 else ''}); --overwrite predicts them again"
            )
        todo = [case for case in cases if case.case_id not in out.finished]
        for case in case_progress(todo) if case_progress is not None else todo:
            _predict_into(
                out, case, lesion, skeleton, result, log, save_probabilities, png, metadata
            )
        rows = [_summary_row(out.path, case_id, result) for case_id in ids]
        result.written.append(out.write_text(SUMMARY_CSV, _summary_text(rows)))
        out.finish()
    return result


def _predict_into(
    out: OutputFolder,
    case: CaseSource,
    lesion: Predictor,
    skeleton: Predictor | None,
    result: PipelineResult,
    log: Callable[[str], None],
    save_probabilities: bool,
    png: bool,
    metadata: Mapping[str, Any] | None,
) -> None:
    """Predict one case into its own folder of ``out``; a failure is logged and recorded."""
    try:
        report, written = out.write_unit(
            case.case_id,
            lambda folder: predict_case(
                case,
                folder,
                lesion,
                skeleton,
                save_probabilities=save_probabilities,
                png=png,
                metadata=metadata,
            ),
        )
    except (ValueError, OSError, MemoryError, RuntimeError) as error:
        result.errors[case.case_id] = f"{type(error).__name__}: {error}"
        log(f"case '{case.case_id}' failed: {error}")
        if not isinstance(error, ValueError | OSError | MemoryError):
            log(traceback.format_exc())
        return
    final = out.path / case.case_id
    result.reports.append(report)
    result.written += [final / path.name for path in written]
    for note in report.metadata.get("input_warnings", []):
        log(f"warning: {note}")
    log(
        f"case '{case.case_id}': {report.lesion_count} lesion(s), "
        f"{report.total_volume_ml:.2f} mL, {report.count_at_least_1ml} >= 1 mL"
    )


def _settings(
    lesion: Predictor,
    skeleton: Predictor | None,
    save_probabilities: bool,
    png: bool,
    metadata: Mapping[str, Any] | None,
) -> dict[str, Any]:
    """What the outputs depend on: a rerun resumes only an output made with the same."""
    return {
        **{k: None if v is None else str(v) for k, v in (metadata or {}).items()},
        "lesion_recipe": lesion.recipe.to_dict(),
        "skeleton_recipe": None if skeleton is None else skeleton.recipe.to_dict(),
        "threshold": lesion.threshold,
        "min_volume_ml": lesion.min_volume_ml,
        "tta": lesion.tta,
        "overlap": lesion.overlap,
        "blending": lesion.blending,
        "save_probabilities": save_probabilities,
        "png": png,
    }


def _input_folders(cases: Sequence[CaseSource]) -> list[Path]:
    """Folders holding each case's input images, and the cohort folder of case folders."""
    folders: set[Path] = set()
    for case in cases:
        source = case.source
        images = getattr(source, "images", source)
        if isinstance(images, Mapping):
            for path in images.values():
                folder = Path(path).parent
                folders.add(folder)
                if folder.name == case.case_id:  # a case folder: its parent is a cohort
                    folders.add(folder.parent)
        elif isinstance(source, str | Path):
            folders.add(Path(source))
    return sorted(folders)


def _summary_row(out: Path, case_id: str, result: PipelineResult) -> dict[str, Any]:
    """One ``summary.csv`` row: status, totals (from lesions.json for resumed cases), error."""
    if case_id in result.errors:
        return {"case_id": case_id, "status": "failed", "error": result.errors[case_id]}
    try:
        report = json.loads((out / case_id / REPORT_JSON).read_text(encoding="utf-8"))
        totals = {key: report[key] for key in SUMMARY_COLUMNS[2:-1]}
    except (OSError, ValueError, KeyError) as error:
        return {"case_id": case_id, "status": "failed", "error": f"unreadable report: {error}"}
    return {"case_id": case_id, "status": "ok", **totals, "error": ""}


def _summary_text(rows: Sequence[Mapping[str, Any]]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=SUMMARY_COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


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
    spill: bool | None = None,
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
        spill: keep whole-volume arrays in temporary files (``None``: for whole-body
            scans; see :mod:`sap.inference.spill`).
        log: where a line per case goes; default ``print`` (``tqdm.write`` with progress bars).
        The other arguments are those of :class:`Predictor` and :func:`predict_cases`.

    Raises:
        ValueError: a model of the wrong task, no usable input, or unsafe case ids.
        sap.io.OutputFolderError: ``out_dir`` cannot be used (see :func:`predict_cases`).
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
        "spill": spill,
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
        from tqdm import tqdm

        from sap.progress import progress_bar

        log = log or tqdm.write

        def case_progress(items: Sequence[CaseSource]) -> Any:
            return progress_bar(items, desc="cases", unit="case")

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
        inputs=[source] if Path(source).is_dir() else [],
    )


__all__ = [
    "OVERVIEW_PNG",
    "PipelineResult",
    "REPORT_CSV",
    "REPORT_JSON",
    "SUMMARY_CSV",
    "SUMMARY_COLUMNS",
    "predict_case",
    "predict_cases",
    "predict_from_files",
]
