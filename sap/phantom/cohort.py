"""Write a phantom cohort: case folders in the standard layout plus ``cohort.json``.

Case ``k`` of a kind ("healthy"/"metastatic") of a cohort with seed ``S`` is generated from its
own seed, derived from (S, kind, k) only (:func:`case_seed`), so it is the same whatever the
number of other cases. ``cohort.json`` (parameters, seeds, per-case lesion counts and volumes)
is written last and marks a complete cohort.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from sap.io import write_text_atomic
from sap.labels import (
    DEFAULT_CHANNEL_FILES,
    DEFAULT_LESION_FILE,
    DEFAULT_SKELETON_FILE,
    LESION_LABELS,
    SKELETON_LABELS,
)
from sap.phantom.generate import (
    DEFAULT_SHAPE,
    DEFAULT_SPACING_MM,
    MAX_LESIONS,
    MIN_LESION_VOXELS,
    check_grid_args,
    generate_case,
)
from sap.phantom.lesions import (
    COUNT_EXTRA_MEAN,
    COUNT_SHAPE,
    REGION_WEIGHTS,
    VOLUME_LOG_SD,
    VOLUME_MEDIAN_ML,
    VOLUME_RANGE_ML,
)
from sap.phantom.write import WRITTEN_FILES, write_case
from sap.volume import voxel_volume_ml

COHORT_FILE = "cohort.json"
KINDS: tuple[str, ...] = ("healthy", "metastatic")


def case_seed(seed: int, kind: str, index: int) -> int:
    """Seed of case ``index`` of ``kind`` in a cohort with ``seed`` (independent of cohort size)."""
    if kind not in KINDS:
        raise ValueError(f"case kind must be one of {KINDS}, got {kind!r}")
    sequence = np.random.SeedSequence([int(seed), KINDS.index(kind), int(index)])
    return int(sequence.generate_state(1, dtype=np.uint32)[0])


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
    shape_t, spacing_t, factors = check_grid_args(shape, spacing_mm, dwi_downsample)
    planned = [(kind, k) for kind, n in zip(KINDS, (healthy, metastatic)) for k in range(n)]
    case_ids = [f"{kind}_{k:03d}" for kind, k in planned]
    _prepare_folder(out, overwrite, keep=set(case_ids))

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

    parameters = {
        "healthy": healthy,
        "metastatic": metastatic,
        "shape": list(shape_t),
        "spacing_mm": list(spacing_t),
        "field_of_view_mm": [n * s for n, s in zip(shape_t, spacing_t)],
        "dwi_downsample": list(factors),
        "max_lesions": int(max_lesions),
        "min_lesion_voxels": int(min_lesion_voxels),
        "min_lesion_volume_ml": round(min_lesion_voxels * voxel_volume_ml(spacing_t), 4),
    }
    report = _cohort_report(int(seed), parameters, entries)
    write_text_atomic(out / COHORT_FILE, json.dumps(report, indent=2) + "\n")
    return folders


def _prepare_folder(out: Path, overwrite: bool, keep: set[str]) -> None:
    """Make ``out`` ready for a cohort: new, empty, or (``overwrite``) cleared of old cases."""
    if out.exists() and not out.is_dir():
        raise NotADirectoryError(f"{out} exists and is a file; give a folder for the cohort")
    if out.is_dir() and any(out.iterdir()):
        if not overwrite:
            raise FileExistsError(
                f"{out} already exists and is not empty; refusing to write a cohort into it. "
                "Choose a new folder, or pass overwrite=True (CLI: --overwrite) to replace it."
            )
        _remove_stale_cases(out, keep=keep)
        # cohort.json is written last and marks a complete cohort: drop the old one first.
        (out / COHORT_FILE).unlink(missing_ok=True)
    out.mkdir(parents=True, exist_ok=True)


def _cohort_report(
    seed: int, parameters: dict[str, Any], entries: list[dict[str, Any]]
) -> dict[str, Any]:
    """The content of ``cohort.json``: generation parameters, lesion models, files, cases."""
    volumes = [v for entry in entries for v in entry["lesion_volumes_ml"]]
    return {
        "generator": "sap.phantom",
        "format_version": 1,
        "seed": seed,
        "parameters": {
            **parameters,
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
        for name in WRITTEN_FILES:
            (folder / name).unlink(missing_ok=True)
        if not any(folder.iterdir()):
            shutil.rmtree(folder)


__all__ = ["COHORT_FILE", "KINDS", "case_seed", "generate_cohort"]
