"""The benchmark's data on disk: the two cohorts and the files of every fold.

The cohorts are the user's folders / CSV manifests, or phantom cohorts generated into
``OUT/cohorts``. The folds become files every later stage reads (``OUT/splits``):

- ``splits.json``: the folds, their lesion counts, tuning and test folds;
- ``fold_<k>.csv``: manifest of the cases of fold ``k`` (what prediction reads);
- ``train_for_fold_<k>.csv``: manifest of the cases a model for test fold ``k`` trains on;
- ``fold_<k>/<case_id>/lesion.nii.gz``: reference copies, so ``sap.metrics`` scores a fold
  folder against exactly its cases.
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sap.experiments.benchmark_config import BenchmarkConfig, CohortConfig, stage_key
from sap.experiments.cv_splits import CrossValidation, count_case_lesions, stratified_folds
from sap.io import atomic_write, write_text_atomic
from sap.labels import CHANNELS

#: The reference file of a fold's case folder (``sap.metrics`` reads it).
REFERENCE_FILE = "lesion.nii.gz"


@dataclass(frozen=True)
class Cohorts:
    """Where the scans are, and what identifies them in stage keys.

    Attributes:
        healthy: folder or manifest of the healthy scans.
        metastatic: folder or manifest of the patients.
        identity: sources (and, for a phantom, its parameters) plus case ids.
    """

    healthy: Path
    metastatic: Path
    identity: dict[str, Any]


def prepare_cohorts(cohort: CohortConfig, out: Path, log=print) -> Cohorts:
    """The user's cohorts, or phantom cohorts generated into ``out/cohorts`` (once)."""
    sources = {}
    for name, given, healthy, metastatic, offset in (
        ("healthy", cohort.healthy, cohort.phantom_healthy, 0, 0),
        ("metastatic", cohort.metastatic, 0, cohort.phantom_metastatic, 1),
    ):
        if given is not None:
            sources[name] = Path(given).expanduser().resolve()
            continue
        folder = out / "cohorts" / name
        parameters = {
            "healthy": healthy,
            "metastatic": metastatic,
            "seed": cohort.phantom_seed + offset,
            **cohort.phantom_kwargs,
        }
        _generate_phantom(folder, parameters, log)
        sources[name] = folder.resolve()
    identity = {
        name: {
            "source": str(path) if getattr(cohort, name) is not None else "phantom",
            "phantom": None if getattr(cohort, name) is not None else _phantom_identity(cohort),
            "cases": _case_ids(path),
        }
        for name, path in sources.items()
    }
    return Cohorts(sources["healthy"], sources["metastatic"], identity)


def _phantom_identity(cohort: CohortConfig) -> dict[str, Any]:
    return {
        "healthy": cohort.phantom_healthy,
        "metastatic": cohort.phantom_metastatic,
        "seed": cohort.phantom_seed,
        "kwargs": cohort.phantom_kwargs,
    }


def _generate_phantom(folder: Path, parameters: dict[str, Any], log) -> None:
    from sap.phantom import COHORT_FILE, generate_cohort

    key = stage_key(parameters)
    record = folder.parent / f"{folder.name}.stage.json"
    if (folder / COHORT_FILE).is_file() and _recorded_key(record) == key:
        log(f"phantom cohort {folder.name}: finished earlier, kept")
        return
    log(f"phantom cohort {folder.name}: generating {parameters}")
    start, cpu_start = time.perf_counter(), time.process_time()
    generate_cohort(folder, overwrite=True, **parameters)
    timing = {
        "wall_s": round(time.perf_counter() - start, 1),
        "cpu_s": round(time.process_time() - cpu_start, 1),
    }
    log(
        f"phantom cohort {folder.name}: done in {timing['wall_s']:.0f} s (CPU {timing['cpu_s']:.0f} s)"
    )
    write_text_atomic(
        record, json.dumps({"key": key, "parameters": parameters, **timing}, indent=2)
    )


def _recorded_key(record: Path) -> str | None:
    try:
        return json.loads(record.read_text(encoding="utf-8")).get("key")
    except (OSError, ValueError, AttributeError):
        return None


def _case_ids(source: Path) -> list[str]:
    from sap.data.cases import discover_cases

    return sorted(case.case_id for case in discover_cases(source))


@dataclass(frozen=True)
class FoldFiles:
    """Paths of the files :func:`write_fold_files` wrote."""

    root: Path

    def manifest(self, fold: int) -> Path:
        return self.root / f"fold_{fold}.csv"

    def training_manifest(self, fold: int) -> Path:
        return self.root / f"train_for_fold_{fold}.csv"

    def references(self, fold: int) -> Path:
        return self.root / f"fold_{fold}"


def cohort_cases(folder: Path) -> dict[str, Any]:
    """The cases of a cohort folder or manifest by id, read with the benchmark's channels."""
    from sap.data.cases import CaseLayout, discover_cases

    return {c.case_id: c for c in discover_cases(folder, CaseLayout(channels=CHANNELS))}


def split_cohort(
    config: BenchmarkConfig, cohorts: Cohorts, out: Path
) -> tuple[CrossValidation, FoldFiles]:
    """Count lesions, split the patients into folds and write the fold files (once)."""
    cases = cohort_cases(cohorts.metastatic)
    missing = sorted(c for c, case in cases.items() if case.lesion is None)
    if missing:
        raise ValueError(
            f"The metastatic cohort {cohorts.metastatic} has cases without a lesion label map: "
            f"{missing[:5]}; every patient needs one for cross-validation."
        )
    counts = count_case_lesions({c: case.lesion for c, case in cases.items()})
    cv = config.cv
    split = stratified_folds(
        counts, cv.folds, tuning_fold=cv.tuning_fold, test_folds=cv.test_folds, seed=cv.seed
    )
    files = FoldFiles(out / "splits")
    key = stage_key(cohorts.identity["metastatic"], split.to_dict())
    record = files.root / "stage.json"
    if _recorded_key(record) != key:
        if files.root.exists():
            shutil.rmtree(files.root)
        _write_fold_files(split, cases, files, CHANNELS)
        write_text_atomic(record, json.dumps({"key": key}, indent=2))
    return split, files


def _write_fold_files(split: CrossValidation, cases: dict, files: FoldFiles, channels) -> None:
    write_text_atomic(files.root / "splits.json", json.dumps(split.to_dict(), indent=2) + "\n")
    for fold, members in enumerate(split.folds):
        _write_manifest(files.manifest(fold), [cases[c] for c in members], channels)
        for case_id in members:
            _copy_reference(
                cases[case_id].lesion, files.references(fold) / case_id / REFERENCE_FILE
            )
    for fold in split.test_folds:
        training = [cases[c] for c in split.training_cases(fold)]
        _write_manifest(files.training_manifest(fold), training, channels)


def _write_manifest(path: Path, cases: list, channels) -> None:
    """A CSV manifest (``sap.data.manifest``) with absolute paths: channels and lesion."""
    import csv
    import io

    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["case_id", *channels, "lesion"])
    for case in cases:
        writer.writerow(
            [
                case.case_id,
                *(str(Path(case.images[c]).resolve()) for c in channels),
                str(Path(case.lesion).resolve()),
            ]
        )
    write_text_atomic(path, buffer.getvalue())


def _copy_reference(source: Path, target: Path) -> None:
    if str(source).endswith(".nii.gz"):
        atomic_write(target, lambda tmp: shutil.copyfile(source, tmp))
        return
    from sap.io import save_nifti_atomic
    from sap.volume import read_volume

    voxels, affine = read_volume(source, what="lesion label map")
    save_nifti_atomic(voxels, affine, target)


__all__ = [
    "REFERENCE_FILE",
    "Cohorts",
    "FoldFiles",
    "cohort_cases",
    "prepare_cohorts",
    "split_cohort",
]
