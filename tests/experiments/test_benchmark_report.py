"""The benchmark report: everything a paper needs, rendered from results.json alone."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sap.experiments.benchmark_report import render_report_file
from tests.helpers.benchmark import fake_benchmark_results


@pytest.fixture(scope="module")
def fake_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder with the outputs of a made-up benchmark."""
    folder = tmp_path_factory.mktemp("fake_benchmark")
    fake_benchmark_results(folder)
    return folder


def test_report_renders_from_a_small_fake_results_file(fake_run: Path, tmp_path: Path) -> None:
    results_file = fake_run / "results.json"
    results = json.loads(results_file.read_text(encoding="utf-8"))
    report = render_report_file(results_file, tmp_path / "redrawn")
    text = report.read_text(encoding="utf-8")
    for heading in ("## Verdict", "## Paper table (p-values vs sap)", "## Seed-to-seed spread",
                    "## Features before fine-tuning", "## Compute per stage", "## Reproduce"):  # fmt: skip
        assert heading in text, heading
    assert "sap benchmark --preset fake OUT" in text
    assert "| sap | 1 |" in text and "| ssl | 0 |" in text
    assert "sap vs scratch, F2" in text and "sap vs ssl, FROC-AUC" in text
    for figure in ("froc.png", "volume.png", "seeds.png", "tsne.png"):
        assert (tmp_path / "redrawn" / figure).stat().st_size > 1000, figure
        assert f"]({figure})" in text
    assert results["arms"] == ["sap", "scratch", "ssl"]
    assert set(results["environment"]["packages"]) >= {"torch", "scikit-learn", "sap"}


def test_statistics_pair_arms_by_patient_and_by_seed_and_fold(fake_run: Path) -> None:
    results = json.loads((fake_run / "results.json").read_text(encoding="utf-8"))
    rows = {row["metric"]: row for row in results["comparison"]["rows"]}
    f2 = rows["f_beta"]
    assert {"p_scratch", "p_scratch_bonferroni", "p_ssl", "p_ssl_bonferroni"} <= set(f2)
    if f2["p_scratch"] is not None:
        assert f2["p_scratch_bonferroni"] == min(1.0, 2 * f2["p_scratch"])
    tests = results["comparison"]["froc_tests"]["froc_auc_per_fold"]
    assert tests["scratch"]["n_pairs"] == 4  # 2 seeds x 2 test folds
    per_patient = results["per_patient"]["sap"]
    assert sorted(per_patient) == [f"patient_{i}" for i in range(2, 6)]
    seeds = results["per_seed"]["sap"]
    expected = (seeds["0"]["sensitivity"] is not None) and sorted(seeds) == ["0", "1"]
    assert expected
    lines = (fake_run / "results_per_patient.csv").read_text(encoding="utf-8").splitlines()
    assert len(lines) == 1 + 3 * 2 * 4  # header + arms x seeds x patients


def test_report_shows_the_encoder_rate_each_run_chose_and_counts_every_candidate(
    fake_run: Path,
) -> None:
    results = json.loads((fake_run / "results.json").read_text(encoding="utf-8"))
    chosen = results["selection"]["sap"]["0"]["1"]
    assert chosen == {"chosen": 3e-3, "tuning_f_beta": {"0.0006": 0.4, "0.003": 0.5}}
    assert results["selection"]["scratch"]["1"]["2"]["tuning_f_beta"] == {}
    compute = results["compute"]["finetuning"]
    assert compute["sap"]["runs"] == 8 and compute["scratch"]["runs"] == 4
    assert compute["sap"]["steps"] == 2 * compute["scratch"]["steps"]
    text = (fake_run / "report.md").read_text(encoding="utf-8")
    assert "## Encoder learning rate, chosen on the tuning fold" in text
    assert "| sap | 0 | 1 | 0.0006: 0.400, 0.003: 0.500 | 0.003 |" in text
    assert "chosen on the tuning fold where an arm lists several" in text


def test_report_shows_how_well_the_skeleton_model_segments_unseen_patients(fake_run: Path) -> None:
    results = json.loads((fake_run / "results.json").read_text(encoding="utf-8"))
    assert results["skeleton_model"]["foreground_dice"] == 0.7
    assert "wall_s" not in results["skeleton_model"]
    text = (fake_run / "report.md").read_text(encoding="utf-8")
    assert "## SAP's skeleton model" in text and "| 0.700 | 1.03 | 0.170 |" in text
    assert "| skeleton model check | 1 s | – | – |" in text
    assert "| pelvis | sternum |" in text and "| 0.43 | – |" in text


def test_report_splits_false_positives_by_bone(fake_run: Path) -> None:
    results = json.loads((fake_run / "results.json").read_text(encoding="utf-8"))
    # Made up: every patient has 1 false positive in bone and arm_index (0, 1, 2) outside.
    assert results["fp_location"]["sap"] == {
        "exams": 4, "inside_per_exam": 1.0, "outside_per_exam": 0.0, "outside_share": 0.0
    }  # fmt: skip
    assert results["fp_location"]["ssl"]["outside_share"] == pytest.approx(2 / 3)
    text = (fake_run / "report.md").read_text(encoding="utf-8")
    assert "## Where the false positives lie" in text
    assert "| scratch | 4 | 1.00 | 1.00 | 50 % |" in text
