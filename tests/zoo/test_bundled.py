"""The demo models bundled in the package: present, small, offline, and as good as their catalogue entries say.

They are produced by ``model_zoo/train_phantom_models.py``, which writes their catalogue
entries ``model_zoo/sap-*-phantom.yaml``: an entry's weights must be bundled and must reproduce
the entry's numbers. A source tree without those entries skips these tests and says why.
"""

from __future__ import annotations

import importlib.util
import math
import subprocess
import sys
from pathlib import Path

import pytest

from sap.zoo import load_pretrained
from sap.zoo.catalogue import SOURCE_ZOO_DIR, ModelZoo
from sap.zoo.export import file_sha256

REPO = Path(__file__).resolve().parents[2]
BUNDLED = ("sap-skeleton-phantom", "sap-lesion-phantom")
#: The evaluation is deterministic (seeded phantoms, CPU inference); the slack only covers
#: floating-point differences between machines and library versions.
DICE_TOLERANCE = 0.01


def _entry(name: str):
    if not (SOURCE_ZOO_DIR / f"{name}.yaml").is_file():
        pytest.skip(
            f"{name} has no catalogue entry: run `python model_zoo/train_phantom_models.py`."
        )
    return ModelZoo.from_directory(SOURCE_ZOO_DIR).get(name)


def _training_script():
    spec = importlib.util.spec_from_file_location(
        "train_phantom_models", REPO / "model_zoo" / "train_phantom_models.py"
    )
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is built
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("name", BUNDLED)
def test_bundled_model_is_shipped_small_and_matches_its_entry(name, monkeypatch):
    entry = _entry(name)
    assert entry.bundled == name and entry.synthetic
    weights = entry.bundled_path / "model.safetensors"
    assert weights.is_file(), f"{weights} missing: the catalogue entry promises bundled weights"
    assert file_sha256(weights) == entry.sha256
    assert weights.stat().st_size <= 5_000_000
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    model = load_pretrained(name)
    assert model.recipe.task == entry.task and tuple(model.recipe.labels) == entry.labels
    readme = (entry.bundled_path / "README.md").read_text(encoding="utf-8")
    assert "Trained on synthetic data" in readme and "not a medical device" in readme


@pytest.mark.slow  # regenerates the held-out phantoms and runs whole-volume inference (~1 min)
def test_skeleton_model_reaches_the_dice_its_entry_states(tmp_path):
    entry = _entry("sap-skeleton-phantom")
    script = _training_script()
    evaluation = entry.training["evaluation"]
    from sap.data.cases import discover_cases
    from sap.phantom import generate_cohort

    generate_cohort(
        tmp_path / "eval",
        healthy=evaluation["healthy"],
        metastatic=evaluation["metastatic"],
        seed=evaluation["seed"],
        **evaluation["phantom_kwargs"],
    )
    cases = discover_cases(tmp_path / "eval", require=("skeleton",))
    measured = script.evaluate_skeleton(load_pretrained("sap-skeleton-phantom"), cases)
    stated = entry.metrics["whole_skeleton_dice"]
    assert math.isclose(measured["whole_skeleton_dice"], stated, abs_tol=DICE_TOLERANCE), (
        measured,
        stated,
    )


def test_python_one_liner_loads_the_bundled_model_offline():
    _entry("sap-skeleton-phantom")
    code = "from sap import load_pretrained; m = load_pretrained('sap-skeleton-phantom'); print(m)"
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        cwd=REPO,
        env={"HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin"},
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "name='tiny_unet'" in result.stdout
