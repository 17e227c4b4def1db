"""Specification of the backbone registry and of the encoder / decoder / head contract."""

from __future__ import annotations

import copy
import doctest

import pytest
import torch
from torch import nn

from sap.backbones import (
    GROUP_NAMES,
    BackboneRegistry,
    SegmentationBackbone,
    UnknownBackboneError,
    backbone_entry,
    build_backbone,
    convert_monai_swin_unetr_state_dict,
    default_registry,
    list_backbones,
    register_backbone,
)

BUILT_IN = {
    "swin_unetr",
    "tiny_unet",
    "unet_resnet18",
    "unet_resnet34",
    "unet_resnet50",
    "unet_efficientnet-b0",
}
# Smallest settings that keep each architecture's structure (all groups, all stages).
SMALL_KWARGS = {"swin_unetr": {"feature_size": 12}}
IN_CHANNELS, OUT_CHANNELS = 2, 10


def _small(name: str) -> SegmentationBackbone:
    torch.manual_seed(0)
    return build_backbone(name, IN_CHANNELS, OUT_CHANNELS, **SMALL_KWARGS.get(name, {}))


@pytest.fixture(scope="module")
def built() -> dict[str, SegmentationBackbone]:
    """One small instance per registered backbone, shared by the read-only tests."""
    return {name: _small(name) for name in list_backbones()}


def _smallest_input(net: SegmentationBackbone, batch: int = 1) -> torch.Tensor:
    # One axis twice as long: the bottleneck of Swin UNETR / smp then holds 2 voxels, which
    # instance norm needs even in eval mode (a 32^3 input leaves it a single voxel).
    side = max(net.spatial_multiple, 8)
    return torch.randn(batch, net.in_channels, side, side, 2 * side)


class _Toy(SegmentationBackbone):
    """A complete backbone in a dozen lines: what a contributor writes for a new architecture."""

    encoder_modules = ("enc",)
    decoder_modules = ("dec",)
    head_module = "head"

    def __init__(self, in_channels: int, out_channels: int, width: int = 4) -> None:
        super().__init__(in_channels, out_channels, spatial_multiple=2)
        self.enc = nn.Conv3d(in_channels, width, 3, stride=2, padding=1)
        self.dec = nn.ConvTranspose3d(width, width, 2, stride=2)
        self.head = self.new_head(out_channels)

    def new_head(self, out_channels: int) -> nn.Module:
        return nn.Conv3d(self.dec.out_channels, out_channels, 1)

    def forward_logits(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.relu(self.dec(torch.relu(self.enc(x)))))


# ----------------------------------------------------------------------------- registry


def test_all_built_in_backbones_are_registered():
    assert BUILT_IN.issubset(list_backbones())


def test_every_registered_backbone_builds_and_keeps_the_spatial_shape(built):
    for name, net in built.items():
        assert net.name == name
        assert (net.in_channels, net.out_channels) == (IN_CHANNELS, OUT_CHANNELS)
        x = _smallest_input(net)
        net.eval()
        with torch.no_grad():
            y = net(x)
        assert y.shape == (1, OUT_CHANNELS, *x.shape[2:]), name
        assert y.dtype == torch.float32


def test_list_backbones_filters_with_shell_wildcards():
    assert list_backbones("unet_*") == [
        "unet_efficientnet-b0",
        "unet_resnet18",
        "unet_resnet34",
        "unet_resnet50",
    ]
    assert list_backbones("unet_resnet?8") == ["unet_resnet18"]
    assert list_backbones(["swin*", "tiny*"]) == ["swin_unetr", "tiny_unet"]
    assert list_backbones("no_such*") == []
    assert list_backbones() == sorted(list_backbones())


def test_unknown_name_error_lists_close_matches():
    with pytest.raises(UnknownBackboneError) as info:
        build_backbone("swin_untr", 2, 2)
    message = str(info.value)
    assert "'swin_untr'" in message and "Did you mean 'swin_unetr'" in message
    with pytest.raises(UnknownBackboneError, match="unet_resnet18.*unet_resnet34"):
        build_backbone("unet_resnet", 2, 2)
    with pytest.raises(UnknownBackboneError, match="Did you mean 'tiny_unet'"):
        backbone_entry("Tiny_UNet")


def test_registering_a_taken_name_fails_and_keeps_the_original():
    original = backbone_entry("tiny_unet").builder
    with pytest.raises(ValueError, match="already registered"):
        register_backbone("tiny_unet")(_Toy)
    assert backbone_entry("tiny_unet").builder is original


def test_invalid_names_and_reserved_defaults_are_refused():
    registry = BackboneRegistry()
    with pytest.raises(ValueError, match="not valid"):
        registry.register("unet*")
    with pytest.raises(ValueError, match="in_channels"):
        registry.register("toy", default_kwargs={"in_channels": 3})
    with pytest.raises(TypeError, match="'widht' \\(did you mean 'width'\\?\\)"):
        registry.register("toy", default_kwargs={"widht": 3})(_Toy)


def test_a_new_backbone_is_one_class_and_one_decorator():
    registry = default_registry()
    register_backbone("toy_net", description="test toy", default_kwargs={"width": 3})(_Toy)
    try:
        assert "toy_net" in list_backbones("toy*")
        net = build_backbone("toy_net", 2, 5)
        assert net.kwargs == {"width": 3}
        assert build_backbone("toy_net", 2, 5, width=6).kwargs == {"width": 6}
        assert net(torch.randn(1, 2, 4, 6, 8)).shape == (1, 5, 4, 6, 8)
        assert {g: len(p) for g, p in net.parameter_groups().items()} == {
            "encoder": 2,
            "decoder": 2,
            "head": 2,
        }
        rebuilt = build_backbone(net.name, net.in_channels, net.out_channels, **net.kwargs)
        rebuilt.load_state_dict(net.state_dict())
    finally:
        registry.unregister("toy_net")
    assert "toy_net" not in list_backbones()


def test_separate_registries_do_not_share_entries():
    registry = BackboneRegistry()
    registry.register("toy")(_Toy)
    assert registry.list() == ["toy"]
    assert "toy" not in list_backbones()
    assert registry.build("toy", 1, 2).out_channels == 2


def test_unknown_keyword_arguments_are_named_with_suggestions():
    with pytest.raises(TypeError, match="'base_chanels' \\(did you mean 'base_channels'\\?\\)"):
        build_backbone("tiny_unet", 2, 2, base_chanels=4)
    with pytest.raises(TypeError, match="'feature_sise' \\(did you mean 'feature_size'\\?\\)"):
        build_backbone("swin_unetr", 2, 2, feature_sise=12)
    with pytest.raises(TypeError, match="img_size"):
        build_backbone("swin_unetr", 2, 2, feature_size=12, img_size=(96, 96, 96))
    with pytest.raises(TypeError, match="decoder_channels"):
        build_backbone("unet_resnet18", 2, 2, decoder_chanels=(8, 8, 8, 8, 8))


def test_smp_unet_refuses_to_download_or_swap_its_encoder():
    with pytest.raises(ValueError, match="never does"):
        build_backbone("unet_resnet18", 2, 2, encoder_weights="imagenet")
    with pytest.raises(TypeError, match="fixed by the backbone name"):
        build_backbone("unet_resnet18", 2, 2, encoder_name="resnet50")


def test_builder_returning_something_else_is_refused():
    registry = BackboneRegistry()
    registry.register("plain")(
        lambda in_channels, out_channels: nn.Conv3d(in_channels, out_channels, 1)
    )
    with pytest.raises(TypeError, match="not a sap.backbones.SegmentationBackbone"):
        registry.build("plain", 1, 2)


# ------------------------------------------------------------------------------- groups


def test_groups_partition_all_parameters_of_every_backbone(built):
    for name, net in built.items():
        groups = net.parameter_groups()
        assert tuple(groups) == GROUP_NAMES
        ids = [id(p) for params in groups.values() for p in params]
        assert len(ids) == len(set(ids)), f"{name}: a parameter is in two groups"
        assert set(ids) == {id(p) for p in net.parameters()}, f"{name}: a parameter is missing"
        assert all(groups.values()), f"{name}: empty group {groups.keys()}"
        counts = net.parameter_counts()
        assert sum(counts.values()) == sum(p.numel() for p in net.parameters())


def test_group_of_works_on_state_dict_keys_including_buffers(built):
    for name, net in built.items():
        named = dict(net.named_parameters())
        group_ids = {g: {id(p) for p in ps} for g, ps in net.parameter_groups().items()}
        for key in net.state_dict():
            group = net.group_of(key)  # buffers too (BatchNorm statistics, Swin indices)
            if key in named:
                assert id(named[key]) in group_ids[group], (name, key)


def test_swin_unetr_split_follows_the_sap_reference(built):
    net = built["swin_unetr"]
    assert net.group_of("net.swinViT.patch_embed.proj.weight") == "encoder"
    # encoder10 must not be mistaken for a child of encoder1 (or vice versa).
    assert net.group_of("net.encoder1.layer.conv1.conv.weight") == "encoder"
    assert net.group_of("net.encoder10.layer.conv1.conv.weight") == "encoder"
    assert net.group_of("net.decoder1.transp_conv.conv.weight") == "decoder"
    assert net.group_of("net.out.conv.conv.weight") == "head"
    # The reference's rule: encoder lr for names containing "swinViT" or "encoder".
    for key in net.state_dict():
        in_reference_encoder = "swinViT" in key or "encoder" in key
        assert (net.group_of(key) == "encoder") == in_reference_encoder, key


def test_group_of_rejects_names_outside_every_group(built):
    with pytest.raises(ValueError, match="belongs to no group"):
        built["tiny_unet"].group_of("bottleneck.weight")


def test_backbone_with_an_ungrouped_parameter_fails_at_build():
    class Leaky(_Toy):
        def __init__(self, in_channels: int, out_channels: int) -> None:
            super().__init__(in_channels, out_channels)
            self.extra = nn.Linear(2, 2)

    class NoDecoder(_Toy):
        encoder_modules = ("enc", "dec")
        decoder_modules = ("missing",)

    registry = BackboneRegistry()
    registry.register("leaky")(Leaky)
    registry.register("no_decoder")(NoDecoder)
    with pytest.raises(ValueError, match="'extra.weight'.*no group"):
        registry.build("leaky", 1, 2)
    with pytest.raises(ValueError, match="no parameters in group"):
        registry.build("no_decoder", 1, 2)


# ---------------------------------------------------------------------------- head swap


def test_replace_head_gives_new_classes_and_fresh_weights_and_keeps_the_rest(built):
    for name, original in built.items():
        net = copy.deepcopy(original)
        net.eval()
        before = {k: v.clone() for k, v in net.state_dict().items()}
        old_head = [p.detach().clone() for p in net.parameter_groups()["head"]]
        old_ids = {id(p) for p in net.parameter_groups()["head"]}

        new = net.replace_head(3)

        assert net.out_channels == 3
        assert not new.training, f"{name}: head swap changed train/eval mode"
        new_params = net.parameter_groups()["head"]
        assert {id(p) for p in new_params} == {id(p) for p in new.parameters()}
        assert not old_ids & {id(p) for p in new_params}
        assert new_params[0].shape[0] == 3
        after = net.state_dict()
        for key, value in before.items():
            if net.group_of(key) != "head":
                assert torch.equal(after[key], value), f"{name}: {key} changed"
        with torch.no_grad():
            assert net(_smallest_input(net)).shape[1] == 3

        # Same class count: the weights are still new, not the old ones kept.
        net.replace_head(OUT_CHANNELS)
        renewed = [p.detach() for p in net.parameter_groups()["head"]]
        weights = [(o, r) for o, r in zip(old_head, renewed) if o.ndim > 1]
        assert weights and all(not torch.equal(o, r) for o, r in weights), name


# ---------------------------------------------------------------------------- bottleneck


def test_every_backbone_encodes_to_its_bottleneck_through_encoder_parameters_only(built):
    for name, original in built.items():
        net = copy.deepcopy(original).train()
        x = _smallest_input(net, batch=2)
        features = net.encode(x)
        expected = tuple(s // net.spatial_multiple for s in x.shape[2:])
        assert features.shape == (2, net.bottleneck_channels, *expected), name
        features.square().mean().backward()
        touched = {net.group_of(n) for n, p in net.named_parameters() if p.grad is not None}
        assert touched == {"encoder"}, f"{name}: encode() used {touched}"


def test_swin_unetr_bottleneck_has_the_paper_dimension():
    assert build_backbone("swin_unetr", 2, 2).bottleneck_channels == 768


def test_a_backbone_without_a_bottleneck_says_so():
    net = _Toy(2, 2)
    assert net.bottleneck_channels is None
    with pytest.raises(NotImplementedError, match="does not expose a bottleneck"):
        net.encode(torch.zeros(1, 2, 4, 4, 4))


# ---------------------------------------------------------------------------- specifics


def test_forward_explains_wrong_inputs(built):
    net = built["tiny_unet"]
    with pytest.raises(ValueError, match="multiple of 4 voxels.*\\(8, 8, 12\\)"):
        net(torch.randn(1, 2, 8, 8, 10))
    with pytest.raises(ValueError, match="2 input channel"):
        net(torch.randn(1, 3, 8, 8, 8))
    with pytest.raises(ValueError, match="5D tensor"):
        net(torch.randn(2, 8, 8, 8))


def test_inputs_that_collapse_the_bottleneck_to_one_voxel_are_explained(built):
    with pytest.raises(ValueError, match="single voxel.*64 voxels or more"):
        built["swin_unetr"].eval()(torch.randn(1, 2, 32, 32, 32))
    smp_net = built["unet_resnet18"].train()
    try:
        with pytest.raises(ValueError, match="batch of 2 or more"):
            smp_net(torch.randn(1, 2, 32, 32, 32))
    finally:
        smp_net.eval()


def test_docstring_examples_run():
    import sap.backbones
    import sap.backbones.registry
    import sap.backbones.swin_unetr

    for module in (sap.backbones, sap.backbones.registry, sap.backbones.swin_unetr):
        failed, attempted = doctest.testmod(module, optionflags=doctest.NORMALIZE_WHITESPACE)[:2]
        assert attempted and not failed, module.__name__


def test_swin_unetr_defaults_are_the_paper_settings():
    net = build_backbone("swin_unetr", 2, 10)
    assert net.kwargs == {
        "feature_size": 48,
        "drop_rate": 0.1,
        "attn_drop_rate": 0.1,
        "dropout_path_rate": 0.1,
    }
    assert net.spatial_multiple == 32
    # Bottleneck feature dimension 16 x 48 = 768 (PAPER.md).
    assert net.net.encoder10.layer.conv1.conv.in_channels == 768
    assert net.net.swinViT.pos_drop.p == pytest.approx(0.1)


def test_monai_swin_unetr_weights_load_into_ours_and_back():
    from monai.networks.nets import SwinUNETR

    torch.manual_seed(1)
    monai_net = SwinUNETR(in_channels=2, out_channels=10, feature_size=12).eval()
    ours = build_backbone("swin_unetr", 2, 10, feature_size=12).eval()
    reference_keys = set(monai_net.state_dict())
    assert {k.removeprefix("net.") for k in ours.state_dict()} == reference_keys

    # A DataParallel-era reference checkpoint with the older 'swin_vit' spelling.
    wrapped = {
        "state_dict": {
            "module." + k.replace("swinViT", "swin_vit"): v
            for k, v in monai_net.state_dict().items()
        }
    }
    ours.load_state_dict(convert_monai_swin_unetr_state_dict(wrapped), strict=True)
    x = torch.randn(1, 2, 32, 32, 64)
    with torch.no_grad():
        assert torch.allclose(ours(x), monai_net(x), atol=1e-6)

    back = SwinUNETR(in_channels=2, out_channels=10, feature_size=12)
    back.load_state_dict({k.removeprefix("net."): v for k, v in ours.state_dict().items()})


def test_tiny_unet_learns_a_bright_cube_in_a_few_cpu_steps():
    torch.manual_seed(0)
    net = build_backbone("tiny_unet", 1, 2)
    image = torch.randn(2, 1, 16, 16, 16) * 0.1
    label = torch.zeros(2, 16, 16, 16, dtype=torch.long)
    label[:, 4:10, 5:12, 3:9] = 1
    image[label[:, None].bool()] += 1.0
    optimiser = torch.optim.Adam(net.parameters(), lr=1e-2)
    losses = []
    for _ in range(15):
        loss = nn.functional.cross_entropy(net(image), label)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        losses.append(loss.item())
    assert losses[-1] < 0.3 * losses[0]
    with torch.no_grad():
        accuracy = (net(image).argmax(1) == label).float().mean()
    assert accuracy > 0.95
