"""Can the phantom's lesions be found by their appearance alone, without knowing where bone is?

Question: SAP's claim is that anatomy helps, because lesion-like signal (T1-dark, DWI-bright)
also occurs outside bone (lymph nodes, kidneys, spleen, cord, bladder). If an intensity rule
alone separated lesions from everything else, the phantom could not show that claim. So:
over a metastatic phantom cohort, after the training preprocessing (percentile
normalisation), take the best voxel rule "T1 <= a and b1000 >= b" (best = highest voxel
Dice with the lesion mask over a grid of (a, b)) and print the share of its voxels that are
lesion, with and without restricting it to the skeleton (the oracle anatomy SAP learns).

Printed ratios (measured in one run, so machine speed does not matter):

- ``dice(appearance and bone) / dice(appearance)``: how much the anatomical prior adds;
- the share of appearance-rule voxels outside bone: what an anatomy-blind model must unlearn.

    python benchmarks/phantom_appearance.py                      # 8 patients, quick-preset grid
    python benchmarks/phantom_appearance.py --cases 4 --shape 96 60 192 --spacing 5 5 6
    python benchmarks/phantom_appearance.py --marrow adult       # red marrow, mimics
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np


def normalised_cases(root: Path) -> list[dict[str, np.ndarray]]:
    """T1, b1000, lesion and skeleton of every case, preprocessed as for training."""
    from sap.data.cases import case_to_subject, discover_cases
    from sap.data.preprocess import preprocessing

    transform = preprocessing(("T1", "b1000"))
    cases = []
    for case in discover_cases(root):
        subject = transform(case_to_subject(case))
        cases.append({k: subject[k].data[0].numpy() for k in ("T1", "b1000", "lesion", "skeleton")})
    return cases


def rule_scores(cases, t1_max: float, dwi_min: float) -> dict[str, float]:
    """Voxel Dice of the rule, with and without the skeleton, and its share outside bone."""
    hits = {"rule": 0, "rule_bone": 0, "lesion": 0, "tp": 0, "tp_bone": 0, "outside": 0}
    for c in cases:
        rule = (c["T1"] <= t1_max) & (c["b1000"] >= dwi_min)
        bone = c["skeleton"] > 0
        lesion = c["lesion"] > 0
        hits["rule"] += int(rule.sum())
        hits["rule_bone"] += int((rule & bone).sum())
        hits["lesion"] += int(lesion.sum())
        hits["tp"] += int((rule & lesion).sum())
        hits["tp_bone"] += int((rule & bone & lesion).sum())
        hits["outside"] += int((rule & ~bone).sum())
    dice = 2 * hits["tp"] / max(hits["rule"] + hits["lesion"], 1)
    dice_bone = 2 * hits["tp_bone"] / max(hits["rule_bone"] + hits["lesion"], 1)
    return {
        "dice": dice,
        "dice_with_bone": dice_bone,
        "precision": hits["tp"] / max(hits["rule"], 1),
        "precision_with_bone": hits["tp_bone"] / max(hits["rule_bone"], 1),
        "share_outside_bone": hits["outside"] / max(hits["rule"], 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=8)
    parser.add_argument("--shape", type=int, nargs=3, default=(64, 40, 128))
    parser.add_argument("--spacing", type=float, nargs=3, default=(7.5, 7.5, 9.0))
    parser.add_argument("--min-lesion-voxels", type=int, default=1)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--marrow", choices=("fatty", "adult"), default="fatty")
    args = parser.parse_args()
    from sap.phantom import generate_cohort

    with tempfile.TemporaryDirectory() as tmp:
        generate_cohort(
            Path(tmp), healthy=0, metastatic=args.cases, seed=args.seed, shape=args.shape,
            spacing_mm=args.spacing, min_lesion_voxels=args.min_lesion_voxels,
            marrow=args.marrow,
        )  # fmt: skip
        cases = normalised_cases(Path(tmp))
    grid = [(a, b) for a in np.linspace(0.1, 0.6, 11) for b in np.linspace(0.2, 1.0, 17)]
    scored = [(rule_scores(cases, a, b), a, b) for a, b in grid]
    best, a, b = max(scored, key=lambda item: item[0]["dice"])
    best_bone, a_bone, b_bone = max(scored, key=lambda item: item[0]["dice_with_bone"])
    result = {
        "rule_t1_max": round(float(a), 3),
        "rule_dwi_min": round(float(b), 3),
        "appearance_only": {k: round(v, 4) for k, v in best.items()},
        "rule_with_bone_t1_max": round(float(a_bone), 3),
        "rule_with_bone_dwi_min": round(float(b_bone), 3),
        "appearance_and_bone": {k: round(v, 4) for k, v in best_bone.items()},
        "ratio_dice_bone_over_appearance": round(
            best_bone["dice_with_bone"] / max(best["dice"], 1e-9), 2
        ),
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
