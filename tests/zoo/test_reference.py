"""Import of SAP reference checkpoints (plain MONAI SwinUNETR saved by the authors' scripts).

The paper's model has feature_size 48 (62 M parameters); the tests use feature_size 12, which
exercises exactly the same key names and conversion. The import infers feature_size, channels
and classes from the tensors, so nothing here is specific to 12.

A Swin UNETR forward pass on the smallest valid input (32 x 32 x 64) takes about 2.5 s on one
CPU core, so the forward-pass check runs in two tests only (one that passes, one that must
fail); the other tests skip it and compare tensors one by one with MONAI's state dict, which
is what the forward check ultimately rests on.
"""

from __future__ import annotations

import pytest
import torch
from monai.networks.nets import SwinUNETR

from sap.zoo import ReferenceImportError, import_reference_checkpoint, load_pretrained, read_config

FEATURE_SIZE = 12


@pytest.fixture(scope="module")
def reference_skeleton():
    torch.manual_seed(0)
    return SwinUNETR(in_channels=2, out_channels=10, feature_size=FEATURE_SIZE).eval()


def _save(state: dict, path, wrap: str, prefix: str = "", rename_swin: bool = False):
    keys = {}
    for key, value in state.items():
        if rename_swin:
            key = key.replace("swinViT.", "swin_vit.")
        keys[prefix + key] = value
    payload = (
        {"state_dict": keys, "epoch": 399, "best_metric": 0.9} if wrap == "state_dict" else keys
    )
    torch.save(payload, path)
    return path


def _assert_same_tensors(model: torch.nn.Module, reference: torch.nn.Module) -> None:
    ours = {key.removeprefix("net."): value for key, value in model.state_dict().items()}
    theirs = reference.state_dict()
    assert sorted(ours) == sorted(theirs)
    for key, value in theirs.items():
        assert torch.equal(ours[key], value), key


def test_reference_checkpoint_passes_the_forward_check_and_exports(reference_skeleton, tmp_path):
    ckpt = _save(
        reference_skeleton.state_dict(), tmp_path / "ref.pth", "state_dict", "module.", True
    )
    result = import_reference_checkpoint(ckpt, "skeleton", tmp_path / "export", name="ref-skeleton")
    assert result.max_abs_diff is not None and result.max_abs_diff <= 1e-5
    config = read_config(tmp_path / "export")
    assert config.recipe.backbone == "swin_unetr"
    assert config.recipe.backbone_kwargs["feature_size"] == FEATURE_SIZE
    assert config.recipe.channels == ["T1", "b1000"] and len(config.recipe.labels) == 10
    assert config.provenance["source"] == "sap-reference-checkpoint"
    assert config.provenance["forward_check_max_abs_diff"] == result.max_abs_diff
    # the export loads through the ordinary path with every tensor intact
    _assert_same_tensors(load_pretrained(tmp_path / "export"), reference_skeleton)


def test_forward_check_catches_a_conversion_that_changes_the_output(reference_skeleton, tmp_path):
    from sap.zoo import reference

    ckpt = _save(reference_skeleton.state_dict(), tmp_path / "ref.pth", "plain")
    result = import_reference_checkpoint(ckpt, "skeleton", check=False)
    assert result.max_abs_diff is None
    state = {f"net.{key}": value for key, value in reference_skeleton.state_dict().items()}
    with torch.no_grad():
        # a subtly wrong conversion (a scale alone would vanish in the instance norms)
        result.model.net.swinViT.patch_embed.proj.weight.add_(1e-3)
    with pytest.raises(ReferenceImportError, match="differ from MONAI's SwinUNETR"):
        reference._forward_check(result.model, state, ckpt)


@pytest.mark.parametrize(
    ("wrap", "prefix", "rename_swin"),
    [
        ("state_dict", "module.", True),  # DataParallel + older spelling, wrapped
        ("plain", "backbone.", False),
        ("plain", "", False),
        ("state_dict", "module.backbone.", False),
    ],
)
def test_reference_key_spellings_all_convert(
    reference_skeleton, tmp_path, wrap, prefix, rename_swin
):
    ckpt = _save(reference_skeleton.state_dict(), tmp_path / "ref.pth", wrap, prefix, rename_swin)
    result = import_reference_checkpoint(ckpt, "skeleton", check=False)
    _assert_same_tensors(result.model, reference_skeleton)
    assert result.filled_buffers == []


def test_reference_skeleton_becomes_a_sap_lesion_model(reference_skeleton, tmp_path):
    ckpt = _save(reference_skeleton.state_dict(), tmp_path / "ref.pth", "state_dict", "module.")
    import_reference_checkpoint(ckpt, "skeleton", tmp_path / "export", check=False)
    lesion = load_pretrained(tmp_path / "export", task="lesion", num_classes=2)
    assert lesion.out_channels == 2
    reference_state = reference_skeleton.state_dict()
    for key, value in lesion.state_dict().items():
        if lesion.group_of(key) != "head":
            assert torch.equal(value, reference_state[key.removeprefix("net.")]), key


def test_lesion_reference_checkpoint_and_missing_buffers(tmp_path):
    torch.manual_seed(1)
    reference = SwinUNETR(in_channels=2, out_channels=2, feature_size=FEATURE_SIZE).eval()
    state = {k: v for k, v in reference.state_dict().items() if "relative_position_index" not in k}
    ckpt = _save(state, tmp_path / "lesion.pt", "plain", "module.")
    result = import_reference_checkpoint(ckpt, "lesion", check=False)
    assert result.folder is None  # nothing written without out_dir
    assert len(result.filled_buffers) == 8
    assert all("relative_position_index" in k for k in result.filled_buffers)
    _assert_same_tensors(result.model, reference)


def test_wrong_task_for_the_head_is_a_clear_error(reference_skeleton, tmp_path):
    ckpt = _save(reference_skeleton.state_dict(), tmp_path / "ref.pth", "plain")
    with pytest.raises(ReferenceImportError, match="10-class head, but task 'lesion'") as info:
        import_reference_checkpoint(ckpt, "lesion", tmp_path / "export")
    assert "--task skeleton" in str(info.value)
    assert not (tmp_path / "export").exists()


def test_channel_names_must_match_the_stem(reference_skeleton, tmp_path):
    ckpt = _save(reference_skeleton.state_dict(), tmp_path / "ref.pth", "plain")
    with pytest.raises(ReferenceImportError, match="takes 2 input channel"):
        import_reference_checkpoint(ckpt, "skeleton", channels=["T1", "b1000", "ADC"])


def test_a_checkpoint_that_is_not_swin_unetr_is_refused(tmp_path):
    torch.save({"state_dict": {"module.conv.weight": torch.zeros(2, 2)}}, tmp_path / "other.pt")
    with pytest.raises(ReferenceImportError, match="is not a MONAI SwinUNETR checkpoint"):
        import_reference_checkpoint(tmp_path / "other.pt", "skeleton")


def test_a_pickled_object_is_refused_not_executed(tmp_path):
    class Payload:
        def __reduce__(self):
            return (print, ("this must never run",))

    torch.save({"state_dict": {"x": Payload()}}, tmp_path / "evil.pt")
    with pytest.raises(ReferenceImportError, match="weights_only=True"):
        import_reference_checkpoint(tmp_path / "evil.pt", "skeleton")


def test_cli_import_reference(reference_skeleton, tmp_path, capsys):
    from sap.cli import main

    ckpt = _save(
        reference_skeleton.state_dict(), tmp_path / "ref.pth", "state_dict", "module.", True
    )
    out = tmp_path / "export"
    args = ["zoo", "import-reference", str(ckpt), str(out), "--task", "skeleton", "--name", "ref"]
    assert main([*args, "--no-check"]) == 0
    printed = capsys.readouterr().out
    assert "wrote" in printed and "sha256" in printed and "forward check" not in printed
    assert read_config(out).name == "ref"
    assert (
        main(["zoo", "import-reference", str(ckpt), str(out), "--task", "lesion", "--no-check"])
        == 1
    )
    assert "10-class head" in capsys.readouterr().err
