"""Read a CSV manifest: one row per case, one column of file paths per channel and label map.

Columns: ``case_id`` (a plain name, since it becomes a folder name), one per channel
(``T1``, ``b1000``) and optional ``skeleton`` and ``lesion``; an empty label cell means the
case has no such map. Relative paths are resolved against the manifest's folder. ``.tsv``
files are read tab-separated; a ``.csv`` whose header holds ``;`` and no ``,`` (as spreadsheets
in many locales save it) is read ``;``-separated. A UTF-8 byte-order mark is ignored.
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from sap.data.problems import CaseProblem, CaseValidationError, missing_file_problem
from sap.io import plain_name_problem
from sap.labels import TASK_LABELS


@dataclass(frozen=True)
class ManifestRow:
    """The paths one manifest row gives for a case.

    Args:
        case_id: the row's ``case_id``.
        images: channel -> path, in channel order (``Path()`` where the cell is empty).
        labels: label map (``skeleton``, ``lesion``) -> path, or ``None`` where absent.
    """

    case_id: str
    images: dict[str, Path]
    labels: dict[str, Path | None]


def read_manifest(
    manifest: Path, channels: Sequence[str]
) -> tuple[list[ManifestRow], list[CaseProblem]]:
    """The rows of ``manifest``, and every problem found in them (empty ids, missing files).

    Args:
        manifest: the CSV (or TSV) file.
        channels: the channel columns every row must fill.

    Raises:
        CaseValidationError: the manifest cannot be read, lacks a column, or has no rows.
    """
    columns, rows = _read_table(manifest)
    needed = ["case_id", *channels]
    missing_columns = [c for c in needed if c not in columns]
    if missing_columns:
        raise CaseValidationError(
            [
                CaseProblem(
                    None,
                    manifest,
                    f"manifest lacks column(s) {missing_columns} (found {columns})",
                    f"the header row must name {', '.join(needed)} and optionally "
                    f"{', '.join(TASK_LABELS)}",
                )
            ]
        )
    if not rows:
        raise CaseValidationError(
            [
                CaseProblem(
                    None,
                    manifest,
                    "no cases found: the manifest has no rows",
                    "add one row per case",
                )
            ]
        )
    found: list[ManifestRow] = []
    problems: list[CaseProblem] = []
    first_row: dict[str, int] = {}
    for row_number, row in enumerate(rows, start=2):  # row 1 is the header
        case_id = row["case_id"]
        if not case_id:
            problems.append(
                CaseProblem(
                    None,
                    manifest,
                    f"row {row_number} has an empty case_id",
                    "give every row a unique id",
                )
            )
        elif (problem := plain_name_problem(case_id)) is not None:
            problems.append(
                CaseProblem(
                    None,
                    manifest,
                    f"row {row_number}: case_id is not a plain name: {problem}",
                    "a case id becomes a folder name: use letters, digits, '-', '_' and '.', "
                    "with no path separators",
                )
            )
        elif case_id in first_row:
            problems.append(
                CaseProblem(
                    case_id,
                    manifest,
                    f"duplicate case_id in rows {first_row[case_id]} and {row_number}",
                    "case ids must be unique; merge or rename the rows",
                )
            )
        else:
            first_row[case_id] = row_number
            found.append(_row_paths(row, row_number, manifest, channels, problems))
    return found, problems


def _read_table(manifest: Path) -> tuple[list[str], list[dict[str, str]]]:
    """Header and rows, with whitespace stripped from names and cells."""
    delimiter = "\t" if manifest.suffix.lower() == ".tsv" else ","
    try:
        with manifest.open(newline="", encoding="utf-8-sig") as handle:
            header = handle.readline()
            if delimiter == "," and ";" in header and "," not in header:
                delimiter = ";"  # a spreadsheet saved "CSV" with the locale's separator
            handle.seek(0)
            reader = csv.DictReader(handle, delimiter=delimiter)
            columns = [c.strip() for c in reader.fieldnames or []]
            rows = [
                {(k or "").strip(): (v or "").strip() for k, v in row.items()} for row in reader
            ]
    except (OSError, UnicodeDecodeError, csv.Error) as error:
        raise CaseValidationError(
            [
                CaseProblem(
                    None,
                    manifest,
                    f"cannot read the manifest ({error})",
                    "save it as a UTF-8 CSV file with a header row",
                )
            ]
        ) from error
    return columns, rows


def _row_paths(
    row: dict[str, str],
    row_number: int,
    manifest: Path,
    channels: Sequence[str],
    problems: list[CaseProblem],
) -> ManifestRow:
    """The paths of one row; empty channel cells and missing files go to ``problems``."""
    case_id = row["case_id"]
    images: dict[str, Path] = {}
    for channel in channels:
        cell = row.get(channel, "")
        if not cell:
            images[channel] = Path()
            problems.append(
                CaseProblem(
                    case_id,
                    manifest,
                    f"row {row_number} has no path in column '{channel}'",
                    "fill in the image path (absolute, or relative to the manifest)",
                )
            )
            continue
        images[channel] = _resolve(cell, manifest.parent)
        if not images[channel].exists():
            problems.append(missing_file_problem(case_id, images[channel], f"channel '{channel}'"))
    labels: dict[str, Path | None] = {}
    for kind in TASK_LABELS:
        cell = row.get(kind, "")
        path = _resolve(cell, manifest.parent) if cell else None
        if path is not None and not path.exists():
            problems.append(missing_file_problem(case_id, path, f"{kind} label map"))
        labels[kind] = path
    return ManifestRow(case_id, images, labels)


def _resolve(cell: str, base: Path) -> Path:
    path = Path(cell).expanduser()
    return path if path.is_absolute() else base / path


__all__ = ["ManifestRow", "read_manifest"]
