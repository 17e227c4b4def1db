"""Evaluation tables as pandas DataFrames, for notebooks: exams, lesions, the summary.

The same rows as the CSV files of ``sap evaluate`` (``per_exam.csv``, ``per_lesion.csv``)
and the metrics of ``summary.json``; pandas is imported here only, on first use.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pandas as pd

#: Columns of :func:`summary_frame`, in order.
SUMMARY_COLUMNS: tuple[str, ...] = ("level", "median", "ci_low", "ci_high", "n", "mean", "pooled")


def exam_frame(rows: Sequence[dict]) -> pd.DataFrame:
    """Per-exam rows (``case_id`` + metrics) as a DataFrame indexed by ``case_id``."""
    import pandas as pd

    frame = pd.DataFrame(list(rows))
    if frame.empty:
        return pd.DataFrame(index=pd.Index([], name="case_id"))
    return frame.set_index("case_id")


def lesion_frame(rows: Sequence[dict]) -> pd.DataFrame:
    """Per-lesion rows as a DataFrame indexed by ``(case_id, lesion_id)``."""
    import pandas as pd

    frame = pd.DataFrame(list(rows))
    if frame.empty:
        return pd.DataFrame(index=pd.MultiIndex.from_tuples([], names=["case_id", "lesion_id"]))
    return frame.set_index(["case_id", "lesion_id"])


def summary_frame(summary: dict) -> pd.DataFrame:
    """``summary["metrics"]`` as a DataFrame: one row per metric, :data:`SUMMARY_COLUMNS`.

    Undefined values (None in the JSON-ready summary) are NaN.

    >>> frame = summary_frame({"metrics": {"sensitivity": {"level": "exam", "median": 0.5,
    ...     "ci_low": None, "ci_high": None, "n": 2, "mean": 0.5, "pooled": 0.5}}})
    >>> float(frame.loc["sensitivity", "median"]), frame.index.name
    (0.5, 'metric')
    """
    import pandas as pd

    frame = pd.DataFrame.from_dict(summary["metrics"], orient="index")
    frame = frame.reindex(columns=list(SUMMARY_COLUMNS))
    numeric = [c for c in SUMMARY_COLUMNS if c != "level"]
    frame[numeric] = frame[numeric].apply(pd.to_numeric, errors="coerce")
    frame.index.name = "metric"
    return frame


__all__ = ["SUMMARY_COLUMNS", "exam_frame", "lesion_frame", "summary_frame"]
