"""``sap evaluate``: the paper's evaluation of a folder of predictions against references.

Folders:

- ``--ref DIR``: the standard case layout, ``DIR/<case_id>/lesion.nii.gz`` (file name set by
  ``--ref-file``). Case folders without that file (healthy volunteers) are skipped, or
  scored against an empty reference with ``--healthy-as-empty``. Non-zero voxels are lesion.
- ``--pred DIR``: one prediction per case, either ``DIR/<case_id>.nii.gz`` (or ``.nii``)
  or a case folder: ``DIR/<case_id>/lesion.nii.gz`` (binary masks) or, with ``--prob``,
  ``DIR/<case_id>/lesion_probability.nii.gz`` (probability maps). Predictions must lie on
  the reference grid (same shape and affine).

With ``--prob`` the FROC is added, predictions are binarised at ``--threshold`` (default
0.5), or at the threshold that maximises the mean patient-level F2 on a tuning fold given by
``--tune-on DIR`` (probability maps, references from ``--tune-ref``, default ``--ref``).

Writes per_exam.csv, per_lesion.csv, false_positives.csv, summary.json, figures and one
picture per case (cases/<case_id>.png: detected, missed and false-positive lesions). Cases
whose prediction looks degenerate (one component over many lesions, most of the body
predicted, a near-constant probability map) are printed as warnings and listed in
summary.json; their detection numbers are not meaningful (docs/metrics.md).

``--out DIR`` is written whole: it must lie outside the input folders and be new, empty, or
(with ``--overwrite``) an earlier ``sap evaluate`` output.

``sap evaluate compare A/summary.json B/summary.json ...`` prints the paper-style table of
several models with p-values against the first.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import warnings
from pathlib import Path


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "evaluate",
        help="score lesion predictions against references (detection, Dice, NSD, FROC, ICC)",
        description=__doc__.split("\n\n", 1)[1] if __doc__ else None,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--pred", type=Path, help="folder of predictions (see above)")
    parser.add_argument("--ref", type=Path, help="folder of reference case folders")
    parser.add_argument("--out", type=Path, help="output folder for CSV, JSON and PNG files")
    parser.add_argument(
        "--prob", action="store_true", help="predictions are probability maps (adds the FROC)"
    )
    choose = parser.add_mutually_exclusive_group()
    choose.add_argument(
        "--threshold", type=float, default=None, help="binarisation threshold for --prob (0.5)"
    )
    choose.add_argument(
        "--tune-on",
        type=Path,
        default=None,
        metavar="DIR",
        help="tune the threshold on this folder of probability maps (max. mean patient F2)",
    )
    parser.add_argument(
        "--tune-ref", type=Path, default=None, metavar="DIR", help="references of --tune-on (--ref)"
    )
    parser.add_argument(
        "--min-volume-ml", type=float, default=1.0, help="volume limit of the large subset (1)"
    )
    parser.add_argument(
        "--connectivity", type=int, choices=(6, 18, 26), default=26, help="lesion connectivity (26)"
    )
    parser.add_argument("--nsd-tolerance-mm", type=float, default=2.0, help="NSD tolerance (2 mm)")
    parser.add_argument(
        "--nsd-variant",
        choices=("boundary", "area"),
        default="boundary",
        help="NSD: boundary-voxel counting (MONAI default) or surface-area weighted",
    )
    parser.add_argument("--beta", type=float, default=2.0, help="beta of the F-beta score (2)")
    parser.add_argument(
        "--min-prob", type=float, default=0.01, help="lowest threshold of the FROC sweep (0.01)"
    )
    parser.add_argument(
        "--bootstrap", type=int, default=1000, help="bootstrap resamples for median CIs (1000)"
    )
    parser.add_argument("--seed", type=int, default=0, help="bootstrap seed (0)")
    parser.add_argument(
        "--ref-file", default="lesion.nii.gz", help="reference file name in case folders"
    )
    parser.add_argument(
        "--healthy-as-empty",
        action="store_true",
        help="score reference case folders without a lesion file as lesion-free exams",
    )
    parser.add_argument("--no-plots", action="store_true", help="skip the PNG figures")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    parser.add_argument(
        "--overwrite", action="store_true", help="replace an earlier 'sap evaluate' output in --out"
    )
    modes = parser.add_subparsers(dest="evaluate_mode", metavar="{compare}")
    compare = modes.add_parser(
        "compare",
        help="compare summary.json files of several models (paper table with p-values)",
        description=(
            "Print medians [95% CI] of each model and Bonferroni-corrected p-values of every "
            "model against the first: Wilcoxon signed-rank on per-patient metrics (patients "
            "paired by case id), Mann-Whitney U on lesion-level Dice and NSD."
        ),
    )
    compare.add_argument("summaries", nargs="+", type=Path, help="summary.json files")
    compare.add_argument(
        "--names", nargs="+", default=None, help="model names (default: parent folder names)"
    )
    compare.add_argument(
        "--out", type=Path, default=None, help="also write comparison.md and comparison.json here"
    )
    compare.add_argument(
        "--overwrite", action="store_true", help="replace an earlier comparison in --out"
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run ``sap evaluate`` (or ``sap evaluate compare``); returns the exit status."""
    if getattr(args, "evaluate_mode", None) == "compare":
        return run_compare(args)
    missing = [flag for flag in ("pred", "ref", "out") if getattr(args, flag) is None]
    if missing:
        print(
            "sap evaluate: " + ", ".join(f"--{m}" for m in missing) + " required "
            "(or use 'sap evaluate compare A.json B.json').",
            file=sys.stderr,
        )
        return 2
    if args.tune_on is not None and not args.prob:
        print("sap evaluate: --tune-on needs probability maps: add --prob.", file=sys.stderr)
        return 2
    if args.threshold is not None and not args.prob:
        print("sap evaluate: --threshold applies to probability maps: add --prob.", file=sys.stderr)
        return 2
    from sap.io import check_output_folder, check_outside_inputs, stop_status
    from sap.metrics.detection import DetectionSettings
    from sap.metrics.folders import COMMAND, check_options, evaluate_folders
    from sap.metrics.summary import BootstrapSettings

    inputs = [p for p in (args.pred, args.ref, args.tune_on, args.tune_ref) if p is not None]
    try:  # every setting and the output folder, before any file is read
        settings = DetectionSettings(
            connectivity=args.connectivity,
            min_volume_ml=args.min_volume_ml,
            nsd_tolerance_mm=args.nsd_tolerance_mm,
            nsd_variant=args.nsd_variant,
            beta=args.beta,
        )
        bootstrap = BootstrapSettings(n_resamples=args.bootstrap, seed=args.seed)
        check_options(args.threshold, args.min_prob, bootstrap)
        check_outside_inputs(args.out, inputs)
        check_output_folder(args.out, COMMAND, overwrite=args.overwrite)
    except (ValueError, OSError) as error:
        print(f"sap evaluate: {error}", file=sys.stderr)
        return 2
    try:
        with _warnings_printed():
            result = evaluate_folders(
                args.pred,
                args.ref,
                prob=args.prob,
                threshold=args.threshold,
                tune_dir=args.tune_on,
                tune_ref_dir=args.tune_ref,
                settings=settings,
                min_prob=args.min_prob,
                bootstrap=bootstrap,
                ref_file=args.ref_file,
                healthy_as_empty=args.healthy_as_empty,
                progress=not args.no_progress,
            )
        paths = result.write(
            args.out,
            plots=not args.no_plots,
            overwrite=args.overwrite,
            progress=not args.no_progress,
        )
    except (FileNotFoundError, ValueError) as error:  # missing or unusable predictions
        print(f"sap evaluate: {error}", file=sys.stderr)
        return 1
    except OSError as error:  # the output folder (changed meanwhile), a full disk
        print(f"sap evaluate: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as stop:  # Ctrl-C, or SIGTERM turned into sap.io.Terminated
        name, status = stop_status(stop)
        print(f"sap evaluate: stopped ({name}); {args.out} was left as it was.", file=sys.stderr)
        return status
    print(result.table(), end="")
    if result.threshold is not None:
        tuned = " (tuned)" if result.tuning is not None else ""
        print(f"threshold: {result.threshold:.6g}{tuned}")
    flagged = sorted(result.summary.get("degenerate", {}))
    if flagged:
        print(
            f"degenerate predictions: {len(flagged)} case(s) ({', '.join(flagged[:10])}"
            f"{', ...' if len(flagged) > 10 else ''}); see 'degenerate' in summary.json"
        )
    print(f"wrote {_written(paths)} to {args.out}")
    return 0


def _written(paths: dict[str, Path]) -> str:
    """The written files by name, the per-case pictures as one entry."""
    names = sorted(p.name for key, p in paths.items() if not key.startswith("case:"))
    pictures = sum(key.startswith("case:") for key in paths)
    return ", ".join(names + ([f"cases/ ({pictures} pictures)"] if pictures else []))


def run_compare(args: argparse.Namespace) -> int:
    """``sap evaluate compare``: print (and optionally write) the comparison table."""
    from sap.io import replace_folder
    from sap.metrics.comparison import compare_summary_files
    from sap.metrics.report import write_comparison

    if args.names is not None and len(args.names) != len(args.summaries):
        print(
            f"sap evaluate compare: got {len(args.names)} names for {len(args.summaries)} "
            f"summaries.",
            file=sys.stderr,
        )
        return 2
    try:
        rows, table = compare_summary_files(args.summaries, args.names)
    except (FileNotFoundError, ValueError) as error:
        print(f"sap evaluate compare: {error}", file=sys.stderr)
        return 1
    if args.out is not None:
        try:
            replace_folder(
                args.out,
                "sap evaluate compare",
                lambda folder: write_comparison(rows, table, folder),
                overwrite=args.overwrite,
                inputs=[path.parent for path in args.summaries],
            )
        except OSError as error:
            print(f"sap evaluate compare: {error}", file=sys.stderr)
            return 2
    print(table, end="")
    return 0


@contextlib.contextmanager
def _warnings_printed():
    """Print the library's evaluation warnings as ``sap evaluate: warning: ...`` lines."""
    from sap.metrics.case_files import EvaluationWarning
    from sap.metrics.degenerate import DegeneratePredictionWarning

    ours = (EvaluationWarning, DegeneratePredictionWarning)
    caught: list[warnings.WarningMessage] = []
    try:
        with warnings.catch_warnings(record=True) as caught:
            for category in ours:
                warnings.simplefilter("always", category)
            yield
    finally:
        for warning in caught:
            if issubclass(warning.category, ours):
                print(f"sap evaluate: warning: {warning.message}", file=sys.stderr)
            else:
                warnings.showwarning(
                    warning.message, warning.category, warning.filename, warning.lineno
                )


__all__ = ["add_parser", "run", "run_compare"]
