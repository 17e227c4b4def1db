"""Check every file of every case before it is used; report all problems at once.

One validation for training and prediction: :func:`validate_cases` (``sap fit``) checks whole
cohorts up front; ``sap predict`` runs the same channel checks per case
(:func:`open_channels`, then :func:`read_channel` after its memory check), so both accept and
refuse the same scans. Why up front: a truncated file or a label map drawn on another scan
otherwise surfaces hours into training, deep inside a data-loader worker, as a stack trace
that names neither the case nor the file. Every file goes through
:func:`sap.volume.open_volume`; problems are :class:`~sap.data.problems.CaseProblem` items.

Decisions worth knowing:

* A 4D file whose extra dimensions are all 1 (``X x Y x Z x 1``, as some converters write) is
  accepted: it holds one 3D volume. Anything with more than one volume is rejected.
* Label maps must lie on the grid of the first channel (``T1``): same shape, and every voxel
  centre within ``grid_tolerance_voxels`` (default 0.1) of a T1 voxel spacing of where T1
  puts it. That absorbs float rounding between sform/qform and tools, but not a real shift.
  Other channels (DWI) may lie on any grid that covers at least :data:`MIN_CHANNEL_OVERLAP`
  of T1's field of view: preprocessing resamples them, and where they are missing the model
  would see zeros.
* A voxel spacing outside :data:`PLAUSIBLE_SPACING_MM` is almost always a header written in
  metres or micrometres; every volume (and the minimum lesion volume) would be off by 10⁹.
  Training refuses it; prediction warns (:class:`ImplausibleSpacingWarning`) and goes on.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Literal

import numpy as np

from sap.data.cases import LABEL_KINDS, Case
from sap.data.problems import CaseProblem, CaseValidationError
from sap.labels import TASK_LABELS
from sap.volume import VolumeFile, VolumeReadError, grid_offset_mm, open_volume, overlap_in_space

#: Records one problem of the case being checked: ``report(path, problem, hint)``.
_Report = Callable[[Path | None, str, str], None]

#: Smallest fraction of the first channel's (T1's) field of view every other channel covers.
MIN_CHANNEL_OVERLAP = 0.7
#: Voxel spacing in mm that MRI plausibly has; outside it the header's unit is wrong.
PLAUSIBLE_SPACING_MM: tuple[float, float] = (0.2, 20.0)


class ImplausibleSpacingWarning(UserWarning):
    """An image's voxel spacing lies outside :data:`PLAUSIBLE_SPACING_MM`."""


def validate_cases(
    cases: Sequence[Case],
    label_names: Mapping[str, Sequence[str]] | None = None,
    *,
    check_voxels: bool = True,
    grid_tolerance_voxels: float = 0.1,
) -> None:
    """Check that every case can be loaded and trained on; raise one error listing all problems.

    Checks, per file: it exists and is readable; it holds a single 3D volume (trailing
    singleton dimensions are fine); its affine is finite and invertible, with a plausible
    voxel spacing. With ``check_voxels`` (the default) the voxel data is read once per file,
    which also catches truncated or corrupt files: images must be real-valued, finite (no
    NaN/Inf) and not constant; label maps must hold integers within their label map. Label
    maps must lie on the first channel's grid; other channels must cover most of it.

    Args:
        cases: cases from :func:`~sap.data.cases.discover_cases` (or built by hand).
        label_names: class names per label map, e.g. ``{"skeleton": SKELETON_LABELS}``;
            values must lie in ``0 .. len(names) - 1``. Missing entries default to
            :data:`sap.labels.TASK_LABELS` (the 10 SAP skeleton classes, background/lesion).
        check_voxels: read voxel data (slower: one full read per file). ``False`` checks
            headers only and then cannot see truncated files, NaNs or bad label values.
        grid_tolerance_voxels: how far (in units of the first channel's smallest voxel
            spacing) a label map's voxel centres may lie from the first channel's.

    Raises:
        CaseValidationError: listing every problem with its case, file and a fix.
    """
    names = dict(TASK_LABELS)
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


def open_channels(
    case_id: str,
    images: Mapping[str, Path | VolumeFile],
    *,
    implausible_spacing: Literal["refuse", "warn"] = "refuse",
) -> tuple[dict[str, VolumeFile], list[CaseProblem]]:
    """Open the channel images of one case (headers only) and check them against each other.

    Each file must be one readable 3D volume with a finite, invertible affine; every channel
    after the first must cover :data:`MIN_CHANNEL_OVERLAP` of the first one's field of view.

    Args:
        case_id: the case, for messages.
        images: channel -> file (or a :class:`~sap.volume.VolumeFile` already open), first
            channel first (the reference grid).
        implausible_spacing: a spacing outside :data:`PLAUSIBLE_SPACING_MM` is a problem
            (``"refuse"``, training) or an :class:`ImplausibleSpacingWarning` (``"warn"``).

    Returns:
        ``(volumes, problems)``: the files that opened, and what is wrong.
    """
    problems: list[CaseProblem] = []

    def report(path: Path | None, text: str, hint: str) -> None:
        problems.append(CaseProblem(case_id, path, text, hint))

    volumes: dict[str, VolumeFile] = {}
    reference_name = next(iter(images), "")
    for channel, source in images.items():
        what = f"channel '{channel}'"
        volume = source if isinstance(source, VolumeFile) else _open(source, what, report)
        if volume is None:
            continue
        volumes[channel] = volume
        spacing = _spacing_problem(volume, what)
        if spacing is not None and implausible_spacing == "refuse":
            report(volume.path, *spacing)
        elif spacing is not None:
            text = f"case '{case_id}', file {volume.path}: {spacing[0]} ({spacing[1]})"
            warnings.warn(text, ImplausibleSpacingWarning, stacklevel=2)
        if channel != reference_name and reference_name in volumes:
            _check_overlap(volume, channel, volumes[reference_name], reference_name, report)
    return volumes, problems


def read_channel(
    case_id: str, channel: str, volume: VolumeFile, dtype: np.dtype | type | None = None
) -> tuple[np.ndarray | None, list[CaseProblem]]:
    """Read one channel's voxels (once) and check them: real-valued, finite, not constant.

    Returns:
        ``(voxels or None, problems)``; voxels are cast to ``dtype`` when given.
    """
    problems: list[CaseProblem] = []

    def report(path: Path | None, text: str, hint: str) -> None:
        problems.append(CaseProblem(case_id, path, text, hint))

    what = f"channel '{channel}'"
    if volume.dtype is not None and not _real(volume.dtype):
        _unsupported(volume.path, what, volume.dtype, report)
        return None, problems
    data = _voxels(volume, what, report, dtype if volume.dtype is not None else None)
    if data is None:
        return None, problems
    if not _real(data.dtype):
        _unsupported(volume.path, what, data.dtype, report)
        return None, problems
    if dtype is not None:
        data = data.astype(dtype, copy=False)
    if not _check_intensities(data, volume.path, what, report):
        return None, problems
    return data, problems


def _validate_case(
    case: Case, label_names: Mapping[str, Sequence[str]], *, check_voxels: bool, tolerance: float
) -> list[CaseProblem]:
    if not case.images:
        hint = "give every case at least its T1 image"
        return [CaseProblem(case.case_id, None, "the case has no channel images", hint)]
    volumes, problems = open_channels(case.case_id, case.images)
    if check_voxels:
        for channel, volume in volumes.items():
            problems.extend(read_channel(case.case_id, channel, volume)[1])

    def report(path: Path | None, text: str, hint: str) -> None:
        problems.append(CaseProblem(case.case_id, path, text, hint))

    reference_name = case.channels[0]
    reference = volumes.get(reference_name)
    for kind, path in case.labels.items():
        volume = _open(path, f"{kind} label map", report)
        if volume is None:
            continue
        if reference is not None:
            _check_grid(volume, kind, reference, reference_name, tolerance, report)
        if check_voxels:
            _check_label_values(volume, kind, label_names[kind], report)
    return problems


def _open(path: Path, what: str, report: _Report) -> VolumeFile | None:
    try:
        return open_volume(path, what)
    except VolumeReadError as error:
        report(error.path, error.problem, error.hint)
        return None


def _voxels(
    volume: VolumeFile, what: str, report: _Report, dtype: np.dtype | type | None = None
) -> np.ndarray | None:
    try:
        return volume.voxels(dtype)
    except VolumeReadError as error:
        report(error.path, f"{what}: {error.problem}", error.hint)
        return None


def _real(dtype: np.dtype) -> bool:
    return np.dtype(dtype).kind in "biuf"


def _unsupported(path: Path, what: str, dtype: np.dtype, report: _Report) -> None:
    report(path, f"{what} has unsupported voxel type {dtype}", "store real-valued intensities")


def _spacing_problem(volume: VolumeFile, what: str) -> tuple[str, str] | None:
    low, high = PLAUSIBLE_SPACING_MM
    spacing = volume.spacing_mm
    if np.all((spacing >= low) & (spacing <= high)):
        return None
    shown = " x ".join(f"{s:.4g}" for s in spacing)
    return (
        f"{what} has voxel spacing {shown} mm, outside the plausible MRI range {low:g}-{high:g} mm",
        "the header's unit is probably wrong (metres or micrometres instead of mm); fix "
        "pixdim and the sform/qform so the spacing is in mm",
    )


def _check_overlap(
    volume: VolumeFile, channel: str, reference: VolumeFile, reference_name: str, report: _Report
) -> None:
    covered = overlap_in_space(
        reference.spatial_shape, reference.affine, volume.spatial_shape, volume.affine
    )
    if covered >= MIN_CHANNEL_OVERLAP:
        return
    hint = (
        f"both images must come from the same exam and share a scanner frame; check the "
        f"affine/origin of {volume.path.name}"
    )
    if covered == 0:
        report(volume.path, f"channel '{channel}' does not overlap {reference_name} in space", hint)
    else:
        report(
            volume.path,
            f"channel '{channel}' covers only {covered:.0%} of {reference_name}'s field of view "
            f"(at least {MIN_CHANNEL_OVERLAP:.0%} needed)",
            hint,
        )


def _check_intensities(data: np.ndarray, path: Path, what: str, report: _Report) -> bool:
    """Report non-finite or constant intensities; True when the data is usable."""
    low, high = data.min(), data.max()  # NaN and infinities show here: no mask of the volume
    if data.dtype.kind == "f" and not (np.isfinite(low) and np.isfinite(high)):
        bad = int(data.size - np.count_nonzero(np.isfinite(data)))
        report(
            path,
            f"{what} has {bad} NaN/Inf voxel(s)",
            "replace them (e.g. with 0) in the source image; they would poison "
            "normalisation and the model",
        )
        return False
    if low == high:
        report(
            path,
            f"{what} is constant (every voxel = {low})",
            "the export probably failed; re-export the image",
        )
        return False
    return True


def _check_label_values(
    volume: VolumeFile, kind: str, names: Sequence[str], report: _Report
) -> None:
    data = _voxels(volume, f"{kind} label map", report)
    if data is None:
        return
    n_classes = len(names)
    legend = f"{n_classes} classes: 0 = {names[0]} ... {n_classes - 1} = {names[-1]}"
    if data.dtype.kind == "f":
        integral = np.isfinite(data) & (data == np.round(data))
        if not integral.all():
            examples = np.unique(data[~integral])[:5].tolist()
            report(
                volume.path,
                f"{kind} label map has non-integer values (e.g. {examples})",
                "labels must be whole class numbers; if the map was resampled, use "
                "nearest-neighbour interpolation",
            )
            return
    elif data.dtype.kind not in "biu":
        report(
            volume.path,
            f"{kind} label map has unsupported voxel type {data.dtype}",
            "store labels as integers",
        )
        return
    outside = (data < 0) | (data > n_classes - 1)
    if outside.any():
        shown = ", ".join(str(int(v)) for v in np.unique(data[outside])[:10])
        report(
            volume.path,
            f"{kind} label map has value(s) {shown} outside the label map ({legend})",
            f"relabel those voxels, or pass label_names with the {kind} class names your data uses",
        )


def _check_grid(
    volume: VolumeFile,
    kind: str,
    reference: VolumeFile,
    reference_name: str,
    tolerance_voxels: float,
    report: _Report,
) -> None:
    hint = (
        f"a label map must be drawn on the {reference_name} image: use the label file that belongs "
        f"to this case's {reference_name}, or resample it onto {reference_name} with "
        "nearest-neighbour interpolation"
    )
    if volume.spatial_shape != reference.spatial_shape:
        report(
            volume.path,
            f"{kind} label map has shape {volume.spatial_shape} but {reference_name} has "
            f"{reference.spatial_shape}",
            hint,
        )
        return
    offset_mm = grid_offset_mm(
        volume.spatial_shape, volume.affine, reference.spatial_shape, reference.affine
    )
    allowed_mm = tolerance_voxels * float(reference.spacing_mm.min())
    if offset_mm > allowed_mm:
        report(
            volume.path,
            f"{kind} label map's grid is up to {offset_mm:.3g} mm away from {reference_name}'s "
            f"(allowed {allowed_mm:.3g} mm): the affines differ",
            hint,
        )


__all__ = [
    "MIN_CHANNEL_OVERLAP",
    "PLAUSIBLE_SPACING_MM",
    "ImplausibleSpacingWarning",
    "open_channels",
    "read_channel",
    "validate_cases",
]
