"""The benchmark's outputs: ``results.json``, CSV tables, ``report.md`` and its figures.

:func:`write_outputs` gathers what the stages produced into one results dict and writes it;
:func:`render_report` turns a results dict (or :func:`render_report_file` a ``results.json``)
into the Markdown report and PNGs, so a report can be redrawn without rerunning anything.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import platform
from pathlib import Path
from typing import Any

from sap.io import write_text_atomic

#: Headline metrics of the per-seed table and CSV: (key, label).
SEED_METRICS: tuple[tuple[str, str], ...] = (
    ("sensitivity", "sensitivity"),
    ("precision", "precision"),
    ("fp_per_exam", "FP/exam"),
    ("f_beta", "F2"),
    ("mean_lesion_dice", "patient Dice"),
    ("froc_auc", "FROC-AUC"),
    ("froc_auc_large", "FROC-AUC ≥1 mL"),
    ("volume_ratio", "pred/ref volume"),
)
#: Packages whose versions the report lists.
PACKAGES: tuple[str, ...] = (
    "sap", "torch", "lightning", "monai", "torchio", "numpy", "scipy", "scikit-learn",
)  # fmt: skip


def write_outputs(config, out: Path, *, split, pretrained, runs, scores, features, command,
                  threads, runtime_s, stages, skeleton=None) -> dict[str, Any]:  # fmt: skip
    """Assemble, write and render the results of a finished benchmark; returns them."""
    from sap.experiments.benchmark_results import combine_seeds, compare_arms
    from sap.metrics.summary import headline_metrics, json_ready

    arms = list(config.arms)
    combined = {
        arm: combine_seeds(scores[arm], config.evaluation.bootstrap_resamples) for arm in arms
    }
    comparison = compare_arms(combined, scores, config.reference_arm)
    results = {
        "format": 1,
        "command": command,
        "config": config.to_dict(),
        "seeds": list(config.seeds),
        "reference_arm": config.reference_arm,
        "arms": comparison["arms"],
        "environment": environment(threads),
        "runtime_s": round(runtime_s, 1),
        "stages": stages,
        "splits": split.to_dict(),
        "compute": _compute(pretrained, runs, scores, features, skeleton),
        "selection": _selection(runs),
        "per_seed": {
            arm: {
                seed: headline_metrics(s["summary"]) | {"thresholds": s["thresholds"]}
                for seed, s in scores[arm].items()
            }
            for arm in arms
        },  # fmt: skip
        "combined": {arm: headline_metrics(combined[arm]) for arm in arms},
        "comparison": {k: comparison[k] for k in ("rows", "markdown", "froc_tests")},
        "curves": {
            arm: {seed: s["summary"]["froc"]["curve"] for seed, s in scores[arm].items()}
            for arm in arms
        },  # fmt: skip
        "n_exams": {
            arm: {seed: s["summary"]["n_exams"] for seed, s in scores[arm].items()} for arm in arms
        },  # fmt: skip
        "lesions": {arm: {seed: s["lesions"] for seed, s in scores[arm].items()} for arm in arms},
        "fp_volumes_ml": {
            arm: {seed: s["fp_volumes_ml"] for seed, s in scores[arm].items()} for arm in arms
        },  # fmt: skip
        "per_patient": {arm: combined[arm]["per_exam"] for arm in arms},
        "features": None
        if features is None
        else {k: v for k, v in features.items() if k not in ("wall_s", "cpu_s")},
        "fp_location": _fp_location(scores),
        "skeleton_model": None
        if skeleton is None
        else {k: v for k, v in skeleton.items() if k not in ("wall_s", "cpu_s")},
    }
    results = json_ready(results)
    write_text_atomic(out / "results.json", json.dumps(results, indent=1, allow_nan=False) + "\n")
    _write_csv(out / "results_per_seed.csv", _seed_rows(results))
    _write_csv(out / "results_per_patient.csv", _patient_rows(results, scores))
    render_report(results, out)
    return results


def environment(threads: int) -> dict[str, Any]:
    """Python, platform, CPU, torch threads and the versions of :data:`PACKAGES`."""
    from importlib import metadata

    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    from sap._version import __version__

    versions["sap"] = __version__
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "torch_threads": threads,
        "packages": versions,
    }


def _compute(pretrained, runs, scores, features, skeleton=None) -> dict[str, Any]:
    finetuning = {}
    for arm, by_seed in runs.items():
        # Every candidate run was computed, chosen or not.
        records = [
            c
            for folds in by_seed.values()
            for r in folds.values()
            for c in r.get("candidates", [r])
        ]
        finetuning[arm] = {
            "runs": len(records),
            "train_s": round(sum(r["train"]["seconds"] for r in records), 1),
            "steps": sum(r["train"]["steps"] for r in records),
            "predict_s": round(sum(r["predict_s"] for r in records), 1),
            "wall_s": round(sum(r.get("wall_s", 0.0) for r in records), 1),
        }
    return {
        "pretraining": {
            init: {k: r[k] for k in ("seconds", "epochs", "steps", "wall_s") if k in r}
            for init, r in pretrained.items()
        },
        "finetuning": finetuning,
        "scoring_s": round(
            sum(s.get("wall_s", 0.0) for by in scores.values() for s in by.values()), 1
        ),
        "features_s": None if features is None else features.get("wall_s"),
        "features_cpu_s": None if features is None else features.get("cpu_s"),
        "skeleton_check_s": None if skeleton is None else skeleton.get("wall_s"),
    }


def _fp_location(scores) -> dict[str, Any]:
    """Per arm: false positives per exam inside and outside bone, means over patients and seeds.

    Only patients with a skeleton label map count; an arm without any gets ``None``.
    """
    location = {}
    for arm, by_seed in scores.items():
        cells = [c for s in by_seed.values() for c in (s.get("fp_location") or {}).values()]
        if not cells:
            location[arm] = None
            continue
        inside = sum(c["inside"] for c in cells)
        outside = sum(c["outside"] for c in cells)
        location[arm] = {
            "exams": len({case for s in by_seed.values() for case in s.get("fp_location") or {}}),
            "inside_per_exam": inside / len(cells),
            "outside_per_exam": outside / len(cells),
            "outside_share": outside / (inside + outside) if inside + outside else None,
        }
    return location


def _selection(runs) -> dict[str, Any]:
    """``{arm: {seed: {fold: {"chosen": rate, "tuning_f_beta": {rate: F-beta}}}}}``."""
    return {
        arm: {
            seed: {
                str(fold): {
                    "chosen": record.get("lr_encoder"),
                    "tuning_f_beta": {
                        f"{c['lr_encoder']:g}": c.get("tuning_f_beta")
                        for c in record.get("candidates", [])
                    },
                }
                for fold, record in sorted(folds.items())
            }
            for seed, folds in by_seed.items()
        }
        for arm, by_seed in runs.items()
    }


def _seed_rows(results: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        {"arm": arm, "seed": seed, **{key: values.get(key) for key, _ in SEED_METRICS}}
        for arm in results["arms"]
        for seed, values in results["per_seed"][arm].items()
    ]


def _patient_rows(results: dict[str, Any], scores) -> list[dict[str, Any]]:
    rows = []
    for arm in results["arms"]:
        for seed, scored in scores[arm].items():
            for case, values in scored["summary"]["per_exam"].items():
                rows.append({"arm": arm, "seed": seed, "case_id": case,
                             "fold": scored["fold_of"][case], **values})  # fmt: skip
    return rows


def _write_csv(path: Path, rows: list[dict[str, Any]]) -> Path:
    buffer = io.StringIO()
    if rows:
        writer = csv.DictWriter(buffer, fieldnames=list(rows[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    return write_text_atomic(path, buffer.getvalue())


def render_report_file(results_file: str | Path, out_dir: str | Path | None = None) -> Path:
    """Render ``report.md`` and the figures from a ``results.json`` (into its folder by default)."""
    path = Path(results_file)
    results = json.loads(path.read_text(encoding="utf-8"))
    return render_report(results, Path(out_dir) if out_dir else path.parent)


def render_report(results: dict[str, Any], out: Path) -> Path:
    """Write ``report.md`` and its PNGs into ``out``; returns the report's path."""
    from sap.experiments import benchmark_plots as plots

    plots.plot_froc_arms(results, out / "froc.png")
    plots.plot_volume_arms(results, out / "volume.png")
    plots.plot_seed_spread(results, out / "seeds.png")
    sections = [_header(results), _verdict(results), _table(results), _seed_table(results),
                "![FROC](froc.png)\n\n![volume](volume.png)\n\n![seeds](seeds.png)\n"]  # fmt: skip
    if results.get("features"):
        plots.plot_tsne(results["features"], out / "tsne.png")
        sections.append(_features(results["features"]))
    sections += [
        _fp_location_section(results),
        _skeleton_section(results),
        _selection_section(results), _compute_section(results), _protocol(results),
        _reproduce(results),
    ]  # fmt: skip
    return write_text_atomic(out / "report.md", "\n".join(part for part in sections if part))


def _header(results: dict[str, Any]) -> str:
    n = sum(len(results["splits"]["folds"][f]) for f in results["splits"]["test_folds"])
    return (
        "# SAP vs SSL vs scratch: benchmark report\n\n"
        f"Arms {', '.join(results['arms'])}; {n} test patients in "
        f"{len(results['splits']['test_folds'])} test folds; seeds {results['seeds']}; "
        f"compute recorded by the stages {_duration(_stage_wall_s(results))} wall "
        f"(this invocation {_duration(results['runtime_s'])}).\n"
    )


def _stage_wall_s(results: dict[str, Any]) -> float:
    """Wall time of every stage, whichever invocation ran it (CPU-parallel stages add up)."""
    compute = results["compute"]
    return (
        sum(r.get("wall_s", r.get("seconds", 0.0)) for r in compute["pretraining"].values())
        + sum(r["wall_s"] for r in compute["finetuning"].values())
        + (compute.get("scoring_s") or 0.0)
        + (compute.get("features_s") or 0.0)
        + (compute.get("skeleton_check_s") or 0.0)
    )


def _verdict(results: dict[str, Any]) -> str:
    """Plain sentences: does the reference arm beat each other arm on F2 and FROC-AUC?"""
    ref = results["reference_arm"]
    rows = {row["metric"]: row for row in results["comparison"]["rows"]}
    lines = ["## Verdict\n"]
    for arm in results["arms"][1:]:
        f2 = rows.get("f_beta", {})
        ref_f2, arm_f2 = (f2.get(ref) or [None])[0], (f2.get(arm) or [None])[0]
        p_f2 = f2.get(f"p_{arm}_bonferroni")
        test = results["comparison"]["froc_tests"]["froc_auc_per_fold"].get(arm, {})
        ref_auc = results["combined"][ref].get("froc_auc")
        arm_auc = results["combined"][arm].get("froc_auc")
        lines.append(
            f"- **{ref} vs {arm}, F2** (median over patients, seeds averaged): "
            f"{_n(ref_f2)} vs {_n(arm_f2)}, Wilcoxon p = {_p(p_f2)} (Bonferroni): "
            f"{_beats(ref, arm, ref_f2, arm_f2, p_f2)}."
        )
        lines.append(
            f"- **{ref} vs {arm}, FROC-AUC** (to 15 FP/exam, mean over seeds): {_n(ref_auc)} vs "
            f"{_n(arm_auc)}, Wilcoxon p = {_p(test.get('p_bonferroni'))} (Bonferroni) over "
            f"{test.get('n_pairs', 0)} paired (seed, fold) units: "
            f"{_beats(ref, arm, ref_auc, arm_auc, test.get('p_bonferroni'))}."
        )
    return "\n".join(lines) + "\n"


def _beats(ref: str, arm: str, a, b, p) -> str:
    if a is None or b is None:
        return "not estimable"
    if a > b and p is not None and p < 0.05:
        return f"{ref} is better"
    if a < b and p is not None and p < 0.05:
        return f"{arm} is better"
    higher = ref if a > b else arm if b > a else None
    return f"no significant difference ({higher} higher)" if higher else "no difference"


def _table(results: dict[str, Any]) -> str:
    return (
        f"## Paper table (p-values vs {results['reference_arm']})\n\n"
        + results["comparison"]["markdown"]
        + "\nPer-patient values are means over seeds; lesion-level values per lesion, averaged "
        "over the seeds that detected it. FROC-AUC and ICC: mean over seeds (no CI).\n\n"
        + _froc_tests(results)
    )


def _froc_tests(results: dict[str, Any]) -> str:
    ref = results["reference_arm"]
    lines = [
        f"FROC-AUC, paired by (seed, test fold), Wilcoxon signed-rank vs {ref}, Bonferroni:\n",
        "| curve | arm | pairs | median difference | p | p (Bonferroni) |",
        "|---|---|---|---|---|---|",
    ]
    for key, label in (("froc_auc_per_fold", "all lesions"), ("froc_auc_large_per_fold", "≥ 1 mL")):
        for arm, test in results["comparison"]["froc_tests"][key].items():
            lines.append(
                f"| {label} | {arm} | {test['n_pairs']} | {_n(test['median_difference'])} | "
                f"{_p(test['p'])} | {_p(test['p_bonferroni'])} |"
            )
    return "\n".join(lines) + "\n"


def _seed_table(results: dict[str, Any]) -> str:
    header = ["arm", "seed", *(label for _, label in SEED_METRICS), "thresholds"]
    lines = [
        "## Seed-to-seed spread\n",
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
    ]
    for arm in results["arms"]:
        for seed, values in results["per_seed"][arm].items():
            cells = [_n(values.get(key)) for key, _ in SEED_METRICS]
            thresholds = ", ".join(f"{t:.2f}" for t in values.get("thresholds", {}).values())
            lines.append("| " + " | ".join([arm, str(seed), *cells, thresholds]) + " |")
    lines.append(
        "\nMedians over the test patients of one seed (FROC-AUC and volume ratio pooled); "
        "thresholds: the one each test fold's model froze on the tuning fold. A volume ratio "
        "far above 1 means lesions merged into large predicted blobs, which detection by any "
        "overlap counts as found."
    )
    return "\n".join(lines) + "\n"


def _features(features: dict[str, Any]) -> str:
    lines = [
        "## Features before fine-tuning (paper Fig. 3)\n",
        "![t-SNE](tsne.png)\n",
        f"{sum(features['labels'])} lesion and {len(features['labels']) - sum(features['labels'])} "
        "lesion-free patches of the tuning fold; pooled bottleneck features, each scaled to unit "
        "variance. Distances are mean Euclidean distances; ratio = inter / mean intra.\n",
        "| initialisation | space | intra lesion | intra lesion-free | inter | ratio | silhouette |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, entry in features["initialisations"].items():
        for space in ("feature_space", "embedding_space"):
            d = entry[space]
            lines.append(
                f"| {name} | {space.replace('_', ' ')} | {_n(d['intra_lesion'])} | "
                f"{_n(d['intra_lesion_free'])} | {_n(d['inter'])} | {_n(d['ratio'])} | "
                f"{_n(d['silhouette'])} |"
            )
    return "\n".join(lines) + "\n"


def _fp_location_section(results: dict[str, Any]) -> str:
    """False positives inside and outside bone per arm: the anatomy prior's effect."""
    location = {a: v for a, v in (results.get("fp_location") or {}).items() if v}
    if not location:
        return ""
    lines = [
        "## Where the false positives lie\n",
        "| arm | patients | FP per exam touching bone | FP per exam outside bone | share outside bone |",
        "|---|---|---|---|---|",
    ]
    for arm, v in location.items():
        share = v["outside_share"]
        lines.append(
            f"| {arm} | {v['exams']} | {_n(v['inside_per_exam'], 2)} | "
            f"{_n(v['outside_per_exam'], 2)} | {'–' if share is None else f'{100 * share:.0f} %'} |"
        )
    lines.append(
        "\nMeans over test patients with a skeleton label map and over seeds, at the frozen "
        "thresholds. A false positive touching bone needs the lesion's appearance to be told "
        "from marrow; one outside bone is what an anatomy prior (SAP) should rule out."
    )
    return "\n".join(lines) + "\n"


def _skeleton_section(results: dict[str, Any]) -> str:
    """SAP's premise: does the transferred skeleton model segment the patients' bones?"""
    check = results.get("skeleton_model")
    if not check:
        return ""
    if not check.get("cases"):
        return (
            "## SAP's skeleton model\n\nNot measured: no tuning-fold case has a skeleton label "
            "map.\n"
        )
    regions = check.get("region_dice") or {}
    lines = [
        "## SAP's skeleton model\n",
        f"The skeleton model SAP transfers, predicting the {check['cases']} tuning-fold patients "
        "(never trained on) against their skeleton labels; medians over patients. A model that "
        "predicts the wrong amount of bone (volume ratio far from 1) or confuses the regions "
        "gives SAP little anatomy to transfer.\n",
        "| bone Dice | predicted / reference bone | mean region Dice |",
        "|---|---|---|",
        f"| {_n(check['foreground_dice'])} | {_n(check['volume_ratio'], 2)} | "
        f"{_n(check['mean_region_dice'])} |\n",
        "| " + " | ".join(regions) + " |",
        "|" + "---|" * len(regions),
        "| " + " | ".join(_n(v, 2) for v in regions.values()) + " |",
        "\nRegion Dice pooled over the patients (one confusion matrix).",
    ]
    return "\n".join(lines) + "\n"


def _selection_section(results: dict[str, Any]) -> str:
    """Which encoder rate each arm's run used, and every candidate's tuning-fold F2."""
    selection = results.get("selection") or {}
    lines = [
        "## Encoder learning rate, chosen on the tuning fold\n",
        "| arm | seed | test fold | tuning-fold F2 per candidate rate | tested |",
        "|---|---|---|---|---|",
    ]
    if not _several_rates(results):
        return ""
    for arm, by_seed in selection.items():
        for seed, folds in by_seed.items():
            for fold, entry in folds.items():
                scores = entry.get("tuning_f_beta") or {}
                cells = ", ".join(f"{rate}: {_n(f2)}" for rate, f2 in scores.items())
                chosen = entry.get("chosen")
                lines.append(f"| {arm} | {seed} | {fold} | {cells or '–'} | "
                             f"{'–' if chosen is None else f'{chosen:g}'} |")  # fmt: skip
    lines.append(
        "\nAn arm given several encoder rates (`lr_encoder: [..]`) is fine-tuned once per rate "
        "for every seed and test fold; the rate whose model has the highest mean patient-level "
        "F2 on the tuning fold (each at its own tuned threshold) is the one tested, ties going "
        "to the first listed. No test patient's score enters the choice. Compute below counts "
        "every candidate run."
    )
    return "\n".join(lines) + "\n"


def _several_rates(results: dict[str, Any]) -> bool:
    """Whether some arm chose between several encoder rates."""
    return any(
        len(entry.get("tuning_f_beta") or {}) > 1
        for by_seed in (results.get("selection") or {}).values()
        for folds in by_seed.values()
        for entry in folds.values()
    )


def _compute_section(results: dict[str, Any]) -> str:
    compute = results["compute"]
    lines = [
        "## Compute per stage\n",
        "| stage | wall time | epochs | steps |",
        "|---|---|---|---|",
    ]
    for init, record in compute["pretraining"].items():
        lines.append(f"| pretraining {init} | {_duration(record.get('seconds'))} | "
                     f"{record.get('epochs', '–')} | {record.get('steps', '–')} |")  # fmt: skip
    for arm, record in compute["finetuning"].items():
        lines.append(
            f"| fine-tuning {arm} ({record['runs']} runs; prediction {_duration(record['predict_s'])}) "
            f"| {_duration(record['wall_s'])} | – | {record['steps']} |"
        )
    lines.append(f"| scoring | {_duration(compute['scoring_s'])} | – | – |")
    if compute.get("features_s") is not None:
        lines.append(f"| feature analysis | {_duration(compute['features_s'])} | – | – |")
    if compute.get("skeleton_check_s") is not None:
        lines.append(f"| skeleton model check | {_duration(compute['skeleton_check_s'])} | – | – |")
    lines.append(f"| **total (this invocation)** | {_duration(results['runtime_s'])} | | |")
    skipped = results.get("stages", {}).get("skipped", [])
    if skipped:
        lines.append(f"\n{len(skipped)} stage(s) were finished by an earlier run and reused; "
                     "their times are those of that run.")  # fmt: skip
    return "\n".join(lines) + "\n"


def _protocol(results: dict[str, Any]) -> str:
    splits = results["splits"]
    several = _several_rates(results)
    folds = ", ".join(
        f"{i}: {len(cases)} patients / {splits['lesions_per_fold'][i]} lesions"
        for i, cases in enumerate(splits["folds"])
    )
    return (
        "## Protocol\n\n"
        f"Stratified {len(splits['folds'])}-fold cross-validation by lesion count ({folds}). "
        f"Fold {splits['tuning_fold']} tunes every model's threshold (maximum mean patient-level "
        f"F2) and is never trained on or tested; for test fold k a model trains on the other "
        f"folds. Every arm sees the same data, epochs, augmentation and seed; they differ only in "
        f"initialisation and encoder learning rate"
        + (" (chosen on the tuning fold where an arm lists several)" if several else "")
        + ".\n"
    )


def _reproduce(results: dict[str, Any]) -> str:
    import yaml

    env = results["environment"]
    packages = ", ".join(f"{k} {v}" for k, v in env["packages"].items())
    return (
        "## Reproduce\n\n"
        f"```\n{results['command'] or 'sap benchmark ...'}\n```\n\n"
        f"Python {env['python']} on {env['platform']}, {env['cpu_count']} CPUs, torch threads "
        f"{env['torch_threads']}; {packages}. Same machine, same config and seeds: the same "
        "numbers (runs are seeded, deterministic algorithms, fixed thread count); another "
        "thread count or CPU changes floating-point sums and so the numbers slightly.\n\n"
        "<details><summary>configuration</summary>\n\n```yaml\n"
        + yaml.safe_dump(results["config"], sort_keys=False)
        + "```\n</details>\n"
    )


def _n(value: Any, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return f"{float(value):.{digits}f}"


def _p(value: Any) -> str:
    if value is None:
        return "–"
    return "<0.001" if value < 0.001 else f"{value:.3f}"


def _duration(seconds: Any) -> str:
    if seconds is None:
        return "–"
    seconds = float(seconds)
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.1f} min"


__all__ = ["environment", "render_report", "render_report_file", "write_outputs"]
