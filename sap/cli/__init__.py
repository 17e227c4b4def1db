"""The ``sap`` command: one entry point that routes to the library, with no logic of its own.

``sap fit|validate|test`` go to Lightning's ``LightningCLI`` (every option of the task, data
module and Trainer is reachable from YAML and the command line); the other commands are small
argparse front-ends, each in its own module, importing heavy libraries only when they run so
that ``sap --help`` answers at once.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

#: Sub-commands implemented by argparse modules ``sap.cli.<module>`` with ``add_parser``.
COMMAND_MODULES: tuple[str, ...] = ("demo", "phantom", "evaluate", "predict", "zoo", "configs", "benchmark")  # fmt: skip

#: Sub-commands handed to LightningCLI.
LIGHTNING_COMMANDS: dict[str, str] = {
    "fit": "train a task (skeleton pretraining or lesion fine-tuning) from a YAML config",
    "validate": "run validation of a trained checkpoint on a data module",
    "test": "run the test loop of a trained checkpoint on a data module",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sap",
        description=(
            "Supervised Anatomical Pretraining (SAP) for bone-metastasis segmentation in "
            "whole-body MRI. Training commands (fit, validate, test) take LightningCLI "
            "options: run 'sap fit --help'. Packaged configs: 'sap configs list'."
        ),
    )
    from sap._version import __version__

    parser.add_argument("--version", action="version", version=f"sap {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, help_text in LIGHTNING_COMMANDS.items():
        subparsers.add_parser(name, help=help_text, add_help=False)
    for module_name in COMMAND_MODULES:
        importlib.import_module(f"sap.cli.{module_name}").add_parser(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``sap`` console script."""
    args_list = list(sys.argv[1:] if argv is None else argv)
    if args_list and args_list[0] in LIGHTNING_COMMANDS:
        from sap.cli.lightning import run_lightning_cli

        return run_lightning_cli(args_list)
    parser = build_parser()
    args = parser.parse_args(args_list)
    if not getattr(args, "func", None):
        parser.print_help()
        return 0 if not args_list else 2
    result = args.func(args)
    return int(result or 0)


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
