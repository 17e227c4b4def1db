"""Write an evaluation to disk, each file atomically, and read its summary back.

Files of :func:`write_report` in the output folder:

- ``per_lesion.csv``: one row per reference lesion (case, lesion id, volume mL, centroid in
  scanner mm and in voxels, detected, Dice, NSD);
- ``per_exam.csv``: one row per exam (counts, ratios, Dice, volumes);
- ``false_positives.csv``: one row per false-positive component (case, volume mL);
- ``summary.json``: settings, medians with bootstrap CIs, pooled values, ICC(2,1), FROC,
  and the per-exam / per-lesion values that :mod:`sap.metrics.comparison` tests on;
- ``froc.png`` (with probability maps) and ``detection_by_volume.png``.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Sequence
from pathlib import Path

from sap.io import write_text_atomic
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
    import matplotlib.pyplot as plt

    from sap.metrics.froc import froc_curve
    from sap.metrics.plots import plot_detection_by_volume, plot_froc

    paths: dict[str, Path] = {}
    lesions = [lesion for result in evaluation.results for lesion in result.lesions]
    fig = plot_detection_by_volume(
        [lesion.volume_ml for lesion in lesions],
        [lesion.detected for lesion in lesions],
        evaluation.fp_volumes_ml(),
        len(evaluation.results),
        out / "detection_by_volume.png",
    )
    plt.close(fig)
    paths["detection_by_volume"] = out / "detection_by_volume.png"
    if evaluation.frocs:
        exams = list(evaluation.frocs.values())
        fig = plot_froc(
            froc_curve(exams),
            froc_curve(exams, large=True),
            out / "froc.png",
            connectivity=evaluation.settings.connectivity,
            min_volume_ml=evaluation.settings.min_volume_ml,
        )
        plt.close(fig)
        paths["froc"] = out / "froc.png"
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
    "write_comparison",
    "write_report",
    "write_tuning_curve",
]
