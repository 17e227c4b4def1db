"""Write an evaluation to disk (CSV tables, summary JSON, PNG figures) and compare models.

Files written by :func:`write_report` into the output folder, each atomically:

- ``per_lesion.csv``: one row per reference lesion (case, lesion id, volume mL, centroid in
  scanner mm and in voxels, detected, Dice, NSD);
- ``per_exam.csv``: one row per exam (counts, ratios, Dice, volumes);
- ``false_positives.csv``: one row per false-positive component (case, volume mL);
- ``summary.json``: settings, medians with bootstrap CIs, pooled values, ICC(2,1), FROC,
  threshold tuning, and the per-exam / per-lesion values that ``compare`` tests on;
- ``froc.png`` (with probability maps) and ``detection_by_volume.png``.

:func:`compare_summaries` turns several ``summary.json`` into the paper's table: one column
per model (median [95 % CI]) and, for every model after the first, a Bonferroni-corrected
p-value against the first model: Wilcoxon signed-rank on the patients both models were
evaluated on (per-patient metrics) or Mann-Whitney U (lesion-level Dice and NSD).
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from sap.io import write_text_atomic
from sap.metrics.evaluation import DEFAULT_BOOTSTRAP, BootstrapSettings, Evaluation
from sap.metrics.stats import bonferroni, mann_whitney, wilcoxon_paired

#: Rows of the comparison table: (summary metric, label, kind). kind "exam" -> Wilcoxon,
#: "lesion" -> Mann-Whitney.
TABLE_ROWS: tuple[tuple[str, str, str], ...] = (
    ("sensitivity", "sensitivity, all lesions", "exam"),
    ("precision", "precision", "exam"),
    ("fp_per_exam", "FP per exam", "exam"),
    ("f_beta", "F{beta:g}", "exam"),
    ("dice_detected", "Dice, detected lesions", "lesion"),
    ("nsd_detected", "NSD, detected lesions", "lesion"),
    ("mean_lesion_dice", "per-patient mean Dice", "exam"),
    ("global_dice", "global Dice", "exam"),
    ("sensitivity_large", "sensitivity ≥ {min_volume_ml:g} mL", "exam"),
    ("fp_per_exam_large", "FP per exam ≥ {min_volume_ml:g} mL", "exam"),
)


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
    bootstrap: BootstrapSettings | None = DEFAULT_BOOTSTRAP,
    extra: dict | None = None,
    plots: bool = True,
) -> dict[str, Path]:
    """Write tables, summary and figures of ``evaluation`` into ``out_dir``.

    Args:
        evaluation: the evaluated exams.
        out_dir: output folder (created if needed).
        bootstrap: CI settings; None skips the bootstrap.
        extra: more entries for ``summary.json`` (e.g. ``{"threshold_tuning": ...}``).
        plots: write the PNG figures.

    Returns:
        The written files by name (``"summary"``, ``"per_exam"``, ...).
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
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
    summary = evaluation.summary(bootstrap)
    if extra:
        summary.update(extra)
    paths["summary"] = write_text_atomic(
        out / "summary.json", json.dumps(summary, indent=2, allow_nan=False) + "\n"
    )
    if plots:
        paths.update(_write_plots(evaluation, out))
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


def compare_summaries(summaries: Sequence[dict], names: Sequence[str]) -> tuple[list[dict], str]:
    """Paper-style comparison of models; the first is the reference for the p-values.

    Returns:
        ``(rows, markdown)``: one dict per table row (label, per-model median and CI,
        raw and Bonferroni-corrected p-values) and the table as Markdown text.
    """
    if len(summaries) != len(names) or len(summaries) < 1:
        raise ValueError("Give one name per summary, and at least one summary.")
    settings = summaries[0].get("settings", {})
    fmt = {"beta": settings.get("beta", 2.0), "min_volume_ml": settings.get("min_volume_ml", 1.0)}
    for name, summary in zip(names[1:], summaries[1:]):
        other = summary.get("settings", {})
        for key in ("connectivity", "min_volume_ml", "nsd_tolerance_mm", "nsd_variant", "beta"):
            if other.get(key) != settings.get(key):
                raise ValueError(
                    f"Summaries were computed with different settings: {key}={other.get(key)!r} "
                    f"for {name} but {settings.get(key)!r} for {names[0]}. Re-evaluate with the "
                    f"same settings before comparing."
                )
    rows = []
    for key, label, kind in TABLE_ROWS:
        row: dict[str, object] = {"metric": key, "label": label.format(**fmt), "kind": kind}
        raw = []
        for name, summary in zip(names, summaries):
            stats = summary["metrics"].get(key, {})
            row[name] = (stats.get("median"), stats.get("ci_low"), stats.get("ci_high"))
        for summary in summaries[1:]:
            raw.append(_p_value(summaries[0], summary, key, kind))
        corrected = bonferroni(raw, n_tests=len(raw)) if raw else np.zeros(0)
        for name, p, q in zip(names[1:], raw, corrected):
            row[f"p_{name}"] = p
            row[f"p_{name}_bonferroni"] = float(q)
        rows.append(row)
    for key, label in (("icc_2_1_total_volume", "ICC(2,1) total volume"),):
        row = {"metric": key, "label": label, "kind": "dataset"}
        for name, summary in zip(names, summaries):
            row[name] = (summary.get(key), None, None)
        rows.append(row)
    for key, label in (
        ("auc", "FROC-AUC (to {limit:g} FPPI)"),
        ("auc_large", "FROC-AUC ≥ {min_volume_ml:g} mL (to {limit:g} FPPI)"),
    ):
        if all("froc" in s for s in summaries):
            limit_key = "max_fp_per_exam" if key == "auc" else "max_fp_per_exam_large"
            limit = summaries[0]["froc"][limit_key]
            row = {
                "metric": f"froc_{key}",
                "label": label.format(limit=limit, **fmt),
                "kind": "dataset",
            }
            for name, summary in zip(names, summaries):
                row[name] = (summary["froc"][key], None, None)
            rows.append(row)
    return rows, _markdown(rows, names)


def _p_value(reference: dict, other: dict, key: str, kind: str) -> float:
    if kind == "lesion":
        return mann_whitney(
            _floats(reference.get("per_lesion", {}).get(key, [])),
            _floats(other.get("per_lesion", {}).get(key, [])),
        )
    common = sorted(set(reference["per_exam"]) & set(other["per_exam"]))
    a = _floats([reference["per_exam"][c].get(key) for c in common])
    b = _floats([other["per_exam"][c].get(key) for c in common])
    return wilcoxon_paired(a, b)


def _floats(values: Sequence[object]) -> np.ndarray:
    return np.asarray([math.nan if v is None else float(v) for v in values], dtype=np.float64)


def _number(value: object, digits: int = 2) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return f"{float(value):.{digits}f}"


def _p_text(p: object) -> str:
    if p is None or (isinstance(p, float) and math.isnan(p)):
        return "–"
    return "<0.001" if float(p) < 0.001 else f"{float(p):.3f}"


def _markdown(rows: Sequence[dict], names: Sequence[str]) -> str:
    header = ["metric", *names] + [f"p {n} vs {names[0]} (Bonferroni)" for n in names[1:]]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in rows:
        cells = [str(row["label"])]
        for name in names:
            median, low, high = row[name]  # type: ignore[misc]
            cell = _number(median)
            if low is not None and high is not None:
                cell += f" [{_number(low)}, {_number(high)}]"
            cells.append(cell)
        for name in names[1:]:
            cells.append(_p_text(row.get(f"p_{name}_bonferroni")))
        lines.append("| " + " | ".join(cells) + " |")
    tests = (
        "Wilcoxon signed-rank (per-patient rows, paired by case id), Mann-Whitney U (lesion rows)"
    )
    lines.append("")
    if len(names) < 2:
        lines.append(
            "Medians [bootstrap 95% CI] over exams (per-patient rows) or detected lesions."
        )
        return "\n".join(lines) + "\n"
    lines.append(
        f"Medians [bootstrap 95% CI]; p-values: {tests}, Bonferroni over {max(len(names) - 1, 1)} comparison(s)."
    )
    return "\n".join(lines) + "\n"


__all__ = ["LESION_CSV_COLUMNS", "TABLE_ROWS", "compare_summaries", "load_summary", "write_report"]
