"""Write predictions as NIfTI files on the input T1 grid, atomically, never over existing ones.

Label maps are ``uint8`` with the T1's exact affine and the same names as the training
layout (``lesion.nii.gz``, ``skeleton.nii.gz``), so a prediction folder can be evaluated like
a reference folder. Probability maps are stored as ``uint8`` with the NIfTI scale factor
``scl_slope = 1/255``: every reader that applies the scale (nibabel, ITK, 3D Slicer) sees
probabilities in [0, 1] with a 0.004 step, at a quarter of float32's size on disk and in memory.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from sap.inference.spill import release_pages
from sap.io import OutputFolderError, atomic_write, save_nifti_atomic
from sap.labels import DEFAULT_CHANNEL_FILES, TASK_LABEL_FILES

PROBABILITY_STEPS = 255


class OutputExistsError(FileExistsError):
    """Outputs exist already and overwriting was not asked for."""


def probability_file(task: str, class_name: str, single: bool) -> str:
    """``<task>_probability.nii.gz`` for a single map, else ``<task>_probability_<class>.nii.gz``.

    >>> from sap.labels import LESION_PROBABILITY_FILE
    >>> probability_file("lesion", "lesion", single=True) == LESION_PROBABILITY_FILE
    True
    """
    return f"{task}_probability.nii.gz" if single else f"{task}_probability_{class_name}.nii.gz"


def prediction_paths(
    folder: str | Path,
    task: str,
    probability_names: Sequence[str] | Mapping[str, object],
    save_probabilities: bool,
) -> dict[str, Path]:
    """Where a prediction's files go: ``{"labels": ..., "probability:<class>": ...}``.

    The label map has the name of the training layout (:data:`sap.labels.TASK_LABEL_FILES`).

    >>> sorted(prediction_paths("out", "lesion", ["lesion"], True).values())
    [PosixPath('out/lesion.nii.gz'), PosixPath('out/lesion_probability.nii.gz')]
    """
    folder = Path(folder)
    paths = {"labels": folder / TASK_LABEL_FILES[task]}
    if save_probabilities:
        names = list(probability_names)
        for name in names:
            paths[f"probability:{name}"] = folder / probability_file(task, name, len(names) == 1)
    return paths


def check_outputs_free(paths: Sequence[Path], overwrite: bool) -> None:
    """Raise :class:`OutputExistsError` naming every existing output unless ``overwrite``."""
    if overwrite:
        return
    existing = [str(p) for p in paths if Path(p).exists()]
    if existing:
        shown = "\n".join(f"  - {p}" for p in existing[:20])
        more = f"\n  ... and {len(existing) - 20} more" if len(existing) > 20 else ""
        raise OutputExistsError(
            f"{len(existing)} output file(s) exist already:\n{shown}{more}\n"
            "Nothing was written. Pass --overwrite (Python: overwrite=True) to replace them, "
            "or choose another output folder."
        )


def check_not_beside_inputs(folder: str | Path) -> None:
    """Refuse a folder that holds input scans: predictions there would pass for references."""
    folder = Path(folder)
    scans = [name for name in DEFAULT_CHANNEL_FILES.values() if (folder / name).exists()]
    if scans:
        raise OutputFolderError(
            f"{folder} holds input scans ({', '.join(scans)}); a prediction written there "
            "would read as a reference label to the next `sap fit`. Save predictions into a "
            "folder of their own."
        )


def save_probability_atomic(probability: np.ndarray, affine: np.ndarray, path: str | Path) -> Path:
    """Save a [0, 1] probability map as ``uint8`` with ``scl_slope = 1/255``, atomically."""
    import nibabel as nib

    quantised = np.empty(probability.shape, dtype=np.uint8)
    # In place, in slabs: no whole-volume float32 temporary.
    for k in range(0, probability.shape[-1], 32):
        part = np.asarray(probability[..., k : k + 32], dtype=np.float32)
        quantised[..., k : k + 32] = np.rint(np.clip(part, 0.0, 1.0) * PROBABILITY_STEPS)
    release_pages(probability)  # a spilled map: its pages leave RAM again
    image = nib.Nifti1Image(quantised, np.asarray(affine, np.float64))
    image.header.set_data_dtype(np.uint8)
    image.header.set_slope_inter(1.0 / PROBABILITY_STEPS, 0.0)
    image.set_qform(image.affine, code=1)
    image.set_sform(image.affine, code=1)
    return atomic_write(path, lambda tmp: nib.save(image, str(tmp)))


def write_maps(
    paths: Mapping[str, Path],
    labels: np.ndarray,
    affine: np.ndarray,
    probabilities: Mapping[str, np.ndarray],
) -> list[Path]:
    """Write the label map and the probability maps named by :func:`prediction_paths`.

    Args:
        paths: from :func:`prediction_paths`.
        labels: ``uint8`` label map on the grid of ``affine``.
        affine: voxel-to-scanner matrix of the input T1.
        probabilities: class name -> probability map, for the ``probability:<class>`` paths.

    Returns:
        The files written, label map first.

    Raises:
        OutputFolderError: the folder holds input scans (``T1.nii.gz``, ``b1000.nii.gz``): a
            predicted ``lesion.nii.gz`` there would read as a reference label.
    """
    check_not_beside_inputs(Path(paths["labels"]).parent)
    written = [save_nifti_atomic(labels, affine, paths["labels"], dtype=np.uint8)]
    for key, path in paths.items():
        if key.startswith("probability:"):
            name = key.split(":", 1)[1]
            written.append(save_probability_atomic(probabilities[name], affine, path))
    return written


__all__ = [
    "OutputExistsError",
    "check_not_beside_inputs",
    "check_outputs_free",
    "prediction_paths",
    "probability_file",
    "save_probability_atomic",
    "write_maps",
]
