"""Export folders: format, atomic writes, safe loading, and every error a user can meet."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch

from sap.zoo import (
    ExportError,
    ModelConfig,
    ModelConfigError,
    WeightsIntegrityError,
    WeightsMismatchError,
    export_checkpoint,
    load_pretrained,
    read_config,
    save_pretrained,
)
from sap.zoo.export import file_sha256
from tests.helpers.zoo import (
    TINY_KWARGS,
    random_tiny_unet,
    same_output,
    tiny_config,
    tiny_export,
    train_one_step_checkpoint,
)


def _rewrite_config(folder: Path, change) -> None:
    data = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    change(data)
    (folder / "config.json").write_text(json.dumps(data))


def test_export_folder_holds_weights_config_and_card(tmp_path):
    model, folder = tiny_export(tmp_path / "export")
    assert sorted(p.name for p in folder.iterdir()) == [
        ".sap-output.json",  # marks an export: --overwrite replaces this and nothing else
        "README.md",
        "config.json",
        "model.safetensors",
    ]
    config = read_config(folder)
    assert config.weights.sha256 == file_sha256(folder / "model.safetensors")
    assert config.weights.size_bytes == (folder / "model.safetensors").stat().st_size
    assert config.weights.num_parameters == sum(p.numel() for p in model.parameters())
    assert config.recipe.backbone_kwargs == TINY_KWARGS
    card = (folder / "README.md").read_text(encoding="utf-8")
    assert card.startswith("---\n") and "\nlicense: apache-2.0\n" in card
    for needed in (
        "not a medical device",
        "Trained on synthetic data",
        "whole_skeleton_dice",
        "eprint        = {2506.19590}",
        "journal = {Journal of Bone Oncology}",
    ):
        assert needed in card
    assert config.weights.sha256 in card


def test_export_round_trip_gives_identical_outputs(tmp_path):
    model, folder = tiny_export(tmp_path / "export")
    loaded = load_pretrained(folder)
    assert same_output(model, loaded)
    assert loaded.recipe == read_config(folder).recipe
    assert loaded.pretrained_cfg["source"] == str(folder)
    assert not loaded.training  # returned ready for inference


def test_config_json_round_trips_exactly(tmp_path):
    _, folder = tiny_export(tmp_path / "export")
    data = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    assert data["format"] == "sap-model" and data["format_version"] == 2
    assert ModelConfig.from_dict(data).to_dict() == data


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: d.update(colour="blue"), "unknown field(s) ['colour']"),
        (lambda d: d.update(format="other"), "is not a sap model config"),
        (lambda d: d.update(format_version=99), "Upgrade sap"),
        (lambda d: d.pop("recipe"), "'recipe' field is missing"),
        (lambda d: d["metrics"].update(dice=float("nan")), "finite number"),
    ],
)
def test_config_errors_name_the_file_and_the_field(tmp_path, change, message):
    _, folder = tiny_export(tmp_path / "export")
    _rewrite_config(folder, change)
    with pytest.raises(ModelConfigError) as info:
        load_pretrained(folder)
    assert message in str(info.value)
    assert str(folder / "config.json") in str(info.value)


def test_config_that_is_not_json_is_a_clear_error(tmp_path):
    _, folder = tiny_export(tmp_path / "export")
    (folder / "config.json").write_text("{not json")
    with pytest.raises(ModelConfigError, match="is not valid JSON"):
        load_pretrained(folder)


def test_export_refuses_existing_folder_and_leaves_it_untouched(tmp_path):
    out = tmp_path / "export"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    model = random_tiny_unet()
    for overwrite in (False, True):  # not an earlier export: --overwrite does not apply
        with pytest.raises(FileExistsError, match="was not written by `sap zoo export`"):
            save_pretrained(model, out, tiny_config(model), overwrite=overwrite)
    assert [p.name for p in out.iterdir()] == ["keep.txt"]


def test_export_overwrite_replaces_the_folder(tmp_path):
    _, folder = tiny_export(tmp_path / "export", seed=0)
    other = random_tiny_unet(seed=1)
    save_pretrained(other, folder, tiny_config(other), overwrite=True)
    assert same_output(other, load_pretrained(folder))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["export"]  # no leftovers


def test_failed_export_leaves_no_folder_behind(tmp_path, monkeypatch):
    import sap.zoo.export as export

    def broken_card(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(export, "render_model_card", broken_card)
    model = random_tiny_unet()
    with pytest.raises(OSError, match="disk full"):
        save_pretrained(model, tmp_path / "export", tiny_config(model))
    assert list(tmp_path.iterdir()) == []


def test_failed_overwrite_keeps_the_previous_export(tmp_path, monkeypatch):
    import sap.zoo.export as export

    model, folder = tiny_export(tmp_path / "export")
    monkeypatch.setattr(
        export, "render_model_card", lambda *a, **k: (_ for _ in ()).throw(OSError("boom"))
    )
    with pytest.raises(OSError, match="boom"):
        save_pretrained(random_tiny_unet(seed=3), folder, tiny_config(model), overwrite=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["export"]
    assert same_output(model, load_pretrained(folder))


def test_export_refuses_a_recipe_that_does_not_describe_the_model(tmp_path):
    model = random_tiny_unet(out_channels=2)
    config = tiny_config(model)  # 10 skeleton labels for a 2-class network
    with pytest.raises(ExportError, match="outputs 2 class"):
        save_pretrained(model, tmp_path / "export", config)
    assert not (tmp_path / "export").exists()


def test_load_pretrained_refuses_tampered_weights(tmp_path):
    _, folder = tiny_export(tmp_path / "export")
    weights = folder / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF  # one flipped byte inside a tensor
    weights.write_bytes(bytes(data))
    with pytest.raises(WeightsIntegrityError, match="was modified, corrupted or swapped") as info:
        load_pretrained(folder)
    assert str(weights) in str(info.value)


def test_load_pretrained_checks_a_caller_supplied_sha256(tmp_path):
    _, folder = tiny_export(tmp_path / "export")
    with pytest.raises(
        WeightsIntegrityError, match="the zoo catalogue entry / caller expects 0000"
    ):
        load_pretrained(folder, sha256="0" * 64)
    load_pretrained(folder, sha256=file_sha256(folder / "model.safetensors"))


def test_missing_weights_file_is_a_clear_error(tmp_path):
    _, folder = tiny_export(tmp_path / "export")
    (folder / "model.safetensors").unlink()
    with pytest.raises(WeightsIntegrityError, match="model.safetensors is missing"):
        load_pretrained(folder)


def test_corrupt_safetensors_is_a_clear_error(tmp_path):
    _, folder = tiny_export(tmp_path / "export")
    weights = folder / "model.safetensors"
    weights.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not a header}")
    _rewrite_config(folder, lambda d: d["weights"].update(sha256=file_sha256(weights)))
    with pytest.raises(WeightsIntegrityError, match="not a readable safetensors file"):
        load_pretrained(folder)


def test_config_naming_an_unknown_backbone_is_a_clear_error(tmp_path):
    _, folder = tiny_export(tmp_path / "export")
    _rewrite_config(folder, lambda d: d["recipe"].update(backbone="tiny_unett"))
    with pytest.raises(ModelConfigError, match="names backbone 'tiny_unett'") as info:
        load_pretrained(folder)
    assert "tiny_unet" in str(info.value)  # the close match is offered


def test_weights_that_do_not_fit_the_recipe_are_reported_with_shapes(tmp_path):
    _, folder = tiny_export(tmp_path / "export")
    _rewrite_config(folder, lambda d: d["recipe"]["backbone_kwargs"].update(base_channels=6))
    with pytest.raises(WeightsMismatchError, match="shape mismatch") as info:
        load_pretrained(folder)
    assert "file (4,) vs model (6,)" in str(info.value)
    assert "Check the backbone name and kwargs" in str(info.value)


def test_task_lesion_puts_a_fresh_head_on_the_pretrained_encoder_and_decoder(tmp_path):
    skeleton, folder = tiny_export(tmp_path / "export")
    lesion = load_pretrained(folder, task="lesion", num_classes=2)
    assert lesion.out_channels == 2
    assert lesion.recipe.task == "lesion" and lesion.recipe.labels == ["background", "lesion"]
    assert lesion.pretrained_cfg["head_replaced"] is True
    old, new = skeleton.state_dict(), lesion.state_dict()
    for key, value in new.items():
        if lesion.group_of(key) == "head":
            assert value.shape[0] == 2
        else:
            assert torch.equal(value, old[key]), key
    # task alone picks the task's standard labels
    assert load_pretrained(folder, task="lesion").recipe.labels == ["background", "lesion"]
    # same task and class count: the trained head is kept, only names change
    renamed = load_pretrained(folder, labels=[f"c{i}" for i in range(10)])
    assert renamed.pretrained_cfg["head_replaced"] is False and same_output(renamed, skeleton)


@pytest.mark.parametrize("in_channels", [3, 1])
def test_in_channels_adaptation_keeps_the_response_to_equal_channels(tmp_path, in_channels):
    model, folder = tiny_export(tmp_path / "export")
    adapted = load_pretrained(folder, in_channels=in_channels)
    assert adapted.in_channels == in_channels and adapted.pretrained_cfg["in_channels_adapted"]
    expected_channels = ["T1", "b1000", "channel_2"] if in_channels == 3 else ["T1"]
    assert adapted.recipe.channels == expected_channels
    plane = torch.rand((1, 1, 8, 8, 8), generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        original = model(plane.expand(1, 2, 8, 8, 8))
        new = adapted(plane.expand(1, in_channels, 8, 8, 8))
    torch.testing.assert_close(new, original, rtol=1e-5, atol=1e-5)
    # only the stem changed: every weight that does not see the input is copied unchanged
    old_state = model.state_dict()
    changed = [k for k, v in adapted.state_dict().items() if v.shape != old_state[k].shape]
    assert changed and all(k.startswith("encoder.0.") for k in changed)


def test_in_channels_that_change_the_architecture_are_refused(tmp_path):
    _, folder = tiny_export(tmp_path / "export")  # base_channels 4: with 4 inputs the stem
    with pytest.raises(WeightsMismatchError, match="layers change with the channel count"):
        load_pretrained(folder, in_channels=4)  # needs no projection, so its keys differ


def test_lesion_head_and_new_channel_together(tmp_path):
    _, folder = tiny_export(tmp_path / "export")
    model = load_pretrained(folder, task="lesion", num_classes=2, channels=["T1", "b1000", "ADC"])
    assert (model.in_channels, model.out_channels) == (3, 2)
    assert model.recipe.channels == ["T1", "b1000", "ADC"]
    assert model(torch.rand(1, 3, 8, 8, 8)).shape == (1, 2, 8, 8, 8)


def test_lightning_checkpoint_loads_with_weights_only_and_exports(tmp_path, capsys):
    from sap.cli import main

    ckpt = train_one_step_checkpoint(tmp_path)
    raw = torch.load(ckpt, weights_only=True, map_location="cpu")  # no unpickling of code
    assert raw["sap_recipe"]["backbone"] == "tiny_unet" and "hyper_parameters" in raw

    from_ckpt = load_pretrained(ckpt)
    assert from_ckpt.pretrained_cfg["config"]["provenance"]["source"] == "lightning-checkpoint"

    out = tmp_path / "exported"
    code = main(
        [
            "zoo",
            "export",
            str(ckpt),
            str(out),
            "--name",
            "one-step",
            "--metric",
            "whole_skeleton_dice=0.1",
            "--synthetic",
        ]
    )
    assert code == 0 and "sha256" in capsys.readouterr().out
    config = read_config(out)
    assert config.name == "one-step" and config.metrics == {"whole_skeleton_dice": 0.1}
    assert config.provenance["checkpoint"] == "skeleton.ckpt"
    assert same_output(from_ckpt, load_pretrained(out))

    assert main(["zoo", "export", str(ckpt), str(out)]) == 1  # exists, no --overwrite
    assert "already holds an earlier output of `sap zoo export`" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:  # a malformed option is a usage error
        main(["zoo", "export", str(ckpt), str(tmp_path / "x"), "--metric", "dice"])
    assert exit_info.value.code == 2 and "NAME=NUMBER" in capsys.readouterr().err


def test_checkpoint_with_lightning_cli_hyper_parameters_exports_and_loads(tmp_path):
    """``sap fit`` (LightningCLI) stores ``_class_path`` and ``_instantiator`` with the arguments."""
    from sap.tasks import AnatomicalPretraining, load_task_checkpoint

    checkpoint = torch.load(train_one_step_checkpoint(tmp_path), weights_only=True)
    checkpoint["hyper_parameters"] = {
        "_class_path": "sap.tasks.AnatomicalPretraining",
        **checkpoint["hyper_parameters"],
        "_instantiator": "lightning.pytorch.cli.instantiate_module",
    }
    path = tmp_path / "cli.ckpt"
    torch.save(checkpoint, path)

    loaded = load_pretrained(path)
    exported = load_pretrained(export_checkpoint(path, tmp_path / "exported"))
    task = load_task_checkpoint(path)
    assert isinstance(task, AnatomicalPretraining)
    assert same_output(loaded, exported) and same_output(loaded, task.model)


def test_load_pretrained_names_a_missing_path(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_pretrained(tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError, match="'hf://owner/repo'"):
        load_pretrained("owner/repo")


def test_export_is_deterministic(tmp_path):
    model = random_tiny_unet()
    a = save_pretrained(model, tmp_path / "a", tiny_config(model))
    b = save_pretrained(model, tmp_path / "b", tiny_config(model))
    for name in ("model.safetensors", "config.json", "README.md"):
        assert (a / name).read_bytes() == (b / name).read_bytes(), name
    assert not any(p.name.startswith(".") for p in tmp_path.iterdir())
    assert os.access(a / "model.safetensors", os.R_OK)
