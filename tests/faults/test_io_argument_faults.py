"""Fault catalogue, impossible numbers: refused up front, in one line, with exit status 2.

A number that cannot be meant (zero epochs, a probability of 1.5, a negative count) is
refused before any work is done, so nothing is written and no time is lost: one line on
stderr naming the option and the value, exit status 2.

| # | input / fault | expected outcome | test |
|---|---|---|---|
| 1 | `sap demo --skeleton-epochs 0` | exit 2, one line "skeleton-epochs must be a whole number >= 1, got 0"; nothing written | test_impossible_numbers_are_refused_up_front[demo-skeleton-epochs] |
| 2 | `sap demo --lesion-epochs -1` | exit 2, one line naming lesion-epochs and -1 | test_impossible_numbers_are_refused_up_front[demo-lesion-epochs] |
| 3 | `sap demo --seed -1` | exit 2, one line naming seed and -1 | test_impossible_numbers_are_refused_up_front[demo-seed] |
| 4 | `sap evaluate --prob --threshold 1.5` | exit 2, "threshold must be a probability in (0, 1], got 1.5" | test_impossible_numbers_are_refused_up_front[evaluate-threshold-high] |
| 5 | `sap evaluate --prob --threshold 0` | exit 2, threshold named | test_impossible_numbers_are_refused_up_front[evaluate-threshold-zero] |
| 6 | `sap evaluate --bootstrap -5` | exit 2, "bootstrap resamples must be a whole number >= 0 ..., got -5" | test_impossible_numbers_are_refused_up_front[evaluate-bootstrap] |
| 7 | `sap evaluate --min-prob 0` | exit 2, min_prob named | test_impossible_numbers_are_refused_up_front[evaluate-min-prob] |
| 8 | `sap evaluate --seed -1` | exit 2, "bootstrap seed must be a whole number >= 0, got -1" | test_impossible_numbers_are_refused_up_front[evaluate-seed] |
| 9 | `sap evaluate --min-volume-ml -1` | exit 2, min_volume_ml named | test_impossible_numbers_are_refused_up_front[evaluate-min-volume] |
| 10 | `sap evaluate --nsd-tolerance-mm -1` | exit 2, NSD tolerance named | test_impossible_numbers_are_refused_up_front[evaluate-nsd-tolerance] |
| 11 | `sap evaluate --beta 0` | exit 2, beta named | test_impossible_numbers_are_refused_up_front[evaluate-beta] |
| 12 | `sap predict --threshold 1.5` | exit 2, "threshold must be between 0 and 1, got 1.5"; OUT not created | test_impossible_numbers_are_refused_up_front[predict-threshold] |
| 13 | `sap predict --overlap 1` | exit 2, overlap named | test_impossible_numbers_are_refused_up_front[predict-overlap] |
| 14 | `sap predict --batch-size 0` | exit 2, batch_size named | test_impossible_numbers_are_refused_up_front[predict-batch-size] |
| 15 | `sap predict --min-volume-ml -1` | exit 2, min_volume_ml named | test_impossible_numbers_are_refused_up_front[predict-min-volume] |
| 16 | `sap phantom --healthy -1` | exit 2, the counts named | test_impossible_numbers_are_refused_up_front[phantom-healthy] |
| 17 | `sap phantom --seed -1` | exit 2, "seed must be a whole number >= 0, got -1" | test_impossible_numbers_are_refused_up_front[phantom-seed] |
| 18 | `sap phantom --shape 0 10 10` | exit 2, shape named | test_impossible_numbers_are_refused_up_front[phantom-shape] |
"""

from __future__ import annotations

import pytest

from tests.helpers.faults import run_sap, tree_digest

#: name -> (arguments after the command, text the error line must hold).
CASES = {
    "demo-skeleton-epochs": (
        ["demo", "--quick", "--skeleton-epochs", "0"],
        "skeleton-epochs must be a whole number >= 1, got 0",
    ),
    "demo-lesion-epochs": (
        ["demo", "--quick", "--lesion-epochs", "-1"],
        "lesion-epochs must be a whole number >= 1, got -1",
    ),
    "demo-seed": (["demo", "--quick", "--seed", "-1"], "seed must be a whole number >= 0, got -1"),
    "evaluate-threshold-high": (
        ["evaluate", "--prob", "--threshold", "1.5"],
        "threshold must be a probability in (0, 1], got 1.5",
    ),
    "evaluate-threshold-zero": (
        ["evaluate", "--prob", "--threshold", "0"],
        "threshold must be a probability in (0, 1], got 0.0",
    ),
    "evaluate-bootstrap": (
        ["evaluate", "--bootstrap", "-5"],
        "bootstrap resamples must be a whole number >= 0 (0: no confidence intervals), got -5",
    ),
    "evaluate-min-prob": (
        ["evaluate", "--min-prob", "0"],
        "min_prob must be a probability in (0, 1), got 0.0",
    ),
    "evaluate-seed": (
        ["evaluate", "--seed", "-1"],
        "bootstrap seed must be a whole number >= 0, got -1",
    ),
    "evaluate-min-volume": (
        ["evaluate", "--min-volume-ml", "-1"],
        "min_volume_ml must be >= 0 mL, got -1.0",
    ),
    "evaluate-nsd-tolerance": (
        ["evaluate", "--nsd-tolerance-mm", "-1"],
        "tolerance_mm must be a finite distance >= 0 in mm, got -1.0",
    ),
    "evaluate-beta": (["evaluate", "--beta", "0"], "beta must be a positive number"),
    "predict-threshold": (["predict", "--threshold", "1.5"], "threshold must be between 0 and 1"),
    "predict-overlap": (["predict", "--overlap", "1"], "overlap must be in [0, 1), got 1.0"),
    "predict-batch-size": (["predict", "--batch-size", "0"], "batch_size must be at least 1"),
    "predict-min-volume": (["predict", "--min-volume-ml", "-1"], "min_volume_ml must be >= 0"),
    "phantom-healthy": (["phantom", "--healthy", "-1"], "healthy=-1"),
    "phantom-seed": (["phantom", "--seed", "-1"], "seed must be a whole number >= 0, got -1"),
    "phantom-shape": (
        ["phantom", "--shape", "0", "10", "10"],
        "shape must be 3 whole numbers of voxels, each >= 8, got (0, 10, 10)",
    ),
}


def full_arguments(name: str, tmp_path, cohort, lesion_model) -> list:
    command, *options = CASES[name][0]
    out = tmp_path / "OUT"
    if command == "demo":
        return [command, *options, "--out", out, "--no-progress"]
    if command == "evaluate":
        return [command, "--pred", cohort, "--ref", cohort, "--out", out, *options]
    if command == "predict":
        return [command, cohort, out, "--lesion-model", lesion_model, "--no-progress", *options]
    return [command, out, "--quiet", *options]


@pytest.mark.parametrize("name", sorted(CASES))
def test_impossible_numbers_are_refused_up_front(name, cohort, lesion_model, tmp_path, capsys):
    arguments = full_arguments(name, tmp_path, cohort, lesion_model)
    before = tree_digest(tmp_path)
    code, out, err = run_sap(arguments, capsys)
    assert code == 2
    assert len(err.strip().splitlines()) == 1, err
    assert CASES[name][1] in err
    assert err.startswith(f"sap {arguments[0]}: ")
    assert tree_digest(tmp_path) == before  # nothing written, not even OUT
