"""Pretrained sources: what a string names is known at once, and every kind reads the same tensors."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from sap.errors import ConfigError, MissingPathError
from sap.zoo import (
    CheckpointError,
    ModelConfigError,
    UnknownModelError,
    WeightsIntegrityError,
    push_to_hub,
    read_pretrained_weights,
    resolve_source,
)
from sap.zoo.export import file_sha256
from tests.helpers.zoo import tiny_export, train_one_step_checkpoint


def test_each_kind_of_source_is_recognised(tmp_path: Path) -> None:
    _, export = tiny_export(tmp_path / "export")
    checkpoint = train_one_step_checkpoint(tmp_path / "ckpt")
    assert resolve_source("sap-skeleton-phantom").kind == "zoo"
    assert resolve_source("hf://owner/repo@main").kind == "hub"
    assert resolve_source(export).kind == "folder"
    assert resolve_source(str(checkpoint)).kind == "file"


@pytest.mark.parametrize(
    ("source", "error", "message"),
    [
        ("sap-skeleton-phantm", UnknownModelError, "Did you mean 'sap-skeleton-phantom'"),
        ("runs/skeleton/last.ckpt", MissingPathError, "does not exist"),
        ("skeleton.ckpt", MissingPathError, "skeleton.ckpt does not exist"),
        ("{folder}", ModelConfigError, "without config.json"),
        ("{text}", CheckpointError, "it is a text file starting with 'epoch,step'"),
        ("{empty}", CheckpointError, "it is empty"),
        ("hf://owner", ConfigError, "not a repository id"),
    ],
    ids=["zoo-typo", "missing-path", "missing-ckpt", "plain-folder", "text", "empty", "bad-uri"],
)
def test_sources_that_cannot_work_fail_at_once(
    source: str, error: type[Exception], message: str, tmp_path: Path
) -> None:
    (tmp_path / "folder").mkdir()
    (tmp_path / "metrics.ckpt").write_text("epoch,step\n0,1\n", encoding="utf-8")
    (tmp_path / "empty.pt").write_bytes(b"")
    paths = {"folder": tmp_path / "folder", "text": tmp_path / "metrics.ckpt"}
    source = source.format(**paths, empty=tmp_path / "empty.pt")
    with pytest.raises(error, match=message):
        resolve_source(source)


def test_every_local_kind_reads_the_same_tensors_and_names_its_base_model(tmp_path: Path) -> None:
    model, export = tiny_export(tmp_path / "export")
    expected = model.state_dict()
    reference = tmp_path / "reference.pth"
    torch.save({"state_dict": {f"module.{k}": v for k, v in expected.items()}}, reference)

    from_export = read_pretrained_weights(export)
    weights_sha = file_sha256(export / "model.safetensors")
    assert from_export.base_model == f"export sha256:{weights_sha}"
    assert from_export.recipe is not None and from_export.recipe.channels == ["T1", "b1000"]
    from_reference = read_pretrained_weights(reference)
    assert from_reference.recipe is None, "a plain state dict says nothing about its channels"
    assert from_reference.base_model == f"reference.pth sha256:{file_sha256(reference)}"
    for key, value in expected.items():
        assert torch.equal(from_export.state_dict[key], value)
        assert torch.equal(from_reference.state_dict[f"module.{key}"], value)


def test_a_checkpoint_gives_its_backbone_and_recipe(tmp_path: Path) -> None:
    checkpoint = train_one_step_checkpoint(tmp_path)
    weights = read_pretrained_weights(checkpoint)
    assert weights.recipe is not None and weights.recipe.task == "skeleton"
    assert not any(key.startswith("model.") for key in weights.state_dict)
    assert weights.base_model == f"{checkpoint.name} sha256:{file_sha256(checkpoint)}"


def test_an_export_with_modified_weights_is_refused(tmp_path: Path) -> None:
    _, export = tiny_export(tmp_path / "export")
    weights = export / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-1] + b"\x00")
    with pytest.raises(WeightsIntegrityError, match="sha256"):
        read_pretrained_weights(export)


def test_a_hub_source_reads_the_pushed_weights(hub, repo: str, tmp_path: Path) -> None:
    model, export = tiny_export(tmp_path / "export")
    push = push_to_hub(export, repo)
    uri = f"hf://{repo}@{push.commit}"
    weights = read_pretrained_weights(uri)
    assert weights.base_model == uri
    for key, value in model.state_dict().items():
        assert torch.equal(weights.state_dict[key], value)
