"""Evaluate a folder of lesion predictions against a folder of reference cases, from Python.

:func:`evaluate_folders` does what ``sap evaluate`` does and returns a
:class:`FolderEvaluation` (tables as lists or DataFrames, summary, and ``write`` for the files
and pictures); the folder layouts are in :mod:`sap.metrics.case_files`, the metrics in
``docs/metrics.md``.

>>> import tempfile, nibabel as nib, numpy as np
>>> mask = np.zeros((8, 8, 8), np.uint8); mask[2:4, 2:4, 2:4] = 1
>>> with tempfile.TemporaryDirectory() as tmp:
...     for file in ("ref/case_a/lesion.nii.gz", "pred/case_a.nii.gz"):
...         (Path(tmp) / file).parent.mkdir(parents=True, exist_ok=True)
...         nib.save(nib.Nifti1Image(mask, np.eye(4)), Path(tmp) / file)
...     result = evaluate_folders(Path(tmp) / "pred", Path(tmp) / "ref", bootstrap=None)
>>> result.summary["metrics"]["sensitivity"]["median"], result.lesion_table()[0]["dice"]
(1.0, 1.0)
>>> result.exams["volume_ratio"].tolist(), result.summary["degenerate"]
([1.0], {})
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from sap.io import replace_folder
from sap.labels import DEFAULT_LESION_FILE
from sap.metrics.case_files import (
    BODY_IMAGE_FILE,
    CaseFiles,
    CaseMatch,
    EvaluationWarning,
    load_body_image,
    load_case,
    match_cases,
)
from sap.metrics.comparison import compare_summaries
from sap.metrics.degenerate import body_mask_from_image, warn_degenerate
from sap.metrics.detection import DetectionSettings
from sap.metrics.evaluation import Evaluation
from sap.metrics.froc import DEFAULT_MIN_PROB, exam_froc
from sap.metrics.report import write_case_pictures, write_report, write_tuning_curve
from sap.metrics.summary import DEFAULT_BOOTSTRAP, BootstrapSettings
from sap.metrics.threshold import ThresholdTuning, tune_threshold
from sap.volume import spacing_from_affine

if TYPE_CHECKING:
    import pandas as pd

#: Binarisation threshold of probability maps when none is given or tuned.
DEFAULT_THRESHOLD = 0.5
#: Folder (inside the output folder) of the per-case pictures of detected / missed / FP lesions.
CASE_PICTURES_DIR = "cases"
#: The command named in the marker of an evaluation's output folder.
COMMAND = "sap evaluate"


@dataclass(frozen=True)
class FolderEvaluation:
    """The result of :func:`evaluate_folders`.

    Attributes:
        evaluation: the exams, for per-exam / per-lesion tables.
        summary: the JSON-ready summary, with the folders, skipped cases and tuning added.
        cases: the cases evaluated and the reference folders skipped.
        pred_dir: the prediction folder (its name labels the model in tables).
        threshold: binarisation threshold of probability maps (None for binary masks).
        tuning: the threshold tuning, when the threshold was tuned on a fold.
        body_image: file of the reference case folders that gave body masks and picture
            backgrounds (None: not used).
        input_dirs: every folder read (predictions, references, tuning fold); the output
            folder must lie outside them.
    """

    evaluation: Evaluation
    summary: dict
    cases: CaseMatch
    pred_dir: Path
    threshold: float | None = None
    tuning: ThresholdTuning | None = None
    body_image: str | None = BODY_IMAGE_FILE
    input_dirs: tuple[Path, ...] = ()

    def exam_table(self) -> list[dict[str, object]]:
        """One row per exam (see :meth:`Evaluation.exam_table`)."""
        return self.evaluation.exam_table()

    def lesion_table(self) -> list[dict[str, object]]:
        """One row per reference lesion (see :meth:`Evaluation.lesion_table`)."""
        return self.evaluation.lesion_table()

    @property
    def exams(self) -> pd.DataFrame:
        """The per-exam table as a DataFrame indexed by ``case_id``."""
        return self.evaluation.exams

    @property
    def lesions(self) -> pd.DataFrame:
        """The per-lesion table as a DataFrame indexed by ``(case_id, lesion_id)``."""
        return self.evaluation.lesions

    def to_dataframe(self) -> pd.DataFrame:
        """The summary's metrics as a DataFrame, one row per metric (median, CI, mean, pooled)."""
        from sap.metrics.frames import summary_frame

        return summary_frame(self.summary)

    def table(self, name: str | None = None) -> str:
        """The headline table (Markdown), medians [95 % CI]; ``name`` heads the column."""
        return compare_summaries([self.summary], [name or self.pred_dir.name or "model"])[1]

    def write(
        self,
        out_dir: str | Path,
        *,
        plots: bool = True,
        overwrite: bool = False,
        progress: bool = False,
    ) -> dict[str, Path]:
        """Write the tables, ``summary.json``, figures, per-case pictures (``cases/<id>.png``)
        and the tuning curve; returns the files.

        ``out_dir`` is written whole (:func:`sap.io.replace_folder`): it must lie outside the
        input folders and be new, empty, or (with ``overwrite``) an earlier evaluation.
        """
        out = Path(out_dir)

        def write(folder: Path) -> dict[str, Path]:
            paths = write_report(self.evaluation, folder, summary=self.summary, plots=plots)
            if plots:
                paths.update(
                    write_case_pictures(
                        self.cases.cases,
                        folder / CASE_PICTURES_DIR,
                        threshold=self.threshold,
                        connectivity=self.evaluation.settings.connectivity,
                        body_image=self.body_image,
                        progress=progress,
                    )
                )
            if self.tuning is not None:
                paths["threshold_tuning"] = write_tuning_curve(self.tuning, folder)
            return {key: out / path.relative_to(folder) for key, path in paths.items()}

        return replace_folder(out, COMMAND, write, overwrite=overwrite, inputs=self.input_dirs)


def evaluate_folders(
    pred_dir: str | Path,
    ref_dir: str | Path,
    *,
    prob: bool = False,
    threshold: float | None = None,
    tune_dir: str | Path | None = None,
    tune_ref_dir: str | Path | None = None,
    settings: DetectionSettings | None = None,
    min_prob: float = DEFAULT_MIN_PROB,
    bootstrap: BootstrapSettings | None = DEFAULT_BOOTSTRAP,
    ref_file: str = DEFAULT_LESION_FILE,
    healthy_as_empty: bool = False,
    progress: bool = False,
    body_image: str | None = BODY_IMAGE_FILE,
) -> FolderEvaluation:
    """Evaluate every case of ``ref_dir`` against its prediction in ``pred_dir``.

    Args:
        pred_dir: predictions, one per case (layouts in :mod:`sap.metrics.case_files`).
        ref_dir: reference case folders.
        prob: predictions are lesion probability maps: adds the FROC, binarises at
            ``threshold`` or at the threshold tuned on ``tune_dir``.
        threshold: binarisation threshold of probability maps (default 0.5).
        tune_dir: probability maps of a separate fold to tune the threshold on (maximum
            mean patient F-beta); its references are in ``tune_ref_dir`` (default ``ref_dir``).
        tune_ref_dir: references of ``tune_dir``.
        settings: connectivity, volume limit, NSD tolerance/variant, β.
        min_prob: lowest threshold of the FROC sweep and of the tuning.
        bootstrap: CI settings of the medians; None skips the bootstrap.
        ref_file: reference file name inside a case folder.
        healthy_as_empty: score case folders without ``ref_file`` as lesion-free exams.
        progress: show a progress bar.
        body_image: image file of a reference case folder (default ``T1.nii.gz``) whose
            rough body mask the degenerate-prediction flags use when it is there; None: the
            whole volume.

    Exams whose prediction looks degenerate (one component over many lesions, most of the
    body predicted, a (near-)constant probability map) raise a
    :class:`~sap.metrics.DegeneratePredictionWarning` and are listed in
    ``summary["degenerate"]`` (``docs/metrics.md``, "Degenerate predictions").

    Raises:
        FileNotFoundError: a folder or a case's prediction is missing.
        ValueError: a file cannot be used (unreadable, other grid, wrong values); the
            message names the case.
    """
    settings = settings or DetectionSettings()
    check_options(threshold, min_prob, bootstrap)
    if not prob and (threshold is not None or tune_dir is not None):
        raise ValueError("threshold and tune_dir apply to probability maps: pass prob=True.")
    if threshold is not None and tune_dir is not None:
        raise ValueError("Give a threshold or a tuning fold (tune_dir), not both.")
    cases = match_cases(
        pred_dir, ref_dir, prob=prob, ref_file=ref_file, healthy_as_empty=healthy_as_empty
    )
    tuning = None
    if prob and tune_dir is not None:
        tune_cases = match_cases(
            tune_dir,
            tune_ref_dir or ref_dir,
            prob=True,
            ref_file=ref_file,
            healthy_as_empty=healthy_as_empty,
        )
        _warn_if_shared(tune_cases, cases)
        tuning = _tune(tune_cases.cases, settings, min_prob, progress, body_image)
        threshold = tuning.threshold
    elif prob and threshold is None:
        threshold = DEFAULT_THRESHOLD
    evaluation = Evaluation(settings, min_prob=min_prob, threshold=threshold)
    for case in _progress(cases.cases, "sap evaluate", progress):
        _add_case(evaluation, case, threshold if prob else None, body_image)
    summary = evaluation.summary(bootstrap) | {
        "pred_dir": str(pred_dir),
        "ref_dir": str(ref_dir),
        "prediction": "probability" if prob else "binary",
        "skipped_cases": list(cases.skipped),
    }
    if tuning is not None:
        summary["threshold_tuning"] = {
            key: value
            for key, value in tuning.to_dict().items()
            if key not in ("thresholds", "scores")
        } | {"tune_dir": str(tune_dir)}
    inputs = tuple(Path(p) for p in (pred_dir, ref_dir, tune_dir, tune_ref_dir) if p is not None)
    return FolderEvaluation(
        evaluation, summary, cases, Path(pred_dir), threshold, tuning, body_image, inputs
    )


def check_options(
    threshold: float | None, min_prob: float, bootstrap: BootstrapSettings | None
) -> None:
    """Refuse numbers that cannot be meant, before any file is read.

    Raises:
        ValueError: naming the setting, its allowed range and the value given.
    """
    problems = []
    if threshold is not None and not (math.isfinite(threshold) and 0.0 < threshold <= 1.0):
        problems.append(f"threshold must be a probability in (0, 1], got {threshold!r}")
    if not (math.isfinite(min_prob) and 0.0 < min_prob < 1.0):
        problems.append(f"min_prob must be a probability in (0, 1), got {min_prob!r}")
    if bootstrap is not None:
        if int(bootstrap.n_resamples) != bootstrap.n_resamples or bootstrap.n_resamples < 0:
            problems.append(
                f"bootstrap resamples must be a whole number >= 0 (0: no confidence "
                f"intervals), got {bootstrap.n_resamples!r}"
            )
        if (
            isinstance(bootstrap.seed, bool)
            or not isinstance(bootstrap.seed, int)
            or bootstrap.seed < 0
        ):
            problems.append(f"bootstrap seed must be a whole number >= 0, got {bootstrap.seed!r}")
        if not 0.0 < bootstrap.confidence_level < 1.0:
            problems.append(
                f"confidence level must be in (0, 1), got {bootstrap.confidence_level!r}"
            )
    if problems:
        raise ValueError("; ".join(problems) + ".")


def tune_threshold_on_folder(
    prob_dir: str | Path,
    ref_dir: str | Path,
    *,
    settings: DetectionSettings | None = None,
    min_prob: float = DEFAULT_MIN_PROB,
    ref_file: str = DEFAULT_LESION_FILE,
    healthy_as_empty: bool = False,
    progress: bool = False,
) -> ThresholdTuning:
    """The threshold maximising mean patient F-beta on a fold of probability maps.

    Arguments as in :func:`evaluate_folders`; see :func:`sap.metrics.tune_threshold`.
    """
    cases = match_cases(
        prob_dir, ref_dir, prob=True, ref_file=ref_file, healthy_as_empty=healthy_as_empty
    )
    return _tune(cases.cases, settings or DetectionSettings(), min_prob, progress, BODY_IMAGE_FILE)


def compare_folders(
    pred_dirs: Sequence[str | Path],
    ref_dir: str | Path,
    *,
    names: Sequence[str] | None = None,
    **options: object,
) -> tuple[list[dict], str]:
    """Evaluate several prediction folders on one reference folder and compare them.

    Args:
        pred_dirs: one folder per model; the first is the reference for the p-values.
        ref_dir: reference case folders.
        names: model names (default: the folder names).
        options: keyword arguments of :func:`evaluate_folders`, the same for every model.

    Returns:
        ``(rows, markdown)`` of :func:`sap.metrics.comparison.compare_summaries`.
    """
    names = list(names) if names else [Path(p).name for p in pred_dirs]
    summaries = [evaluate_folders(p, ref_dir, **options).summary for p in pred_dirs]  # type: ignore[arg-type]
    return compare_summaries(summaries, names)


def _add_case(
    evaluation: Evaluation, case: CaseFiles, threshold: float | None, body_image: str | None
) -> None:
    """Load one case and add it; probability maps (``threshold`` given) are binarised."""
    pred, ref, affine = load_case(case, prob=threshold is not None)
    spacing = spacing_from_affine(affine)
    body = _body(case, pred.shape, body_image)
    if threshold is None:
        evaluation.add(case.case_id, pred, ref, spacing, affine=affine, body_mask=body)
    else:
        # A float64 threshold compares in float64 whatever the map's dtype (as the FROC does).
        binary = pred >= np.float64(threshold)
        evaluation.add(case.case_id, binary, ref, spacing, prob=pred, affine=affine, body_mask=body)


def _body(case: CaseFiles, shape: tuple[int, ...], body_image: str | None) -> np.ndarray | None:
    image = load_body_image(case, shape, body_image)
    return None if image is None else body_mask_from_image(image)


def _tune(
    cases: Sequence[CaseFiles],
    settings: DetectionSettings,
    min_prob: float,
    progress: bool,
    body_image: str | None,
) -> ThresholdTuning:
    exams = []
    for case in _progress(cases, "tuning threshold", progress):
        prob, ref, affine = load_case(case, prob=True, role="tuning")
        exam = exam_froc(
            prob,
            ref,
            spacing_from_affine(affine),
            connectivity=settings.connectivity,
            min_volume_ml=settings.min_volume_ml,
            min_prob=min_prob,
            body_mask=_body(case, prob.shape, body_image),
            warn=False,
        )
        warn_degenerate(exam.flags, f"{case.case_id} (tuning)")
        exams.append(exam)
    return tune_threshold(exams, beta=settings.beta)


def _warn_if_shared(tune_cases: CaseMatch, cases: CaseMatch) -> None:
    shared = sorted(set(cases.case_ids) & set(tune_cases.case_ids))
    if shared:
        warnings.warn(
            f"{len(shared)} tuning case(s) are also evaluated ({', '.join(shared[:5])}"
            f"{', ...' if len(shared) > 5 else ''}); the threshold should be tuned on a "
            f"separate fold.",
            EvaluationWarning,
            stacklevel=3,
        )


def _progress(items: Sequence[CaseFiles], description: str, show: bool):
    from sap.progress import progress_bar

    return progress_bar(items, desc=description, unit="case", disable=not show)


__all__ = [
    "CASE_PICTURES_DIR",
    "COMMAND",
    "DEFAULT_THRESHOLD",
    "check_options",
    "FolderEvaluation",
    "compare_folders",
    "evaluate_folders",
    "tune_threshold_on_folder",
]
