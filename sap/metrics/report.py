"""Write an evaluation to disk, each file atomically, and read its summary back.

Files of :func:`write_report` in the output folder:

- ``per_lesion.csv``: one row per reference lesion (case, lesion id, volume mL, centroid in
  scanner mm and in voxels, detected, Dice, NSD);
- ``per_exam.csv``: one row per exam (counts, ratios, Dice, volumes);
- ``false_positives.csv``: one row per false-positive component (case, volume mL);
- ``summary.json``: settings, medians with bootstrap CIs, pooled values, ICC(2,1), FROC,
  and the per-exam / per-lesion values that :mod:`sap.metrics.comparison` tests on;
- ``froc.png`` (with probability maps), ``detection_by_volume.png`` and
  ``volume_agreement.png``;
- ``cases/<case_id>.png`` (:func:`write_case_pictures`): a coronal MIP of each case's
  detected, missed and false-positive lesions, numbered like ``per_lesion.csv`` and
  ``false_positives.csv``.
"""

from __future__ import annotations

import csv
import io
import json
import math
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from sap.io import atomic_write, write_text_atomic
from sap.metrics.case_files import CaseFiles, EvaluationWarning, load_body_image, load_case
from sap.metrics.evaluation import Evaluation
from sap.metrics.summary import DEFAULT_BOOTSTRAP, BootstrapSettings
from sap.metrics.threshold import ThresholdTuning


def _csv_text(rows: Sequence[dict], columns: Sequence[str]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(columns), lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({key: _csv_value(row.get(key)) for key in columns})
    return buffer.getvalue()


def _csv_value(value: object) -> object:
    if isinstance(value, float) and math.isnan(value):
        return ""
    return value


LESION_CSV_COLUMNS: tuple[str, ...] = (
    "case_id",
    "lesion_id",
    "volume_ml",
    "large",
    "centroid_mm_x",
    "centroid_mm_y",
    "centroid_mm_z",
    "centroid_voxel_i",
    "centroid_voxel_j",
    "centroid_voxel_k",
    "detected",
    "n_pred_components",
    "dice",
    "nsd",
)


def write_report(
    evaluation: Evaluation,
    out_dir: str | Path,
    *,
    summary: dict | None = None,
    bootstrap: BootstrapSettings | None = DEFAULT_BOOTSTRAP,
    plots: bool = True,
) -> dict[str, Path]:
    """Write tables, summary and figures of ``evaluation`` into ``out_dir``.

    Args:
        evaluation: the evaluated exams.
        out_dir: output folder (created if needed).
        summary: the summary to write; default ``evaluation.summary(bootstrap)``.
        bootstrap: CI settings of the default summary; None skips the bootstrap.
        plots: write the PNG figures.

    Returns:
        The written files by name (``"summary"``, ``"per_exam"``, ...).
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = _write_tables(evaluation, out)
    if summary is None:
        summary = evaluation.summary(bootstrap)
    paths["summary"] = write_text_atomic(
        out / "summary.json", json.dumps(summary, indent=2, allow_nan=False) + "\n"
    )
    if plots:
        paths.update(_write_plots(evaluation, out))
    return paths


def write_tuning_curve(tuning: ThresholdTuning, out_dir: str | Path) -> Path:
    """``threshold_tuning.csv``: the mean patient F-beta at every candidate threshold."""
    lines = ["threshold,mean_patient_f_beta"]
    lines += [f"{t!r},{s!r}" for t, s in zip(tuning.thresholds.tolist(), tuning.scores.tolist())]
    return write_text_atomic(Path(out_dir) / "threshold_tuning.csv", "\n".join(lines) + "\n")


def write_comparison(rows: Sequence[dict], markdown: str, out_dir: str | Path) -> dict[str, Path]:
    """``comparison.md`` and ``comparison.json`` of :func:`sap.metrics.comparison.compare_summaries`."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    return {
        "comparison_md": write_text_atomic(out / "comparison.md", markdown),
        "comparison_json": write_text_atomic(
            out / "comparison.json", json.dumps(rows, indent=2, default=_json_default) + "\n"
        ),
    }


def _json_default(value: object) -> object:
    if isinstance(value, tuple):
        return list(value)
    return None


def _write_tables(evaluation: Evaluation, out: Path) -> dict[str, Path]:
    paths: dict[str, Path] = {}
    exam_rows = evaluation.exam_table()
    lesion_rows = evaluation.lesion_table()
    exam_columns = list(exam_rows[0]) if exam_rows else ["case_id"]
    paths["per_exam"] = write_text_atomic(out / "per_exam.csv", _csv_text(exam_rows, exam_columns))
    paths["per_lesion"] = write_text_atomic(
        out / "per_lesion.csv", _csv_text(lesion_rows, LESION_CSV_COLUMNS)
    )
    fp_rows = [
        {"case_id": case_id, "fp_index": i + 1, "volume_ml": volume}
        for case_id, result in zip(evaluation.case_ids, evaluation.results)
        for i, volume in enumerate(result.fp_volumes_ml)
    ]
    paths["false_positives"] = write_text_atomic(
        out / "false_positives.csv", _csv_text(fp_rows, ("case_id", "fp_index", "volume_ml"))
    )
    return paths


def _write_plots(evaluation: Evaluation, out: Path) -> dict[str, Path]:
    from sap.metrics.plots import plot_detection_by_volume, plot_froc, plot_volume_agreement

    paths = {
        "detection_by_volume": out / "detection_by_volume.png",
        "volume_agreement": out / "volume_agreement.png",
    }
    plot_detection_by_volume(evaluation, path=paths["detection_by_volume"])
    plot_volume_agreement(evaluation, path=paths["volume_agreement"])
    if evaluation.frocs:
        paths["froc"] = out / "froc.png"
        plot_froc(evaluation, path=paths["froc"])
    return paths


def write_case_pictures(
    cases: Sequence[CaseFiles],
    out_dir: str | Path,
    *,
    threshold: float | None,
    connectivity: int,
    body_image: str | None,
    progress: bool = False,
) -> dict[str, Path]:
    """``<out_dir>/<case_id>.png`` per case: detected / missed / false-positive lesions.

    The files are read again (one case at a time, so memory stays flat); probability maps
    (``threshold`` given) are binarised at ``threshold``. Returns the files by
    ``"case:<case_id>"``.
    """
    from sap.metrics.case_plots import plot_detections
    from sap.progress import progress_bar

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths: dict[str, Path] = {}
    for case in progress_bar(cases, desc="case pictures", unit="case", disable=not progress):
        pred, ref, affine = load_case(case, prob=threshold is not None)
        if threshold is not None:
            pred = pred >= np.float64(threshold)
        with warnings.catch_warnings():  # said once already, by the evaluation
            warnings.simplefilter("ignore", EvaluationWarning)
            image = load_body_image(case, pred.shape, body_image)
        fig = plot_detections(
            pred, ref, affine, image=image, connectivity=connectivity, title=case.case_id
        )
        path = out / f"{case.case_id}.png"
        paths[f"case:{case.case_id}"] = atomic_write(
            path, lambda tmp, fig=fig: fig.savefig(tmp, format="png", dpi=100)
        )
    return paths


def load_summary(path: str | Path) -> dict:
    """Read a ``summary.json`` written by :func:`write_report`, with a clear error otherwise."""
    path = Path(path)
    try:
        summary = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise FileNotFoundError(
            f"Summary {path} does not exist; run `sap evaluate` first."
        ) from None
    except json.JSONDecodeError as error:
        raise ValueError(f"{path} is not valid JSON ({error}).") from error
    if not isinstance(summary, dict) or "metrics" not in summary or "per_exam" not in summary:
        raise ValueError(
            f"{path} is not a summary written by `sap evaluate` (no 'metrics'/'per_exam' entries)."
        )
    return summary


__all__ = [
    "LESION_CSV_COLUMNS",
    "load_summary",
    "write_case_pictures",
    "write_comparison",
    "write_report",
    "write_tuning_curve",
]
