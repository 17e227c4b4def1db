"""Loaded models have from_pretrained / save_pretrained / push_to_hub, through the zoo's own code."""

from __future__ import annotations

import copy
import io
import pickle

import pytest
import torch

from sap.backbones import SegmentationBackbone
from sap.zoo import PretrainedModel, WeightsIntegrityError, load_pretrained, read_config
from sap.zoo.export import file_sha256
from sap.zoo.hub_mixin import hub_class, plain_class
from tests.helpers.zoo import random_tiny_unet, same_output, tiny_export


def test_a_loaded_model_is_still_its_backbone_with_hub_methods(tmp_path):
    original, folder = tiny_export(tmp_path / "export")
    model = load_pretrained(folder)
    assert isinstance(model, PretrainedModel) and isinstance(model, type(original))
    assert isinstance(model, SegmentationBackbone)
    assert plain_class(type(model)) is type(original) and type(model).__name__ == "TinyUNet"
    assert list(model.state_dict()) == list(original.state_dict())
    assert repr(model) == repr(original)
    assert type(load_pretrained(folder)) is type(model)  # one mixed class per backbone class


def test_save_pretrained_writes_an_export_that_loads_back_identically(tmp_path):
    _, folder = tiny_export(tmp_path / "export")
    model = PretrainedModel.from_pretrained(folder)
    out = model.save_pretrained(tmp_path / "again", description="Saved from a notebook.")
    config = read_config(out)
    assert config.metrics == read_config(folder).metrics and config.name == "tiny-test"
    assert config.description == "Saved from a notebook."
    assert file_sha256(out / "model.safetensors") == config.weights.sha256
    assert same_output(model, load_pretrained(out))


def test_a_new_head_is_a_new_model_without_the_old_metrics(tmp_path):
    _, folder = tiny_export(tmp_path / "export", name="sap-skeleton-phantom")
    lesion = load_pretrained(folder, task="lesion", num_classes=2)
    config = read_config(lesion.save_pretrained(tmp_path / "lesion", name="my-lesion-model"))
    assert config.recipe.task == "lesion" and config.recipe.labels == ["background", "lesion"]
    assert config.metrics == {} and config.base_model == "sap-skeleton-phantom"
    assert config.name == "my-lesion-model"


def test_from_pretrained_keeps_the_sha256_check(tmp_path):
    _, folder = tiny_export(tmp_path / "export")
    weights = folder / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-4] + b"\0\0\0\0")
    with pytest.raises(WeightsIntegrityError, match="sha256"):
        PretrainedModel.from_pretrained(folder)


def test_from_pretrained_on_a_class_checks_the_architecture(tmp_path):
    _, folder = tiny_export(tmp_path / "export")
    model = load_pretrained(folder)
    assert isinstance(type(model).from_pretrained(folder), type(model))
    with pytest.raises(TypeError, match="holds a TinyUNet"):
        hub_class(torch.nn.Linear).from_pretrained(folder)


def test_copies_and_pickles_keep_weights_and_methods(tmp_path):
    _, folder = tiny_export(tmp_path / "export")
    model = load_pretrained(folder)
    twin = copy.deepcopy(model)
    assert type(twin) is type(model) and same_output(twin, model)
    buffer = io.BytesIO()
    torch.save(model, buffer)  # a whole-model pickle refers to the importable backbone class
    buffer.seek(0)
    loaded = torch.load(buffer, weights_only=False)
    assert isinstance(loaded, PretrainedModel) and same_output(loaded, model)
    assert b"hub_mixin" in pickle.dumps(model) and b"_rebuild" in pickle.dumps(model)


def test_a_model_not_loaded_by_the_zoo_says_how_to_export_it(tmp_path):
    bare = hub_class(type(random_tiny_unet()))
    model = random_tiny_unet()
    model.__class__ = bare
    with pytest.raises(ValueError, match="carries no recipe"):
        model.save_pretrained(tmp_path / "x")


def test_push_to_hub_and_from_pretrained_round_trip(hub, repo, tmp_path):
    original, folder = tiny_export(tmp_path / "export")
    model = PretrainedModel.from_pretrained(folder)
    result = model.push_to_hub(repo, commit_message="from the model")
    assert result.uri == f"hf://{repo}@{result.commit}"
    pulled = PretrainedModel.from_pretrained(result.uri)
    assert same_output(pulled, original)
    assert pulled.pretrained_cfg["source"] == result.uri
    uploads = [path for method, path in hub.requests if method == "POST" and "/commit/" in path]
    assert len(uploads) == 1
    assert (
        read_config(folder).weights.sha256 == pulled.pretrained_cfg["config"]["weights"]["sha256"]
    )
