"""A small benchmark result built from tiny arrays, for report and statistics tests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from sap.experiments.benchmark_config import BenchmarkConfig, FeatureConfig
from sap.experiments.cv_splits import stratified_folds

ARMS = ("sap", "scratch", "ssl")
CASES = [f"patient_{i}" for i in range(6)]


def _scored(arm_index: int, seed: int) -> dict[str, Any]:
    """One arm and seed: 4 test patients with two cube lesions each, scored by sap.metrics."""
    from sap.metrics import Evaluation
    from sap.metrics.summary import BootstrapSettings, froc_summary

    rng = np.random.default_rng(100 * arm_index + seed)
    evaluation = Evaluation()
    fold_of = {}
    for index, case in enumerate(CASES[2:]):
        ref = np.zeros((16, 16, 16), bool)
        ref[2:5, 2:5, 2:5] = ref[9:13, 9:13, 9:13] = True
        prob = np.clip(0.6 * ref + rng.random(ref.shape) * (0.3 + 0.2 * arm_index), 0, 1)
        evaluation.add(case, prob >= 0.5, ref, (4.0, 4.0, 4.0), prob=prob)
        fold_of[case] = 1 + index // 2
    summary = evaluation.summary(BootstrapSettings(n_resamples=20))
    per_fold = {
        str(f): froc_summary([evaluation.frocs[c] for c, g in fold_of.items() if g == f])
        for f in (1, 2)
    }
    return {
        "summary": summary,
        "froc_auc_per_fold": {f: s["auc"] for f, s in per_fold.items()},
        "froc_auc_large_per_fold": {f: s["auc_large"] for f, s in per_fold.items()},
        "thresholds": {"1": 0.5, "2": 0.5},
        "lesions": [
            {k: row[k] for k in ("case_id", "lesion_id", "volume_ml", "detected", "dice", "nsd")}
            for row in evaluation.lesion_table()
        ],
        "fp_volumes_ml": [float(v) for v in evaluation.fp_volumes_ml()],
        "fold_of": fold_of,
        "fp_location": {case: {"inside": 1, "outside": arm_index} for case in fold_of},
        "wall_s": 1.0,
    }


def fake_benchmark_results(out: Path) -> dict[str, Any]:
    """Write and return the outputs of a 3-arm, 2-seed benchmark of 4 made-up test patients."""
    from sap.experiments.benchmark_report import write_outputs

    config = BenchmarkConfig(seeds=[0, 1], features=FeatureConfig(patches_per_class=2))
    config.evaluation.bootstrap_resamples = 20
    split = stratified_folds({c: 2 for c in CASES}, folds=3, seed=0)
    scores = {arm: {str(s): _scored(i, s) for s in (0, 1)} for i, arm in enumerate(ARMS)}
    record = {"train": {"seconds": 2.0, "epochs": 1, "steps": 3}, "predict_s": 1.0, "wall_s": 3.0}
    runs = {arm: {str(s): {1: record, 2: record} for s in (0, 1)} for arm in ARMS}
    # SAP chose between two encoder rates on the tuning fold: 3e-3 (F2 0.5) over 6e-4 (0.4).
    candidates = [
        {**record, "lr_encoder": 6e-4, "tuning_f_beta": 0.4},
        {**record, "lr_encoder": 3e-3, "tuning_f_beta": 0.5},
    ]
    runs["sap"] = {
        str(s): {f: {**candidates[1], "candidates": candidates} for f in (1, 2)} for s in (0, 1)
    }
    pretrained = {
        init: {"key": init, "seconds": 5.0, "epochs": 2, "steps": 8, "wall_s": 5.5}
        for init in ("sap", "ssl")
    }
    features = {
        "labels": [True, True, False, False],
        "initialisations": {
            name: {
                "embedding": [[0.0, 0.0], [0.0, 1.0], [5.0, 0.0], [5.0, 1.0]],
                "feature_space": {
                    "intra_lesion": 1.0,
                    "intra_lesion_free": 1.0,
                    "inter": 5.1,
                    "ratio": 5.1,
                    "silhouette": 0.8,
                },  # fmt: skip
                "embedding_space": {
                    "intra_lesion": 1.0,
                    "intra_lesion_free": 1.0,
                    "inter": 5.1,
                    "ratio": 5.1,
                    "silhouette": 0.8,
                },  # fmt: skip
            }
            for name in ("scratch", "ssl", "sap")
        },
        "wall_s": 2.0,
    }
    return write_outputs(
        config, out, split=split, pretrained=pretrained, runs=runs, scores=scores,
        features=features, command="sap benchmark --preset fake OUT", threads=1,
        runtime_s=12.0, stages={"ran": ["a"], "skipped": []},
        skeleton={"cases": 2, "foreground_dice": 0.7, "volume_ratio": 1.03,
                  "mean_region_dice": 0.17, "region_dice": {"pelvis": 0.43, "sternum": None},
                  "per_case": {}, "wall_s": 1.0},
    )  # fmt: skip
