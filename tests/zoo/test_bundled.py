"""The demo models bundled in the package: present, small, offline, and as good as their cards say.

They are produced by ``model_zoo/train_phantom_models.py``. Until that script has been run
(it writes ``model_zoo/sap-*-phantom.yaml``), these tests are skipped with that reason; once a
card exists, its weights must be bundled and must reproduce the card's numbers.
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


def _card(name: str):
    if not (SOURCE_ZOO_DIR / f"{name}.yaml").is_file():
        pytest.skip(f"{name} is not trained yet: run `python model_zoo/train_phantom_models.py`.")
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
def test_bundled_model_is_shipped_small_and_matches_its_card(name, monkeypatch):
    card = _card(name)
    assert card.bundled == name and card.synthetic
    weights = card.bundled_path / "model.safetensors"
    assert weights.is_file(), f"{weights} missing: the card promises bundled weights"
    assert file_sha256(weights) == card.sha256
    assert weights.stat().st_size <= 5_000_000
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    model = load_pretrained(name)
    assert model.recipe.task == card.task and tuple(model.recipe.labels) == card.labels
    readme = (card.bundled_path / "README.md").read_text(encoding="utf-8")
    assert "Trained on synthetic data" in readme and "not a medical device" in readme


@pytest.mark.slow  # regenerates the held-out phantoms and runs whole-volume inference (~1 min)
def test_skeleton_model_reaches_the_dice_its_card_states(tmp_path):
    card = _card("sap-skeleton-phantom")
    script = _training_script()
    evaluation = card.training["evaluation"]
    from sap.data.cases import discover_cases
    from sap.data.phantom import generate_cohort

    generate_cohort(
        tmp_path / "eval",
        healthy=evaluation["healthy"],
        metastatic=evaluation["metastatic"],
        seed=evaluation["seed"],
        **evaluation["phantom_kwargs"],
    )
    cases = discover_cases(tmp_path / "eval", require=("skeleton",))
    measured = script.evaluate_skeleton(load_pretrained("sap-skeleton-phantom"), cases)
    stated = card.metrics["whole_skeleton_dice"]
    assert math.isclose(measured["whole_skeleton_dice"], stated, abs_tol=DICE_TOLERANCE), (
        measured,
        stated,
    )


def test_python_one_liner_loads_the_bundled_model_offline():
    _card("sap-skeleton-phantom")
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
