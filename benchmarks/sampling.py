"""Instance-balanced lesion patches: on the fly from whole volumes vs pre-extracted files.

Question: how many training patches per second does :class:`sap.data.LesionDataModule`
deliver (whole volumes loaded, preprocessed and augmented every epoch, one patch per lesion
plus as many lesion-free patches drawn on the fly) compared with the approach of the SAP
reference code, which writes lesion-centred patches to disk once and then trains from
those files?

Reference, as favourable to it as we can make it: each training case is preprocessed once
(canonical orientation, DWI on the T1 grid, percentile normalisation) and, per lesion, a
region 4/3 the patch size centred on the lesion is saved as NIfTI (T1, b1000, lesion),
plus the same number of lesion-free regions. Training then reads one region per item,
applies the same augmentation (:func:`sap.data.preprocess.augmentation`), crops a random
patch and collates the same batch dict. Both sides: same cohort, patch size, batch size,
data-loader workers, patches per epoch, torch threads. The extraction time (and disk use)
of the reference is printed on its own: it is paid once per data set and patch size, and
again for every change of preprocessing.

Cohort: :func:`sap.phantom.generate_cohort` when it exists, else a simple writer here
(smooth two-channel volumes with heavy-tailed lesion counts).

    python benchmarks/sampling.py                          # 6 cases, 96 x 64 x 224, patch 48
    python benchmarks/sampling.py --cases 4 --patch 32     # quicker
    python benchmarks/sampling.py --workers 2 --epochs 3
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np


def write_cohort(root: Path, cases: int, shape: tuple[int, int, int], seed: int) -> Path:
    """Metastatic cases in the standard layout (phantom generator if available)."""
    try:
        from sap.phantom import generate_cohort
    except ImportError:
        generate_cohort = None
    if generate_cohort is not None:
        generate_cohort(root, healthy=0, metastatic=cases, seed=seed, shape=shape)
        return root

    from scipy import ndimage

    from sap.io import save_nifti_atomic

    rng = np.random.default_rng(seed)
    affine = np.diag([5.0, 5.0, 6.0, 1.0])
    for index in range(cases):
        smooth = [
            ndimage.zoom(rng.random((6, 5, 12)), np.divide(shape, (6, 5, 12)), order=1)[
                : shape[0], : shape[1], : shape[2]
            ]
            for _ in range(2)
        ]
        t1, dwi = ((s + 0.05 * rng.standard_normal(shape)).astype(np.float32) for s in smooth)
        lesion = np.zeros(shape, np.uint8)
        for _ in range(int(min(1 + rng.geometric(0.25), 12))):  # heavy-tailed burden
            centre = [int(rng.integers(s // 8, 7 * s // 8)) for s in shape]
            radius = float(rng.uniform(1.0, 3.5))
            grid = np.ogrid[tuple(slice(0, s) for s in shape)]
            distance = sum((g - c) ** 2 for g, c in zip(grid, centre))
            lesion[distance <= radius**2] = 1
        folder = root / f"metastatic_{index:03d}"
        for name, array in (("T1", t1), ("b1000", dwi), ("lesion", lesion)):
            save_nifti_atomic(array, affine, folder / f"{name}.nii.gz")
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
        subject = transform(case_to_subject(case))
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


def time_epochs(loader, epochs: int) -> tuple[int, float]:
    patches = 0
    start = time.perf_counter()
    for _ in range(epochs):
        for batch in loader:
            patches += len(batch["case_id"])
    return patches, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--cases", type=int, default=6)
    parser.add_argument("--shape", type=int, nargs=3, default=(96, 64, 224))
    parser.add_argument("--patch", type=int, default=48)
    parser.add_argument("--batch-size", type=int, default=2)
    parser.add_argument("--workers", type=int, default=0)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--json", action="store_true", help="also print the results as one JSON line"
    )
    parser.add_argument(
        "--keep", type=Path, default=None, help="work folder to keep (default: temporary)"
    )
    args = parser.parse_args()

    import torch
    from torch.utils.data import DataLoader

    from sap.data.collate import SubjectCollate
    from sap.data.datamodules import LesionDataModule

    torch.set_num_threads(args.threads)
    work = args.keep or Path(tempfile.mkdtemp(prefix="sap-sampling-"))
    try:
        cohort = write_cohort(work / "cohort", args.cases, tuple(args.shape), args.seed)

        torch.manual_seed(args.seed)
        start = time.perf_counter()
        module = LesionDataModule(
            str(cohort),
            patch_size=args.patch,
            batch_size=args.batch_size,
            val_fraction=0.0,
            num_workers=args.workers,
            seed=args.seed,
        )
        module.setup("fit")
        ours_loader = module.train_dataloader()
        setup_s = time.perf_counter() - start
        ours_patches, ours_s = time_epochs(ours_loader, args.epochs)

        start = time.perf_counter()
        extracted = extract_reference_patches(cohort, work / "patches", args.patch, args.seed)
        extract_s = time.perf_counter() - start
        disk_mb = sum(f.stat().st_size for f in (work / "patches").rglob("*.nii.gz")) / 2**20
        reference_loader = DataLoader(
            ReferencePatches(work / "patches", args.patch),
            batch_size=args.batch_size,
            shuffle=True,
            num_workers=args.workers,
            collate_fn=SubjectCollate(["T1", "b1000"], "lesion"),
        )
        ref_patches, ref_s = time_epochs(reference_loader, args.epochs)
    finally:
        if args.keep is None:
            shutil.rmtree(work, ignore_errors=True)

    ours_rate, ref_rate = ours_patches / ours_s, ref_patches / ref_s
    print(
        f"cohort: {args.cases} cases of {tuple(args.shape)} voxels, patch {args.patch}^3, batch "
        f"{args.batch_size}, {args.workers} workers, {args.threads} thread(s), {args.epochs} epochs"
    )
    print(f"patches per epoch: ours {len(ours_loader.dataset)}, reference {extracted}")
    print(
        f"LesionDataModule (on the fly)   : {ours_rate:8.1f} patches/s  (setup {setup_s:.2f} s once)"
    )
    print(f"reference (pre-extracted NIfTI) : {ref_rate:8.1f} patches/s")
    print(f"reference extraction            : {extract_s:8.2f} s once, {disk_mb:.1f} MiB on disk")
    print(f"ratio ours / reference          : {ours_rate / ref_rate:8.2f}")
    if args.json:
        print(
            json.dumps(
                {
                    "ours_patches_per_s": ours_rate,
                    "reference_patches_per_s": ref_rate,
                    "ratio": ours_rate / ref_rate,
                    "reference_extraction_s": extract_s,
                    "reference_disk_mib": disk_mb,
                    "ours_setup_s": setup_s,
                    "patches_per_epoch": len(ours_loader.dataset),
                }
            )
        )


if __name__ == "__main__":
    main()
