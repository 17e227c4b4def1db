"""``sap demo``'s pieces that run in milliseconds; the whole demo runs in tests/cli (slow)."""

from __future__ import annotations

from pathlib import Path

import pytest

from sap.experiments import format_table, run_demo


def test_demo_table_shows_missing_values_as_na() -> None:
    table = format_table(
        {"sap": {"sensitivity": 0.5, "f_beta": None}, "scratch": {"sensitivity": 0.25}}
    )
    lines = table.splitlines()
    assert lines[0].split() == ["metric", "sap", "scratch"]
    assert lines[1].split()[-2:] == ["0.500", "0.250"]
    assert "n/a" in lines[4] and lines[4].startswith("F2")


def test_demo_refuses_a_non_empty_output_folder(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="not empty"):
        run_demo(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]


def _tiny_demo_settings():
    from sap.experiments import DemoSettings
    from tests.helpers.experiments import TINY_PHANTOM

    return DemoSettings(
        healthy=2, metastatic_train=2, metastatic_test=2, skeleton_epochs=1,
        skeleton_samples_per_volume=2, lesion_epochs=2, batch_size=2, patch_size=(16, 16, 32),
        phantom_kwargs={**TINY_PHANTOM, "min_lesion_voxels": 2}, torch_threads=1,
    )  # fmt: skip


@pytest.mark.slow
def test_two_demo_runs_with_one_seed_give_the_same_summary(tmp_path: Path) -> None:
    first = run_demo(tmp_path / "first", _tiny_demo_settings(), progress=False)
    second = run_demo(tmp_path / "second", _tiny_demo_settings(), progress=False)
    assert first["results"] == second["results"]
    assert first["torch_threads"] == second["torch_threads"] == 1
    # Not trivially equal: the runs predicted something to compare.
    curve = first["results"]["sap"]["summary"]["froc"]["curve"]
    assert len(curve["thresholds"]) > 2
