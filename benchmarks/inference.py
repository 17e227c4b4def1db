"""Whole-body inference against MONAI: the aggregator alone, and ``sap predict`` end to end.

Question: does ``sap`` keep up with MONAI in time while needing much less memory on a
whole-body volume, (1) in the sliding-window aggregator alone, and (2) end to end, from
NIfTI files to a label map written back in the input's space?

**Aggregator** (default): :func:`sap.inference.sliding.sliding_window_predict` (what
:class:`sap.inference.Predictor` runs) vs MONAI's ``sliding_window_inference``. Same model,
same voxel values, same windows (MONAI's grid), patch, overlap, Gaussian blending and batch
size; both produce what the Predictor keeps: for a two-class model the float16 foreground
probability, for a multi-class model the uint8 label map (MONAI's taken slab by slab from
its float32 output per class). Our side holds the scan as float16, as the Predictor does
(``--input-dtype float32`` shows the aggregator alone); the voxel values are
float16-representable, so the outputs must agree. ``--model conv`` (default) is a tiny
3x3x3 network, whose forward pass is most of the time on a CPU; ``--model constant``
returns fixed probabilities, so only aggregation is timed.

**End to end** (``--e2e``): one whole-body-sized phantom case (:mod:`sap.phantom`, written as
NIfTI), a tiny exported model, and two pipelines: ``sap predict``'s
(:func:`sap.inference.predict_from_files`: read, reorient, normalise, sliding window,
postprocess, label map and lesion report written in the input's space) and the same built
from MONAI transforms (``LoadImage``, ``Orientation``, ``ResampleToMatch`` when the DWI grid
differs, ``ScaleIntensityRangePercentiles``, ``sliding_window_inference``, threshold, and
``SaveImage(resample=True)`` back to the input's grid).

Each side runs in a fresh subprocess that imports both libraries before its baseline is
taken; peak memory is the child's ``ru_maxrss`` (it includes ~1 GB of libraries common to
both), time is wall clock (CPU time printed beside it). Sides alternate over ``--repeats``;
the fastest run of each is kept, with the highest peak. Targets (ratios ours/MONAI):
aggregator time <= 0.9; end to end time <= 1.0 and peak RSS <= 0.5.

    python benchmarks/inference.py                          # aggregator, 2 x 400 x 300 x 1100
    python benchmarks/inference.py --classes 10             # the skeleton model's output size
    python benchmarks/inference.py --model constant         # aggregation only
    python benchmarks/inference.py --e2e                    # sap predict vs MONAI transforms
    python benchmarks/inference.py --e2e --shape 200 150 550 --work /tmp/e2e   # quicker, kept
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

FIELD_OF_VIEW_MM = (480.0, 300.0, 1800.0)


# ---- models ---------------------------------------------------------------------------


def tiny_model(classes: int):
    """A 3x3x3 conv net (2 -> 4 channels, ReLU, 1x1x1 to ``classes``), seeded."""
    import torch
    from torch import nn

    torch.manual_seed(0)
    return nn.Sequential(nn.Conv3d(2, 4, 3, padding=1), nn.ReLU(), nn.Conv3d(4, classes, 1)).eval()


def register_tiny_backbone() -> None:
    """:func:`tiny_model` as a registered backbone, so it can be exported and loaded."""
    import torch
    from torch import nn

    from sap.backbones import SegmentationBackbone, list_backbones, register_backbone

    if "benchmark_tiny" in list_backbones():
        return

    class Scale(nn.Module):  # the cheapest trainable "decoder": a gain per channel
        def __init__(self, channels: int) -> None:
            super().__init__()
            self.gain = nn.Parameter(torch.ones(1, channels, 1, 1, 1))

        def forward(self, x):
            return torch.relu(x) * self.gain

    @register_backbone("benchmark_tiny", description="3x3x3 conv + 1x1x1 head (benchmarks)")
    class BenchmarkTiny(SegmentationBackbone):
        encoder_modules, decoder_modules, head_module = ("enc",), ("dec",), "head"

        def __init__(self, in_channels: int, out_channels: int) -> None:
            super().__init__(in_channels, out_channels, spatial_multiple=1)
            self.enc = nn.Conv3d(in_channels, 4, 3, padding=1)
            self.dec = Scale(4)
            self.head = self.new_head(out_channels)

        def new_head(self, out_channels: int) -> nn.Module:
            return nn.Conv3d(4, out_channels, 1)

        def forward_logits(self, x):
            return self.head(self.dec(self.enc(x)))


def make_volume(shape, dtype):
    """Uniform noise rounded to float16 values, so a float16 and a float32 copy hold equal numbers."""
    import torch

    generator = torch.Generator().manual_seed(0)
    image = torch.empty((2, *shape), dtype=dtype)
    for channel in range(2):
        for z in range(0, shape[-1], 64):  # in slabs: no whole-volume temporary
            block = torch.rand((*shape[:2], min(64, shape[-1] - z)), generator=generator)
            image[channel, ..., z : z + 64] = block.to(torch.float16)
    return image


def _usage() -> tuple[float, float]:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_maxrss / 1024, usage.ru_utime + usage.ru_stime


# ---- the aggregator ---------------------------------------------------------------------


def run_aggregator(which: str, args: argparse.Namespace) -> dict:
    import torch
    from monai.inferers import sliding_window_inference  # both sides load both libraries

    from sap.inference.sliding import sliding_window_predict, softmax_predict_fn

    torch.set_num_threads(args.threads)
    binary = args.classes == 2
    input_dtype = getattr(torch, args.input_dtype) if which == "ours" else torch.float32
    image = make_volume(tuple(args.shape), input_dtype)
    patch = (args.patch,) * 3
    if args.model == "constant":
        # One fixed window output, the same on both sides and for every window, so that the
        # two aggregations must agree whatever order they visit the windows in.
        generator = torch.Generator().manual_seed(0)
        window = torch.softmax(torch.rand((1, args.classes, *patch), generator=generator), dim=1)
        fixed = window.repeat(args.batch_size, 1, 1, 1, 1)

        def predict(batch):  # a copy: MONAI weights the returned windows in place
            return fixed[: batch.shape[0]].clone()
    else:
        predict = softmax_predict_fn(tiny_model(args.classes))  # as the Predictor on a CPU

    baseline_mb, cpu_start = _usage()
    start = time.perf_counter()
    with torch.inference_mode():
        if which == "ours":
            result = sliding_window_predict(
                image, predict, patch, args.classes, overlap=args.overlap, blending="gaussian",
                batch_size=args.batch_size, keep_probabilities=(1,) if binary else (),
                return_labels=not binary,
            )  # fmt: skip
            output = torch.from_numpy(result.probabilities[0] if binary else result.labels)
        else:
            full = sliding_window_inference(
                image[None], patch, args.batch_size, predict, overlap=args.overlap, mode="gaussian"
            )[0]
            if binary:
                output = full[1].to(torch.float16)
            else:
                output = torch.empty(full.shape[1:], dtype=torch.uint8)
                for z in range(0, full.shape[-1], 32):
                    output[..., z : z + 32] = full[..., z : z + 32].argmax(0).to(torch.uint8)
            del full
    wall_s = time.perf_counter() - start
    peak_mb, cpu_end = _usage()
    labels = (output >= 0.5).to(torch.uint8) if binary else output
    return {
        "which": which, "wall_s": wall_s, "cpu_s": cpu_end - cpu_start, "peak_rss_mb": peak_mb,
        "baseline_rss_mb": baseline_mb,
        "label_histogram": torch.bincount(labels.flatten().long(), minlength=args.classes).tolist(),
        "output_mean": float(output.double().mean()),
    }  # fmt: skip


# ---- end to end -------------------------------------------------------------------------


def prepare_e2e(work: Path, shape: tuple[int, int, int], patch: int) -> tuple[Path, Path]:
    """A whole-body-sized phantom case and a tiny exported lesion model (reused if present).

    The model marks lesion where the normalised DWI exceeds 0.9, so its output is as sparse
    as a real one (the lesion report's cost grows with the predicted lesion voxels).
    """
    import torch

    from sap.phantom import generate_cohort
    from sap.recipe import ModelRecipe
    from sap.zoo import ModelConfig, TrainingData, save_pretrained

    cohort, model_dir = work / "cohort", work / "model"
    case = cohort / "metastatic_000"
    marker = cohort / "cohort.json"
    if not marker.exists() or json.loads(marker.read_text())["parameters"]["shape"] != list(shape):
        spacing = tuple(f / n for f, n in zip(FIELD_OF_VIEW_MM, shape))
        generate_cohort(cohort, healthy=0, metastatic=1, seed=0, shape=shape, spacing_mm=spacing,
                        overwrite=True)  # fmt: skip
    if not (model_dir / "config.json").exists():
        from sap.backbones import build_backbone

        model = build_backbone("benchmark_tiny", 2, 2)
        with torch.no_grad():  # lesion where normalised b1000 > 0.9: ~1.5 % of the phantom
            for parameter in model.parameters():
                parameter.zero_()
            model.enc.weight[0, 1, 1, 1, 1] = 1.0
            model.dec.gain.fill_(1.0)
            model.head.weight[1, 0] = 40.0
            model.head.bias[1] = -36.0
        recipe = ModelRecipe(backbone="benchmark_tiny", labels=["background", "lesion"],
                             task="lesion", patch_size=(patch,) * 3)  # fmt: skip
        config = ModelConfig(recipe=recipe, name="benchmark-tiny",
                             description="Thresholds DWI, for timing only.",
                             training_data=TrainingData("none", synthetic=True, num_cases=0))  # fmt: skip
        save_pretrained(model, model_dir, config)
    return case, model_dir


def run_e2e(which: str, args: argparse.Namespace) -> dict:
    import monai.inferers  # noqa: F401  both libraries are loaded before the baseline
    import monai.transforms  # noqa: F401
    import torch

    import sap.inference  # noqa: F401

    torch.set_num_threads(args.threads)
    case, model_dir = Path(args.case), Path(args.model_dir)
    out = Path(args.out) / which
    baseline_mb, cpu_start = _usage()
    start = time.perf_counter()
    if which == "ours":
        from sap.inference import predict_from_files

        predict_from_files(case, out, model_dir, batch_size=args.batch_size, overlap=args.overlap,
                           memory_check=False, overwrite=True, log=lambda _: None)  # fmt: skip
        written = out / case.name / "lesion.nii.gz"
    else:
        written = monai_pipeline(case, model_dir, out, args)
    wall_s = time.perf_counter() - start
    peak_mb, cpu_end = _usage()
    import nibabel as nib

    labels = np.asarray(nib.load(str(written)).dataobj) > 0
    return {"which": which, "wall_s": wall_s, "cpu_s": cpu_end - cpu_start, "peak_rss_mb": peak_mb,
            "baseline_rss_mb": baseline_mb, "lesion_voxels": int(labels.sum()),
            "shape": list(labels.shape)}  # fmt: skip


def monai_pipeline(case: Path, model_dir: Path, out: Path, args) -> Path:
    """``sap predict``'s pipeline built from MONAI transforms; returns the label map written."""
    import torch
    from monai.data import MetaTensor
    from monai.inferers import sliding_window_inference
    from monai.transforms import (
        LoadImage,
        Orientation,
        ResampleToMatch,
        SaveImage,
        ScaleIntensityRangePercentiles,
    )

    from sap.inference.sliding import softmax_predict_fn
    from sap.zoo import load_pretrained

    model = load_pretrained(model_dir).eval()
    load = LoadImage(image_only=True, ensure_channel_first=True, dtype=np.float32)
    orient = Orientation(axcodes="RAS")
    scale = ScaleIntensityRangePercentiles(lower=1, upper=99, b_min=0.0, b_max=1.0, clip=True)
    t1 = scale(orient(load(case / "T1.nii.gz")))
    dwi = orient(load(case / "b1000.nii.gz"))
    if dwi.shape != t1.shape or not torch.allclose(dwi.affine, t1.affine, atol=1e-6):
        dwi = ResampleToMatch(mode="bilinear")(dwi, t1)
    image = torch.cat([t1, scale(dwi)])
    del t1, dwi
    patch = tuple(model.recipe.patch_size)
    with torch.inference_mode():
        probabilities = sliding_window_inference(
            image[None], patch, args.batch_size, softmax_predict_fn(model), overlap=args.overlap,
            mode="gaussian",
        )[0]  # fmt: skip
    label = MetaTensor((probabilities[1:2] >= 0.5).to(torch.uint8), meta=image.meta)
    del probabilities, image
    SaveImage(output_dir=str(out), output_postfix="lesion", output_dtype=np.uint8,
              resample=True, mode="nearest", separate_folder=False, print_log=False)(label)  # fmt: skip
    return next(out.glob("*lesion.nii.gz"))


# ---- the parent -------------------------------------------------------------------------


def compare(args: argparse.Namespace, forwarded: list[str]) -> dict[str, dict]:
    """Run both sides ``args.repeats`` times, alternating; the fastest of each, highest peak."""
    runs: dict[str, list[dict]] = {"monai": [], "ours": []}
    for _ in range(args.repeats):  # alternate, so background load hits both alike
        for which in ("monai", "ours"):
            completed = subprocess.run(
                [sys.executable, __file__, "--run", which, *forwarded],
                capture_output=True, text=True,
            )  # fmt: skip
            if completed.returncode:
                raise RuntimeError(f"the {which} run failed:\n{completed.stderr[-3000:]}")
            runs[which].append(json.loads(completed.stdout.strip().splitlines()[-1]))
    results = {}
    for which, items in runs.items():
        best = dict(min(items, key=lambda r: r["wall_s"]))
        best["peak_rss_mb"] = max(r["peak_rss_mb"] for r in items)
        best["baseline_rss_mb"] = max(r["baseline_rss_mb"] for r in items)
        results[which] = best
    return results


def print_ratios(results: dict[str, dict], time_target: float, rss_target: float) -> None:
    ours, monai = results["ours"], results["monai"]
    for r in (monai, ours):
        print(f"  {r['which']:>5}: {r['wall_s']:8.1f} s wall, {r['cpu_s']:8.1f} s CPU   peak RSS "
              f"{r['peak_rss_mb']:8.0f} MB (before the run {r['baseline_rss_mb']:.0f} MB)")  # fmt: skip
    added = (ours["peak_rss_mb"] - ours["baseline_rss_mb"]) / max(
        monai["peak_rss_mb"] - monai["baseline_rss_mb"], 1e-9
    )
    print(
        f"  time ratio ours/MONAI      {ours['wall_s'] / monai['wall_s']:.2f}  (target <= {time_target})"
    )
    print(
        f"  CPU time ratio ours/MONAI  {ours['cpu_s'] / monai['cpu_s']:.2f}  (less sensitive to other processes)"
    )
    print(
        f"  peak RSS ratio ours/MONAI  {ours['peak_rss_mb'] / monai['peak_rss_mb']:.2f}  (target <= {rss_target})"
    )
    print(f"  memory added by the run    {added:.2f}  (peak minus the libraries, input and model)")  # fmt: skip


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--shape", type=int, nargs=3, default=[400, 300, 1100], help="voxels")
    parser.add_argument("--patch", type=int, default=96)
    parser.add_argument("--overlap", type=float, default=0.5)
    parser.add_argument("--classes", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--input-dtype", choices=("float16", "float32"), default="float16",
                        help="how our side holds the scan (Predictor: float16); MONAI float32")  # fmt: skip
    parser.add_argument("--model", choices=("conv", "constant"), default="conv")
    parser.add_argument("--repeats", type=int, default=1, help="runs per side (fastest kept)")
    parser.add_argument("--e2e", action="store_true", help="sap predict vs MONAI transforms")
    parser.add_argument("--work", type=Path, default=None, help="e2e: folder kept between runs")
    parser.add_argument("--run", choices=("ours", "monai"), help=argparse.SUPPRESS)
    parser.add_argument("--prepare", action="store_true", help=argparse.SUPPRESS)
    for hidden in ("--case", "--model-dir", "--out"):
        parser.add_argument(hidden, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    register_tiny_backbone()
    if args.run:
        result = run_e2e(args.run, args) if args.e2e else run_aggregator(args.run, args)
        print(json.dumps(result))
        return 0
    if args.prepare:
        case, model_dir = prepare_e2e(args.work, tuple(args.shape), args.patch)
        print(json.dumps([str(case), str(model_dir)]))
        return 0

    common = ["--shape", *map(str, args.shape), "--patch", str(args.patch), "--overlap",
              str(args.overlap), "--batch-size", str(args.batch_size), "--threads",
              str(args.threads)]  # fmt: skip
    voxels = args.shape[0] * args.shape[1] * args.shape[2]
    if not args.e2e:
        forwarded = [*common, "--classes", str(args.classes), "--input-dtype", args.input_dtype,
                     "--model", args.model]  # fmt: skip
        results = compare(args, forwarded)
        print(f"aggregator: volume 2 x {' x '.join(map(str, args.shape))} ({voxels / 1e6:.0f} M "
              f"voxels), patch {args.patch}^3, overlap {args.overlap}, {args.classes} classes, "
              f"batch {args.batch_size}, {args.threads} thread(s), model {args.model}, best of "
              f"{args.repeats}; input held as {args.input_dtype} by us, float32 by MONAI")  # fmt: skip
        print_ratios(results, 0.9, 0.6)
        ours, monai = results["ours"], results["monai"]
        diff = sum(abs(a - b) for a, b in zip(ours["label_histogram"], monai["label_histogram"]))
        print(f"  same outputs: label histograms differ by {diff} voxels, output mean by "
              f"{abs(ours['output_mean'] - monai['output_mean']):.1e}")  # fmt: skip
        return 0

    import tempfile

    work = args.work or Path(tempfile.mkdtemp(prefix="sap-e2e-"))
    start = time.perf_counter()
    # In a child: the phantom generator's peak must not be inherited by the measured runs
    # (Linux keeps ru_maxrss across fork and exec).
    prepared = subprocess.run(
        [sys.executable, __file__, "--prepare", "--work", str(work), *common],
        capture_output=True, text=True,
    )  # fmt: skip
    if prepared.returncode:
        raise RuntimeError(f"preparing the case failed:\n{prepared.stderr[-3000:]}")
    case, model_dir = (Path(p) for p in json.loads(prepared.stdout.strip().splitlines()[-1]))
    print(f"e2e: phantom case and model ready in {time.perf_counter() - start:.0f} s ({work})")
    forwarded = [*common, "--e2e", "--case", str(case), "--model-dir", str(model_dir),
                 "--out", str(work / "out")]  # fmt: skip
    results = compare(args, forwarded)
    print(f"end to end: one case 2 x {' x '.join(map(str, args.shape))} ({voxels / 1e6:.0f} M "
          f"voxels per channel, NIfTI), patch {args.patch}^3, overlap {args.overlap}, batch "
          f"{args.batch_size}, {args.threads} thread(s), best of {args.repeats}")  # fmt: skip
    print_ratios(results, 1.0, 0.5)
    ours, monai = results["ours"], results["monai"]
    print(f"  lesion voxels written: ours {ours['lesion_voxels']}, MONAI {monai['lesion_voxels']} "
          f"(ours removes components under 0.1 mL); shapes {ours['shape']} / {monai['shape']}")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
