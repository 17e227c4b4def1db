"""What the user points at, turned into cases and each case into its channel images.

A *source* (what ``sap predict`` takes) holds cases: a case folder, a folder of case folders,
a CSV manifest, or DICOM series folders (:func:`resolve_inputs`). One *case* (what
:meth:`~sap.inference.predictor.Predictor.predict` takes) is a :class:`sap.data.cases.Case`,
``{channel: path}``, a case folder or a folder of DICOM series (:func:`open_case`). Image
files go through :func:`sap.volume.read_volume`; every error names the case and the channel.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from sap.inference.dicom import (
    DicomSeriesError,
    contains_dicom,
    find_dicom_series,
    load_dicom_case,
    match_series,
)
from sap.volume import VolumeFile

CaseInput = Any
"""A :class:`sap.data.cases.Case`, ``{channel: path}``, a case folder or a DICOM folder."""


class InputError(ValueError):
    """An input scan cannot be used as it is; the message names the file and the fix."""


@dataclass(frozen=True)
class CaseSource:
    """One case of a source: its id and what :meth:`Predictor.predict` takes."""

    case_id: str
    source: Any


def resolve_inputs(
    source: str | Path,
    channels: Sequence[str],
    dicom_series: Mapping[str, str] | None = None,
) -> list[CaseSource]:
    """The cases in ``source``: a case folder, a folder of case folders, a CSV manifest, or
    DICOM series folders (one exam, or one sub-folder per exam).

    Raises:
        InputError / CaseValidationError / DicomSeriesError: nothing usable is found; the
            message says what was looked for.
    """
    from sap.data.cases import CaseLayout, discover_cases

    path = Path(source).expanduser()
    layout = CaseLayout(channels=tuple(channels))
    if not path.exists():
        raise InputError(f"Input {path} does not exist.")
    if path.is_file():
        return [CaseSource(c.case_id, c) for c in discover_cases(path, layout)]

    def is_case_folder(folder: Path) -> bool:
        return all((folder / layout.channel_file(c)).exists() for c in channels)

    subfolders = sorted(
        p for p in path.iterdir() if p.is_dir() and not p.name.startswith((".", "_"))
    )
    if is_case_folder(path) or any(is_case_folder(p) for p in subfolders):
        return [CaseSource(c.case_id, c) for c in discover_cases(path, layout)]
    if contains_dicom(path):
        series = find_dicom_series(path)
        try:
            match_series(series, channels, dicom_series, where=str(path))
            return [CaseSource(path.name, path)]
        except DicomSeriesError:
            exams = [p for p in subfolders if contains_dicom(p)]
            single_level = all(s.folder == path for s in series)
            if single_level or len(exams) < 2:
                raise
            return [CaseSource(p.name, p) for p in exams]
    expected = [layout.channel_file(c) for c in channels]
    raise InputError(
        f"Input {path} holds no case: expected a case folder with {expected}, a folder of such "
        "case folders, a CSV manifest, or DICOM series (one per channel)."
    )


@dataclass
class CaseChannels:
    """The channel images of one case, in the model's channel order.

    Checked by the validation ``sap fit`` uses (:mod:`sap.data.validation`): headers when
    first asked (:meth:`header`: readable 3D volumes, finite affines, channels overlapping
    T1, a warning for an implausible spacing), voxels when read (:meth:`read`: real, finite,
    not constant, an intact gzip stream). Each file's header and voxels are read once.

    Attributes:
        case_id: name of the case.
        sources: channel -> image file (read on demand), or ``(float32 array, RAS+ affine)``
            read from a DICOM series.
    """

    case_id: str
    sources: dict[str, Path | tuple[np.ndarray, np.ndarray]]
    _volumes: dict[str, VolumeFile] | None = field(default=None, init=False, repr=False)

    def header(self, channel: str) -> tuple[tuple[int, ...], np.ndarray]:
        """``(shape, affine)`` of a channel, from the file header only."""
        volume = self._open()[channel]
        return volume.spatial_shape, volume.affine

    def read(self, channel: str) -> tuple[np.ndarray, np.ndarray]:
        """``(float32 voxels, affine)`` of a channel: one 3D volume with finite values."""
        from sap.data.validation import read_channel

        volume = self._open()[channel]
        data, problems = read_channel(self.case_id, channel, volume, np.float32)
        if data is None:
            raise self._error(problems)
        return data, volume.affine

    def _open(self) -> dict[str, VolumeFile]:
        """Open and check every channel's header, once."""
        from sap.data.validation import open_channels

        if self._volumes is None:
            images = {c: _as_volume(c, value) for c, value in self.sources.items()}
            volumes, problems = open_channels(self.case_id, images, implausible_spacing="warn")
            if problems:
                raise self._error(problems)
            self._volumes = volumes
        return self._volumes

    def _error(self, problems: Sequence[Any]) -> InputError:
        return InputError(
            "\n".join(f"Case '{self.case_id}', {p.problem} ({p.path}); {p.hint}." for p in problems)
        )


def _as_volume(channel: str, value: Path | tuple[np.ndarray, np.ndarray]) -> Path | VolumeFile:
    """A DICOM channel's array as a :class:`VolumeFile`, so that it is checked like a file."""
    if not isinstance(value, tuple):
        return value
    data, affine = value
    where = Path(f"<DICOM series of channel '{channel}'>")

    def read(dtype: np.dtype | type | None) -> np.ndarray:
        return data if dtype is None else np.asarray(data, dtype=dtype)

    return VolumeFile(where, tuple(data.shape), np.asarray(affine), read, data.dtype)


def _named_channels(
    images: Mapping[str, Any], channels: Sequence[str], case_id: str
) -> dict[str, Path]:
    """``images`` in ``channels`` order, or an InputError naming missing and extra ones."""
    missing = [c for c in channels if c not in images]
    extra = [c for c in images if c not in channels]
    if missing or extra:
        raise InputError(
            f"Case '{case_id}' has channels {list(images)} but the model takes {list(channels)} "
            f"(missing {missing}, unexpected {extra}). Name the input images after the "
            "model's channels, in any order."
        )
    return {c: Path(images[c]) for c in channels}


def open_case(
    source: CaseInput,
    channels: Sequence[str],
    dicom_series: Mapping[str, str] | None = None,
) -> CaseChannels:
    """Find the images of one case for ``channels`` (DICOM series are read here).

    Args:
        source: a :class:`sap.data.cases.Case`, ``{channel: path}``, a case folder or a
            folder of DICOM series (one per channel).
        channels: the model's channel names, in order.
        dicom_series: for DICOM input, channel -> SeriesDescription / UID / folder.

    Raises:
        InputError: missing or extra channels, or a path that is no case.
        sap.inference.dicom.DicomSeriesError: DICOM series missing, ambiguous or mismatched.
    """
    from sap.data.cases import Case, CaseLayout, discover_cases

    channels = list(channels)
    if isinstance(source, Case):
        images = _named_channels(dict(source.images), channels, source.case_id)
        return CaseChannels(source.case_id, images)
    if isinstance(source, Mapping):
        paths = {str(k): Path(v) for k, v in source.items()}
        first = paths.get(channels[0], next(iter(paths.values()), Path("case")))
        case_id = first.resolve().parent.name or "case"
        return CaseChannels(case_id, _named_channels(paths, channels, case_id))
    path = Path(source)
    if not path.exists():
        raise InputError(f"Input {path} does not exist.")
    if path.is_file():
        raise InputError(
            f"Input {path} is a file; Predictor.predict takes one case: a case folder, a "
            "DICOM folder, a Case or {channel: path}. Use sap.inference.resolve_inputs "
            "for a CSV manifest or a folder of cases."
        )
    layout = CaseLayout(channels=tuple(channels))
    if all((path / layout.channel_file(c)).is_file() for c in channels):
        (case,) = discover_cases(path, layout)
        return CaseChannels(case.case_id, _named_channels(case.images, channels, case.case_id))
    if contains_dicom(path):
        return CaseChannels(path.name, dict(load_dicom_case(path, channels, dicom_series)))
    expected = [layout.channel_file(c) for c in channels]
    found = sorted(p.name for p in path.iterdir())[:10]
    raise InputError(
        f"Input folder {path} holds neither the NIfTI files {expected} nor DICOM series "
        f"(found {found}). The model needs channels {channels}."
    )


__all__ = [
    "CaseChannels",
    "CaseInput",
    "CaseSource",
    "InputError",
    "open_case",
    "resolve_inputs",
]
