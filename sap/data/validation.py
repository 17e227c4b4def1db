"""Check every file of every case before training starts; report all problems at once.

Why up front: a truncated file or a label map drawn on another scan otherwise surfaces hours
into training, deep inside a data-loader worker, as a stack trace that names neither the
case nor the file. :func:`validate_cases` reads every header and every voxel once (through
:func:`sap.volume.open_volume`) and raises one :class:`~sap.data.problems.CaseValidationError`.

Decisions worth knowing:

* A 4D file whose extra dimensions are all 1 (``X x Y x Z x 1``, as some converters write) is
  accepted: it holds one 3D volume. Anything with more than one volume is rejected.
* Label maps must lie on the grid of the first channel (``T1``): same shape, and every voxel
  centre within ``grid_tolerance_voxels`` (default 0.1) of a T1 voxel spacing of where T1
  puts it. That absorbs float rounding between sform/qform and tools, but not a real shift.
  Other channels (DWI) may lie on any grid that overlaps T1: preprocessing resamples them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np

from sap.data.cases import LABEL_KINDS, Case
from sap.data.problems import CaseProblem, CaseValidationError
from sap.labels import TASK_LABELS
from sap.volume import VolumeFile, VolumeReadError, grid_offset_mm, open_volume, overlap_in_space

#: Records one problem of the case being checked: ``report(path, problem, hint)``.
_Report = Callable[[Path | None, str, str], None]


def validate_cases(
    cases: Sequence[Case],
    label_names: Mapping[str, Sequence[str]] | None = None,
    *,
    check_voxels: bool = True,
    grid_tolerance_voxels: float = 0.1,
) -> None:
    """Check that every case can be loaded and trained on; raise one error listing all problems.

    Checks, per file: it exists and is readable; it holds a single 3D volume (trailing
    singleton dimensions are fine); its affine is finite and invertible. With
    ``check_voxels`` (the default) the voxel data is read once per file, which also catches
    truncated files: images must be finite (no NaN/Inf) and not constant; label maps must
    hold integers within their label map. Label maps must lie on the first channel's grid;
    other channels only need to overlap it in space.

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


def _validate_case(
    case: Case, label_names: Mapping[str, Sequence[str]], *, check_voxels: bool, tolerance: float
) -> list[CaseProblem]:
    problems: list[CaseProblem] = []

    def report(path: Path | None, text: str, hint: str) -> None:
        problems.append(CaseProblem(case.case_id, path, text, hint))

    if not case.images:
        report(None, "the case has no channel images", "give every case at least its T1 image")
        return problems

    reference: VolumeFile | None = None
    reference_name = case.channels[0]
    for index, (channel, path) in enumerate(case.images.items()):
        volume = _open(path, f"channel '{channel}'", report)
        if volume is None:
            continue
        if index == 0:
            reference = volume
        elif reference is not None:
            _check_overlap(volume, channel, reference, reference_name, report)
        if check_voxels:
            _check_intensities(volume, channel, report)

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


def _voxels(volume: VolumeFile, what: str, report: _Report) -> np.ndarray | None:
    try:
        return volume.voxels()
    except VolumeReadError as error:
        report(error.path, f"{what}: {error.problem}", error.hint)
        return None


def _check_overlap(
    volume: VolumeFile, channel: str, reference: VolumeFile, reference_name: str, report: _Report
) -> None:
    shared = overlap_in_space(
        volume.spatial_shape, volume.affine, reference.spatial_shape, reference.affine
    )
    if shared == 0:
        report(
            volume.path,
            f"channel '{channel}' does not overlap {reference_name} in space",
            f"both images must come from the same exam and share a scanner frame; "
            f"check the affine/origin of {volume.path.name}",
        )


def _check_intensities(volume: VolumeFile, channel: str, report: _Report) -> None:
    data = _voxels(volume, f"channel '{channel}'", report)
    if data is None:
        return
    if np.issubdtype(data.dtype, np.complexfloating) or data.dtype.kind not in "biuf":
        report(
            volume.path,
            f"channel '{channel}' has unsupported voxel type {data.dtype}",
            "store real-valued intensities",
        )
        return
    if data.dtype.kind == "f":
        finite = np.isfinite(data)
        if not finite.all():
            bad = int(finite.size - np.count_nonzero(finite))
            report(
                volume.path,
                f"channel '{channel}' has {bad} NaN/Inf voxel(s)",
                "replace them (e.g. with 0) in the source image; they would poison "
                "normalisation and training",
            )
            return
    low, high = data.min(), data.max()
    if low == high:
        report(
            volume.path,
            f"channel '{channel}' is constant (every voxel = {low})",
            "the export probably failed; re-export the image",
        )


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


__all__ = ["validate_cases"]
