"""Write a phantom cohort: case folders in the standard layout plus ``cohort.json``.

Case ``k`` of a kind ("healthy"/"metastatic") of a cohort with seed ``S`` is generated from its
own seed, derived from (S, kind, k) only (:func:`case_seed`), so it is the same whatever the
number of other cases. ``cohort.json`` holds parameters, seeds, per-case lesion counts and
volumes. The cohort is written whole (:func:`sap.io.replace_folder`): generated in a hidden
sibling folder and renamed into place, marked by ``.sap-output.json`` so that ``overwrite``
replaces an earlier cohort and nothing else.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from sap.io import replace_folder, write_text_atomic
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
from sap.phantom.marrow import check_marrow
from sap.phantom.write import write_case
from sap.volume import voxel_volume_ml

COHORT_FILE = "cohort.json"
#: The command named in a cohort folder's marker.
COMMAND = "sap phantom"
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
    marrow: str = "fatty",
    overwrite: bool = False,
    progress: Callable[[str], None] | None = None,
) -> list[Path]:
    """Generate a cohort and write it in the standard folder layout, plus ``cohort.json``.

    Args:
        out_dir: cohort folder: new or empty, or an earlier cohort with ``overwrite``.
        healthy: number of healthy volunteers (``healthy_000``, ...): images + skeleton.
        metastatic: number of patients (``metastatic_000``, ...): images + skeleton + lesion.
        seed: cohort seed; case k of a kind is the same whatever the cohort size.
        shape, spacing_mm, dwi_downsample, max_lesions, min_lesion_voxels, marrow: as in
            :func:`generate_case`.
        render_png: also write ``preview.png`` (coronal T1 | b1000 MIP | labels) per case.
        overwrite: replace an earlier cohort written by ``sap phantom`` (only if it holds
            nothing else); the new cohort appears whole once it is complete.
        progress: called with one line per finished case (the CLI prints it).

    Returns:
        The case folders, healthy first.

    Raises:
        sap.io.OutputFolderError: ``out_dir`` is not empty and not an earlier cohort, or it is
            one and ``overwrite`` is False.
    """
    out = Path(out_dir)
    healthy, metastatic = int(healthy), int(metastatic)
    if healthy < 0 or metastatic < 0 or healthy + metastatic == 0:
        raise ValueError(
            f"a cohort needs at least one case: got healthy={healthy}, metastatic={metastatic}"
        )
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or seed < 0:
        raise ValueError(f"seed must be a whole number >= 0, got {seed!r}")
    shape_t, spacing_t, factors = check_grid_args(shape, spacing_mm, dwi_downsample)
    check_marrow(marrow)
    planned = [(kind, k) for kind, n in zip(KINDS, (healthy, metastatic)) for k in range(n)]
    case_ids = [f"{kind}_{k:03d}" for kind, k in planned]

    def write(folder: Path) -> None:
        entries = []
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
                marrow=marrow,
            )
            write_case(case, folder / case_id, render_png=render_png)
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
            **({} if marrow == "fatty" else {"marrow": marrow}),
            "min_lesion_volume_ml": round(min_lesion_voxels * voxel_volume_ml(spacing_t), 4),
        }
        report = _cohort_report(int(seed), parameters, entries)
        write_text_atomic(folder / COHORT_FILE, json.dumps(report, indent=2) + "\n")

    replace_folder(out, COMMAND, write, overwrite=overwrite)
    return [out / case_id for case_id in case_ids]


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


__all__ = ["COHORT_FILE", "KINDS", "case_seed", "generate_cohort"]
