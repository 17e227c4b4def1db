"""The ``sap`` command: one entry point that routes to the library, with no logic of its own.

``sap fit|validate|test`` go to Lightning's ``LightningCLI`` (every option of the task, data
module and Trainer is reachable from YAML and the command line); the other commands are small
argparse front-ends, each in its own module, importing heavy libraries only when they run so
that ``sap --help`` answers at once.

Errors a user can fix (:mod:`sap.errors`) end every command the same way: one message on
stderr (which file or option, what is wrong, what to do) and exit status 2, without a
traceback; ``--traceback`` anywhere on the command line, or ``SAP_TRACEBACK=1``, shows it.
Output cut short by the reader (``sap configs show lesion | head``) ends quietly.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence

#: Shows the full traceback of any error (also ``SAP_TRACEBACK=1``).
TRACEBACK_FLAG = "--traceback"
#: Exit status when the reader of our output went away (128 + SIGPIPE, as a shell reports).
EXIT_BROKEN_PIPE = 141

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
    parser.add_argument(
        TRACEBACK_FLAG,
        action="store_true",
        help="show the full traceback of an error (also: SAP_TRACEBACK=1); any position",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, help_text in LIGHTNING_COMMANDS.items():
        subparsers.add_parser(name, help=help_text, add_help=False)
    for module_name in COMMAND_MODULES:
        importlib.import_module(f"sap.cli.{module_name}").add_parser(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``sap`` console script: run a command, report user errors cleanly."""
    from sap.errors import exit_status, find_user_error, traceback_requested

    args_list = list(sys.argv[1:] if argv is None else argv)
    show_traceback = TRACEBACK_FLAG in args_list or traceback_requested()
    args_list = [arg for arg in args_list if arg != TRACEBACK_FLAG]
    command = args_list[0] if args_list and not args_list[0].startswith("-") else ""
    try:
        return _run(args_list)
    except BrokenPipeError:
        _silence_stdout()
        return EXIT_BROKEN_PIPE
    except KeyboardInterrupt as stop:  # Ctrl-C, or SIGTERM/SIGHUP turned into sap.io.Terminated
        if show_traceback:
            raise
        from sap.io import stop_status

        name, status = stop_status(stop)
        print(f"sap {command}: stopped ({name})".replace("  ", " "), file=sys.stderr)
        return status
    except Exception as error:
        user_error = find_user_error(error)
        if user_error is None or show_traceback:
            raise
        status = exit_status(user_error)
        _print_error(command, user_error, status)
        return status


def _run(args_list: list[str]) -> int:
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


def _print_error(command: str, error: BaseException, status: int) -> None:
    message = str(error).strip() or type(error).__name__
    prefix = f"sap {command}:" if command else "sap:"
    if not message.startswith(prefix):
        message = f"{prefix} {message}"
    print(message, file=sys.stderr)
    if status == 2:
        print(f"(full traceback: sap {TRACEBACK_FLAG} ... or SAP_TRACEBACK=1)", file=sys.stderr)


def _silence_stdout() -> None:
    """Point stdout at /dev/null so that flushing it at exit raises no second BrokenPipeError."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
