"""Score the benchmark: every arm and seed over all test folds, then the arms against each other.

1. :func:`score_arm_seed`: the test patients of all folds, each scored with the threshold its
   fold's model froze on the tuning fold, pooled into one :class:`sap.metrics.Evaluation`
   (every metric of the paper, the ≥ 1 mL subset, the FROC), plus the FROC-AUC of each fold.
2. :func:`combine_seeds`: one summary per arm in the layout of ``sap.metrics`` summaries,
   whose per-patient values are the means over seeds (patients stay the unit of analysis;
   seed-to-seed variation is averaged out, and reported separately). Lesion-level values are
   per lesion, averaged over the seeds that detected it.
3. :func:`compare_arms`: the paper's table via :func:`sap.metrics.comparison.compare_summaries`
   (medians [bootstrap 95 % CI], Wilcoxon signed-rank per patient, Mann-Whitney U per
   lesion, Bonferroni), plus paired Wilcoxon tests of the FROC-AUCs over (fold, seed) units.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from sap.experiments.benchmark_config import BenchmarkConfig
from sap.experiments.benchmark_data import REFERENCE_FILE, FoldFiles
from sap.experiments.benchmark_folds import TEST_PREDICTIONS, detection_settings

#: Per-lesion columns kept for the sensitivity-vs-volume analysis.
LESION_COLUMNS: tuple[str, ...] = ("case_id", "lesion_id", "volume_ml", "detected", "dice", "nsd")


def score_arm_seed(
    config: BenchmarkConfig,
    files: FoldFiles,
    runs: Mapping[int, Mapping[str, Any]],
    out_dir: Path,
    skeletons: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """Pooled evaluation of one arm and seed; writes tables and ``summary.json`` to ``out_dir``.

    Args:
        config: the benchmark configuration.
        files: the fold files (references of each fold).
        runs: test fold -> its run record (``folder`` and frozen ``threshold``).
        out_dir: where the tables go.
        skeletons: case id -> skeleton label map, for the cases that have one: their false
            positives are split into inside and outside bone
            (:func:`sap.metrics.fp_location.false_positives_by_region`).

    Returns:
        ``{"summary", "froc_auc_per_fold", "froc_auc_large_per_fold", "thresholds",
        "lesions", "fp_volumes_ml", "fold_of", "fp_location"}``; ``fp_location`` maps case id
        to ``{"inside": n, "outside": n}`` for the cases with a skeleton label map.
    """
    from sap.labels import LESION_PROBABILITY_FILE
    from sap.metrics import Evaluation
    from sap.metrics.case_files import CaseFiles, load_case
    from sap.metrics.fp_location import false_positives_by_region
    from sap.metrics.report import write_report
    from sap.metrics.summary import BootstrapSettings, froc_summary
    from sap.volume import read_volume, spacing_from_affine

    skeletons = skeletons or {}
    fp_location: dict[str, dict[str, int]] = {}
    evaluation = Evaluation(detection_settings(config), min_prob=config.evaluation.min_prob)
    fold_of: dict[str, int] = {}
    for fold, run in sorted(runs.items()):
        predictions = Path(run["folder"]) / TEST_PREDICTIONS
        for reference in sorted(p for p in files.references(fold).iterdir() if p.is_dir()):
            case = CaseFiles(
                reference.name,
                predictions / reference.name / LESION_PROBABILITY_FILE,
                reference / REFERENCE_FILE,
            )
            prob, ref, affine = load_case(case, prob=True)
            mask = prob >= np.float64(run["threshold"])
            evaluation.add(
                case.case_id,
                mask,
                ref,
                spacing_from_affine(affine),
                prob=prob,
                affine=affine,
            )
            fold_of[case.case_id] = fold
            if case.case_id in skeletons:
                bone, _ = read_volume(skeletons[case.case_id], what="skeleton label map")
                location = false_positives_by_region(mask, ref, bone > 0, evaluation.settings)
                fp_location[case.case_id] = {
                    "inside": location.inside,
                    "outside": location.outside,
                }
    bootstrap = BootstrapSettings(n_resamples=config.evaluation.bootstrap_resamples)
    summary = evaluation.summary(bootstrap)
    write_report(evaluation, out_dir, summary=summary, plots=False)
    per_fold = {}
    for fold in sorted(runs):
        frocs = [evaluation.frocs[c] for c, f in fold_of.items() if f == fold]
        per_fold[fold] = froc_summary(frocs)
    return {
        "summary": summary,
        "froc_auc_per_fold": {str(f): _none_if_nan(s["auc"]) for f, s in per_fold.items()},
        "froc_auc_large_per_fold": {
            str(f): _none_if_nan(s["auc_large"]) for f, s in per_fold.items()
        },
        "thresholds": {str(f): float(run["threshold"]) for f, run in sorted(runs.items())},
        "lesions": [
            {key: _none_if_nan(row[key]) for key in LESION_COLUMNS}
            for row in evaluation.lesion_table()
        ],
        "fp_volumes_ml": [float(v) for v in evaluation.fp_volumes_ml()],
        "fold_of": fold_of,
        "fp_location": fp_location,
    }


def combine_seeds(
    scored: Mapping[str, Mapping[str, Any]], bootstrap_resamples: int
) -> dict[str, Any]:
    """One arm's summary over seeds: per-patient means, per-lesion means, mean FROC-AUCs.

    Args:
        scored: seed -> :func:`score_arm_seed` result.
        bootstrap_resamples: resamples of the median CIs.
    """
    from sap.metrics.stats import median_ci
    from sap.metrics.summary import EXAM_METRICS, LESION_METRICS

    seeds = sorted(scored)
    first = scored[seeds[0]]["summary"]
    cases = sorted(first["per_exam"])
    per_exam = {
        case: {
            name: _nanmean([scored[s]["summary"]["per_exam"][case].get(name) for s in seeds])
            for name in EXAM_METRICS
        }
        for case in cases
    }
    per_lesion = _lesion_means(scored, seeds)
    metrics = {}
    for name in EXAM_METRICS:
        values = [per_exam[c][name] for c in cases]
        metrics[name] = {"level": "exam", **_ci(values, median_ci, bootstrap_resamples)}
    for name in LESION_METRICS:
        metrics[name] = {"level": "lesion", **_ci(per_lesion[name], median_ci, bootstrap_resamples)}
    froc = {
        key: _nanmean([scored[s]["summary"].get("froc", {}).get(key) for s in seeds])
        for key in ("auc", "auc_large")
    }
    froc["max_fp_per_exam"] = first.get("froc", {}).get("max_fp_per_exam")
    froc["max_fp_per_exam_large"] = first.get("froc", {}).get("max_fp_per_exam_large")
    return {
        "settings": first["settings"],
        "n_exams": len(cases),
        "seeds": seeds,
        "metrics": metrics,
        "icc_2_1_total_volume": _nanmean(
            [scored[s]["summary"].get("icc_2_1_total_volume") for s in seeds]
        ),
        "merged_predictions": _nanmean(
            [scored[s]["summary"].get("merged_predictions") for s in seeds]
        ),
        "froc": froc,
        "per_exam": per_exam,
        "per_lesion": per_lesion,
    }


def _lesion_means(
    scored: Mapping[str, Mapping[str, Any]], seeds: Sequence[str]
) -> dict[str, list[float]]:
    """Dice and NSD of each lesion averaged over the seeds that detected it."""
    values: dict[tuple[str, Any], dict[str, list[float]]] = {}
    for seed in seeds:
        for row in scored[seed]["lesions"]:
            if not row["detected"]:
                continue
            entry = values.setdefault((row["case_id"], row["lesion_id"]), {"dice": [], "nsd": []})
            for key in ("dice", "nsd"):
                if row[key] is not None:
                    entry[key].append(float(row[key]))
    ordered = [values[key] for key in sorted(values, key=str)]
    return {
        "dice_detected": [float(np.mean(v["dice"])) for v in ordered if v["dice"]],
        "nsd_detected": [float(np.mean(v["nsd"])) for v in ordered if v["nsd"]],
    }


def compare_arms(
    combined: Mapping[str, dict[str, Any]],
    scored: Mapping[str, Mapping[str, Mapping[str, Any]]],
    reference: str,
) -> dict[str, Any]:
    """The paper's table (reference arm first) and the FROC-AUC tests.

    Args:
        combined: arm -> :func:`combine_seeds` summary.
        scored: arm -> seed -> :func:`score_arm_seed` result.
        reference: the arm the others are compared with.

    Returns:
        ``{"rows", "markdown", "froc_tests"}``; ``froc_tests[key][arm]`` holds the paired
        units, the median difference and the raw and Bonferroni-corrected p-values.
    """
    from sap.metrics.comparison import compare_summaries
    from sap.metrics.stats import bonferroni, wilcoxon_paired

    names = [reference, *(arm for arm in combined if arm != reference)]
    rows, markdown = compare_summaries([combined[n] for n in names], names)
    tests: dict[str, dict[str, Any]] = {}
    for key in ("froc_auc_per_fold", "froc_auc_large_per_fold"):
        units = _paired_units(scored, names, key)
        raw = {arm: wilcoxon_paired(units[reference], units[arm]) for arm in names[1:]}
        corrected = bonferroni(list(raw.values()), n_tests=len(raw)) if raw else []
        tests[key] = {
            arm: {
                "n_pairs": len(units[arm]),
                "median_difference": _none_if_nan(
                    float(np.nanmedian(np.subtract(units[reference], units[arm])))
                    if units[arm]
                    else math.nan
                ),
                "p": _none_if_nan(raw[arm]),
                "p_bonferroni": _none_if_nan(float(q)),
            }
            for arm, q in zip(raw, corrected)
        }
    return {"arms": names, "rows": rows, "markdown": markdown, "froc_tests": tests}


def _paired_units(scored, names, key) -> dict[str, list[float]]:
    """Per-(seed, fold) values of ``key`` for every arm, on the units all arms have."""
    units = None
    for arm in names:
        have = {(s, f) for s, result in scored[arm].items() for f in result[key]}
        units = have if units is None else units & have
    order = sorted(units or set())
    return {arm: [_nan_if_none(scored[arm][s][key][f]) for s, f in order] for arm in names}


def _ci(values, median_ci, n_resamples: int) -> dict[str, Any]:
    ci = median_ci(np.asarray(values, dtype=np.float64), n_resamples=n_resamples)
    return {**ci.to_dict(), "mean": _nanmean(values)}


def _nanmean(values: Sequence[Any]) -> float | None:
    x = np.asarray([_nan_if_none(v) for v in values], dtype=np.float64)
    x = x[np.isfinite(x)]
    return float(x.mean()) if x.size else None


def _nan_if_none(value: Any) -> float:
    return math.nan if value is None else float(value)


def _none_if_nan(value: Any) -> Any:
    if value is None:
        return None
    if isinstance(value, float | np.floating) and not math.isfinite(float(value)):
        return None
    return float(value) if isinstance(value, np.floating) else value


__all__ = ["LESION_COLUMNS", "combine_seeds", "compare_arms", "score_arm_seed"]
