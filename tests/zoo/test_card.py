"""Model cards: Hub metadata written and read back by huggingface_hub, one citation everywhere."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest
import torch

from sap.citation import CITATION, citation_markdown
from sap.zoo import ExportError, TrainingData, export_checkpoint, read_config
from sap.zoo.catalogue import BUNDLED_DIR, SOURCE_ZOO_DIR
from sap.zoo.export import base_model_name, file_sha256, rewrite_metadata
from sap.zoo.model_card import render_model_card
from tests.helpers.zoo import random_tiny_unet, tiny_config, tiny_export, train_one_step_checkpoint

REPO = Path(__file__).resolve().parents[2]


def test_card_metadata_round_trips_through_huggingface_hub(tmp_path):
    from huggingface_hub import ModelCard, metadata_load

    model = random_tiny_unet()
    config = dataclasses.replace(
        tiny_config(model),
        base_model="sap-org/sap-skeleton",
        metrics={"whole_skeleton_dice": 0.5, "mean_region_dice": 0.25},
        metrics_dataset="sap-phantom-heldout",
    )
    path = tmp_path / "README.md"
    path.write_text(render_model_card(config), encoding="utf-8")
    meta = metadata_load(path)
    assert meta["base_model"] == "sap-org/sap-skeleton"
    assert meta["datasets"] == ["sap-phantom"]  # synthetic training data, no name given
    assert (meta["license"], meta["library_name"], meta["pipeline_tag"]) == (
        "apache-2.0",
        "sap",
        "image-segmentation",
    )
    assert {"sap", "skeleton-segmentation", "synthetic-data"} <= set(meta["tags"])
    card = ModelCard.load(path)
    results = card.data.eval_results
    assert card.data.model_name == "tiny-test"
    assert {r.metric_type: r.metric_value for r in results} == config.metrics
    assert {r.dataset_type for r in results} == {"sap-phantom-heldout"}
    assert {r.task_type for r in results} == {"image-segmentation"}
    assert str(ModelCard(path.read_text(encoding="utf-8"))) == path.read_text(encoding="utf-8")


def test_card_without_metrics_or_base_model_leaves_them_out(tmp_path):
    from huggingface_hub import metadata_load

    model = random_tiny_unet()
    config = dataclasses.replace(
        tiny_config(model), metrics={}, training_data=TrainingData("ten patients", num_cases=10)
    )
    path = tmp_path / "README.md"
    path.write_text(render_model_card(config), encoding="utf-8")
    meta = metadata_load(path)
    assert "base_model" not in meta and "model-index" not in meta and "datasets" not in meta
    assert "No metrics recorded." in path.read_text(encoding="utf-8")


def _with_transfer(checkpoint: Path, source: str) -> Path:
    payload = torch.load(checkpoint, weights_only=True)
    payload["sap_transfer"] = {"source": source, "loaded": 3}
    torch.save(payload, checkpoint)
    return checkpoint


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        (
            "hf://sap-org/sap-skeleton@0123456789abcdef0123456789abcdef01234567",
            "sap-org/sap-skeleton",
        ),
        ("sap-skeleton-phantom", "sap-skeleton-phantom"),  # a bundled zoo model: its name
        ("/no/such/skeleton.ckpt", ""),  # a file the Hub knows nothing about
    ],
)
def test_export_reads_the_fine_tune_source_into_base_model(tmp_path, source, expected):
    checkpoint = _with_transfer(train_one_step_checkpoint(tmp_path), source)
    folder = export_checkpoint(checkpoint, tmp_path / "export")
    config = read_config(folder)
    assert config.base_model == expected
    assert config.provenance["initialised_from"] == source
    card = (folder / "README.md").read_text(encoding="utf-8")
    assert (f"base_model: {expected}\n" in card) == bool(expected)


def test_base_model_names_of_local_sources(tmp_path):
    _, folder = tiny_export(tmp_path / "export", name="sap-skeleton-phantom")
    assert base_model_name(str(folder)) == "sap-skeleton-phantom"
    _, unnamed = tiny_export(tmp_path / "unnamed", name="")
    assert base_model_name(str(unnamed)) == ""
    assert base_model_name("not-a-model") == ""


def test_one_citation_in_readme_zoo_readme_bundled_cards_and_configs():
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    assert readme.split("## Citation\n\n", 1)[1].split("\n## ", 1)[0] == citation_markdown()
    assert citation_markdown() in (SOURCE_ZOO_DIR / "README.md").read_text(encoding="utf-8")
    assert "Journal of Bone Oncology" in CITATION and "2506.19590" in CITATION
    for folder in sorted(p for p in BUNDLED_DIR.iterdir() if (p / "config.json").is_file()):
        assert read_config(folder).citation == CITATION
        assert citation_markdown() in (folder / "README.md").read_text(encoding="utf-8")


def test_bundled_cards_are_what_the_renderer_writes_now():
    for folder in sorted(p for p in BUNDLED_DIR.iterdir() if (p / "config.json").is_file()):
        config = read_config(folder)
        card = (folder / "README.md").read_text(encoding="utf-8")
        assert card == render_model_card(config), f"regenerate {folder}: --recard"
        assert "sap.data.phantom" not in card + (folder / "config.json").read_text()
        assert re.search(r"sap\.phantom\.generate_cohort", config.training_data.description)


def test_rewrite_metadata_keeps_the_weights_and_refuses_changed_ones(tmp_path):
    _, folder = tiny_export(tmp_path / "export")
    weights = folder / "model.safetensors"
    digest = file_sha256(weights)
    config = rewrite_metadata(folder, base_model="sap-org/base", description="New words.")
    assert file_sha256(weights) == digest == config.weights.sha256
    assert read_config(folder).base_model == "sap-org/base"
    assert "New words." in (folder / "README.md").read_text(encoding="utf-8")
    weights.write_bytes(weights.read_bytes()[:-4] + b"\0\0\0\0")
    with pytest.raises(ExportError, match="does not match the sha256"):
        rewrite_metadata(folder, description="again")
    assert "New words." in (folder / "README.md").read_text(encoding="utf-8")
