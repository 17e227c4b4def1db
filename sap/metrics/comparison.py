"""Compare models from their summaries: the paper's table of medians [95 % CI] and p-values.

One column per model and, for every model after the first, a Bonferroni-corrected p-value
against the first: Wilcoxon signed-rank on the patients both models were evaluated on
(per-patient metrics) or Mann-Whitney U (lesion-level Dice and NSD). See
``docs/metrics.md`` ("Statistics").
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from sap.metrics.report import load_summary
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
    ("volume_ratio", "predicted / reference volume", "exam"),
)


def compare_summaries(summaries: Sequence[dict], names: Sequence[str]) -> tuple[list[dict], str]:
    """Paper-style comparison of models; the first is the reference for the p-values.

    Returns:
        ``(rows, markdown)``: one dict per table row (label, per-model median and CI,
        raw and Bonferroni-corrected p-values) and the table as Markdown text.
    """
    if len(summaries) != len(names) or len(summaries) < 1:
        raise ValueError("Give one name per summary, and at least one summary.")
    _check_same_settings(summaries, names)
    settings = summaries[0].get("settings", {})
    fmt = {"beta": settings.get("beta", 2.0), "min_volume_ml": settings.get("min_volume_ml", 1.0)}
    rows = [
        _metric_row(summaries, names, key, label.format(**fmt), kind)
        for key, label, kind in TABLE_ROWS
    ]
    rows += _dataset_rows(summaries, names, fmt)
    return rows, _markdown(rows, names)


def compare_summary_files(
    paths: Sequence[str | Path], names: Sequence[str] | None = None
) -> tuple[list[dict], str]:
    """:func:`compare_summaries` of ``summary.json`` files.

    Args:
        paths: the summaries; the first model is the reference for the p-values.
        names: model names; default: the name of the folder holding each summary.
    """
    paths = [Path(p) for p in paths]
    names = list(names) if names else [p.parent.name or p.stem for p in paths]
    if len(names) != len(paths):
        raise ValueError(f"Got {len(names)} names for {len(paths)} summaries.")
    if len(set(names)) != len(names):
        raise ValueError(f"Model names must be distinct, got {names}; pass --names.")
    return compare_summaries([load_summary(p) for p in paths], names)


def _check_same_settings(summaries: Sequence[dict], names: Sequence[str]) -> None:
    settings = summaries[0].get("settings", {})
    for name, summary in zip(names[1:], summaries[1:]):
        other = summary.get("settings", {})
        for key in ("connectivity", "min_volume_ml", "nsd_tolerance_mm", "nsd_variant", "beta"):
            if other.get(key) != settings.get(key):
                raise ValueError(
                    f"Summaries were computed with different settings: {key}={other.get(key)!r} "
                    f"for {name} but {settings.get(key)!r} for {names[0]}. Re-evaluate with the "
                    f"same settings before comparing."
                )


def _metric_row(
    summaries: Sequence[dict], names: Sequence[str], key: str, label: str, kind: str
) -> dict[str, object]:
    """Medians [CI] of one metric and the p-values of every model against the first."""
    row: dict[str, object] = {"metric": key, "label": label, "kind": kind}
    for name, summary in zip(names, summaries):
        stats = summary["metrics"].get(key, {})
        row[name] = (stats.get("median"), stats.get("ci_low"), stats.get("ci_high"))
    raw = [_p_value(summaries[0], summary, key, kind) for summary in summaries[1:]]
    corrected = bonferroni(raw, n_tests=len(raw)) if raw else np.zeros(0)
    for name, p, q in zip(names[1:], raw, corrected):
        row[f"p_{name}"] = p
        row[f"p_{name}_bonferroni"] = float(q)
    return row


def _dataset_rows(
    summaries: Sequence[dict], names: Sequence[str], fmt: dict[str, float]
) -> list[dict[str, object]]:
    """One value per model, no test: ICC(2,1), merged predictions (the total, which exposes
    one-blob predictions) and, with probability maps, the FROC-AUCs."""
    rows = []
    for key, label in (
        ("icc_2_1_total_volume", "ICC(2,1) total volume"),
        ("merged_predictions", "merged predictions (total, ≥ 2 lesions each)"),
    ):
        row: dict[str, object] = {"metric": key, "label": label, "kind": "dataset"}
        for name, summary in zip(names, summaries):
            row[name] = (summary.get(key), None, None)
        rows.append(row)
    if not all("froc" in s for s in summaries):
        return rows
    for key, limit_key, label in (
        ("auc", "max_fp_per_exam", "FROC-AUC (to {limit:g} FPPI)"),
        (
            "auc_large",
            "max_fp_per_exam_large",
            "FROC-AUC ≥ {min_volume_ml:g} mL (to {limit:g} FPPI)",
        ),
    ):
        limit = summaries[0]["froc"][limit_key]
        row = {
            "metric": f"froc_{key}",
            "label": label.format(limit=limit, **fmt),
            "kind": "dataset",
        }
        for name, summary in zip(names, summaries):
            row[name] = (summary["froc"][key], None, None)
        rows.append(row)
    return rows


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
    if isinstance(value, int):
        return str(value)
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


__all__ = ["TABLE_ROWS", "compare_summaries", "compare_summary_files"]
