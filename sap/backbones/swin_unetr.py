"""Swin UNETR (MONAI), the backbone of the SAP paper.

Paper settings are the registry defaults: ``feature_size=48`` (bottleneck features of
dimension 16 x 48 = 768) and dropout, attention dropout and drop-path all 0.1. Any other
keyword of the installed ``monai.networks.nets.SwinUNETR`` passes through unchanged.
"""

from __future__ import annotations

import inspect
import math
import re
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from sap.backbones.base import SegmentationBackbone, reject_unknown_kwargs
from sap.backbones.registry import register_backbone

PAPER_DEFAULTS: dict[str, Any] = {
    "feature_size": 48,
    "drop_rate": 0.1,
    "attn_drop_rate": 0.1,
    "dropout_path_rate": 0.1,
}


@register_backbone(
    "swin_unetr",
    description="MONAI Swin UNETR; SAP paper settings (feature_size 48, dropouts 0.1). Input: multiples of 32, one axis >= 64.",
    default_kwargs=PAPER_DEFAULTS,
)
class SwinUNETRBackbone(SegmentationBackbone):
    """MONAI ``SwinUNETR`` with the encoder / decoder / head split that SAP transfers.

    The MONAI network is stored as ``self.net``, so our ``state_dict`` keys are MONAI's keys
    with ``"net."`` in front: a checkpoint of a plain MONAI ``SwinUNETR`` (e.g. the SAP
    reference scripts) loads after :func:`convert_monai_swin_unetr_state_dict`, and ours
    loads into MONAI after stripping ``"net."``.

    Groups:
        * encoder: ``swinViT`` (the Swin transformer) **and** the residual skip blocks
          ``encoder1``, ``encoder2``, ``encoder3``, ``encoder4``, ``encoder10``.
        * decoder: ``decoder5`` ... ``decoder1`` (up-sampling blocks).
        * head: ``out`` (1x1x1 convolution to the class logits).

    Why the ``encoderN`` blocks count as encoder: the authors' fine-tuning scripts
    (github.com/jwutsetro/SAP, ``train_finetune.py`` and ``sap/finetune.py``, function
    ``separate_encoder_decoder_params``) give the encoder learning rate (2e-6 for SAP, 5e-6 for
    SSL) to every parameter whose name contains ``swinViT`` or ``encoder``, and the decoder
    learning rate to the rest (``decoder1..5`` and ``out``). We follow that split so the
    published learning rates mean the same thing here; we only separate ``out`` as the head,
    which the reference re-initialises anyway. The ``encoderN`` blocks also sit on the
    encoder side of the U: each processes one encoder resolution (the raw input for
    ``encoder1``) before the skip connection, and none sees decoder features.

    Note for SSL transfer: the Tang et al. self-supervised checkpoints (MONAI
    ``SwinUNETR.load_from`` / research-contributions ``SSLHead``) hold weights for
    ``swinViT`` only, so after loading one the ``encoderN`` blocks of the encoder group are
    still randomly initialised; a check that "the encoder loaded" must look at ``swinViT``
    keys for SSL and at the whole encoder group for SAP.

    Input: spatial sizes must be multiples of 32 (``patch_size ** 5``) and, because MONAI's
    instance norms need more than one bottleneck voxel even in eval mode, at least one axis
    must be 64 or more (32 x 32 x 64 is the smallest input; the paper trains on 96^3).

    Args:
        in_channels: input channels (2: T1, b1000).
        out_channels: classes, background included.
        feature_size: embedding size of the first stage; must be divisible by 12.
        drop_rate: dropout after the attention projection and in the MLPs.
        attn_drop_rate: dropout on attention weights.
        dropout_path_rate: stochastic depth rate of the transformer blocks.
        **kwargs: other ``monai.networks.nets.SwinUNETR`` arguments (``depths``,
            ``num_heads``, ``use_checkpoint``, ``use_v2``, ``patch_size`` ...). ``img_size``
            is refused: MONAI removed it (it only validated the input size).
    """

    encoder_modules = (
        "net.swinViT",
        "net.encoder1",
        "net.encoder2",
        "net.encoder3",
        "net.encoder4",
        "net.encoder10",
    )
    decoder_modules = (
        "net.decoder5",
        "net.decoder4",
        "net.decoder3",
        "net.decoder2",
        "net.decoder1",
    )
    head_module = "net.out"

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        feature_size: int = 48,
        drop_rate: float = 0.1,
        attn_drop_rate: float = 0.1,
        dropout_path_rate: float = 0.1,
        **kwargs: Any,
    ) -> None:
        from monai.networks.nets import SwinUNETR

        accepted = set(inspect.signature(SwinUNETR.__init__).parameters) - {
            "self",
            "in_channels",
            "out_channels",
        }
        if "img_size" in kwargs and "img_size" not in accepted:
            raise TypeError(
                "swin_unetr: 'img_size' is not an argument of the installed MONAI SwinUNETR "
                "(deprecated in MONAI 1.3 and since removed; it only checked input sizes). Remove it from the "
                "backbone kwargs: any patch whose sizes are multiples of 32 works."
            )
        reject_unknown_kwargs(kwargs, accepted, "Backbone 'swin_unetr' (MONAI SwinUNETR)")
        if kwargs.get("spatial_dims", 3) != 3:
            raise ValueError(
                f"swin_unetr: sap backbones are 3D; spatial_dims={kwargs['spatial_dims']!r} "
                f"is not supported."
            )
        patch_size = kwargs.get("patch_size", 2)
        if not isinstance(patch_size, int):
            raise TypeError(f"swin_unetr: patch_size must be an int, got {patch_size!r}.")
        # Five stages each halve the resolution after the patch embedding (MONAI's own check).
        super().__init__(in_channels, out_channels, spatial_multiple=patch_size**5)
        self.feature_size = feature_size
        self.net = SwinUNETR(
            in_channels=in_channels,
            out_channels=out_channels,
            feature_size=feature_size,
            drop_rate=drop_rate,
            attn_drop_rate=attn_drop_rate,
            dropout_path_rate=dropout_path_rate,
            **kwargs,
        )
        # encoder10 on the last Swin stage: 16 x feature_size channels (768 in the paper).
        self.bottleneck_channels = 16 * feature_size

    def check_input(self, x: torch.Tensor) -> None:
        """Also refuse inputs whose bottleneck would be one voxel.

        MONAI's instance norms cannot normalise a single voxel, in training *and* in eval
        mode, so a 32^3 patch fails deep inside the network; say so up front.
        """
        super().check_input(x)
        if math.prod(int(s) // self.spatial_multiple for s in x.shape[2:]) == 1:
            raise ValueError(
                f"Backbone 'swin_unetr' cannot take spatial size {tuple(x.shape[2:])}: its "
                f"bottleneck (1/{self.spatial_multiple} resolution) would be a single voxel. "
                f"Make at least one axis {2 * self.spatial_multiple} voxels or more (the paper "
                f"uses 96^3 patches)."
            )

    def forward_logits(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def encode_features(self, x: torch.Tensor) -> torch.Tensor:
        """``encoder10`` of the last Swin stage: the bottleneck the decoder starts from."""
        hidden = self.net.swinViT(x, self.net.normalize)
        return self.net.encoder10(hidden[4])

    def new_head(self, out_channels: int) -> nn.Module:
        from monai.networks.blocks import UnetOutBlock

        return UnetOutBlock(
            spatial_dims=3, in_channels=self.feature_size, out_channels=out_channels
        )


_WRAPPER_PREFIXES = ("module.", "backbone.", "model.")


def convert_monai_swin_unetr_state_dict(
    state_dict: Mapping[str, torch.Tensor],
) -> dict[str, torch.Tensor]:
    """Rename a MONAI ``SwinUNETR`` state dict to the keys of our ``swin_unetr`` backbone.

    Handles what the SAP reference checkpoints and their relatives carry (PAPER.md): a
    ``{"state_dict": ...}`` wrapper, ``module.`` (DataParallel/DDP), ``backbone.`` or
    ``model.`` prefixes shared by all keys, and ``swin_vit`` spelled instead of ``swinViT``;
    then prepends ``net.``. Keys that are already ours (``net.`` prefixed) are kept.
    Values are not copied.

    Example:
        >>> import torch
        >>> convert_monai_swin_unetr_state_dict({"module.swin_vit.norm.weight": torch.ones(1)}).keys()
        dict_keys(['net.swinViT.norm.weight'])
    """
    if "state_dict" in state_dict and isinstance(state_dict["state_dict"], Mapping):
        state_dict = state_dict["state_dict"]
    stripped = dict(state_dict)
    changed = True
    while changed and stripped:
        changed = False
        for prefix in _WRAPPER_PREFIXES:
            if all(key.startswith(prefix) for key in stripped):
                stripped = {key[len(prefix) :]: value for key, value in stripped.items()}
                changed = True
    converted = {}
    for key, value in stripped.items():
        key = re.sub(r"(^|\.)swin_vit(\.|$)", r"\1swinViT\2", key)
        converted[key if key.startswith("net.") else f"net.{key}"] = value
    return converted
