"""``sap benchmark``: SAP vs SSL vs scratch under the paper's protocol, from one config.

The options are those of :class:`sap.experiments.benchmark_config.BenchmarkConfig`, parsed
by jsonargparse like LightningCLI: ``--preset quick`` reads a packaged YAML, ``--config``
a file of yours, and every field can be overridden (``--cv.folds 3 --seeds [0,1]``); later
arguments win. ``--print_config`` shows the resolved configuration.
"""

from __future__ import annotations

import argparse
import shlex
from collections.abc import Sequence

#: The configuration fields among the parsed options.
_FIELDS = (
    "seeds", "reference_arm", "cohort", "cv", "training", "arms", "evaluation", "features", "workers",
)  # fmt: skip


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "benchmark",
        help="SAP vs SSL vs scratch with cross-validation, statistics and a report",
        add_help=False,
        prefix_chars="\0",  # every argument goes to the jsonargparse parser below
    )
    parser.add_argument("argv", nargs=argparse.REMAINDER)
    parser.set_defaults(func=run)


def build_parser():
    """The jsonargparse parser of ``sap benchmark`` (config file, presets, every field)."""
    from jsonargparse import ActionConfigFile, ArgumentParser

    from sap.configs import list_presets
    from sap.experiments.benchmark_config import BenchmarkConfig

    presets = list_presets()
    parser = ArgumentParser(
        prog="sap benchmark",
        description=(
            "Pretrain SAP and SSL once on a healthy cohort, fine-tune scratch, SSL and SAP on "
            "stratified cross-validation folds of a metastatic cohort over several seeds, "
            "score every test patient with the paper's metrics and write OUT/report.md. "
            "Rerunning continues where an earlier run stopped."
        ),
        epilog=f"presets: {', '.join(presets)} (--preset NAME, read before --config)",
    )
    parser.add_argument(
        "--preset", type=str | None, default=None, help=f"packaged config: {', '.join(presets)}"
    )
    parser.add_argument("--config", action=ActionConfigFile, help="YAML config file")
    parser.add_argument("--progress", type=bool, default=False, help="show progress bars")
    parser.add_class_arguments(BenchmarkConfig, None, as_group=False)
    parser.add_argument("out", type=str, help="output folder (an earlier run there is continued)")
    return parser


def expand_preset(argv: Sequence[str]) -> list[str]:
    """Replace ``--preset NAME`` by ``--config <packaged benchmark/NAME.yaml>``, in place."""
    from sap.configs import preset_path

    args = list(argv)
    for index, arg in enumerate(args):
        name = None
        if arg == "--preset" and index + 1 < len(args):
            name, end = args[index + 1], index + 2
        elif arg.startswith("--preset="):
            name, end = arg.split("=", 1)[1], index + 1
        if name is not None:
            return [*args[:index], "--config", str(preset_path(name)), *args[end:]]
    return args


def run(args: argparse.Namespace) -> int:
    return main(args.argv)


def main(argv: Sequence[str]) -> int:
    """Parse ``argv`` (everything after ``sap benchmark``), run the benchmark, print the table."""
    from sap.experiments.benchmark import run_benchmark
    from sap.experiments.benchmark_config import BenchmarkConfig

    parser = build_parser()
    options = parser.parse_args(expand_preset(argv))
    fields = vars(parser.instantiate_classes(options))
    config = BenchmarkConfig(**{k: v for k, v in fields.items() if k in _FIELDS})
    results = run_benchmark(
        config,
        options.out,
        command=shlex.join(["sap", "benchmark", *argv]),
        progress=options.progress,
    )
    print(results["comparison"]["markdown"])
    return 0
