"""``sap phantom``: write a synthetic whole-body MRI cohort in the standard folder layout."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

# Defaults repeated here (not imported) so that ``sap --help`` does not import numpy/scipy;
# tests check they match sap.phantom.
DEFAULT_SHAPE = (96, 60, 192)
DEFAULT_SPACING_MM = (5.0, 5.0, 6.0)


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "phantom",
        help="generate a synthetic two-channel whole-body MRI cohort (T1, b1000, labels)",
        description=(
            "Generate healthy volunteers (T1, b1000, skeleton labels) and metastatic patients "
            "(plus lesion labels) as NIfTI case folders with a cohort.json, in the layout that "
            "'sap fit' and the data modules read. Same seed, same cohort."
        ),
    )
    parser.add_argument(
        "out", type=Path, help="cohort folder to create (new or empty; see --overwrite)"
    )
    parser.add_argument(
        "--healthy", type=int, default=4, metavar="N", help="healthy cases (default: 4)"
    )
    parser.add_argument(
        "--metastatic", type=int, default=4, metavar="M", help="metastatic cases (default: 4)"
    )
    parser.add_argument("--seed", type=int, default=0, metavar="S", help="cohort seed (default: 0)")
    parser.add_argument(
        "--shape",
        type=int,
        nargs=3,
        default=list(DEFAULT_SHAPE),
        metavar=("X", "Y", "Z"),
        help="voxels left-right, posterior-anterior, inferior-superior (default: %(default)s)",
    )
    parser.add_argument(
        "--spacing-mm",
        type=float,
        nargs=3,
        default=list(DEFAULT_SPACING_MM),
        metavar=("X", "Y", "Z"),
        help="voxel size in mm along the same axes (default: %(default)s)",
    )
    parser.add_argument(
        "--dwi-downsample",
        type=int,
        nargs="+",
        default=[1],
        metavar="F",
        help="write b1000 on a grid F times coarser than T1 (one factor or three; default: 1)",
    )
    parser.add_argument(
        "--max-lesions", type=int, default=30, help="most lesions per patient (default: 30)"
    )
    parser.add_argument(
        "--marrow",
        choices=("fatty", "adult"),
        default="fatty",
        help=(
            "marrow model: 'fatty' (uniform fatty marrow, the default) or 'adult' (red marrow in "
            "the axial skeleton, benign focal marrow lesions, less DWI-bright metastases: "
            "lesions no longer stand out by their voxels alone)"
        ),
    )
    parser.add_argument(
        "--png", action="store_true", help="also write a coronal preview.png per case"
    )
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="replace an earlier cohort written by 'sap phantom' (nothing else is replaced)",
    )
    parser.add_argument("--quiet", action="store_true", help="print only the final line")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Generate the cohort; 0 on success, 2 on a usage problem (message on stderr)."""
    from sap.io import stop_status
    from sap.phantom import generate_cohort

    factors = args.dwi_downsample
    if len(factors) not in (1, 3):
        print("sap phantom: error: --dwi-downsample takes 1 or 3 factors", file=sys.stderr)
        return 2
    start = time.perf_counter()
    try:
        folders = generate_cohort(
            args.out,
            healthy=args.healthy,
            metastatic=args.metastatic,
            seed=args.seed,
            shape=tuple(args.shape),
            spacing_mm=tuple(args.spacing_mm),
            render_png=args.png,
            dwi_downsample=factors[0] if len(factors) == 1 else tuple(factors),
            max_lesions=args.max_lesions,
            marrow=args.marrow,
            overwrite=args.overwrite,
            progress=None if args.quiet else (lambda line: print(f"[sap phantom] {line}")),
        )
    except (OSError, ValueError) as error:  # the output folder, a full disk, bad settings
        print(f"sap phantom: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as stop:  # Ctrl-C, or SIGTERM turned into sap.io.Terminated
        name, status = stop_status(stop)
        print(f"sap phantom: stopped ({name}); {args.out} was left as it was.", file=sys.stderr)
        return status
    print(
        f"[sap phantom] wrote {len(folders)} cases to {args.out} "
        f"({time.perf_counter() - start:.1f} s); details in {args.out / 'cohort.json'}"
    )
    return 0
