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

``sap evaluate compare A/summary.json B/summary.json ...`` prints the paper-style table of
several models with p-values against the first.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

PREDICTION_FILE = "lesion.nii.gz"
PROBABILITY_FILE = "lesion_probability.nii.gz"
_NIFTI_SUFFIXES = (".nii.gz", ".nii")


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
    try:
        return _evaluate(args)
    except (FileNotFoundError, ValueError) as error:
        print(f"sap evaluate: {error}", file=sys.stderr)
        return 1


def _evaluate(args: argparse.Namespace) -> int:
    import numpy as np
    from tqdm.auto import tqdm

    from sap.metrics.detection import DetectionSettings
    from sap.metrics.evaluation import BootstrapSettings, Evaluation
    from sap.metrics.report import compare_summaries, write_report

    settings = DetectionSettings(
        connectivity=args.connectivity,
        min_volume_ml=args.min_volume_ml,
        nsd_tolerance_mm=args.nsd_tolerance_mm,
        nsd_variant=args.nsd_variant,
        beta=args.beta,
    )
    pairs, skipped = match_cases(
        args.pred,
        args.ref,
        prob=args.prob,
        ref_file=args.ref_file,
        healthy_as_empty=args.healthy_as_empty,
    )
    extra: dict = {
        "pred_dir": str(args.pred),
        "ref_dir": str(args.ref),
        "prediction": "probability" if args.prob else "binary",
        "skipped_cases": skipped,
    }
    threshold = None
    if args.prob:
        threshold = 0.5 if args.threshold is None else float(args.threshold)
        if args.tune_on is not None:
            tuning = _tune(args, settings, [c for c, _, _ in pairs])
            threshold = tuning.threshold
            extra["threshold_tuning"] = {
                key: value
                for key, value in tuning.to_dict().items()
                if key not in ("thresholds", "scores")
            } | {"tune_dir": str(args.tune_on)}
            _write_tuning_curve(args.out, tuning)
    evaluation = Evaluation(settings, min_prob=args.min_prob, threshold=threshold)
    for case_id, pred_path, ref_path in tqdm(
        pairs, desc="sap evaluate", unit="case", disable=args.no_progress
    ):
        pred, affine = load_volume(pred_path, case_id, "prediction")
        if ref_path is None:
            ref = np.zeros(pred.shape, dtype=bool)
        else:
            ref, ref_affine = load_volume(ref_path, case_id, "reference")
            check_same_grid(case_id, pred_path, pred.shape, affine, ref_path, ref.shape, ref_affine)
        spacing = np.linalg.norm(affine[:3, :3], axis=0)
        if args.prob:
            check_probabilities(case_id, pred_path, pred)
            evaluation.add(
                case_id, pred >= np.float64(threshold), ref, spacing, prob=pred, affine=affine
            )
        else:
            check_binary(case_id, pred_path, pred)
            evaluation.add(case_id, pred, ref, spacing, affine=affine)
    bootstrap = BootstrapSettings(n_resamples=args.bootstrap, seed=args.seed)
    paths = write_report(
        evaluation, args.out, bootstrap=bootstrap, extra=extra, plots=not args.no_plots
    )
    from sap.metrics.report import load_summary

    _, table = compare_summaries([load_summary(paths["summary"])], [args.pred.name or "model"])
    print(table, end="")
    if threshold is not None:
        print(f"threshold: {threshold:.6g}" + (" (tuned)" if args.tune_on is not None else ""))
    print(f"wrote {', '.join(sorted(p.name for p in paths.values()))} to {args.out}")
    return 0


def _tune(args: argparse.Namespace, settings, evaluation_ids: list[str]):
    from tqdm.auto import tqdm

    from sap.metrics.froc import exam_froc
    from sap.metrics.threshold import tune_threshold

    tune_ref = args.tune_ref or args.ref
    pairs, _ = match_cases(
        args.tune_on,
        tune_ref,
        prob=True,
        ref_file=args.ref_file,
        healthy_as_empty=args.healthy_as_empty,
    )
    overlap = sorted(set(evaluation_ids) & {c for c, _, _ in pairs})
    if overlap:
        print(
            f"sap evaluate: warning: {len(overlap)} tuning case(s) are also evaluated "
            f"({', '.join(overlap[:5])}{', ...' if len(overlap) > 5 else ''}); the threshold "
            f"should be tuned on a separate fold.",
            file=sys.stderr,
        )
    exams = []
    import numpy as np

    for case_id, pred_path, ref_path in tqdm(
        pairs, desc="tuning threshold", unit="case", disable=args.no_progress
    ):
        prob, affine = load_volume(pred_path, case_id, "tuning probability map")
        check_probabilities(case_id, pred_path, prob)
        if ref_path is None:
            ref = np.zeros(prob.shape, dtype=bool)
        else:
            ref, ref_affine = load_volume(ref_path, case_id, "tuning reference")
            check_same_grid(case_id, pred_path, prob.shape, affine, ref_path, ref.shape, ref_affine)
        exams.append(
            exam_froc(
                prob,
                ref,
                np.linalg.norm(affine[:3, :3], axis=0),
                connectivity=settings.connectivity,
                min_volume_ml=settings.min_volume_ml,
                min_prob=args.min_prob,
            )
        )
    return tune_threshold(exams, beta=settings.beta)


def _write_tuning_curve(out: Path, tuning) -> None:
    from sap.io import write_text_atomic

    lines = ["threshold,mean_patient_f_beta"]
    lines += [f"{t!r},{s!r}" for t, s in zip(tuning.thresholds.tolist(), tuning.scores.tolist())]
    write_text_atomic(Path(out) / "threshold_tuning.csv", "\n".join(lines) + "\n")


def run_compare(args: argparse.Namespace) -> int:
    """``sap evaluate compare``: print (and optionally write) the comparison table."""
    import json

    from sap.io import write_text_atomic
    from sap.metrics.report import compare_summaries, load_summary

    names = args.names or [p.parent.name or p.stem for p in args.summaries]
    if len(names) != len(args.summaries):
        print(
            f"sap evaluate compare: got {len(names)} names for {len(args.summaries)} summaries.",
            file=sys.stderr,
        )
        return 2
    if len(set(names)) != len(names):
        print(
            f"sap evaluate compare: model names must be distinct, got {names}; pass --names.",
            file=sys.stderr,
        )
        return 2
    try:
        summaries = [load_summary(p) for p in args.summaries]
        rows, table = compare_summaries(summaries, names)
    except (FileNotFoundError, ValueError) as error:
        print(f"sap evaluate compare: {error}", file=sys.stderr)
        return 1
    print(table, end="")
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        write_text_atomic(args.out / "comparison.md", table)
        write_text_atomic(
            args.out / "comparison.json", json.dumps(rows, indent=2, default=_json_default) + "\n"
        )
    return 0


def _json_default(value: object) -> object:
    if isinstance(value, tuple):
        return list(value)
    return None


# Case discovery and loading --------------------------------------------------------------
def _case_id_of_file(path: Path) -> str | None:
    for suffix in _NIFTI_SUFFIXES:
        if path.name.endswith(suffix):
            return path.name[: -len(suffix)]
    return None


def find_predictions(pred_dir: Path, *, prob: bool) -> dict[str, Path]:
    """Prediction file of each case id in ``pred_dir`` (both layouts, see the module doc)."""
    if not pred_dir.is_dir():
        raise FileNotFoundError(f"Prediction folder {pred_dir} does not exist or is not a folder.")
    wanted = PROBABILITY_FILE if prob else PREDICTION_FILE
    found: dict[str, Path] = {}
    for entry in sorted(pred_dir.iterdir()):
        if entry.name.startswith((".", "_")):
            continue
        if entry.is_file():
            case_id = _case_id_of_file(entry)
            path = entry
        elif entry.is_dir() and (entry / wanted).is_file():
            case_id, path = entry.name, entry / wanted
        else:
            continue
        if case_id is None:
            continue
        if case_id in found:
            raise ValueError(
                f"Case {case_id!r} has two predictions in {pred_dir}: {found[case_id]} and {path}; "
                f"keep one."
            )
        found[case_id] = path
    return found


def match_cases(
    pred_dir: Path,
    ref_dir: Path,
    *,
    prob: bool,
    ref_file: str = "lesion.nii.gz",
    healthy_as_empty: bool = False,
) -> tuple[list[tuple[str, Path, Path | None]], list[str]]:
    """Pair predictions with references by case id.

    Returns:
        ``(pairs, skipped)``: ``(case_id, prediction, reference or None)`` sorted by case id,
        and the reference case folders skipped for having no reference file.
    """
    if not ref_dir.is_dir():
        raise FileNotFoundError(f"Reference folder {ref_dir} does not exist or is not a folder.")
    predictions = find_predictions(pred_dir, prob=prob)
    references: dict[str, Path | None] = {}
    skipped: list[str] = []
    for folder in sorted(
        p for p in ref_dir.iterdir() if p.is_dir() and not p.name.startswith((".", "_"))
    ):
        if (folder / ref_file).is_file():
            references[folder.name] = folder / ref_file
        elif healthy_as_empty:
            references[folder.name] = None
        else:
            skipped.append(folder.name)
    if not references:
        raise FileNotFoundError(
            f"No reference cases in {ref_dir}: expected case folders holding {ref_file} "
            f"({ref_dir}/<case_id>/{ref_file})."
        )
    missing = sorted(c for c in references if c not in predictions)
    if missing:
        example = missing[0]
        layout = f"{pred_dir}/{example}.nii.gz or {pred_dir}/{example}/{PROBABILITY_FILE if prob else PREDICTION_FILE}"
        raise FileNotFoundError(
            f"No prediction for {len(missing)} reference case(s): {', '.join(missing[:10])}"
            f"{', ...' if len(missing) > 10 else ''}. Expected e.g. {layout}."
        )
    extra = sorted(c for c in predictions if c not in references and c not in skipped)
    if extra:
        print(
            f"sap evaluate: warning: ignoring {len(extra)} prediction(s) without a reference in "
            f"{ref_dir}: {', '.join(extra[:10])}{', ...' if len(extra) > 10 else ''}",
            file=sys.stderr,
        )
    pairs = [(c, predictions[c], references[c]) for c in sorted(references)]
    return pairs, skipped


def load_volume(path: Path, case_id: str, what: str):
    """3D voxel array and affine of a NIfTI file, with errors naming the case."""
    import nibabel as nib
    import numpy as np

    try:
        image = nib.load(str(path))
        data = np.asanyarray(image.dataobj)
    except Exception as error:  # nibabel raises many types for unreadable files
        raise ValueError(f"Case {case_id!r}: cannot read the {what} {path} ({error}).") from error
    while data.ndim > 3 and data.shape[-1] == 1:
        data = data[..., 0]
    if data.ndim != 3:
        raise ValueError(
            f"Case {case_id!r}: the {what} {path} is not a 3D volume (shape {data.shape})."
        )
    return data, np.asarray(image.affine, dtype=np.float64)


def check_same_grid(
    case_id, pred_path, pred_shape, pred_affine, ref_path, ref_shape, ref_affine
) -> None:
    """Raise a ValueError naming the case when prediction and reference grids differ."""
    import numpy as np

    if tuple(pred_shape) != tuple(ref_shape):
        raise ValueError(
            f"Case {case_id!r}: prediction {pred_path} has shape {tuple(pred_shape)} but reference "
            f"{ref_path} has shape {tuple(ref_shape)}. Predictions must be on the reference grid "
            f"(resample them, or predict in the input space of the reference)."
        )
    spacing = np.linalg.norm(ref_affine[:3, :3], axis=0)
    difference = float(np.max(np.abs(pred_affine - ref_affine)))
    if difference > 0.1 * float(spacing.min()):
        raise ValueError(
            f"Case {case_id!r}: prediction {pred_path} and reference {ref_path} have the same shape "
            f"but different affines (largest difference {difference:.3g} mm, more than a tenth of "
            f"a voxel). They are not on the same grid; resample the prediction onto the reference."
        )


def check_binary(case_id: str, path: Path, data) -> None:
    """Refuse float data that is not 0/1: it is a probability map without --prob."""
    import numpy as np

    if data.dtype.kind == "f" and not np.all((data == 0) | (data == 1)):
        raise ValueError(
            f"Case {case_id!r}: prediction {path} holds values other than 0 and 1; it looks "
            f"like a probability map. Pass --prob (and --threshold or --tune-on)."
        )


def check_probabilities(case_id: str, path: Path, data) -> None:
    """Refuse probability maps outside [0, 1] (logits, or label maps)."""
    import numpy as np

    low, high = float(np.min(data)), float(np.max(data))
    if low < 0.0 or high > 1.0 or not np.isfinite([low, high]).all():
        raise ValueError(
            f"Case {case_id!r}: probability map {path} has values in [{low:.3g}, {high:.3g}], "
            f"not [0, 1]. Save softmax probabilities of the lesion class, not logits."
        )


__all__ = ["add_parser", "match_cases", "run", "run_compare"]
