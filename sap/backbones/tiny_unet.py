"""A small residual 3D U-Net that trains in seconds on a CPU.

Made for the demo, the tests and for trying ideas on the phantom: with the defaults it has
about 0.1 M parameters and one training step on a batch of two 2-channel 32^3 patches takes
a fraction of a second on one core. It is not meant to compete with Swin UNETR on real
whole-body MRI.
"""

from __future__ import annotations

import torch
from torch import nn

from sap.backbones.base import SegmentationBackbone
from sap.backbones.registry import register_backbone


class ConvBlock(nn.Module):
    """Two 3x3x3 convolutions with instance norm and leaky ReLU, optionally residual.

    Instance norm instead of batch norm because CPU training uses batches of one or two
    patches, where batch statistics are noise. The first convolution carries the stride, so a
    block with ``stride=2`` also halves the resolution (no pooling layer to keep in sync).

    Args:
        in_channels: input feature channels.
        out_channels: output feature channels.
        stride: 1 to keep the resolution, 2 to halve it.
        residual: add a (projected, if needed) shortcut around the two convolutions.
    """

    def __init__(
        self, in_channels: int, out_channels: int, stride: int = 1, residual: bool = True
    ) -> None:
        super().__init__()
        self.conv1 = nn.Conv3d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)
        self.norm1 = nn.InstanceNorm3d(out_channels, affine=True)
        self.conv2 = nn.Conv3d(out_channels, out_channels, 3, padding=1, bias=False)
        self.norm2 = nn.InstanceNorm3d(out_channels, affine=True)
        self.act = nn.LeakyReLU(0.01)
        self.shortcut: nn.Module | None = None
        if residual:
            needs_projection = stride != 1 or in_channels != out_channels
            self.shortcut = (
                nn.Conv3d(in_channels, out_channels, 1, stride=stride, bias=False)
                if needs_projection
                else nn.Identity()
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.act(self.norm1(self.conv1(x)))
        y = self.norm2(self.conv2(y))
        if self.shortcut is not None:
            y = y + self.shortcut(x)
        return self.act(y)


class UpBlock(nn.Module):
    """Double the resolution, concatenate the encoder skip, fuse with a :class:`ConvBlock`."""

    def __init__(self, in_channels: int, out_channels: int, residual: bool = True) -> None:
        super().__init__()
        self.up = nn.ConvTranspose3d(in_channels, out_channels, 2, stride=2)
        self.block = ConvBlock(2 * out_channels, out_channels, residual=residual)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        return self.block(torch.cat([self.up(x), skip], dim=1))


@register_backbone(
    "tiny_unet",
    description="Small residual 3D U-Net (~0.1 M parameters) for CPU demos and tests. Input multiple of 4.",
    default_kwargs={"base_channels": 8, "depth": 3, "residual": True},
)
class TinyUNet(SegmentationBackbone):
    """A ``depth``-level 3D U-Net with ``base_channels * 2**level`` features per level.

    Groups: ``encoder`` (one :class:`ConvBlock` per level, stride 2 from level 1 on),
    ``decoder`` (one :class:`UpBlock` per level above the bottleneck), ``head`` (1x1x1
    convolution). Spatial sizes must be multiples of ``2 ** (depth - 1)``.

    Args:
        in_channels: input channels (2: T1, b1000).
        out_channels: classes, background included.
        base_channels: features at full resolution (8 keeps CPU training fast).
        depth: number of resolution levels, at least 2 (3: full, 1/2, 1/4).
        residual: use residual blocks (train faster from scratch at this size).
    """

    encoder_modules = ("encoder",)
    decoder_modules = ("decoder",)
    head_module = "head"

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        base_channels: int = 8,
        depth: int = 3,
        residual: bool = True,
    ) -> None:
        if isinstance(depth, bool) or not isinstance(depth, int) or depth < 2:
            raise ValueError(f"tiny_unet: depth must be an integer >= 2, got {depth!r}.")
        if (
            isinstance(base_channels, bool)
            or not isinstance(base_channels, int)
            or base_channels < 1
        ):
            raise ValueError(
                f"tiny_unet: base_channels must be a positive integer, got {base_channels!r}."
            )
        super().__init__(in_channels, out_channels, spatial_multiple=2 ** (depth - 1))
        widths = [base_channels * 2**level for level in range(depth)]
        self.encoder = nn.ModuleList(
            ConvBlock(
                in_channels if level == 0 else widths[level - 1],
                widths[level],
                stride=1 if level == 0 else 2,
                residual=residual,
            )
            for level in range(depth)
        )
        # Deepest first, in the order they are applied.
        self.decoder = nn.ModuleList(
            UpBlock(widths[level + 1], widths[level], residual=residual)
            for level in reversed(range(depth - 1))
        )
        self.head = self.new_head(out_channels)
        self.bottleneck_channels = widths[-1]

    def encode_features(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.encoder:
            x = block(x)
        return x

    def forward_logits(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        for block in self.encoder:
            x = block(x)
            skips.append(x)
        x = skips.pop()
        for up in self.decoder:
            x = up(x, skips.pop())
        return self.head(x)

    def new_head(self, out_channels: int) -> nn.Module:
        return nn.Conv3d(self.decoder[-1].block.conv2.out_channels, out_channels, kernel_size=1)
