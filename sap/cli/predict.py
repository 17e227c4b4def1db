"""``sap predict``: segment bone metastases (and the skeleton) in whole-body MRI scans."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def _channel_spec(text: str) -> tuple[str, str]:
    if "=" not in text:
        raise argparse.ArgumentTypeError(
            f'expected CHANNEL=SERIES (e.g. b1000="DWI b1000"), got {text!r}'
        )
    channel, spec = text.split("=", 1)
    return channel.strip(), spec.strip()


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "predict",
        help="predict lesion (and skeleton) maps and a lesion report for scans",
        description=(
            "Predict bone-metastasis masks (and, with --skeleton-model, bone regions) on "
            "whole-body MRI. Preprocessing comes from each model's recipe. Outputs are NIfTI "
            "files on the exact grid of each input T1, a lesion table (CSV + JSON) per case "
            "and OUT/summary.csv."
        ),
    )
    parser.add_argument(
        "input",
        type=Path,
        metavar="INPUT",
        help="a case folder (T1.nii.gz, b1000.nii.gz), a folder of case folders, a CSV "
        "manifest (case_id,T1,b1000), or a folder of DICOM series (one per channel)",
    )
    parser.add_argument("out", type=Path, metavar="OUT", help="output folder")
    parser.add_argument(
        "--lesion-model",
        required=True,
        metavar="NAME_OR_PATH",
        help="lesion model: zoo name, exported model folder, or Lightning .ckpt",
    )
    parser.add_argument(
        "--skeleton-model",
        metavar="NAME_OR_PATH",
        help="skeleton model for bone regions in the report (same forms as --lesion-model)",
    )
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (default: cpu)")
    parser.add_argument(
        "--tta",
        action="store_true",
        help="flip test-time augmentation (anterior-posterior and head-feet axes only; 4x slower)",
    )
    parser.add_argument(
        "--save-probabilities",
        action="store_true",
        help="also write lesion_probability.nii.gz (uint8, scale 1/255)",
    )
    parser.add_argument(
        "--min-volume-ml",
        type=float,
        default=0.1,
        help="drop predicted lesions smaller than this (default: 0.1 mL)",
    )
    parser.add_argument(
        "--threshold",
        type=float,
        default=None,
        help="lesion probability threshold (default: 0.5)",
    )
    parser.add_argument(
        "--overlap",
        type=float,
        default=0.5,
        help="sliding-window overlap fraction in [0, 1) (default: 0.5)",
    )
    parser.add_argument(
        "--blending",
        choices=("gaussian", "hann", "constant"),
        default="gaussian",
        help="how overlapping windows are weighted (default: gaussian)",
    )
    parser.add_argument(
        "--batch-size", type=int, default=2, help="windows per forward pass (default: 2)"
    )
    parser.add_argument(
        "--dicom-series",
        type=_channel_spec,
        action="append",
        default=[],
        metavar="CHANNEL=SERIES",
        help="DICOM input: the series of a channel, by SeriesDescription, SeriesInstanceUID or "
        "folder (repeatable); by default series are matched by description",
    )
    parser.add_argument("--png", action="store_true", help="write overview.png (coronal MIP)")
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="replace an earlier 'sap predict' output in OUT (without it, a rerun with the same "
        "settings resumes: finished cases are skipped)",
    )
    parser.add_argument(
        "--no-memory-check",
        action="store_true",
        help="do not refuse cases whose estimated memory exceeds the available RAM",
    )
    parser.add_argument(
        "--spill",
        choices=("auto", "disk", "memory"),
        default="auto",
        help="where whole-volume arrays (network input, probabilities) live while a case is "
        "predicted: temporary files in TMPDIR with only the slabs in use in RAM (disk), RAM "
        "(memory), or disk for whole-body scans of >= 256 MiB of network input (auto, default); "
        "the results are the same",
    )
    parser.add_argument("--no-progress", action="store_true", help="hide progress bars")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from sap.inference.pipeline import predict_from_files
    from sap.io import stop_status

    try:
        result = predict_from_files(
            args.input,
            args.out,
            args.lesion_model,
            args.skeleton_model,
            device=args.device,
            overlap=args.overlap,
            blending=args.blending,
            batch_size=args.batch_size,
            tta=args.tta,
            min_volume_ml=args.min_volume_ml,
            threshold=args.threshold,
            dicom_series=dict(args.dicom_series),
            memory_check=not args.no_memory_check,
            save_probabilities=args.save_probabilities,
            png=args.png,
            overwrite=args.overwrite,
            progress=not args.no_progress,
            spill={"auto": None, "disk": True, "memory": False}[args.spill],
        )
    except (ValueError, LookupError, OSError, RuntimeError, MemoryError) as error:
        # Wrong or unknown models (ValueError, LookupError), unreadable files and unusable
        # output folders (OSError), Hub problems (RuntimeError), too little memory (MemoryError).
        print(f"sap predict: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as stop:  # Ctrl-C, or SIGTERM turned into sap.io.Terminated
        name, status = stop_status(stop)
        print(
            f"sap predict: stopped ({name}). Finished cases are kept in {args.out} and "
            "unfinished ones removed; run the same command again to resume.",
            file=sys.stderr,
        )
        return status
    skipped = f", {len(result.skipped)} finished earlier" if result.skipped else ""
    print(
        f"sap predict: {len(result.reports)} case(s) written to {args.out}{skipped}"
        + (f"; {len(result.errors)} failed: {sorted(result.errors)}" if result.errors else "")
    )
    return 1 if result.errors else 0
