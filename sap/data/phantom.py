"""Synthetic whole-body MRI cohorts: the phantom every `sap` feature can run on.

A phantom case is a two-channel whole-body MRI (``T1``, ``b1000``) of a synthetic adult from
vertex to upper thigh, with the skeleton labelled in the paper's 9 regions and, for metastatic
cases, bone metastases labelled as lesions. It is written in the same folder layout as real
data (see :mod:`sap.data.cases`), so discovery, validation, preprocessing, training, inference
and evaluation run on it without special cases::

    cohort/
      cohort.json                 parameters, seeds, per-case lesion count and volumes (mL)
      healthy_000/  T1.nii.gz  b1000.nii.gz  skeleton.nii.gz  [preview.png]
      metastatic_000/  T1.nii.gz  b1000.nii.gz  skeleton.nii.gz  lesion.nii.gz  [preview.png]

Images are float32 in arbitrary scanner units; ``skeleton`` is uint8 0..9 (indices of
``sap.labels.SKELETON_LABELS``), ``lesion`` uint8 0/1. Affines are RAS+ with the array axes
running left->right, posterior->anterior, inferior->superior and anisotropic voxels.

What is realistic and what is not: the contrasts that matter for SAP are modelled (marrow
T1-bright/DWI-dark, lesions T1-dark/DWI-bright, DWI-bright organs, cord and lymph nodes outside
bone), as are the lesion statistics of the paper (heavy-tailed count, median ~0.5 mL, about a
quarter >= 1 mL; see :mod:`sap.data._phantom_lesions` for the voxel-size clamp) and per-subject
size, pose, intensity, bias field and noise. Bone shapes are simple solids: good enough to
learn "where is bone and which bone", not an anatomical atlas. Ribs, skull, forearms and tibiae
are drawn as (unlabelled) bone, as in the paper's label maps; lesions are placed only in the
9 labelled regions.

Determinism: case ``k`` of a kind ("healthy"/"metastatic") of a cohort with seed ``S`` is
generated from its own seed, derived from (S, kind, k) only, so it is the same whatever the
number of other cases. Anatomy, lesions, contrast and noise use separate random streams, so
a healthy and a metastatic case with the same case seed share one body.
"""

from __future__ import annotations

import json
import math
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from sap.data._phantom_anatomy import TISSUE, TISSUES, build_anatomy, sample_subject
from sap.data._phantom_geometry import Grid
from sap.data._phantom_lesions import (
    COUNT_EXTRA_MEAN,
    COUNT_SHAPE,
    REGION_WEIGHTS,
    VOLUME_LOG_SD,
    VOLUME_MEDIAN_ML,
    VOLUME_RANGE_ML,
    place_lesions,
    sample_lesion_count,
    sample_lesion_volumes_ml,
)
from sap.data._phantom_render import render_case_png
from sap.data._phantom_signal import coarse_affine, sample_signal, synthesize
from sap.io import save_nifti_atomic, write_text_atomic
from sap.labels import (
    DEFAULT_CHANNEL_FILES,
    DEFAULT_LESION_FILE,
    DEFAULT_SKELETON_FILE,
    LESION_LABELS,
    SKELETON_LABELS,
)

#: Default grid: 96 x 60 x 192 voxels of 5 x 5 x 6 mm = a 480 x 300 x 1152 mm field of view
#: (vertex to mid-thigh of an adult, arms included); ~1.1 M voxels, small enough for CPU training.
DEFAULT_SHAPE: tuple[int, int, int] = (96, 60, 192)
DEFAULT_SPACING_MM: tuple[float, float, float] = (5.0, 5.0, 6.0)
#: Smallest lesion, in voxels (see the voxel-size clamp in :mod:`sap.data._phantom_lesions`).
MIN_LESION_VOXELS = 4
MAX_LESIONS = 30
PREVIEW_FILE = "preview.png"
COHORT_FILE = "cohort.json"
KINDS: tuple[str, ...] = ("healthy", "metastatic")
_WRITTEN_FILES = (
    *DEFAULT_CHANNEL_FILES.values(),
    DEFAULT_SKELETON_FILE,
    DEFAULT_LESION_FILE,
    PREVIEW_FILE,
)


@dataclass
class PhantomCase:
    """One generated subject, in memory.

    Attributes:
        case_id: folder name, e.g. ``"metastatic_003"``.
        seed: the case's own seed (``generate_case(seed)`` rebuilds it).
        t1, b1000: images, float32; ``b1000`` may be on a coarser grid (``b1000_affine``).
        skeleton: uint8 bone labels 0..9 on the T1 grid.
        lesion: uint8 0/1 lesion mask on the T1 grid, or None for a healthy case.
        affine, b1000_affine: 4x4 RAS+ voxel-to-world matrices (mm).
        tissue: uint8 tissue classes (:data:`TISSUES`), for tests and inspection; not written.
        body: boolean body outline, likewise.
        lesions: one dict per lesion: region, bone, volume_ml, voxels, centre_mm, ...
        subject: sampled anatomy, pose and signal parameters.
    """

    case_id: str
    seed: int
    t1: np.ndarray
    b1000: np.ndarray
    skeleton: np.ndarray
    lesion: np.ndarray | None
    affine: np.ndarray
    b1000_affine: np.ndarray
    tissue: np.ndarray
    body: np.ndarray
    lesions: list[dict[str, Any]] = field(default_factory=list)
    subject: dict[str, Any] = field(default_factory=dict)

    @property
    def metastatic(self) -> bool:
        return self.lesion is not None

    @property
    def spacing_mm(self) -> tuple[float, float, float]:
        return tuple(float(s) for s in np.linalg.norm(self.affine[:3, :3], axis=0))

    def summary(self) -> dict[str, Any]:
        """The case's entry in ``cohort.json``."""
        volumes = sorted((lesion["volume_ml"] for lesion in self.lesions), reverse=True)
        return {
            "case_id": self.case_id,
            "kind": "metastatic" if self.metastatic else "healthy",
            "seed": self.seed,
            "lesion_count": len(self.lesions),
            "lesion_volumes_ml": volumes,
            "total_lesion_volume_ml": round(float(sum(volumes)), 4),
            "lesions": self.lesions,
            "body_scale": [round(s, 4) for s in self.subject["anatomy"]["body_scale"]],
            "fit_to_fov": round(self.subject["anatomy"]["fit_to_fov"], 4),
        }


def case_seed(seed: int, kind: str, index: int) -> int:
    """Seed of case ``index`` of ``kind`` in a cohort with ``seed`` (independent of cohort size)."""
    if kind not in KINDS:
        raise ValueError(f"case kind must be one of {KINDS}, got {kind!r}")
    sequence = np.random.SeedSequence([int(seed), KINDS.index(kind), int(index)])
    return int(sequence.generate_state(1, dtype=np.uint32)[0])


def _check_grid_args(
    shape: Sequence[int], spacing_mm: Sequence[float], dwi_downsample: int | Sequence[int]
) -> tuple[tuple[int, int, int], tuple[float, float, float], tuple[int, int, int]]:
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
    shape_t, spacing_t, _ = _check_grid_args(shape, spacing_mm, 1)
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

    Returns:
        A :class:`PhantomCase`.
    """
    shape_t, spacing_t, factors = _check_grid_args(shape, spacing_mm, dwi_downsample)
    if int(max_lesions) < 1 or int(min_lesion_voxels) < 1:
        raise ValueError(
            f"max_lesions and min_lesion_voxels must be >= 1, got {max_lesions} and "
            f"{min_lesion_voxels}"
        )
    grid = make_grid(shape_t, spacing_t)
    streams = [np.random.default_rng(s) for s in np.random.SeedSequence(int(seed)).spawn(4)]
    anatomy_rng, lesion_rng, signal_rng, noise_rng = streams
    subject = sample_subject(anatomy_rng, grid)
    anatomy = build_anatomy(grid, subject)
    lesion_map = np.zeros(grid.shape, dtype=np.int16)
    lesions = []
    if metastatic:
        count = sample_lesion_count(lesion_rng, int(max_lesions))
        volumes = sample_lesion_volumes_ml(lesion_rng, count)
        volumes = np.maximum(volumes, min_lesion_voxels * grid.voxel_ml)
        lesion_map, lesions = place_lesions(
            lesion_rng, anatomy, grid, volumes, int(min_lesion_voxels)
        )
    signal = sample_signal(signal_rng)
    t1, b1000 = synthesize(
        noise_rng,
        signal,
        anatomy,
        lesion_map,
        [(lesion.t1_level, lesion.dwi_level) for lesion in lesions],
        factors,
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
        lesions=[
            {
                "region": lesion.region,
                "bone": lesion.bone,
                "volume_ml": lesion.volume_ml,
                "target_volume_ml": lesion.target_volume_ml,
                "voxels": lesion.voxels,
                "centre_mm": list(lesion.centre_mm),
            }
            for lesion in lesions
        ],
        subject={"anatomy": _jsonable(subject), "signal": _jsonable(signal)},
    )


def write_case(case: PhantomCase, folder: str | Path, render_png: bool = False) -> Path:
    """Write ``case`` in the standard layout into ``folder`` (atomically, file by file)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    save_nifti_atomic(case.t1, case.affine, folder / DEFAULT_CHANNEL_FILES["T1"], np.float32)
    save_nifti_atomic(
        case.b1000, case.b1000_affine, folder / DEFAULT_CHANNEL_FILES["b1000"], np.float32
    )
    save_nifti_atomic(case.skeleton, case.affine, folder / DEFAULT_SKELETON_FILE, np.uint8)
    lesion_path = folder / DEFAULT_LESION_FILE
    if case.lesion is not None:
        save_nifti_atomic(case.lesion, case.affine, lesion_path, np.uint8)
    elif lesion_path.exists():
        lesion_path.unlink()  # a healthy case must not keep a stale lesion map
    preview = folder / PREVIEW_FILE
    if render_png:
        render_case_png(case, preview)
    elif preview.exists():
        preview.unlink()
    return folder


def generate_cohort(
    out_dir: str | Path,
    healthy: int = 4,
    metastatic: int = 4,
    seed: int = 0,
    shape: Sequence[int] = DEFAULT_SHAPE,
    spacing_mm: Sequence[float] = DEFAULT_SPACING_MM,
    render_png: bool = False,
    *,
    dwi_downsample: int | Sequence[int] = 1,
    max_lesions: int = MAX_LESIONS,
    min_lesion_voxels: int = MIN_LESION_VOXELS,
    overwrite: bool = False,
    progress: Callable[[str], None] | None = None,
) -> list[Path]:
    """Generate a cohort and write it in the standard folder layout, plus ``cohort.json``.

    Args:
        out_dir: cohort folder; must be new or empty unless ``overwrite``.
        healthy: number of healthy volunteers (``healthy_000``, ...): images + skeleton.
        metastatic: number of patients (``metastatic_000``, ...): images + skeleton + lesion.
        seed: cohort seed; case k of a kind is the same whatever the cohort size.
        shape, spacing_mm, dwi_downsample, max_lesions, min_lesion_voxels: as in
            :func:`generate_case`.
        render_png: also write ``preview.png`` (coronal T1 | b1000 MIP | labels) per case.
        overwrite: write into a non-empty folder. Case folders of an earlier cohort (listed in
            its ``cohort.json``) that the new cohort does not have are removed; other files
            are left alone.
        progress: called with one line per finished case (the CLI prints it).

    ``cohort.json`` is written last: a folder without it holds an interrupted cohort.

    Returns:
        The case folders, healthy first.
    """
    out = Path(out_dir)
    healthy, metastatic = int(healthy), int(metastatic)
    if healthy < 0 or metastatic < 0 or healthy + metastatic == 0:
        raise ValueError(
            f"a cohort needs at least one case: got healthy={healthy}, metastatic={metastatic}"
        )
    shape_t, spacing_t, factors = _check_grid_args(shape, spacing_mm, dwi_downsample)
    planned = [(kind, k) for kind, n in zip(KINDS, (healthy, metastatic)) for k in range(n)]
    case_ids = [f"{kind}_{k:03d}" for kind, k in planned]
    if out.exists() and not out.is_dir():
        raise NotADirectoryError(f"{out} exists and is a file; give a folder for the cohort")
    if out.is_dir() and any(out.iterdir()):
        if not overwrite:
            raise FileExistsError(
                f"{out} already exists and is not empty; refusing to write a cohort into it. "
                "Choose a new folder, or pass overwrite=True (CLI: --overwrite) to replace it."
            )
        _remove_stale_cases(out, keep=set(case_ids))
        # cohort.json is written last and marks a complete cohort: drop the old one first.
        (out / COHORT_FILE).unlink(missing_ok=True)
    out.mkdir(parents=True, exist_ok=True)

    folders, entries = [], []
    for (kind, k), case_id in zip(planned, case_ids):
        start = time.perf_counter()
        case = generate_case(
            case_seed(seed, kind, k),
            metastatic=kind == "metastatic",
            case_id=case_id,
            shape=shape_t,
            spacing_mm=spacing_t,
            dwi_downsample=factors,
            max_lesions=max_lesions,
            min_lesion_voxels=min_lesion_voxels,
        )
        folders.append(write_case(case, out / case_id, render_png=render_png))
        entries.append(case.summary())
        if progress is not None:
            lesions = f", {len(case.lesions)} lesions" if case.metastatic else ""
            progress(f"{case_id}{lesions} ({time.perf_counter() - start:.1f} s)")

    grid = make_grid(shape_t, spacing_t)
    volumes = [v for entry in entries for v in entry["lesion_volumes_ml"]]
    report = {
        "generator": "sap.data.phantom",
        "format_version": 1,
        "seed": int(seed),
        "parameters": {
            "healthy": healthy,
            "metastatic": metastatic,
            "shape": list(shape_t),
            "spacing_mm": list(spacing_t),
            "field_of_view_mm": [n * s for n, s in zip(shape_t, spacing_t)],
            "dwi_downsample": list(factors),
            "max_lesions": int(max_lesions),
            "min_lesion_voxels": int(min_lesion_voxels),
            "min_lesion_volume_ml": round(min_lesion_voxels * grid.voxel_ml, 4),
            "lesion_count_model": {
                "distribution": "1 + negative_binomial",
                "shape": COUNT_SHAPE,
                "extra_mean": COUNT_EXTRA_MEAN,
            },
            "lesion_volume_model": {
                "distribution": "lognormal, truncated",
                "median_ml": VOLUME_MEDIAN_ML,
                "log_sd": VOLUME_LOG_SD,
                "range_ml": list(VOLUME_RANGE_ML),
            },
            "lesion_region_weights": REGION_WEIGHTS,
        },
        "files": {
            "channels": dict(DEFAULT_CHANNEL_FILES),
            "skeleton": DEFAULT_SKELETON_FILE,
            "lesion": DEFAULT_LESION_FILE,
        },
        "labels": {"skeleton": list(SKELETON_LABELS), "lesion": list(LESION_LABELS)},
        "summary": {
            "lesions": len(volumes),
            "median_lesion_volume_ml": round(float(np.median(volumes)), 4) if volumes else None,
            "fraction_at_least_1ml": round(float(np.mean(np.asarray(volumes) >= 1.0)), 4)
            if volumes
            else None,
        },
        "cases": entries,
    }
    write_text_atomic(out / COHORT_FILE, json.dumps(report, indent=2) + "\n")
    return folders


def _remove_stale_cases(out: Path, keep: set[str]) -> None:
    """Remove the files of case folders listed in an old cohort.json but not kept."""
    old = out / COHORT_FILE
    if not old.is_file():
        return
    try:
        previous = json.loads(old.read_text(encoding="utf-8"))
        old_ids = [str(entry["case_id"]) for entry in previous.get("cases", [])]
    except (ValueError, KeyError, TypeError, AttributeError):
        return  # not ours to interpret; leave it
    for case_id in old_ids:
        folder = out / case_id
        if case_id in keep or Path(case_id).name != case_id or not folder.is_dir():
            continue
        for name in _WRITTEN_FILES:
            (folder / name).unlink(missing_ok=True)
        if not any(folder.iterdir()):
            shutil.rmtree(folder)


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
    "MIN_LESION_VOXELS",
    "TISSUES",
    "PhantomCase",
    "case_seed",
    "generate_case",
    "generate_cohort",
    "make_grid",
    "render_case_png",
    "write_case",
]
