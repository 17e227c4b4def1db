"""Find, pair, load and check the files of a folder evaluation: predictions against references.

Layouts (``docs/metrics.md``, "Folders"):

- references: ``REF/<case_id>/lesion.nii.gz`` (the standard case layout; the file name is
  ``ref_file``). Case folders without it (healthy volunteers) are skipped, or scored against
  an empty reference with ``healthy_as_empty``. Non-zero voxels are lesion.
- predictions: ``PRED/<case_id>.nii.gz`` (or ``.nii``), or a case folder holding
  ``lesion.nii.gz`` (binary masks) or ``lesion_probability.nii.gz`` (``prob=True``), on the
  grid of the reference.

Files are read through :mod:`sap.volume` (one checked reader); every error names the case.
A reference case folder's ``T1.nii.gz`` (when present, on the reference grid) gives a rough
body mask for the degenerate-prediction flags and the background of the case pictures.
"""

from __future__ import annotations

import math
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sap.labels import DEFAULT_CHANNEL_FILES, DEFAULT_LESION_FILE, LESION_PROBABILITY_FILE
from sap.volume import VolumeFile, VolumeReadError, grid_offset_mm, open_volume

#: Name of a binary prediction inside a case folder.
PREDICTION_FILE = DEFAULT_LESION_FILE
#: Name of a lesion probability map inside a case folder (what ``sap predict`` writes).
PROBABILITY_FILE = LESION_PROBABILITY_FILE
#: Endings of a prediction file named after its case.
NIFTI_SUFFIXES: tuple[str, ...] = (".nii.gz", ".nii")
#: Input scans of a case folder; a prediction beside them suggests a reference cohort.
INPUT_SCAN_FILES: tuple[str, ...] = tuple(DEFAULT_CHANNEL_FILES.values())
#: Prediction and reference are one grid when their voxel centres are this close (in voxels).
GRID_TOLERANCE_VOXELS = 0.1
#: How far outside [0, 1] a probability map may read and still be one: a ``uint8`` map with
#: ``scl_slope = 1/255`` (what ``sap predict`` writes) reads 255 as 1.00000006, because the
#: NIfTI header stores the slope as float32. Such values are clipped to [0, 1].
PROBABILITY_TOLERANCE = 1e-6
#: Image of a reference case folder that gives the body mask and the pictures' background.
BODY_IMAGE_FILE = DEFAULT_CHANNEL_FILES["T1"]


class EvaluationWarning(UserWarning):
    """Something a folder evaluation went on with but the user should know about."""


@dataclass(frozen=True)
class CaseFiles:
    """The files of one evaluated case; ``reference`` is None for a lesion-free (healthy) case.

    ``folder`` is the reference case folder (where :func:`load_body_image` looks).
    """

    case_id: str
    prediction: Path
    reference: Path | None
    folder: Path | None = None


@dataclass(frozen=True)
class CaseMatch:
    """Cases found in both folders (sorted by id), and reference folders without a reference."""

    cases: tuple[CaseFiles, ...]
    skipped: tuple[str, ...]

    @property
    def case_ids(self) -> list[str]:
        return [case.case_id for case in self.cases]


def find_predictions(pred_dir: str | Path, *, prob: bool) -> dict[str, Path]:
    """Prediction file of each case id in ``pred_dir`` (both layouts, see the module doc)."""
    pred_dir = Path(pred_dir)
    if not pred_dir.is_dir():
        raise FileNotFoundError(f"Prediction folder {pred_dir} does not exist or is not a folder.")
    wanted = PROBABILITY_FILE if prob else PREDICTION_FILE
    found: dict[str, Path] = {}
    for entry in sorted(pred_dir.iterdir()):
        if entry.name.startswith((".", "_")):
            continue
        if entry.is_file():
            case_id, path = _case_id_of_file(entry), entry
        elif entry.is_dir() and (entry / wanted).is_file():
            case_id, path = entry.name, entry / wanted
        else:
            continue
        if case_id is None:
            continue
        if case_id in found:
            raise ValueError(
                f"Case {case_id!r} has two predictions in {pred_dir}: {found[case_id]} and {path}; "
                f"keep one."
            )
        found[case_id] = path
    return found


def match_cases(
    pred_dir: str | Path,
    ref_dir: str | Path,
    *,
    prob: bool,
    ref_file: str = DEFAULT_LESION_FILE,
    healthy_as_empty: bool = False,
) -> CaseMatch:
    """Pair predictions with references by case id.

    Every reference case needs a prediction; predictions without a reference are ignored
    with an :class:`EvaluationWarning`.
    """
    pred_dir, ref_dir = Path(pred_dir), Path(ref_dir)
    if not ref_dir.is_dir():
        raise FileNotFoundError(f"Reference folder {ref_dir} does not exist or is not a folder.")
    predictions = find_predictions(pred_dir, prob=prob)
    references, skipped = _find_references(ref_dir, ref_file, healthy_as_empty)
    missing = sorted(c for c in references if c not in predictions)
    if missing:
        example = missing[0]
        wanted = PROBABILITY_FILE if prob else PREDICTION_FILE
        raise FileNotFoundError(
            f"No prediction for {len(missing)} reference case(s): {_some(missing)}. Expected "
            f"e.g. {pred_dir}/{example}.nii.gz or {pred_dir}/{example}/{wanted}."
        )
    extra = sorted(c for c in predictions if c not in references and c not in skipped)
    if extra:
        warnings.warn(
            f"ignoring {len(extra)} prediction(s) without a reference in {ref_dir}: {_some(extra)}",
            EvaluationWarning,
            stacklevel=2,
        )
    cases = tuple(
        CaseFiles(c, predictions[c], references[c], ref_dir / c) for c in sorted(references)
    )
    _check_predictions_are_not_references(cases, pred_dir)
    return CaseMatch(cases, tuple(skipped))


def _check_predictions_are_not_references(cases: tuple[CaseFiles, ...], pred_dir: Path) -> None:
    """Refuse a reference scored against itself; warn when predictions sit beside scans."""
    same = [
        c for c in cases if c.reference is not None and os.path.samefile(c.prediction, c.reference)
    ]
    if same:
        raise ValueError(
            f"The prediction of {len(same)} case(s) is the reference file itself (e.g. "
            f"{same[0].prediction}): every score would be perfect. --pred must be the folder of "
            "predictions (the OUT of sap predict), not the reference cohort."
        )
    beside_scans = sorted(
        c.case_id
        for c in cases
        if any((c.prediction.parent / name).exists() for name in INPUT_SCAN_FILES)
        and c.prediction.parent != pred_dir
    )
    if beside_scans:
        warnings.warn(
            f"{len(beside_scans)} prediction(s) lie next to input scans ({_some(beside_scans)}; "
            f"e.g. {pred_dir / beside_scans[0]}): is {pred_dir} a cohort of references rather "
            "than predictions?",
            EvaluationWarning,
            stacklevel=3,
        )


def load_case(
    case: CaseFiles, *, prob: bool, role: str = ""
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Prediction, reference and the prediction's affine of one case, checked.

    Args:
        case: the files.
        prob: the prediction is a probability map (values in [0, 1]); else a binary mask.
        role: a word for messages (``"tuning"``).

    Returns:
        ``(prediction, reference, affine)``; the reference is all zeros for a healthy case.

    Raises:
        ValueError: a file is unreadable (a :class:`sap.volume.VolumeReadError` with the
            case named), the grids differ, or the values do not fit ``prob``.
    """
    prefix = f"{role} " if role else ""
    try:
        pred_file = open_volume(
            case.prediction, prefix + ("probability map" if prob else "prediction")
        )
        ref_file = None
        if case.reference is not None:
            ref_file = open_volume(case.reference, f"{prefix}reference")
            check_same_grid(case.case_id, pred_file, ref_file)
        pred = pred_file.voxels()
        ref = np.zeros(pred.shape, dtype=bool) if ref_file is None else ref_file.voxels()
    except VolumeReadError as error:
        raise ValueError(f"Case {case.case_id!r}: {error}") from error
    if prob:
        pred = check_probabilities(case.case_id, case.prediction, pred)
    else:
        check_binary(case.case_id, case.prediction, pred)
    return pred, ref, pred_file.affine


def load_body_image(
    case: CaseFiles, shape: tuple[int, ...], name: str | None = BODY_IMAGE_FILE
) -> np.ndarray | None:
    """The image ``name`` of the case's reference folder, if it is there and on the grid.

    Optional input: a missing file gives None; an unreadable one, or one of another shape,
    gives None and an :class:`EvaluationWarning` naming the file (the evaluation goes on
    without a body mask).
    """
    if name is None or case.folder is None or not (case.folder / name).is_file():
        return None
    path = case.folder / name
    try:
        image = open_volume(path, "body image").voxels(np.float32)
    except VolumeReadError as error:
        problem = str(error)
    else:
        if image.shape[:3] == tuple(shape) and image.ndim == 3:
            return image
        problem = f"{path} has shape {image.shape}, the reference {tuple(shape)}"
    warnings.warn(
        f"case {case.case_id!r}: {problem}; its degenerate-prediction check uses the whole "
        "volume instead of the body.",
        EvaluationWarning,
        stacklevel=2,
    )
    return None


def check_same_grid(case_id: str, pred: VolumeFile, ref: VolumeFile) -> None:
    """Raise a ValueError naming the case when prediction and reference grids differ."""
    offset = grid_offset_mm(pred.spatial_shape, pred.affine, ref.spatial_shape, ref.affine)
    if math.isinf(offset):
        raise ValueError(
            f"Case {case_id!r}: prediction {pred.path} has shape {pred.spatial_shape} but "
            f"reference {ref.path} has shape {ref.spatial_shape}. Predictions must be on the "
            f"reference grid (resample them, or predict in the input space of the reference)."
        )
    if offset > GRID_TOLERANCE_VOXELS * float(ref.spacing_mm.min()):
        raise ValueError(
            f"Case {case_id!r}: prediction {pred.path} and reference {ref.path} have the same "
            f"shape but different affines (voxel centres up to {offset:.3g} mm apart, more than "
            f"a tenth of a voxel). They are not on the same grid; resample the prediction onto "
            f"the reference."
        )


def check_binary(case_id: str, path: Path, data: np.ndarray) -> None:
    """Refuse float data that is not 0/1: it is a probability map."""
    if data.dtype.kind == "f" and not np.all((data == 0) | (data == 1)):
        raise ValueError(
            f"Case {case_id!r}: prediction {path} holds values other than 0 and 1; it looks "
            f"like a probability map. Evaluate it as one: prob=True (sap evaluate --prob, with "
            f"--threshold or --tune-on)."
        )


def check_probabilities(case_id: str, path: Path, data: np.ndarray) -> np.ndarray:
    """``data`` clipped to [0, 1]; refuse maps further outside than :data:`PROBABILITY_TOLERANCE`.

    >>> check_probabilities("a", Path("p.nii.gz"), np.array([0.0, 255 * np.float32(1 / 255)]))
    array([0., 1.])
    """
    low, high = float(np.min(data)), float(np.max(data))
    if (
        low < -PROBABILITY_TOLERANCE
        or high > 1.0 + PROBABILITY_TOLERANCE
        or not np.isfinite([low, high]).all()
    ):
        raise ValueError(
            f"Case {case_id!r}: probability map {path} has values in [{low:.9g}, {high:.9g}], "
            f"not [0, 1]. Save softmax probabilities of the lesion class, not logits."
        )
    if low < 0.0 or high > 1.0:
        return np.clip(data, 0.0, 1.0)
    return data


def _find_references(
    ref_dir: Path, ref_file: str, healthy_as_empty: bool
) -> tuple[dict[str, Path | None], list[str]]:
    references: dict[str, Path | None] = {}
    skipped: list[str] = []
    for folder in sorted(
        p for p in ref_dir.iterdir() if p.is_dir() and not p.name.startswith((".", "_"))
    ):
        if (folder / ref_file).is_file():
            references[folder.name] = folder / ref_file
        elif healthy_as_empty:
            references[folder.name] = None
        else:
            skipped.append(folder.name)
    if not references:
        raise FileNotFoundError(
            f"No reference cases in {ref_dir}: expected case folders holding {ref_file} "
            f"({ref_dir}/<case_id>/{ref_file})."
        )
    return references, skipped


def _case_id_of_file(path: Path) -> str | None:
    for suffix in NIFTI_SUFFIXES:
        if path.name.endswith(suffix):
            return path.name[: -len(suffix)]
    return None


def _some(case_ids: list[str], n: int = 10) -> str:
    return ", ".join(case_ids[:n]) + (", ..." if len(case_ids) > n else "")


__all__ = [
    "BODY_IMAGE_FILE",
    "NIFTI_SUFFIXES",
    "PREDICTION_FILE",
    "PROBABILITY_FILE",
    "CaseFiles",
    "CaseMatch",
    "EvaluationWarning",
    "check_binary",
    "check_probabilities",
    "check_same_grid",
    "find_predictions",
    "load_body_image",
    "load_case",
    "match_cases",
]
