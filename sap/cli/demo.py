"""``sap demo``: the miniature SAP study (phantom -> pretrain -> fine-tune x2 -> evaluate)."""

from __future__ import annotations

import argparse
import sys
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
        "--overwrite", action="store_true", help="reuse the folder of an earlier 'sap demo'"
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="CPU threads of torch (default: torch's choice); the numbers depend on it",
    )
    parser.add_argument("--no-progress", action="store_true", help="hide progress bars")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import dataclasses

    from sap.experiments.demo import DemoSettings, check_settings, quick_settings, run_demo

    overrides = {
        "seed": args.seed,
        "skeleton_epochs": args.skeleton_epochs,
        "lesion_epochs": args.lesion_epochs,
        "torch_threads": args.threads,
    }
    settings = dataclasses.replace(
        quick_settings() if args.quick else DemoSettings(),
        **{key: value for key, value in overrides.items() if value is not None},
    )
    try:
        check_settings(settings)  # before the phantom is generated
        run_demo(args.out, settings, progress=not args.no_progress, overwrite=args.overwrite)
    except (ValueError, FileExistsError) as error:  # settings, output folder
        print(f"sap demo: error: {error}", file=sys.stderr)
        return 2
    return 0
