"""Read a whole-body exam from DICOM series folders, one series per input channel.

Scanners export one series per sequence; a case is a folder holding the T1 and the b1000
series (in sub-folders or mixed in one folder). Each series is found by its
SeriesInstanceUID, matched to a channel by its SeriesDescription (or folder name), read with
SimpleITK and turned into exactly what reading the NIfTI that SimpleITK would write gives:
a float32 array in (i, j, k) order and a RAS+ affine. So a DICOM exam and its NIfTI
conversion produce the same prediction.

Checks, each with a message that says what to do:

* every channel matches exactly one series (none or several: list what was found, and how
  to name the series explicitly, e.g. ``--dicom-series b1000="DWI b1000 WB"``);
* a series is one 3D volume on a regular grid: slices equally spaced along their normal, no
  two at the same position (several b-values or time points in one series), same size;
* the series belong together: same PatientID and StudyInstanceUID.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

#: Words that identify a channel in a SeriesDescription or folder name, compared after
#: lower-casing and dropping everything but letters and digits ("DWI b=1000" -> "dwib1000").
DEFAULT_ALIASES: dict[str, tuple[str, ...]] = {
    "T1": ("t1",),
    "b1000": ("b1000",),
}

_FLIP_XY = np.diag([-1.0, -1.0, 1.0])


class DicomSeriesError(ValueError):
    """The DICOM input cannot be turned into the model's channels; the message says why."""


@dataclass(frozen=True)
class DicomSeries:
    """One DICOM series on disk.

    Attributes:
        folder: folder holding its files.
        series_uid: SeriesInstanceUID.
        description: SeriesDescription (may be empty).
        files: slice files, sorted by GDCM along the slice normal.
        patient_id, study_uid: identity, compared across the series of a case.
    """

    folder: Path
    series_uid: str
    description: str
    files: tuple[Path, ...]
    patient_id: str
    study_uid: str

    def __str__(self) -> str:
        return (
            f"'{self.description or '(no description)'}' ({len(self.files)} files in {self.folder})"
        )


def _normalise(text: str) -> str:
    return re.sub(r"[^a-z0-9]", "", text.lower())


def _sitk():
    import SimpleITK as sitk

    return sitk


def _series_ids(folder: str) -> tuple[str, ...]:
    """GDCM's series ids in one folder, without ITK's console warning for folders without any."""
    sitk = _sitk()
    shown = sitk.ProcessObject.GetGlobalWarningDisplay()
    sitk.ProcessObject.SetGlobalWarningDisplay(False)
    try:
        return tuple(sitk.ImageSeriesReader.GetGDCMSeriesIDs(folder))
    finally:
        sitk.ProcessObject.SetGlobalWarningDisplay(shown)


def find_dicom_series(root: str | Path) -> list[DicomSeries]:
    """Every DICOM series under ``root`` (recursively), in folder order."""
    import pydicom

    sitk = _sitk()
    root = Path(root)
    found: list[DicomSeries] = []
    for folder, dirs, files in os.walk(root):
        dirs.sort()
        if not files:
            continue
        for uid in _series_ids(folder):
            files = tuple(
                Path(f) for f in sitk.ImageSeriesReader.GetGDCMSeriesFileNames(folder, uid)
            )
            header = pydicom.dcmread(files[0], stop_before_pixels=True)
            found.append(
                DicomSeries(
                    folder=Path(folder),
                    series_uid=str(uid),
                    description=str(getattr(header, "SeriesDescription", "") or ""),
                    files=files,
                    patient_id=str(getattr(header, "PatientID", "") or ""),
                    study_uid=str(getattr(header, "StudyInstanceUID", "") or ""),
                )
            )
    return found


def contains_dicom(folder: str | Path) -> bool:
    """Whether ``folder`` or a sub-folder holds at least one DICOM series."""
    return any(files and _series_ids(f) for f, _, files in os.walk(folder))


def match_series(
    series: Sequence[DicomSeries],
    channels: Sequence[str],
    explicit: Mapping[str, str] | None = None,
    aliases: Mapping[str, Sequence[str]] | None = None,
    where: str = "",
) -> dict[str, DicomSeries]:
    """Assign one series to each channel.

    Args:
        series: the candidates (:func:`find_dicom_series`).
        channels: the model's channel names, in order.
        explicit: channel -> SeriesDescription, SeriesInstanceUID or folder path; channels
            listed here are not guessed.
        aliases: channel -> words to look for in descriptions and folder names; defaults to
            :data:`DEFAULT_ALIASES` (a channel without an entry is looked for by its name).
        where: the input folder, for messages.

    Raises:
        DicomSeriesError: a channel matches no series, or several.
    """
    aliases = dict(DEFAULT_ALIASES if aliases is None else aliases)
    explicit = dict(explicit or {})
    unknown = sorted(set(explicit) - set(channels))
    if unknown:
        raise DicomSeriesError(
            f"Explicit DICOM series given for unknown channel(s) {unknown}; the model's "
            f"channels are {list(channels)}."
        )
    listing = "\n".join(f"  - {s}" for s in series) or "  (none)"
    chosen: dict[str, DicomSeries] = {}
    for channel in channels:
        if channel in explicit:
            spec = explicit[channel]
            spec_path = Path(spec)
            candidates = [
                s
                for s in series
                if s.series_uid == spec
                or s.description.strip().lower() == spec.strip().lower()
                or (spec_path.is_absolute() and s.folder.resolve() == spec_path.resolve())
                or (where and s.folder.resolve() == (Path(where) / spec).resolve())
            ]
            how = f"given as {spec!r}"
        else:
            words = [_normalise(w) for w in aliases.get(channel, (channel,))]
            candidates = [s for s in series if any(w in _normalise(s.description) for w in words)]
            if not candidates:  # fall back to folder names ("T1/", "b1000/")
                candidates = [
                    s for s in series if any(w in _normalise(s.folder.name) for w in words)
                ]
            how = f"looked for {words} in series descriptions and folder names"
        if len(candidates) != 1:
            what = "no DICOM series" if not candidates else f"{len(candidates)} DICOM series"
            raise DicomSeriesError(
                f"Channel '{channel}': {what} found in {where or 'the input'} ({how}). "
                f"Series found:\n{listing}\nName the series of each channel explicitly, e.g. "
                f'--dicom-series {channel}="<SeriesDescription or folder>".'
            )
        chosen[channel] = candidates[0]
    duplicates = [c for c in channels if list(chosen.values()).count(chosen[c]) > 1]
    if duplicates:
        raise DicomSeriesError(
            f"Channels {duplicates} were all matched to the same series {chosen[duplicates[0]]}; "
            "name the series of each channel explicitly with --dicom-series."
        )
    return chosen


def check_series_belong_together(chosen: Mapping[str, DicomSeries]) -> None:
    """Raise when the series come from different patients or exams."""
    for attribute, what in (("patient_id", "PatientID"), ("study_uid", "StudyInstanceUID")):
        values = {channel: getattr(s, attribute) for channel, s in chosen.items()}
        if len(set(values.values())) > 1:
            shown = ", ".join(f"{c}: {v!r} ({chosen[c].folder})" for c, v in values.items())
            raise DicomSeriesError(
                f"The DICOM series do not belong to the same exam: {what} differs ({shown}). "
                "Put only the series of one exam in the case folder."
            )


def _check_slice_geometry(series: DicomSeries) -> None:
    """One 3D volume on a regular grid: equal slice steps, no repeated positions."""
    import pydicom

    if len(series.files) < 2:
        return  # a single (possibly multi-frame) file: GDCM reads its own geometry
    positions, orientations, sizes = [], set(), set()
    for path in series.files:
        header = pydicom.dcmread(
            path,
            stop_before_pixels=True,
            specific_tags=["ImagePositionPatient", "ImageOrientationPatient", "Rows", "Columns"],
        )
        if "ImagePositionPatient" not in header or "ImageOrientationPatient" not in header:
            raise DicomSeriesError(
                f"DICOM series {series}: file {path} has no ImagePositionPatient / "
                "ImageOrientationPatient, so the slices cannot be placed in space."
            )
        positions.append([float(v) for v in header.ImagePositionPatient])
        orientations.add(tuple(round(float(v), 4) for v in header.ImageOrientationPatient))
        sizes.add((int(header.Rows), int(header.Columns)))
    if len(orientations) > 1 or len(sizes) > 1:
        raise DicomSeriesError(
            f"DICOM series {series} mixes slice orientations or sizes; it is not one 3D volume. "
            "Export each volume as its own series."
        )
    row, col = np.array(next(iter(orientations))).reshape(2, 3)
    normal = np.cross(row, col)
    offsets = np.sort(np.asarray(positions) @ normal)
    steps = np.diff(offsets)
    if np.any(steps < 1e-3):
        repeats = int(np.sum(steps < 1e-3))
        raise DicomSeriesError(
            f"DICOM series {series} has {repeats} slice(s) at an already used position: it holds "
            "several volumes (b-values, echoes or time points), a 4D series. Export the "
            "b=1000 (or T1) volume as its own series, or convert it to a 3D NIfTI."
        )
    if steps.max() - steps.min() > max(0.01 * np.median(steps), 1e-3):
        raise DicomSeriesError(
            f"DICOM series {series} has unequal slice spacing ({steps.min():.3g} to "
            f"{steps.max():.3g} mm): slices are missing or the series is not one volume."
        )


def read_series(series: DicomSeries) -> tuple[np.ndarray, np.ndarray]:
    """Read a series as a float32 ``(i, j, k)`` array and its RAS+ affine, like its NIfTI.

    SimpleITK works in LPS (DICOM); NIfTI in RAS+: the affine is the ITK direction times
    spacing with its first two rows negated, as SimpleITK's NIfTI writer does.
    """
    _check_slice_geometry(series)
    sitk = _sitk()
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames([str(f) for f in series.files])
    try:
        image = reader.Execute()
    except RuntimeError as error:
        raise DicomSeriesError(f"Could not read DICOM series {series}: {error}") from error
    if image.GetDimension() != 3 or image.GetNumberOfComponentsPerPixel() != 1:
        raise DicomSeriesError(
            f"DICOM series {series} is not a single-component 3D image "
            f"(dimension {image.GetDimension()}, {image.GetNumberOfComponentsPerPixel()} components)."
        )
    data = sitk.GetArrayFromImage(sitk.Cast(image, sitk.sitkFloat32)).transpose(2, 1, 0)
    direction = np.array(image.GetDirection(), np.float64).reshape(3, 3)
    affine = np.eye(4)
    affine[:3, :3] = _FLIP_XY @ direction * np.array(image.GetSpacing(), np.float64)
    affine[:3, 3] = _FLIP_XY @ np.array(image.GetOrigin(), np.float64)
    return np.ascontiguousarray(data), affine


def load_dicom_case(
    root: str | Path,
    channels: Sequence[str],
    explicit: Mapping[str, str] | None = None,
    aliases: Mapping[str, Sequence[str]] | None = None,
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Read the series of one exam: channel -> (float32 array, RAS+ affine).

    Raises:
        DicomSeriesError: no series, unmatched or ambiguous channels, series from different
            exams, or a series that is not one regular 3D volume.
    """
    root = Path(root)
    series = find_dicom_series(root)
    if not series:
        raise DicomSeriesError(f"No DICOM series found in {root} or its sub-folders.")
    chosen = match_series(series, channels, explicit, aliases, where=str(root))
    check_series_belong_together(chosen)
    return {channel: read_series(chosen[channel]) for channel in channels}


__all__ = [
    "DEFAULT_ALIASES",
    "DicomSeries",
    "DicomSeriesError",
    "check_series_belong_together",
    "contains_dicom",
    "find_dicom_series",
    "load_dicom_case",
    "match_series",
    "read_series",
]
