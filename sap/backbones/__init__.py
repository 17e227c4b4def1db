"""Segmentation backbones by name, each with encoder / decoder / head parameter groups.

>>> from sap.backbones import build_backbone, list_backbones
>>> list_backbones()
['swin_unetr', 'tiny_unet', 'unet_efficientnet-b0', 'unet_resnet18', 'unet_resnet34', 'unet_resnet50']
>>> net = build_backbone("tiny_unet", in_channels=2, out_channels=10)
>>> sorted(net.parameter_groups())
['decoder', 'encoder', 'head']

Importing this package registers the built-in backbones; heavy libraries (MONAI,
segmentation-models-pytorch-3d) are imported only when one of theirs is built.
"""

from __future__ import annotations

from sap.backbones import smp_unet, swin_unetr, tiny_unet  # noqa: F401  (registers built-ins)
from sap.backbones.base import GROUP_NAMES, SegmentationBackbone
from sap.backbones.registry import (
    BackboneEntry,
    BackboneRegistry,
    UnknownBackboneError,
    backbone_entry,
    build_backbone,
    default_registry,
    list_backbones,
    register_backbone,
)
from sap.backbones.swin_unetr import convert_monai_swin_unetr_state_dict

__all__ = [
    "GROUP_NAMES",
    "BackboneEntry",
    "BackboneRegistry",
    "SegmentationBackbone",
    "UnknownBackboneError",
    "backbone_entry",
    "build_backbone",
    "convert_monai_swin_unetr_state_dict",
    "default_registry",
    "list_backbones",
    "register_backbone",
]
