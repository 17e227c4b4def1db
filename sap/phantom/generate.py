"""Generate one phantom case in memory from its seed.

The case seed is split into four independent random streams (anatomy, lesions, contrast,
noise), so a healthy and a metastatic case with the same seed share one body, and adding
lesions never changes the anatomy. The steps: draw a subject (:mod:`sap.phantom.subject`),
paint it (:mod:`sap.phantom.body`), place lesions (:mod:`sap.phantom.lesions`), then make
the MR signal (:mod:`sap.phantom.signal`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from sap.phantom.anatomy import TISSUE
from sap.phantom.body import build_anatomy
from sap.phantom.case import PhantomCase
from sap.phantom.geometry import Grid
from sap.phantom.lesions import draw_lesions
from sap.phantom.marrow import adult_lesion_dwi, adult_marrow, check_marrow
from sap.phantom.signal import coarse_affine, sample_signal, synthesize
from sap.phantom.subject import sample_subject

#: Default grid: 96 x 60 x 192 voxels of 5 x 5 x 6 mm = a 480 x 300 x 1152 mm field of view
#: (vertex to mid-thigh of an adult, arms included); ~1.1 M voxels, small enough for CPU training.
DEFAULT_SHAPE: tuple[int, int, int] = (96, 60, 192)
DEFAULT_SPACING_MM: tuple[float, float, float] = (5.0, 5.0, 6.0)
#: Smallest lesion, in voxels (see the voxel-size clamp in :mod:`sap.phantom.lesions`).
MIN_LESION_VOXELS = 4
#: Most lesions per metastatic patient.
MAX_LESIONS = 30


def check_grid_args(
    shape: Sequence[int], spacing_mm: Sequence[float], dwi_downsample: int | Sequence[int]
) -> tuple[tuple[int, int, int], tuple[float, float, float], tuple[int, int, int]]:
    """Checked grid arguments: (shape, spacing_mm, DWI factors per axis), or a ValueError."""
    shape_t = tuple(int(n) for n in shape)
    if len(shape_t) != 3 or min(shape_t) < 8 or any(int(n) != n for n in shape):
        raise ValueError(
            f"shape must be 3 whole numbers of voxels, each >= 8, got {tuple(shape)}; "
            f"the default is {DEFAULT_SHAPE}"
        )
    spacing_t = tuple(float(s) for s in spacing_mm)
    if len(spacing_t) != 3 or not all(math.isfinite(s) and s > 0 for s in spacing_t):
        raise ValueError(
            f"spacing_mm must be 3 positive voxel sizes in mm, got {tuple(spacing_mm)}; "
            f"the default is {DEFAULT_SPACING_MM}"
        )
    factors = (
        (int(dwi_downsample),) * 3
        if isinstance(dwi_downsample, int | np.integer)
        else tuple(int(f) for f in dwi_downsample)
    )
    if len(factors) != 3 or min(factors) < 1:
        raise ValueError(
            f"dwi_downsample must be one whole factor >= 1 or three of them, got {dwi_downsample!r}"
        )
    return shape_t, spacing_t, factors


def make_grid(
    shape: Sequence[int] = DEFAULT_SHAPE, spacing_mm: Sequence[float] = DEFAULT_SPACING_MM
) -> Grid:
    """The phantom's voxel grid: RAS+, field of view centred on the scanner origin."""
    shape_t, spacing_t, _ = check_grid_args(shape, spacing_mm, 1)
    origin = tuple(-(n - 1) / 2 * s for n, s in zip(shape_t, spacing_t))
    return Grid(shape_t, spacing_t, origin)


def generate_case(
    seed: int,
    *,
    metastatic: bool,
    case_id: str = "phantom",
    shape: Sequence[int] = DEFAULT_SHAPE,
    spacing_mm: Sequence[float] = DEFAULT_SPACING_MM,
    dwi_downsample: int | Sequence[int] = 1,
    max_lesions: int = MAX_LESIONS,
    min_lesion_voxels: int = MIN_LESION_VOXELS,
    marrow: str = "fatty",
) -> PhantomCase:
    """Generate one subject in memory.

    Args:
        seed: the case's seed; the same seed and arguments give byte-identical arrays.
        metastatic: draw lesions (1 to ``max_lesions``, heavy-tailed) in labelled bone.
        case_id: name stored in the result (the folder name when written).
        shape: voxels along (L->R, P->A, I->S).
        spacing_mm: voxel size (mm) along the same axes. A field of view (shape x spacing)
            smaller than an adult shrinks the body to fit.
        dwi_downsample: acquire b1000 on a grid this many times coarser (per axis or one
            factor for all), to exercise resampling of DWI onto T1; 1 = same grid as T1.
        max_lesions: cap on lesions per patient.
        min_lesion_voxels: smallest lesion in voxels (voxel-size clamp on sampled volumes).
        marrow: ``"fatty"`` (uniform fatty marrow) or ``"adult"``: red marrow in the axial
            skeleton, benign focal marrow lesions and less DWI-bright metastases, so that
            lesions are no longer told from marrow by their voxels alone
            (:mod:`sap.phantom.marrow`). The anatomy, lesion placement and noise are the same.

    Returns:
        A :class:`~sap.phantom.case.PhantomCase`.

    A coarse grid (24 mm voxels) keeps the example fast:

    >>> case = generate_case(0, metastatic=True, shape=(20, 14, 48), spacing_mm=(24, 24, 24))
    >>> case.t1.shape, case.skeleton.dtype.name, case.spacing_mm
    ((20, 14, 48), 'uint8', (24.0, 24.0, 24.0))
    >>> case.metastatic, len(case.lesions) == case.summary()["lesion_count"]
    (True, True)
    """
    shape_t, spacing_t, factors = check_grid_args(shape, spacing_mm, dwi_downsample)
    if int(max_lesions) < 1 or int(min_lesion_voxels) < 1:
        raise ValueError(
            f"max_lesions and min_lesion_voxels must be >= 1, got {max_lesions} and "
            f"{min_lesion_voxels}"
        )
    check_marrow(marrow)
    grid = make_grid(shape_t, spacing_t)
    # A fifth stream for the adult marrow: the first four are those of the default phantom.
    streams = [np.random.default_rng(s) for s in np.random.SeedSequence(int(seed)).spawn(5)]
    anatomy_rng, lesion_rng, signal_rng, noise_rng, marrow_rng = streams
    subject = sample_subject(anatomy_rng, grid)
    anatomy = build_anatomy(grid, subject)
    lesion_map = np.zeros(grid.shape, dtype=np.int16)
    lesions = []
    if metastatic:
        lesion_map, lesions = draw_lesions(
            lesion_rng, anatomy, grid, max_lesions, min_lesion_voxels
        )
    signal = sample_signal(signal_rng)
    levels = [(lesion.t1_level, lesion.dwi_level) for lesion in lesions]
    marrow_levels = None
    if marrow == "adult":
        adult = adult_marrow(
            marrow_rng, anatomy, grid, tuple(signal["marrow"]), lesion_map, min_lesion_voxels
        )
        marrow_levels = adult.levels
        levels = [(t1, adult_lesion_dwi(dwi)) for t1, dwi in levels]
        signal["adult_marrow"] = adult.info
    t1, b1000 = synthesize(
        noise_rng, signal, anatomy, lesion_map, levels, factors, marrow_levels=marrow_levels
    )
    tissue = anatomy.tissue
    tissue[lesion_map > 0] = TISSUE["lesion"]
    return PhantomCase(
        case_id=case_id,
        seed=int(seed),
        t1=t1,
        b1000=b1000,
        skeleton=anatomy.skeleton,
        lesion=(lesion_map > 0).astype(np.uint8) if metastatic else None,
        affine=grid.affine,
        b1000_affine=coarse_affine(grid.affine, factors),
        tissue=tissue,
        body=anatomy.body,
        lesions=[lesion.record() for lesion in lesions],
        subject={"anatomy": _jsonable(subject), "signal": _jsonable(signal)},
    )


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return _jsonable(value.tolist())
    if isinstance(value, np.floating | float):
        return round(float(value), 5)
    if isinstance(value, np.integer):
        return int(value)
    return value


__all__ = [
    "DEFAULT_SHAPE",
    "DEFAULT_SPACING_MM",
    "MAX_LESIONS",
    "MIN_LESION_VOXELS",
    "check_grid_args",
    "generate_case",
    "make_grid",
]
