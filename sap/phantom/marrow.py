"""Adult bone marrow for the phantom: red marrow, benign focal marrow lesions, subtler metastases.

The default phantom's marrow is uniformly fatty (T1-bright, DWI-dark), so inside bone a
metastasis (T1-dark, DWI-bright) stands out by its voxels alone: a voxel rule restricted to
the skeleton finds the lesions with Dice 0.93 (``benchmarks/phantom_appearance.py``). Real
whole-body MRI of the paper's cohort (men with metastatic prostate cancer) is not like that:

* **red (haematopoietic) marrow** persists in the adult axial skeleton and flat bones (spine,
  pelvis, sternum, scapulae, clavicles). It holds less fat, so it is darker on T1 than
  yellow marrow, though still brighter than muscle (the radiologist's rule for normal
  marrow), and brighter on DWI. It is patchy, and its share (cellularity) varies between
  people;
* **benign focal marrow lesions** (focal red-marrow islands, degenerative endplate change,
  atypical haemangiomas) are T1-intermediate and moderately DWI-bright: the mimics a reader
  must not call metastases;
* **osteoblastic (sclerotic) metastases**, the common kind in prostate cancer, hold less
  water than lytic ones and are less bright on DWI.

``marrow="adult"`` adds the three, with signal levels chosen from those facts (relative to the
phantom's tissue scale: muscle T1 0.35, fatty marrow T1 0.85 / DWI 0.07), before any model is
trained on the result. Mimics are bone in the skeleton label map and never lesion; healthy
volunteers have them too.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from sap.labels import SKELETON_LABELS
from sap.phantom.anatomy import Anatomy
from sap.phantom.geometry import Grid

#: Marrow models: ``"fatty"`` (the default phantom) or ``"adult"`` (this module).
MARROW_KINDS: tuple[str, ...] = ("fatty", "adult")
#: Regions whose marrow stays partly red in adults.
RED_MARROW_REGIONS: tuple[str, ...] = (
    "cervical_spine", "thoracic_spine", "lumbar_spine", "pelvis", "sternum", "scapulae",
    "clavicles",
)  # fmt: skip
#: (T1, DWI) of pure red marrow: below fatty marrow's T1, above muscle's (0.35); DWI above
#: fatty marrow's 0.07, well below the DWI-bright organs and metastases.
RED_MARROW_LEVEL: tuple[float, float] = (0.48, 0.28)
#: A subject's red-marrow share in those regions (cellularity), and its patchiness (the
#: voxel share varies by this standard deviation over a few voxels).
CELLULARITY_RANGE: tuple[float, float] = (0.2, 0.6)
CELLULARITY_PATCHINESS = 0.25
#: Benign focal marrow lesions per subject: Poisson mean; signal ranges (T1, DWI).
MIMIC_COUNT_MEAN = 3.0
MIMIC_T1_RANGE: tuple[float, float] = (0.30, 0.50)
MIMIC_DWI_RANGE: tuple[float, float] = (0.35, 0.65)
#: Metastases' DWI range with adult marrow (sclerotic ones less bright); default 0.65-1.15.
ADULT_LESION_DWI_RANGE: tuple[float, float] = (0.45, 1.15)
DEFAULT_LESION_DWI_RANGE: tuple[float, float] = (0.65, 1.15)


@dataclass(frozen=True)
class AdultMarrow:
    """Per-voxel marrow signal and the benign mimics of one subject.

    Attributes:
        levels: ``(2, X, Y, Z)`` float64 marrow level per channel (T1, DWI), used in bone.
        mimics: bool mask of the benign focal marrow lesions.
        info: cellularity and mimic count, for the case's subject record.
    """

    levels: np.ndarray
    mimics: np.ndarray
    info: dict[str, Any]


def check_marrow(marrow: str) -> str:
    """``marrow`` if it names a marrow model, else a ValueError listing them."""
    if marrow not in MARROW_KINDS:
        raise ValueError(f"marrow must be one of {MARROW_KINDS}, got {marrow!r}")
    return marrow


def adult_lesion_dwi(dwi_level: float) -> float:
    """A metastasis's DWI level with adult marrow: the default range stretched downwards.

    The lesion's own draw is kept (same random streams as the default phantom), mapped
    linearly from :data:`DEFAULT_LESION_DWI_RANGE` onto :data:`ADULT_LESION_DWI_RANGE`.
    """
    (a, b), (c, d) = DEFAULT_LESION_DWI_RANGE, ADULT_LESION_DWI_RANGE
    return c + (dwi_level - a) * (d - c) / (b - a)


def adult_marrow(
    rng: np.random.Generator,
    anatomy: Anatomy,
    grid: Grid,
    fatty_level: tuple[float, float],
    lesion_map: np.ndarray,
    min_voxels: int,
) -> AdultMarrow:
    """Red marrow and benign mimics for one subject (healthy or metastatic).

    Args:
        rng: the subject's marrow stream (independent of anatomy, lesions and noise).
        anatomy: the painted subject.
        grid: its voxel grid.
        fatty_level: the subject's fatty-marrow (T1, DWI) levels.
        lesion_map: its metastases (mimics keep one voxel away from them).
        min_voxels: smallest mimic, as for lesions.
    """
    from scipy import ndimage

    from sap.phantom.lesions import place_lesions, sample_lesion_volumes_ml
    from sap.phantom.signal import smooth_noise

    red_labels = [SKELETON_LABELS.index(name) for name in RED_MARROW_REGIONS]
    in_red_region = np.isin(anatomy.skeleton, red_labels)
    cellularity = float(rng.uniform(*CELLULARITY_RANGE))
    share = cellularity + CELLULARITY_PATCHINESS * smooth_noise(rng, grid.shape, cell=3)
    share = np.where(in_red_region, np.clip(share, 0.0, 1.0), 0.0)
    # Computed in float64 from the subject's fatty level: where the share is 0 the level is
    # that number exactly, so the signal there is bit for bit the default phantom's.
    fatty = np.asarray(fatty_level, dtype=np.float64)[:, None, None, None]
    red = np.asarray(RED_MARROW_LEVEL, dtype=np.float64)[:, None, None, None]
    levels = (1.0 - share) * fatty + share * red

    count = int(rng.poisson(MIMIC_COUNT_MEAN))
    mimics = np.zeros(grid.shape, dtype=bool)
    placed = 0
    if count:
        volumes = np.maximum(sample_lesion_volumes_ml(rng, count), min_voxels * grid.voxel_ml)
        index_map, found = place_lesions(rng, anatomy, grid, volumes, int(min_voxels))
        near_lesion = ndimage.binary_dilation(lesion_map > 0, np.ones((3, 3, 3), dtype=bool))
        for mimic in found:
            mask = (index_map == mimic.index) & ~near_lesion
            if not mask.any():
                continue
            t1 = rng.uniform(*MIMIC_T1_RANGE)
            dwi = rng.uniform(*MIMIC_DWI_RANGE)
            levels[0][mask], levels[1][mask] = t1, dwi
            mimics |= mask
            placed += 1
    info = {"cellularity": round(cellularity, 4), "mimics": placed}
    return AdultMarrow(levels=levels, mimics=mimics, info=info)


__all__ = [
    "ADULT_LESION_DWI_RANGE",
    "MARROW_KINDS",
    "RED_MARROW_LEVEL",
    "RED_MARROW_REGIONS",
    "AdultMarrow",
    "adult_lesion_dwi",
    "adult_marrow",
    "check_marrow",
]
