"""Find the cases of a data set on disk and check them before any training starts.

A *case* is one whole-body MRI exam: one image per input channel (``T1``, ``b1000``) and,
optionally, a skeleton label map and/or a lesion label map. Cases are found in one of three
shapes:

* a folder of case folders, ``root/<case_id>/{T1.nii.gz, b1000.nii.gz, skeleton.nii.gz,
  lesion.nii.gz}`` (the layout :mod:`sap.data.phantom` writes; file names are configurable
  with :class:`CaseLayout`; sub-folders whose name starts with ``.`` or ``_`` are ignored);
* a single case folder with those files;
* a CSV manifest with columns ``case_id``, one column per channel and optional ``skeleton``
  and ``lesion`` columns; relative paths are resolved against the CSV's folder.

Why check up front: a truncated file or a label map drawn on another scan otherwise surfaces
hours into training, deep inside a data-loader worker, as a stack trace that names neither
the case nor the file. :func:`validate_cases` reads every header and every voxel once and
reports *all* problems of *all* cases in one :class:`CaseValidationError`, so they can be
fixed in one go.

Decisions worth knowing:

* A 4D file whose extra dimensions are all 1 (``X x Y x Z x 1``, as some converters write) is
  accepted: it holds one 3D volume and TorchIO reads it as one channel. Anything with more
  than one volume is rejected.
* Label maps must lie on the grid of the first channel (``T1``): same shape, and every voxel
  centre within ``grid_tolerance_voxels`` (default 0.1) of a T1 voxel spacing of where T1
  puts it. That tolerance absorbs float rounding between sform/qform and tools, but not a
  real shift; nearest-neighbour resampling onto T1 (done in preprocessing) then cannot
  move a label by a voxel. Other channels (DWI) may lie on any grid that overlaps T1: they
  are resampled onto T1 by :func:`sap.data.preprocess.preprocessing`.
"""

from __future__ import annotations

import csv
import itertools
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from sap.labels import (
    CHANNELS,
    DEFAULT_CHANNEL_FILES,
    DEFAULT_LESION_FILE,
    DEFAULT_SKELETON_FILE,
    LESION_LABELS,
    SKELETON_LABELS,
)

if TYPE_CHECKING:
    import torchio as tio

#: Names of the label maps a case may carry, in the order they are reported.
LABEL_KINDS: tuple[str, ...] = ("skeleton", "lesion")

#: Label names used by :func:`validate_cases` when none are given for a label map.
DEFAULT_LABEL_NAMES: dict[str, tuple[str, ...]] = {
    "skeleton": SKELETON_LABELS,
    "lesion": LESION_LABELS,
}

_NIBABEL_SUFFIXES = (".nii", ".nii.gz", ".hdr", ".img", ".mgz", ".mgh")
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


@dataclass(frozen=True)
class CaseProblem:
    """One thing wrong with the input data, phrased for the person who has to fix it."""

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


# --------------------------------------------------------------------------------------
# Discovery
# --------------------------------------------------------------------------------------


def discover_cases(
    source: str | Path,
    layout: CaseLayout | None = None,
    require: Iterable[str] = (),
) -> list[Case]:
    """List the cases under ``source``.

    Only the file system is looked at here (no file is opened); :func:`validate_cases`
    checks the contents. Every problem found (missing channel files, missing required
    label maps, duplicate ids, ...) is collected and raised together.

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
    if source.is_file():
        cases, problems = _cases_from_manifest(source, layout)
    else:
        cases, problems = _cases_from_folder(source, layout)

    for case in cases:
        for kind in required:
            if case.labels.get(kind) is None:
                # Name the file we looked for (folder layout) or the manifest that lacks it.
                expected = (
                    source if source.is_file() else _case_folder(case) / layout.label_file(kind)
                )
                problems.append(
                    CaseProblem(
                        case.case_id,
                        expected,
                        f"required {kind} label map is missing",
                        f"add the {kind} label map, or leave this case out of the {kind} data set",
                    )
                )
    if problems:
        raise CaseValidationError(problems, context=f"in {source}")
    return cases


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
    problems = [
        _missing_file_problem(case_id, path, f"channel '{channel}'", layout)
        for channel, path in images.items()
        if not path.exists()  # a folder in its place is reported by validate_cases
    ]
    labels = {kind: folder / layout.label_file(kind) for kind in LABEL_KINDS}
    present = {kind: path if path.exists() else None for kind, path in labels.items()}
    return Case(case_id, images, present["skeleton"], present["lesion"]), problems


def _missing_file_problem(
    case_id: str, path: Path, what: str, layout: CaseLayout | None
) -> CaseProblem:
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
        elif layout is not None:
            hint = f"a case folder must hold {', '.join(layout.channel_file(c) for c in layout.channels)}"
    return CaseProblem(case_id, path, f"{what} file is missing", hint)


def _cases_from_manifest(
    manifest: Path, layout: CaseLayout
) -> tuple[list[Case], list[CaseProblem]]:
    delimiter = "\t" if manifest.suffix.lower() == ".tsv" else ","
    try:
        with manifest.open(newline="", encoding="utf-8-sig") as handle:
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

    needed = ["case_id", *layout.channels]
    missing_columns = [c for c in needed if c not in columns]
    if missing_columns:
        raise CaseValidationError(
            [
                CaseProblem(
                    None,
                    manifest,
                    f"manifest lacks column(s) {missing_columns} (found {columns})",
                    f"the header row must name {', '.join(needed)} and optionally skeleton, lesion",
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

    base = manifest.parent
    cases: list[Case] = []
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
            continue
        if case_id in first_row:
            problems.append(
                CaseProblem(
                    case_id,
                    manifest,
                    f"duplicate case_id in rows {first_row[case_id]} and {row_number}",
                    "case ids must be unique; merge or rename the rows",
                )
            )
            continue
        first_row[case_id] = row_number

        images: dict[str, Path] = {}
        for channel in layout.channels:
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
            images[channel] = _resolve(cell, base)
            if not images[channel].exists():
                problems.append(
                    _missing_file_problem(case_id, images[channel], f"channel '{channel}'", None)
                )
        labels: dict[str, Path | None] = {}
        for kind in LABEL_KINDS:
            cell = row.get(kind, "")
            labels[kind] = _resolve(cell, base) if cell else None
            if labels[kind] is not None and not labels[kind].exists():
                problems.append(
                    _missing_file_problem(case_id, labels[kind], f"{kind} label map", None)
                )
        cases.append(Case(case_id, images, labels["skeleton"], labels["lesion"]))
    return cases, problems


def _resolve(cell: str, base: Path) -> Path:
    path = Path(cell).expanduser()
    return path if path.is_absolute() else base / path


# --------------------------------------------------------------------------------------
# Validation
# --------------------------------------------------------------------------------------


class _Unreadable(Exception):
    """A file that cannot be opened or decoded; the message says why."""


class _Volume:
    """Lazy view of one image file: header now, voxels on demand (read once)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        if path.is_dir():
            raise _Unreadable(
                "is a folder, not an image file (a DICOM series?); convert it to NIfTI first, "
                "e.g. with dcm2niix"
            )
        if path.name.lower().endswith(_NIBABEL_SUFFIXES):
            self._open_nibabel()
        else:
            self._open_simpleitk()

    def _open_nibabel(self) -> None:
        import nibabel as nib

        try:
            self._image = nib.load(str(self.path))
            self.shape = tuple(int(n) for n in self._image.shape)
            self.affine = np.asarray(self._image.affine, dtype=np.float64)
        except Exception as error:  # nibabel raises many types for broken files
            raise _Unreadable(
                f"cannot read the image header ({type(error).__name__}: {error})"
            ) from error
        self._read = lambda: np.asanyarray(self._image.dataobj)

    def _open_simpleitk(self) -> None:
        import SimpleITK as sitk
        from torchio.data.io import get_ras_affine_from_sitk

        reader = sitk.ImageFileReader()
        reader.SetFileName(str(self.path))
        try:
            reader.ReadImageInformation()
        except RuntimeError as error:
            raise _Unreadable(
                f"cannot read the image header ({error.__class__.__name__})"
            ) from error
        size = tuple(int(n) for n in reader.GetSize())
        components = int(reader.GetNumberOfComponents())
        self.shape = size + ((components,) if components > 1 else ())
        self.affine = np.asarray(get_ras_affine_from_sitk(reader), dtype=np.float64)

        def read() -> np.ndarray:
            array = sitk.GetArrayFromImage(reader.Execute())
            spatial = len(size)
            # SimpleITK orders axes (z, y, x[, component]); TorchIO and nibabel use (x, y, z).
            return np.moveaxis(array, list(range(spatial)), list(reversed(range(spatial))))

        self._read = read

    def voxels(self) -> np.ndarray:
        try:
            return np.asarray(self._read())
        except Exception as error:  # truncated gzip, short file, bad compression, ...
            raise _Unreadable(
                f"the voxel data cannot be read ({type(error).__name__}: {error})"
            ) from error

    @property
    def spatial_shape(self) -> tuple[int, ...]:
        """Shape with trailing singleton dimensions dropped (but never below 3D)."""
        shape = list(self.shape)
        while len(shape) > 3 and shape[-1] == 1:
            shape.pop()
        return tuple(shape)

    @property
    def spacing_mm(self) -> np.ndarray:
        return np.linalg.norm(self.affine[:3, :3], axis=0)


def validate_cases(
    cases: Sequence[Case],
    label_names: Mapping[str, Sequence[str]] | None = None,
    *,
    check_voxels: bool = True,
    grid_tolerance_voxels: float = 0.1,
) -> None:
    """Check that every case can be loaded and trained on; raise one error listing all problems.

    Checks, per file: it exists and is readable; it holds a single 3D volume (trailing
    singleton dimensions are fine); its affine is invertible. With ``check_voxels`` (the
    default) the voxel data is read once per file, which also catches truncated files:
    images must be finite (no NaN/Inf) and not constant; label maps must hold integers
    within their label map. Label maps must lie on the first channel's grid (see the module
    docstring for the tolerance); other channels only need to overlap it in space.

    Args:
        cases: cases from :func:`discover_cases` (or built by hand).
        label_names: class names per label map, e.g. ``{"skeleton": SKELETON_LABELS}``;
            values must lie in ``0 .. len(names) - 1``. Missing entries default to
            :data:`DEFAULT_LABEL_NAMES` (the 10 SAP skeleton classes, background/lesion).
        check_voxels: read voxel data (slower: one full read per file). ``False`` checks
            headers only and then cannot see truncated files, NaNs or bad label values.
        grid_tolerance_voxels: how far (in units of the first channel's smallest voxel
            spacing) a label map's voxel centres may lie from the first channel's.

    Raises:
        CaseValidationError: listing every problem with its case, file and a fix.
    """
    names = dict(DEFAULT_LABEL_NAMES)
    for kind, values in (label_names or {}).items():
        if kind not in LABEL_KINDS:
            raise ValueError(f"label_names has unknown label map '{kind}'; use {LABEL_KINDS}.")
        names[kind] = tuple(values)
    if not cases:
        raise CaseValidationError(
            [CaseProblem(None, None, "no cases to validate", "check the data folder or manifest")]
        )

    problems: list[CaseProblem] = []
    seen: set[str] = set()
    for case in cases:
        if case.case_id in seen:
            problems.append(
                CaseProblem(case.case_id, None, "duplicate case id", "case ids must be unique")
            )
        seen.add(case.case_id)
        problems.extend(
            _validate_case(case, names, check_voxels=check_voxels, tolerance=grid_tolerance_voxels)
        )
    if problems:
        raise CaseValidationError(problems, context="in the input data")


def _validate_case(
    case: Case, label_names: Mapping[str, Sequence[str]], *, check_voxels: bool, tolerance: float
) -> list[CaseProblem]:
    problems: list[CaseProblem] = []

    def problem(path: Path | None, text: str, hint: str) -> None:
        problems.append(CaseProblem(case.case_id, path, text, hint))

    if not case.images:
        problem(None, "the case has no channel images", "give every case at least its T1 image")
        return problems

    reference: _Volume | None = None
    reference_name = case.channels[0]
    for index, (channel, path) in enumerate(case.images.items()):
        volume = _open_checked(path, f"channel '{channel}'", problem)
        if volume is None:
            continue
        if index == 0:
            reference = volume
        elif reference is not None and not _overlaps(volume, reference):
            problem(
                path,
                f"channel '{channel}' does not overlap {reference_name} in space",
                f"both images must come from the same exam and share a scanner frame; "
                f"check the affine/origin of {path.name}",
            )
        if check_voxels:
            _check_intensities(volume, channel, problem)

    for kind, path in case.labels.items():
        volume = _open_checked(path, f"{kind} label map", problem)
        if volume is None:
            continue
        if reference is not None:
            _check_grid(volume, kind, reference, reference_name, tolerance, problem)
        if check_voxels:
            _check_label_values(volume, kind, label_names[kind], problem)
    return problems


def _open_checked(path: Path, what: str, problem: Any) -> _Volume | None:
    if not path.exists() or path == Path():
        problem(path, f"{what} file is missing", "copy the file there or fix its path")
        return None
    try:
        volume = _Volume(path)
    except _Unreadable as error:
        problem(
            path,
            f"{what} is unreadable: {error}",
            "the file is damaged or not an image; re-export or re-copy it",
        )
        return None
    shape = volume.spatial_shape
    if len(shape) != 3:
        if len(shape) > 3:
            text = f"{what} is {len(shape)}D with shape {volume.shape}, expected one 3D volume"
            hint = "extract the single volume you need (e.g. the b=1000 image of a DWI series)"
        else:
            text = f"{what} is {len(shape)}D with shape {volume.shape}, expected a 3D volume"
            hint = "supply the whole 3D volume, not a slice"
        problem(path, text, hint)
        return None
    if abs(np.linalg.det(volume.affine[:3, :3])) < 1e-12:
        problem(
            path,
            f"{what} has a degenerate affine (zero voxel spacing):\n{volume.affine}",
            "fix the header's pixdim/sform",
        )
        return None
    return volume


def _check_intensities(volume: _Volume, channel: str, problem: Any) -> None:
    try:
        data = volume.voxels()
    except _Unreadable as error:
        problem(
            volume.path,
            f"channel '{channel}': {error}",
            "the file is probably truncated or corrupt; re-export or re-copy it",
        )
        return
    if np.issubdtype(data.dtype, np.complexfloating) or data.dtype.kind not in "biuf":
        problem(
            volume.path,
            f"channel '{channel}' has unsupported voxel type {data.dtype}",
            "store real-valued intensities",
        )
        return
    if data.dtype.kind == "f":
        finite = np.isfinite(data)
        if not finite.all():
            bad = int(finite.size - np.count_nonzero(finite))
            problem(
                volume.path,
                f"channel '{channel}' has {bad} NaN/Inf voxel(s)",
                "replace them (e.g. with 0) in the source image; they would poison normalisation and training",
            )
            return
    low, high = data.min(), data.max()
    if low == high:
        problem(
            volume.path,
            f"channel '{channel}' is constant (every voxel = {low})",
            "the export probably failed; re-export the image",
        )


def _check_label_values(volume: _Volume, kind: str, names: Sequence[str], problem: Any) -> None:
    try:
        data = volume.voxels()
    except _Unreadable as error:
        problem(
            volume.path,
            f"{kind} label map: {error}",
            "the file is probably truncated or corrupt; re-export or re-copy it",
        )
        return
    n_classes = len(names)
    legend = f"{n_classes} classes: 0 = {names[0]} ... {n_classes - 1} = {names[-1]}"
    if data.dtype.kind == "f":
        integral = np.isfinite(data) & (data == np.round(data))
        if not integral.all():
            examples = np.unique(data[~integral])[:5].tolist()
            problem(
                volume.path,
                f"{kind} label map has non-integer values (e.g. {examples})",
                "labels must be whole class numbers; if the map was resampled, use nearest-neighbour interpolation",
            )
            return
    elif data.dtype.kind not in "biu":
        problem(
            volume.path,
            f"{kind} label map has unsupported voxel type {data.dtype}",
            "store labels as integers",
        )
        return
    outside = (data < 0) | (data > n_classes - 1)
    if outside.any():
        values = np.unique(data[outside])
        shown = ", ".join(str(int(v)) for v in values[:10])
        problem(
            volume.path,
            f"{kind} label map has value(s) {shown} outside the label map ({legend})",
            f"relabel those voxels, or pass label_names with the {kind} class names your data uses",
        )


def _corners_mm(volume: _Volume) -> np.ndarray:
    """World coordinates (mm) of the 8 corner voxel centres, shape [8, 3]."""
    shape = volume.spatial_shape
    corners = np.array(list(itertools.product(*[(0, n - 1) for n in shape])), dtype=np.float64)
    return corners @ volume.affine[:3, :3].T + volume.affine[:3, 3]


def _check_grid(
    volume: _Volume,
    kind: str,
    reference: _Volume,
    reference_name: str,
    tolerance_voxels: float,
    problem: Any,
) -> None:
    hint = (
        f"a label map must be drawn on the {reference_name} image: use the label file that belongs "
        f"to this case's {reference_name}, or resample it onto {reference_name} with "
        "nearest-neighbour interpolation"
    )
    if volume.spatial_shape != reference.spatial_shape:
        problem(
            volume.path,
            f"{kind} label map has shape {volume.spatial_shape} but {reference_name} has "
            f"{reference.spatial_shape}",
            hint,
        )
        return
    # The map voxel -> world is affine, so its largest discrepancy is at a corner.
    offset_mm = float(np.linalg.norm(_corners_mm(volume) - _corners_mm(reference), axis=1).max())
    allowed_mm = tolerance_voxels * float(reference.spacing_mm.min())
    if offset_mm > allowed_mm:
        problem(
            volume.path,
            f"{kind} label map's grid is up to {offset_mm:.3g} mm away from {reference_name}'s "
            f"(allowed {allowed_mm:.3g} mm): the affines differ",
            hint,
        )


def _overlaps(volume: _Volume, reference: _Volume) -> bool:
    """Whether the two images' world bounding boxes (padded by half a voxel) intersect."""
    boxes = []
    for v in (volume, reference):
        corners = _corners_mm(v)
        pad = float(v.spacing_mm.max()) / 2
        boxes.append((corners.min(axis=0) - pad, corners.max(axis=0) + pad))
    (low_a, high_a), (low_b, high_b) = boxes
    return bool(np.all(low_a <= high_b) and np.all(low_b <= high_a))


# --------------------------------------------------------------------------------------
# TorchIO
# --------------------------------------------------------------------------------------


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
    "DEFAULT_LABEL_NAMES",
    "LABEL_KINDS",
    "Case",
    "CaseLayout",
    "CaseProblem",
    "CaseValidationError",
    "case_to_subject",
    "discover_cases",
    "validate_cases",
]
