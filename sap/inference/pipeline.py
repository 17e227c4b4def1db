"""Run a lesion model (and optionally a skeleton model) over cases and write everything.

This is what ``sap predict`` does, as a function: find the cases in the input (case folder,
folder of case folders, CSV manifest, DICOM series folders), refuse before any work if an
output exists already (unless ``overwrite``), then per case: skeleton prediction, lesion
prediction (sharing the preprocessed input when both recipes preprocess alike), label maps
and probabilities as NIfTI on the input T1 grid, the lesion report (CSV + JSON) with bone
regions, and optionally an overview PNG. A case that fails is reported and the others go on.

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

from sap.inference.dicom import DicomSeriesError, contains_dicom, find_dicom_series, match_series
from sap.inference.predictor import InputError, Predictor, preprocessing_key
from sap.inference.report import (
    LesionReport,
    build_lesion_report,
    render_overview,
    write_cohort_summary,
)
from sap.inference.writer import check_outputs_free, prediction_paths, write_prediction

REPORT_CSV = "lesions.csv"
REPORT_JSON = "lesions.json"
OVERVIEW_PNG = "overview.png"
SUMMARY_CSV = "summary.csv"


@dataclass(frozen=True)
class CaseSource:
    """One case to predict: its id and what :meth:`Predictor.predict` takes."""

    case_id: str
    source: Any


@dataclass
class PipelineResult:
    """What :func:`predict_cases` did: reports of the cases that worked, errors of the others."""

    reports: list[LesionReport] = field(default_factory=list)
    errors: dict[str, str] = field(default_factory=dict)
    written: list[Path] = field(default_factory=list)


def resolve_inputs(
    source: str | Path,
    channels: Sequence[str],
    dicom_series: Mapping[str, str] | None = None,
) -> list[CaseSource]:
    """The cases in ``source``: a case folder, a folder of case folders, a CSV manifest, or
    DICOM series folders (one exam, or one sub-folder per exam).

    Raises:
        InputError / CaseValidationError / DicomSeriesError: nothing usable is found; the
            message says what was looked for.
    """
    from sap.data.cases import CaseLayout, discover_cases

    path = Path(source).expanduser()
    layout = CaseLayout(channels=tuple(channels))
    if not path.exists():
        raise InputError(f"Input {path} does not exist.")
    if path.is_file():
        return [CaseSource(c.case_id, c) for c in discover_cases(path, layout)]

    def is_case_folder(folder: Path) -> bool:
        return all((folder / layout.channel_file(c)).is_file() for c in channels)

    subfolders = sorted(
        p for p in path.iterdir() if p.is_dir() and not p.name.startswith((".", "_"))
    )
    if is_case_folder(path) or any(is_case_folder(p) for p in subfolders):
        return [CaseSource(c.case_id, c) for c in discover_cases(path, layout)]
    if contains_dicom(path):
        series = find_dicom_series(path)
        try:
            match_series(series, channels, dicom_series, where=str(path))
            return [CaseSource(path.name, path)]
        except DicomSeriesError:
            exams = [p for p in subfolders if contains_dicom(p)]
            single_level = all(s.folder == path for s in series)
            if single_level or len(exams) < 2:
                raise
            return [CaseSource(p.name, p) for p in exams]
    expected = [layout.channel_file(c) for c in channels]
    raise InputError(
        f"Input {path} holds no case: expected a case folder with {expected}, a folder of such "
        "case folders, a CSV manifest, or DICOM series (one per channel)."
    )


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
    """Predict one case with the lesion (and skeleton) model and write all its outputs."""
    prepared = lesion.prepare(case.source)
    written: list[Path] = []
    skeleton_prediction = None
    if skeleton is not None:
        shared = preprocessing_key(skeleton.recipe) == prepared.preprocessing_key
        skeleton_prediction = skeleton.predict(prepared if shared else case.source)
        names = [skeleton.recipe.labels[k] for k in skeleton.keep_probabilities]
        written += write_prediction(
            skeleton_prediction,
            prediction_paths(case_dir, skeleton.recipe.task, names, save_probabilities),
        )
    lesion_prediction = lesion.predict(prepared)
    lesion_names = list(lesion_prediction.probabilities)
    written += write_prediction(
        lesion_prediction,
        prediction_paths(case_dir, lesion.recipe.task, lesion_names, save_probabilities),
    )
    lesion_class = lesion.recipe.labels[1]
    report = build_lesion_report(
        case.case_id,
        lesion_prediction.labels,
        lesion_prediction.affine,
        probability=lesion_prediction.probabilities.get(lesion_class),
        skeleton=None if skeleton_prediction is None else skeleton_prediction.labels,
        skeleton_labels=None if skeleton is None else skeleton.recipe.labels,
        metadata={
            **dict(metadata or {}),
            "lesion_settings": lesion_prediction.info,
            "skeleton_settings": None if skeleton_prediction is None else skeleton_prediction.info,
            "shape": list(lesion_prediction.shape),
        },
    )
    written.append(report.write_csv(case_dir / REPORT_CSV))
    written.append(report.write_json(case_dir / REPORT_JSON))
    if png:
        channel = "b1000" if "b1000" in prepared.channels else prepared.channels[-1]
        written.append(
            render_overview(
                case_dir / OVERVIEW_PNG,
                prepared.channel_on_input_grid(channel),
                lesion_prediction.affine,
                lesion_mask=lesion_prediction.labels,
                skeleton=None if skeleton_prediction is None else skeleton_prediction.labels,
                title=f"{case.case_id}: {report.lesion_count} lesion(s), "
                f"{report.total_volume_ml:.1f} mL ({channel} coronal MIP)",
            )
        )
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


__all__ = [
    "CaseSource",
    "PipelineResult",
    "planned_outputs",
    "predict_case",
    "predict_cases",
    "resolve_inputs",
]
