"""``sap demo``: the miniature SAP study (phantom -> pretrain -> fine-tune x2 -> evaluate)."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "demo",
        help="run the whole SAP study in miniature on synthetic phantoms (CPU, minutes)",
        description=(
            "Generate a phantom cohort, pretrain a skeleton model on healthy cases, fine-tune "
            "lesion models from SAP initialisation and from scratch with identical budgets, "
            "evaluate both on held-out cases and print a side-by-side table."
        ),
    )
    parser.add_argument(
        "--out", type=Path, default=Path("sap_demo"), help="output folder (default: ./sap_demo)"
    )
    parser.add_argument(
        "--seed", type=int, default=None, help="random seed of phantom and training"
    )
    parser.add_argument(
        "--skeleton-epochs", type=int, default=None, help="epochs of skeleton pretraining"
    )
    parser.add_argument(
        "--lesion-epochs", type=int, default=None, help="epochs of each lesion fine-tuning arm"
    )
    parser.add_argument(
        "--quick", action="store_true", help="a much smaller run (a smoke test, about a minute)"
    )
    parser.add_argument(
        "--overwrite", action="store_true", help="reuse an existing non-empty output folder"
    )
    parser.add_argument("--no-progress", action="store_true", help="hide progress bars")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from sap.demo import DemoSettings, quick_settings, run_demo

    out: Path = args.out
    if out.exists() and any(out.iterdir()) and not args.overwrite:
        raise SystemExit(
            f"sap demo: output folder {out} is not empty; choose another --out or pass --overwrite"
        )
    settings = quick_settings() if args.quick else DemoSettings()
    if args.seed is not None:
        settings.seed = args.seed
    if args.skeleton_epochs is not None:
        settings.skeleton_epochs = args.skeleton_epochs
    if args.lesion_epochs is not None:
        settings.lesion_epochs = args.lesion_epochs
    run_demo(out, settings, progress=not args.no_progress, overwrite=args.overwrite)
    return 0
