"""What is wrong with the input data, phrased for the person who has to fix it.

Discovery (:mod:`sap.data.cases`, :mod:`sap.data.manifest`) and validation
(:mod:`sap.data.validation`) collect every :class:`CaseProblem` they find and raise them
together in one :class:`CaseValidationError`, so a data set is fixed in one go.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class CaseProblem:
    """One thing wrong with the input data: where, what, and how to fix it.

    Args:
        case_id: the case concerned, or ``None`` for the data set as a whole.
        path: the file or folder concerned, or ``None``.
        problem: what is wrong.
        hint: what to do about it.
    """

    case_id: str | None
    path: Path | None
    problem: str
    hint: str = ""

    def __str__(self) -> str:
        where = []
        if self.case_id is not None:
            where.append(f"case '{self.case_id}'")
        if self.path is not None:
            where.append(f"file {self.path}")
        text = f"{', '.join(where)}: {self.problem}" if where else self.problem
        if self.hint:
            text += f"\n    fix: {self.hint}"
        return text


class CaseValidationError(ValueError):
    """The input data cannot be used; the message lists every problem found.

    Attributes:
        problems: the individual :class:`CaseProblem` items, for programs that want them.
    """

    def __init__(self, problems: Sequence[CaseProblem], context: str = "") -> None:
        self.problems = list(problems)
        cases = {p.case_id for p in self.problems if p.case_id is not None}
        head = f"{len(self.problems)} problem(s)"
        if cases:
            head += f" in {len(cases)} case(s)"
        if context:
            head += f" {context}"
        lines = [f"{head}:"] + [f"  - {p}" for p in self.problems]
        super().__init__("\n".join(lines))


def missing_file_problem(
    case_id: str, path: Path, what: str, expected_files: Sequence[str] = ()
) -> CaseProblem:
    """A missing file, with a hint naming a look-alike next to it (``T1.nii`` for ``T1.nii.gz``).

    Args:
        case_id: the case the file belongs to.
        path: where the file was expected.
        what: what the file is, e.g. ``"channel 'T1'"``.
        expected_files: the file names a case folder must hold, shown when no look-alike
            is found (empty for manifest paths, which may be named anything).
    """
    hint = "copy the file there"
    stem = path.name.split(".")[0]
    if path.parent.is_dir():
        lookalikes = sorted(
            p.name for p in path.parent.iterdir() if p.name.split(".")[0] == stem and p != path
        )
        if lookalikes:
            hint = (
                f"found {', '.join(lookalikes)} instead: rename it to {path.name} "
                "or pass a CaseLayout with that file name"
            )
        elif expected_files:
            hint = f"a case folder must hold {', '.join(expected_files)}"
    return CaseProblem(case_id, path, f"{what} file is missing", hint)


__all__ = ["CaseProblem", "CaseValidationError", "missing_file_problem"]
