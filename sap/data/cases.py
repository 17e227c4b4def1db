"""What a case is, and how to find the cases of a data set on disk.

A *case* is one whole-body MRI exam: one image per input channel (``T1``, ``b1000``) and,
optionally, a skeleton label map and/or a lesion label map. Cases are found in one of three
shapes:

* a folder of case folders, ``root/<case_id>/{T1.nii.gz, b1000.nii.gz, skeleton.nii.gz,
  lesion.nii.gz}`` (the layout the phantom writes; file names are configurable with
  :class:`CaseLayout`; sub-folders whose name starts with ``.`` or ``_`` are ignored);
* a single case folder with those files;
* a CSV manifest (:mod:`sap.data.manifest`).

Only the file system is looked at here; :func:`sap.data.validation.validate_cases` reads
the files.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sap.data.manifest import read_manifest
from sap.data.problems import CaseProblem, CaseValidationError, missing_file_problem
from sap.labels import (
    CHANNELS,
    DEFAULT_CHANNEL_FILES,
    DEFAULT_LESION_FILE,
    DEFAULT_SKELETON_FILE,
    TASK_LABELS,
)

if TYPE_CHECKING:
    import torchio as tio

#: Names of the label maps a case may carry, in the order they are reported.
LABEL_KINDS: tuple[str, ...] = tuple(TASK_LABELS)

_RESERVED_KEYS = (*LABEL_KINDS, "case_id")


@dataclass(frozen=True)
class CaseLayout:
    """File names of one case folder.

    Args:
        channels: input channel names, in the order they are stacked into the network input.
            The first channel defines the grid everything else is resampled onto.
        channel_files: file name of each channel inside a case folder. Channels not listed
            here default to ``<channel>.nii.gz``.
        skeleton_file: file name of the (optional) skeleton label map.
        lesion_file: file name of the (optional) lesion label map.
    """

    channels: tuple[str, ...] = CHANNELS
    channel_files: Mapping[str, str] = field(default_factory=lambda: dict(DEFAULT_CHANNEL_FILES))
    skeleton_file: str = DEFAULT_SKELETON_FILE
    lesion_file: str = DEFAULT_LESION_FILE

    def __post_init__(self) -> None:
        channels = tuple(self.channels)
        object.__setattr__(self, "channels", channels)
        if not channels:
            raise ValueError("CaseLayout needs at least one channel, e.g. channels=('T1',).")
        if len(set(channels)) != len(channels):
            raise ValueError(f"CaseLayout channels must be distinct, got {channels}.")
        clashes = [name for name in channels if name in _RESERVED_KEYS]
        if clashes:
            raise ValueError(
                f"Channel name(s) {clashes} are reserved for label maps and the case id "
                f"({', '.join(_RESERVED_KEYS)}); rename the channel(s)."
            )

    def channel_file(self, channel: str) -> str:
        """File name of ``channel`` inside a case folder."""
        return self.channel_files.get(channel, f"{channel}.nii.gz")

    def label_file(self, kind: str) -> str:
        """File name of label map ``kind`` (``"skeleton"`` or ``"lesion"``)."""
        return {"skeleton": self.skeleton_file, "lesion": self.lesion_file}[kind]

    def all_files(self) -> tuple[str, ...]:
        """Every file name this layout knows, channels first."""
        return (
            *(self.channel_file(c) for c in self.channels),
            self.skeleton_file,
            self.lesion_file,
        )


@dataclass(frozen=True)
class Case:
    """One exam: an image per channel and the label maps that exist for it.

    Args:
        case_id: unique name of the case (folder name or the manifest's ``case_id``).
        images: channel name -> image path, in channel order; the first is the reference grid.
        skeleton: skeleton label map, or ``None`` when the case has none.
        lesion: lesion label map, or ``None`` when the case has none.
    """

    case_id: str
    images: dict[str, Path]
    skeleton: Path | None = None
    lesion: Path | None = None

    def __hash__(self) -> int:  # the dict field would make the generated hash fail
        return hash((self.case_id, tuple(self.images.items()), self.skeleton, self.lesion))

    @property
    def channels(self) -> tuple[str, ...]:
        """Channel names in stacking order."""
        return tuple(self.images)

    @property
    def labels(self) -> dict[str, Path]:
        """The label maps this case has, ``{"skeleton": path, "lesion": path}`` minus absent ones."""
        found = {"skeleton": self.skeleton, "lesion": self.lesion}
        return {kind: path for kind, path in found.items() if path is not None}


def discover_cases(
    source: str | Path,
    layout: CaseLayout | None = None,
    require: Iterable[str] = (),
) -> list[Case]:
    """List the cases under ``source``, raising every problem found at once.

    Only the file system is looked at (no file is opened); missing channel files, missing
    required label maps and duplicate ids are collected and raised together.

    Args:
        source: a folder of case folders, one case folder, or a CSV manifest (``.csv``;
            ``.tsv`` for tab-separated). Folder cases are sorted by id; manifest cases keep
            the manifest's order.
        layout: file names and channels; defaults to ``CaseLayout()`` (T1, b1000).
        require: label maps every case must have, e.g. ``("skeleton",)`` for anatomical
            pretraining or ``("lesion",)`` for lesion fine-tuning.

    Returns:
        The cases, each with an image path for every channel and label paths where present.

    Raises:
        CaseValidationError: the source does not exist, holds no case, or some cases are
            incomplete. The message names every case and file concerned.
    """
    layout = layout or CaseLayout()
    required = tuple(require)
    unknown = [kind for kind in required if kind not in LABEL_KINDS]
    if unknown:
        raise ValueError(
            f"require={required!r}: unknown label map(s) {unknown}; use {LABEL_KINDS}."
        )
    source = Path(source).expanduser()
    _check_source(source)
    if source.is_file():
        rows, problems = read_manifest(source, layout.channels)
        cases = [
            Case(row.case_id, row.images, row.labels["skeleton"], row.labels["lesion"])
            for row in rows
        ]
    else:
        cases, problems = _cases_from_folder(source, layout)
    for kind in required:
        problems += missing_label_problems(
            cases,
            kind,
            source,
            layout,
            f"add the {kind} label map, or leave this case out of the {kind} data set",
        )
    if problems:
        raise CaseValidationError(problems, context=f"in {source}")
    return cases


def missing_label_problems(
    cases: Sequence[Case], kind: str, source: Path, layout: CaseLayout, hint: str
) -> list[CaseProblem]:
    """One problem per case without label map ``kind``, naming the file looked for.

    Args:
        cases: the cases of ``source``.
        kind: the label map every case needs (``"skeleton"`` or ``"lesion"``).
        source: the case folder(s) or manifest the cases come from.
        layout: the layout that names the label file in a case folder.
        hint: what the user should do.
    """
    return [
        CaseProblem(
            case.case_id,
            # The file looked for (folder layout), or the manifest that lacks it.
            source if source.is_file() else _case_folder(case) / layout.label_file(kind),
            f"required {kind} label map is missing",
            hint,
        )
        for case in cases
        if case.labels.get(kind) is None
    ]


def _check_source(source: Path) -> None:
    if not source.exists():
        raise CaseValidationError(
            [
                CaseProblem(
                    None,
                    source,
                    "does not exist",
                    "pass a folder of case folders, one case folder, or a CSV manifest",
                )
            ]
        )
    if source.is_file() and source.suffix.lower() not in (".csv", ".tsv"):
        raise CaseValidationError(
            [
                CaseProblem(
                    None,
                    source,
                    "is a file but not a CSV manifest (.csv or .tsv)",
                    "pass the case folder that holds it, its parent folder, or a CSV manifest",
                )
            ]
        )


def _case_folder(case: Case) -> Path:
    """Folder holding the case's first channel image (its case folder in the folder layout)."""
    return next(iter(case.images.values())).parent


def _is_case_folder(folder: Path, layout: CaseLayout) -> bool:
    return any((folder / name).exists() for name in layout.all_files())


def _cases_from_folder(root: Path, layout: CaseLayout) -> tuple[list[Case], list[CaseProblem]]:
    if _is_case_folder(root, layout):
        case, problems = _case_from_folder(root, layout)
        return [case], problems
    folders = sorted(
        (p for p in root.iterdir() if p.is_dir() and not p.name.startswith((".", "_"))),
        key=lambda p: p.name,
    )
    if not folders:
        found = sorted(p.name for p in root.iterdir())[:5]
        seen = f"found only: {', '.join(found)}" if found else "the folder is empty"
        expected = ", ".join(layout.all_files())
        raise CaseValidationError(
            [
                CaseProblem(
                    None,
                    root,
                    f"no cases found ({seen})",
                    f"put one folder per case in it, each holding {expected} "
                    "(label maps optional), or pass a CSV manifest",
                )
            ]
        )
    cases, problems = [], []
    for folder in folders:
        case, case_problems = _case_from_folder(folder, layout)
        cases.append(case)
        problems.extend(case_problems)
    return cases, problems


def _case_from_folder(folder: Path, layout: CaseLayout) -> tuple[Case, list[CaseProblem]]:
    case_id = folder.name
    images = {channel: folder / layout.channel_file(channel) for channel in layout.channels}
    channel_files = [layout.channel_file(c) for c in layout.channels]
    problems = [
        missing_file_problem(case_id, path, f"channel '{channel}'", channel_files)
        for channel, path in images.items()
        if not path.exists()  # a folder in its place is reported by validate_cases
    ]
    labels = {kind: folder / layout.label_file(kind) for kind in LABEL_KINDS}
    present = {kind: path if path.exists() else None for kind, path in labels.items()}
    return Case(case_id, images, present["skeleton"], present["lesion"]), problems


def case_to_subject(case: Case) -> tio.Subject:
    """A lazily loaded :class:`torchio.Subject` for ``case``.

    Keys: one :class:`torchio.ScalarImage` per channel (named after the channel), the label
    maps present as :class:`torchio.LabelMap` under ``"skeleton"`` / ``"lesion"``, and
    ``"case_id"`` (str). Nothing is read from disk until a transform or sampler needs it.
    """
    import torchio as tio

    entries: dict[str, Any] = {
        channel: tio.ScalarImage(path) for channel, path in case.images.items()
    }
    for kind, path in case.labels.items():
        entries[kind] = tio.LabelMap(path)
    entries["case_id"] = case.case_id
    return tio.Subject(entries)


__all__ = [
    "LABEL_KINDS",
    "Case",
    "CaseLayout",
    "case_to_subject",
    "discover_cases",
    "missing_label_problems",
]
