"""The side-by-side table ``sap demo`` prints: one column per lesion arm, one row per metric."""

from __future__ import annotations

import math
from typing import Any

#: Rows of the demo table: (label, key in the headline metrics).
TABLE_ROWS: tuple[tuple[str, str], ...] = (
    ("sensitivity, all lesions", "sensitivity"),
    ("precision", "precision"),
    ("FP per exam", "fp_per_exam"),
    ("F2", "f_beta"),
    ("Dice, detected lesions", "dice_detected"),
    ("NSD, detected lesions", "nsd_detected"),
    ("per-patient mean Dice", "mean_lesion_dice"),
    ("global Dice", "global_dice"),
    ("FROC-AUC (to 15 FP/exam)", "froc_auc"),
)


def format_table(results: dict[str, dict[str, Any]]) -> str:
    """Side-by-side table of the demo's arms (columns) and metrics (rows); missing is ``n/a``.

    >>> print(format_table({"sap": {"sensitivity": 0.5}}).splitlines()[1])
    sensitivity, all lesions       0.500
    """
    arms = list(results)
    width = max(len(label) for label, _ in TABLE_ROWS) + 2
    lines = ["metric".ljust(width) + "".join(arm.rjust(10) for arm in arms)]
    for label, key in TABLE_ROWS:
        cells = [_cell(results[arm].get(key)) for arm in arms]
        lines.append(label.ljust(width) + "".join(cells))
    return "\n".join(lines)


def _cell(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a".rjust(10)
    return f"{value:10.3f}"


__all__ = ["TABLE_ROWS", "format_table"]
