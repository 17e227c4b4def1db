"""Names that become paths: plain names only, and outputs kept apart from inputs."""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable
from pathlib import Path

_MAX_NAME_BYTES = 255


class UnsafeNameError(ValueError):
    """A name that would not stay a single plain file name inside its output folder."""


class OutputFolderError(FileExistsError):
    """An output folder this command may not create, write into or replace; the message says why."""


def plain_name_problem(name: str) -> str | None:
    """Why ``name`` is not a plain file name (one path component), or None when it is.

    >>> plain_name_problem("patient_01") is None
    True
    >>> plain_name_problem("../victim/patient_01")
    "'../victim/patient_01' contains a path separator"
    """
    if not isinstance(name, str) or not name.strip():
        return "it is empty"
    if name != name.strip():
        return f"{name!r} starts or ends with white space"
    if "/" in name or "\\" in name:
        return f"{name!r} contains a path separator"
    if name in (".", ".."):
        return f"{name!r} is a relative folder reference"
    if name.startswith("."):
        return f"{name!r} starts with '.' (hidden; sap ignores such folders)"
    if any(unicodedata.category(c) == "Cc" for c in name):
        return f"{name!r} contains control characters"
    if len(name.encode("utf-8", "surrogateescape")) > _MAX_NAME_BYTES:
        return f"{name[:20]!r}... is longer than {_MAX_NAME_BYTES} bytes"
    return None


def check_plain_name(name: str, what: str = "case id") -> str:
    """Return ``name`` if it is a plain file name, else raise :class:`UnsafeNameError`."""
    problem = plain_name_problem(name)
    if problem is not None:
        raise UnsafeNameError(
            f"Invalid {what}: {problem}. A {what} becomes a folder name: use letters, digits, "
            "'-', '_' and '.', with no path separators."
        )
    return name


def path_inside(root: str | Path, name: str) -> Path:
    """``root / name``, proven (symbolic links resolved) to lie directly inside ``root``."""
    check_plain_name(name)
    root = Path(root)
    path = root / name
    if path.resolve().parent != root.resolve():
        raise UnsafeNameError(
            f"{path} resolves to {path.resolve()}, outside {root}; refusing to write there "
            "(is it a symbolic link?). Remove it or choose another output folder."
        )
    return path


def check_outside_inputs(out: str | Path, inputs: Iterable[str | Path]) -> None:
    """Refuse an output folder equal to, inside, or around one of the input folders.

    Outputs written among inputs get mixed with them: a predicted ``lesion.nii.gz`` next to a
    ``T1.nii.gz`` is a reference label to the next ``sap fit``.

    Raises:
        OutputFolderError: naming both folders; ``--overwrite`` does not change this.
    """
    target = Path(out).resolve()
    for item in inputs:
        source = Path(item).resolve()
        if target == source or source in target.parents:
            where = "is" if target == source else "lies inside"
        elif target in source.parents:
            where = "contains"
        else:
            continue
        raise OutputFolderError(
            f"The output folder {out} {where} the input folder {item}. Outputs must "
            "not be mixed with input data (a prediction next to the scans reads as a reference "
            "label). Choose an output folder outside the inputs."
        )


__all__ = [
    "OutputFolderError",
    "UnsafeNameError",
    "check_outside_inputs",
    "check_plain_name",
    "path_inside",
    "plain_name_problem",
]
