"""GPU smoke check: train from the patch store and predict a whole-body volume, in minutes.

Question: on a CUDA machine, does the real configuration run, how fast, and in how much
memory? One script, one JSON summary:

1. a phantom cohort (metastatic cases, generated in parallel processes) goes into the patch
   store (:mod:`sap.data.store`, built by loader workers);
2. Swin UNETR (feature size 48, the paper's) trains a few steps at 96^3 patches, batch 2,
   ``bf16-mixed``, fed by the store with data-loader workers: patches/s after warm-up and
   peak GPU memory;
3. the trained checkpoint predicts one whole-body-sized volume (2 x 400 x 300 x 1100 voxels)
   through ``sap predict``'s path (:func:`sap.inference.predict_from_files`): time, peak GPU
   memory and peak host memory (RSS).

Budget: under 8 minutes on one GPU with 16 CPU cores. On a machine without CUDA it exits with
status 2 and says so (``--allow-cpu`` runs the same steps on the CPU with ``--quick`` sizes,
for testing the script itself).

    python benchmarks/gpu_smoke.py                 # the check (CUDA)
    python benchmarks/gpu_smoke.py --steps 40      # longer training measurement
    python benchmarks/gpu_smoke.py --allow-cpu --quick   # the script's own test, on a CPU
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import lightning as L
import numpy as np
import torch

FIELD_OF_VIEW_MM = (480.0, 300.0, 1800.0)
NO_CUDA = (
    "benchmarks/gpu_smoke.py needs a CUDA GPU, and torch sees none "
    "(torch.cuda.is_available() is False). Run it on a GPU machine; --allow-cpu --quick "
    "runs its steps on the CPU to test the script."
)


def generate_case(args: tuple[Path, int, int, tuple[int, int, int]]) -> None:
    """One metastatic phantom case in its own cohort folder (run in a worker process)."""
    from sap.phantom import generate_cohort

    root, seed, index, shape = args
    spacing = tuple(f / n for f, n in zip(FIELD_OF_VIEW_MM, shape))
    folder = root / f"part_{index}"
    generate_cohort(folder, healthy=0, metastatic=1, seed=seed + index, shape=shape,
                    spacing_mm=spacing)  # fmt: skip
    (folder / "metastatic_000").rename(root / f"metastatic_{index:03d}")
    shutil.rmtree(folder)


def write_cohort(root: Path, cases: int, shape: tuple[int, int, int], workers: int) -> float:
    start = time.perf_counter()
    root.mkdir(parents=True)
    with ProcessPoolExecutor(max_workers=max(1, min(workers, cases))) as pool:
        list(pool.map(generate_case, [(root, 0, i, shape) for i in range(cases)]))
    return time.perf_counter() - start


def write_volume(folder: Path, shape: tuple[int, int, int]) -> Path:
    """A whole-body-sized two-channel case (smooth random intensities, uncompressed NIfTI)
    and the CSV manifest that names it."""
    import nibabel as nib

    folder.mkdir(parents=True)
    spacing = [f / n for f, n in zip(FIELD_OF_VIEW_MM, shape)]
    affine = np.diag([*spacing, 1.0])
    generator = torch.Generator().manual_seed(0)
    for channel in ("T1", "b1000"):
        coarse = torch.rand((1, 1, *(max(2, n // 16) for n in shape)), generator=generator)
        volume = torch.nn.functional.interpolate(coarse, size=shape, mode="trilinear")[0, 0]
        nib.save(nib.Nifti1Image(volume.numpy() * 1000, affine), str(folder / f"{channel}.nii"))
    manifest = folder / "cases.csv"
    manifest.write_text("case_id,T1,b1000\nwholebody,T1.nii,b1000.nii\n", encoding="utf-8")
    return manifest


class StepTimer(L.Callback):
    """Patches per second of the training steps after the first ``warmup`` ones."""

    def __init__(self, warmup: int) -> None:
        self.warmup = warmup
        self.start: float | None = None
        self.end: float | None = None
        self.patches = 0

    def on_train_batch_start(self, trainer, module, batch, batch_idx) -> None:
        if trainer.global_step == self.warmup and self.start is None:
            _synchronise()
            self.start = time.perf_counter()
        if self.start is not None:
            self.patches += int(batch["image"].shape[0])

    def on_train_end(self, trainer, module) -> None:
        _synchronise()
        self.end = time.perf_counter()

    @property
    def patches_per_s(self) -> float:
        if self.start is None or self.end is None:
            return float("nan")
        return self.patches / (self.end - self.start)


def _synchronise() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def train(cohort: Path, store: Path, run: Path, args, device: str) -> dict:
    from sap.data import LesionDataModule
    from sap.tasks import LesionFinetuning

    patch = [args.patch] * 3
    backbone = "swin_unetr" if not args.quick else "tiny_unet"
    kwargs = {"feature_size": 48} if backbone == "swin_unetr" else {}
    data = LesionDataModule(str(cohort), patch_size=patch, batch_size=2, val_fraction=0.0,
                            num_workers=args.workers, cache_dir=str(store))  # fmt: skip
    start = time.perf_counter()
    data.setup("fit")
    build_s = time.perf_counter() - start
    model = LesionFinetuning(init="scratch", backbone=backbone, backbone_kwargs=kwargs,
                             patch_size=patch, lr_encoder=1e-4, lr_decoder=1e-4, lr_head=1e-4,
                             warmup_epochs=0)  # fmt: skip
    timer = StepTimer(warmup=args.warmup)
    trainer = L.Trainer(
        accelerator="gpu" if device == "cuda" else "cpu", devices=1,
        precision="bf16-mixed", max_steps=args.warmup + args.steps, max_epochs=1000,
        limit_val_batches=0, num_sanity_val_steps=0, logger=False,
        default_root_dir=str(run), callbacks=[timer], enable_progress_bar=False,
        enable_model_summary=False,
    )  # fmt: skip
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    trainer.fit(model, datamodule=data)
    (checkpoint,) = list(run.rglob("*.ckpt"))
    return {
        "backbone": f"{backbone} {kwargs}",
        "patch": patch,
        "store_build_s": round(build_s, 1),
        "store_mib": round(sum(f.stat().st_size for f in store.rglob("*") if f.is_file()) / 2**20),
        "train_steps_timed": args.steps,
        "train_patches_per_s": round(timer.patches_per_s, 2),
        "train_peak_gpu_mib": round(torch.cuda.max_memory_allocated() / 2**20)
        if device == "cuda" else None,
        "checkpoint": str(checkpoint),
    }  # fmt: skip


def predict(checkpoint: str, case: Path, out: Path, device: str) -> dict:
    from sap.inference import predict_from_files

    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    start = time.perf_counter()
    predict_from_files(case, out, checkpoint, device=device, memory_check=False, log=lambda _: None)
    if device == "cuda":
        torch.cuda.synchronize()
    return {
        "predict_s": round(time.perf_counter() - start, 1),
        "predict_peak_gpu_mib": round(torch.cuda.max_memory_allocated() / 2**20)
        if device == "cuda" else None,
        "predict_peak_host_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        "host_rss_before_predict_mib": round(rss_before),
    }  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--cases", type=int, default=4)
    parser.add_argument("--case-shape", type=int, nargs=3, default=(192, 160, 480))
    parser.add_argument("--volume-shape", type=int, nargs=3, default=(400, 300, 1100))
    parser.add_argument("--patch", type=int, default=96)
    parser.add_argument("--warmup", type=int, default=5, help="training steps not timed")
    parser.add_argument("--steps", type=int, default=20, help="training steps timed")
    parser.add_argument("--workers", type=int, default=min(8, os.cpu_count() or 1))
    parser.add_argument("--allow-cpu", action="store_true", help="run on the CPU (tests)")
    parser.add_argument("--quick", action="store_true", help="tiny sizes and a tiny U-Net")
    parser.add_argument("--work", type=Path, default=None, help="work folder (kept)")
    args = parser.parse_args(argv)
    if not torch.cuda.is_available() and not args.allow_cpu:
        print(NO_CUDA, file=sys.stderr)
        return 2
    device = "cuda" if torch.cuda.is_available() else "cpu"
    if args.quick:
        args.cases, args.case_shape, args.volume_shape = 2, (48, 32, 96), (64, 48, 96)
        args.patch, args.warmup, args.steps = 32, 1, 2
    started = time.perf_counter()
    work = args.work or Path(tempfile.mkdtemp(prefix="sap-gpu-smoke-"))
    try:
        summary: dict = {"device": torch.cuda.get_device_name() if device == "cuda" else "cpu"}
        summary["cohort_s"] = round(write_cohort(work / "cohort", args.cases,
                                                 tuple(args.case_shape), args.workers), 1)  # fmt: skip
        summary.update(train(work / "cohort", work / "store", work / "run", args, device))
        manifest = write_volume(work / "inputs" / "wholebody", tuple(args.volume_shape))
        summary["volume"] = [2, *args.volume_shape]
        summary.update(predict(summary.pop("checkpoint"), manifest, work / "out", device))
    finally:
        if args.work is None:
            shutil.rmtree(work, ignore_errors=True)
    summary["total_s"] = round(time.perf_counter() - started, 1)
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
