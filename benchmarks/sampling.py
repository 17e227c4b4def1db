"""Instance-balanced lesion patches: the patch store vs pre-extracted NIfTI patches.

Question: how many training patches per second does :class:`sap.data.LesionDataModule`
deliver from its patch store (each case preprocessed once, each patch read from memory
maps and augmented; :mod:`sap.data.store`) compared with the approach of the SAP
reference code, which writes lesion-centred patches to disk once and then trains from
those files? And does the store's cost per patch stay flat as volumes grow?

Reference, as favourable to it as we can make it: each training case is preprocessed once
(canonical orientation, DWI on the T1 grid, percentile normalisation) and, per lesion, a
region 4/3 the patch size centred on the lesion is saved as NIfTI (T1, b1000, lesion),
plus the same number of lesion-free regions. Training then reads one region per item,
applies the same augmentation (:func:`sap.data.preprocess.augmentation`), crops a random
patch and collates the same batch dict. Both sides: same cohort, patch size, batch size,
data-loader workers, patches per epoch, torch threads. The one-off costs are printed on
their own: the store's build time and disk use, the reference's extraction time and disk
use. Patches/s are steady-state: the first epoch of every loader (worker start-up, page
cache) is not timed. ``--on-the-fly`` adds the data module without the store (whole
volumes loaded and preprocessed every epoch; slow on whole-body volumes).

Sizes (6 metastatic phantom cases each, :func:`sap.phantom.generate_cohort`, field of
view 480 x 300 x 1800 mm): ``small`` 96 x 64 x 224 with patch 48, ``medium``
160 x 100 x 400 with patch 64, ``wholebody`` 256 x 192 x 800 with patch 96 (batch 2
throughout). The store is also read with a 48^3 patch at every size: that row's patches/s
is the cost per patch against volume size alone.

    python benchmarks/sampling.py                           # all three sizes (~20 min)
    python benchmarks/sampling.py --sizes small             # quick
    python benchmarks/sampling.py --work /tmp/sampling      # keep cohorts for the next run
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

SIZES: dict[str, tuple[tuple[int, int, int], int]] = {
    "small": ((96, 64, 224), 48),
    "medium": ((160, 100, 400), 64),
    "wholebody": ((256, 192, 800), 96),
}
FIELD_OF_VIEW_MM = (480.0, 300.0, 1800.0)


def write_cohort(root: Path, cases: int, shape: tuple[int, int, int], seed: int) -> Path:
    """Metastatic phantom cases in the standard layout (reused if ``root`` holds them)."""
    from sap.phantom import generate_cohort

    marker = root / "cohort.json"
    if marker.exists():
        parameters = json.loads(marker.read_text(encoding="utf-8"))["parameters"]
        if parameters["shape"] == list(shape) and parameters["metastatic"] == cases:
            return root
    spacing = tuple(f / n for f, n in zip(FIELD_OF_VIEW_MM, shape))
    generate_cohort(
        root, healthy=0, metastatic=cases, seed=seed, shape=shape, spacing_mm=spacing,
        overwrite=True,
    )  # fmt: skip
    return root


def extract_reference_patches(cohort: Path, out: Path, patch: int, seed: int) -> int:
    """The reference approach's preprocessing step: lesion-centred regions saved as NIfTI."""
    import torchio as tio

    from sap.data.cases import case_to_subject, discover_cases
    from sap.data.lesions import find_lesions
    from sap.data.placement import window_sums
    from sap.data.preprocess import preprocessing
    from sap.data.transforms import PadToMinimumShape
    from sap.io import save_nifti_atomic

    rng = np.random.default_rng(seed)
    region = int(round(patch * 4 / 3))
    transform = tio.Compose([preprocessing(), PadToMinimumShape(region)])
    written = 0
    for case in discover_cases(cohort, require=("lesion",)):
        subject = case_to_subject(case)
        subject.remove_image("skeleton")
        subject = transform(subject)
        mask = subject["lesion"].data[0].numpy() > 0
        shape = np.array(mask.shape)
        corners = []
        for lesion in find_lesions(mask):
            centre = (np.array(lesion.lower) + np.array(lesion.upper)) // 2
            corners.append(np.clip(centre - region // 2, 0, shape - region))
        # Lesion-free regions, drawn uniformly among the exact set (the region with the
        # fewest lesion voxels if the volume has none).
        lesion_voxels = window_sums(mask, (region,) * 3)
        free = np.argwhere(lesion_voxels == 0)
        if not len(free):
            free = np.argwhere(lesion_voxels == lesion_voxels.min())
        corners += [free[i] for i in rng.integers(0, len(free), size=len(corners))]
        for number, corner in enumerate(corners):
            box = tuple(slice(int(c), int(c) + region) for c in corner)
            affine = subject["T1"].affine.copy()
            affine[:3, 3] = affine[:3, :3] @ corner + affine[:3, 3]
            folder = out / f"{case.case_id}_{number:03d}"
            for name in ("T1", "b1000", "lesion"):
                array = subject[name].data[0].numpy()[box]
                save_nifti_atomic(array, affine, folder / f"{name}.nii.gz")
            written += 1
    return written


class ReferencePatches:
    """Map-style dataset over pre-extracted regions: read, augment, random crop."""

    def __init__(self, root: Path, patch: int) -> None:
        import torchio as tio

        from sap.data.preprocess import augmentation

        self.folders = sorted(p for p in root.iterdir() if p.is_dir())
        self.augment = augmentation()
        self.crop = tio.data.UniformSampler(patch)

    def __len__(self) -> int:
        return len(self.folders)

    def __getitem__(self, index: int):
        import torchio as tio

        folder = self.folders[index]
        subject = tio.Subject(
            T1=tio.ScalarImage(folder / "T1.nii.gz"),
            b1000=tio.ScalarImage(folder / "b1000.nii.gz"),
            lesion=tio.LabelMap(folder / "lesion.nii.gz"),
            case_id=folder.name,
        )
        subject.load()
        return next(iter(self.crop(self.augment(subject), num_patches=1)))


def patches_per_second(loader, min_patches: int, min_epochs: int = 1) -> float:
    """Steady-state patches per second: one warm-up epoch (worker start-up, page cache),
    then whole epochs until at least ``min_epochs`` and ``min_patches``."""
    for _ in loader:
        pass
    patches, epochs = 0, 0
    start = time.perf_counter()
    while epochs < min_epochs or patches < min_patches:
        for batch in loader:
            patches += len(batch["case_id"])
        epochs += 1
    return patches / (time.perf_counter() - start)


def folder_mib(path: Path) -> float:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) / 2**20


def lesion_module(cohort: Path, store: Path | None, patch: int, workers: int, args):
    from sap.data.datamodules import LesionDataModule

    return LesionDataModule(
        str(cohort),
        patch_size=patch,
        batch_size=args.batch_size,
        val_fraction=0.0,
        num_workers=workers,
        seed=args.seed,
        validate_inputs=False,
        patch_store=store is not None,
        cache_dir=None if store is None else str(store),
    )


def measure_size(name: str, args, work: Path) -> dict:
    """Every number of one size, measured in this process, one after the other."""
    import torch
    from torch.utils.data import DataLoader

    from sap.data.collate import SubjectCollate

    shape, patch = SIZES[name]
    cohort = write_cohort(work / f"cohort-{name}", args.cases, shape, args.seed)
    store = work / f"store-{name}"
    shutil.rmtree(store, ignore_errors=True)
    result: dict = {"size": name, "shape": list(shape), "patch": patch}

    start = time.perf_counter()
    module = lesion_module(cohort, store, patch, max(args.workers), args)
    module.setup("fit")
    result["store_build_s"] = time.perf_counter() - start
    result["store_disk_mib"] = folder_mib(store)
    result["patches_per_epoch"] = sum(module.patch_counts)

    patches_dir = work / f"reference-{name}"
    shutil.rmtree(patches_dir, ignore_errors=True)
    start = time.perf_counter()
    extract_reference_patches(cohort, patches_dir, patch, args.seed)
    result["reference_extraction_s"] = time.perf_counter() - start
    result["reference_disk_mib"] = folder_mib(patches_dir)

    minimum = args.min_patches
    for workers in args.workers:
        torch.manual_seed(args.seed)
        loader = lesion_module(cohort, store, patch, workers, args).train_dataloader()
        result[f"store_{workers}w"] = patches_per_second(loader, minimum)
        torch.manual_seed(args.seed)
        loader = lesion_module(cohort, store, 48, workers, args).train_dataloader()
        result[f"store_patch48_{workers}w"] = patches_per_second(loader, minimum)
        reference = DataLoader(
            ReferencePatches(patches_dir, patch),
            batch_size=args.batch_size,
            shuffle=True,
            num_workers=workers,
            collate_fn=SubjectCollate(["T1", "b1000"], "lesion"),
            persistent_workers=workers > 0,
        )
        result[f"reference_{workers}w"] = patches_per_second(reference, minimum)
        if args.on_the_fly:
            loader = lesion_module(cohort, None, patch, workers, args).train_dataloader()
            result[f"on_the_fly_{workers}w"] = patches_per_second(loader, 1)  # 2 epochs
    if args.work is None:
        shutil.rmtree(patches_dir, ignore_errors=True)
        shutil.rmtree(store, ignore_errors=True)
    return result


def report(results: list[dict], args) -> None:
    print(
        f"{args.cases} metastatic phantom cases per size, batch {args.batch_size}, "
        f"{args.threads} torch thread(s), >= {args.min_patches} patches per measurement; "
        f"workers {args.workers}"
    )
    for r in results:
        print(f"\n{r['size']}: {tuple(r['shape'])} voxels, patch {r['patch']}^3, "
              f"{r['patches_per_epoch']} patches per epoch")  # fmt: skip
        print(f"  store build (once)       : {r['store_build_s']:8.1f} s, "
              f"{r['store_disk_mib']:8.1f} MiB on disk")  # fmt: skip
        print(f"  reference extraction     : {r['reference_extraction_s']:8.1f} s, "
              f"{r['reference_disk_mib']:8.1f} MiB on disk")  # fmt: skip
        for w in args.workers:
            store, reference = r[f"store_{w}w"], r[f"reference_{w}w"]
            line = (f"  {w} workers: store {store:7.1f} patches/s, reference {reference:7.1f} "
                    f"patches/s, ratio store/reference {store / reference:6.2f}; store with "
                    f"48^3 patches {r[f'store_patch48_{w}w']:7.1f} patches/s")  # fmt: skip
            if f"on_the_fly_{w}w" in r:
                line += f"; on the fly {r[f'on_the_fly_{w}w']:6.2f} patches/s"
            print(line)
    print("\nper size, this run (ratio = store/reference patches/s; ms = milliseconds per patch):")
    for w in args.workers:
        for r in results:
            store, reference = r[f"store_{w}w"], r[f"reference_{w}w"]
            print(f"  {w} workers, {r['size']:>9}: ratio {store / reference:6.2f}   store "
                  f"{1000 / store:6.1f} ms/patch ({r['patch']}^3), "
                  f"{1000 / r[f'store_patch48_{w}w']:6.1f} ms/patch (48^3)   reference "
                  f"{1000 / reference:6.1f} ms/patch")  # fmt: skip
    print("the 48^3 column is the cost per patch against volume size alone (flat = independent)")
    worst = min(r[f"store_{w}w"] / r[f"reference_{w}w"] for r in results for w in args.workers)
    missed = [f"{r['size']} ({w} workers)" for r in results for w in args.workers
              if r[f"store_{w}w"] / r[f"reference_{w}w"] < 3]  # fmt: skip
    verdict = "met at every size" if not missed else "MISSED at " + ", ".join(missed)
    print(f"smallest ratio store/reference: {worst:.2f} (target >= 3: {verdict})")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", nargs="+", choices=list(SIZES), default=list(SIZES))
    parser.add_argument("--cases", type=int, default=6)
    parser.add_argument("--batch-size", type=int, default=2)
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 2])
    parser.add_argument("--min-patches", type=int, default=120)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--on-the-fly", action="store_true", help="also time patch_store=False")
    parser.add_argument("--json", action="store_true", help="also print one JSON line")
    parser.add_argument(
        "--work", type=Path, default=None, help="work folder kept for the next run (cohorts)"
    )
    args = parser.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    work = args.work or Path(tempfile.mkdtemp(prefix="sap-sampling-"))
    try:
        results = [measure_size(name, args, work) for name in args.sizes]
    finally:
        if args.work is None:
            shutil.rmtree(work, ignore_errors=True)
    report(results, args)
    if args.json:
        print(json.dumps(results))


if __name__ == "__main__":
    main()
