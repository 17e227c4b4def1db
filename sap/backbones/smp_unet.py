"""3D U-Nets with CNN encoders from ``segmentation_models_pytorch_3d``.

Registered as ``unet_<encoder>`` for the encoders in :data:`ENCODERS`. Weights are always
randomly initialised (``encoder_weights=None``): sap never downloads anything at build time;
pretrained weights come from checkpoints or the model zoo, checked against their hash.

Constraints found on the installed library (segmentation-models-pytorch-3d 1.0.x):

* every spatial size must be a multiple of 32 (five stride-2 stages by default); a wrong
  size fails inside a skip concatenation, so :class:`SmpUnetBackbone` checks it up front;
* encoder and decoder use BatchNorm: in training mode the deepest feature map needs more
  than one value per channel, so with batch size 1 use patches of at least 64^3 (or a batch
  of at least 2 at 32^3); evaluation works from 32^3.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from sap.backbones.base import SegmentationBackbone, reject_unknown_kwargs
from sap.backbones.registry import register_backbone

ENCODERS: tuple[str, ...] = ("resnet18", "resnet34", "resnet50", "efficientnet-b0")
"""Encoders registered as ``unet_<encoder>``; others can be registered the same way."""

# Arguments of smp's Unet that sap decides, not the caller.
_FIXED = {"encoder_name", "encoder_weights", "in_channels", "classes", "activation", "aux_params"}


class SmpUnetBackbone(SegmentationBackbone):
    """``segmentation_models_pytorch_3d.Unet`` with encoder / decoder / head groups.

    The smp network is ``self.net``; groups are its ``encoder``, ``decoder`` and
    ``segmentation_head`` sub-modules. Logits are returned (no activation); smp's optional
    classification head (``aux_params``) is not offered.

    Args:
        in_channels: input channels (2: T1, b1000).
        out_channels: classes, background included.
        encoder_name: an smp-3d encoder name; fixed by the registered name.
        encoder_weights: must be ``None``; anything else is refused instead of downloaded.
        **kwargs: other ``Unet`` arguments: ``encoder_depth`` (3-5), ``decoder_channels``,
            ``decoder_use_batchnorm``, ``decoder_attention_type`` (``"scse"``), ``strides``
            (per-stage ``(d, h, w)`` strides, e.g. ``(1, 2, 2)`` for thick slices).
    """

    encoder_modules = ("net.encoder",)
    decoder_modules = ("net.decoder",)
    head_module = "net.segmentation_head"

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        *,
        encoder_name: str,
        encoder_weights: None = None,
        **kwargs: Any,
    ) -> None:
        if encoder_weights is not None:
            raise ValueError(
                f"unet_{encoder_name}: encoder_weights={encoder_weights!r} would download "
                f"weights, which sap never does while building a model. Use "
                f"encoder_weights=None and load pretrained weights from a checkpoint or "
                f"sap.zoo instead."
            )
        import segmentation_models_pytorch_3d as smp

        signature = inspect.signature(smp.Unet.__init__).parameters
        accepted = set(signature) - _FIXED - {"self"}
        if _FIXED & set(kwargs):
            raise TypeError(
                f"unet_{encoder_name}: {sorted(_FIXED & set(kwargs))} are set by sap "
                f"(the encoder by the backbone name, e.g. 'unet_resnet50'; logits, no "
                f"activation or auxiliary head)."
            )
        reject_unknown_kwargs(kwargs, accepted, f"Backbone 'unet_{encoder_name}' (smp-3d Unet)")
        depth = int(kwargs.get("encoder_depth", signature["encoder_depth"].default))
        strides = kwargs.get("strides", signature["strides"].default)
        super().__init__(
            in_channels, out_channels, spatial_multiple=_spatial_multiple(strides, depth)
        )
        self.encoder_name = encoder_name
        self.net = smp.Unet(
            encoder_name=encoder_name,
            encoder_weights=None,
            in_channels=in_channels,
            classes=out_channels,
            activation=None,
            aux_params=None,
            **kwargs,
        )
        self.bottleneck_channels = int(self.net.encoder.out_channels[-1])

    def check_input(self, x: torch.Tensor) -> None:
        """Also refuse a training batch that leaves BatchNorm one value per channel."""
        super().check_input(x)
        bottleneck = math.prod(int(s) // self.spatial_multiple for s in x.shape[2:])
        if self.training and x.shape[0] * bottleneck == 1:
            raise ValueError(
                f"Backbone {self.name or 'unet_' + self.encoder_name!r} cannot train on a single "
                f"patch of size {tuple(x.shape[2:])}: its BatchNorm layers would see one value "
                f"per channel at the bottleneck. Use a batch of 2 or more, or make at least "
                f"one axis {2 * self.spatial_multiple} voxels or more."
            )

    def forward_logits(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def encode_features(self, x: torch.Tensor) -> torch.Tensor:
        """The encoder's last feature map (smp's ``features[-1]``)."""
        return self.net.encoder(x)[-1]

    def new_head(self, out_channels: int) -> nn.Module:
        from segmentation_models_pytorch_3d.base import SegmentationHead

        old_conv = self.net.segmentation_head[0]
        return SegmentationHead(
            in_channels=old_conv.in_channels,
            out_channels=out_channels,
            kernel_size=old_conv.kernel_size[0],
            activation=None,
        )


def _spatial_multiple(strides: Sequence[Sequence[int]], depth: int) -> int:
    """Size every spatial axis must be divisible by: the product of the used strides.

    Strides may differ per axis (e.g. ``(1, 2, 2)`` stages); ``spatial_multiple`` is one int
    for all axes, so it is the least common multiple of the per-axis products: valid for
    every axis, conservative for the less-strided ones.
    """
    used = [tuple(int(s) for s in stage) for stage in list(strides)[:depth]]
    per_axis = [math.prod(stage[axis] for stage in used) for axis in range(3)]
    return math.lcm(*per_axis)


def _register(encoder_name: str) -> None:
    name = f"unet_{encoder_name}"

    def build(in_channels: int, out_channels: int, **kwargs: Any) -> SmpUnetBackbone:
        if "encoder_name" in kwargs:
            raise TypeError(
                f"{name}: the encoder is fixed by the backbone name; instead of "
                f"encoder_name={kwargs['encoder_name']!r} choose another backbone from "
                f"list_backbones('unet_*') or register one for that encoder."
            )
        return SmpUnetBackbone(in_channels, out_channels, encoder_name=encoder_name, **kwargs)

    build.__name__ = build.__qualname__ = f"build_{name.replace('-', '_')}"
    register_backbone(
        name,
        description=f"segmentation-models-pytorch-3d Unet, {encoder_name} encoder, random init. Input multiple of 32.",
    )(build)


for _encoder in ENCODERS:
    _register(_encoder)
