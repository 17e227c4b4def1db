"""Self-supervised pretraining (SSL), the SAP paper's baseline: learn from unlabelled scans.

Tang et al. (CVPR 2022) pretrain the Swin UNETR encoder with three pretext tasks at once
(:mod:`sap.tasks.ssl_pretext`): masked-volume inpainting, rotation prediction and contrastive
coding. Here they work for every backbone that exposes a bottleneck
(:meth:`sap.backbones.SegmentationBackbone.encode`), so the CPU presets can use ``tiny_unet``.

Only the encoder is trained and only the encoder transfers: fine-tune from the checkpoint with
``LesionFinetuning(init="ssl.ckpt", transfer="encoder")``. The backbone's decoder and head
stay at their random initial values (frozen, outside the optimiser) and are saved only so
that the checkpoint rebuilds a complete network; ``checkpoint["sap_trained_groups"]`` says
which groups were trained.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import lightning as L
import torch
import torch.nn.functional as F

from sap.backbones import SegmentationBackbone, build_backbone
from sap.labels import CHANNELS
from sap.recipe import ModelRecipe
from sap.tasks.base import OptimizerName
from sap.tasks.schedule import warmup_cosine_factor
from sap.tasks.ssl_pretext import (
    ROTATION_CLASSES,
    PooledHead,
    ReconstructionHead,
    mask_cutouts,
    nt_xent,
    rotate_quarters,
    rotation_plane,
)

#: Output classes of the (untrained, placeholder) head of an SSL network's recipe.
SSL_HEAD_LABELS: tuple[str, ...] = ("background", "foreground")
#: The loss terms, logged as ``train/loss_<term>``.
LOSS_TERMS: tuple[str, ...] = ("inpainting", "rotation", "contrastive")


class SelfSupervisedPretraining(L.LightningModule):
    """Pretrain a backbone's encoder on unlabelled patches with three pretext tasks.

    Each training batch ``{"image": [B, C, X, Y, Z]}`` gives two views per patch, both turned
    by the patch's random quarter rotation about ``rotation_axis``, each with its own
    ``mask_count`` cut-outs (and so its own inpainting target region). The
    loss is ``inpainting_weight * L1(reconstruction, rotated original) + rotation_weight *
    CE(angle) + contrastive_weight * NT-Xent(view 1, view 2)``; every term is logged.

    Args:
        backbone: registered backbone name (paper: ``swin_unetr``); it must expose a
            bottleneck.
        backbone_kwargs: extra builder arguments.
        channels: input channel names in order.
        patch_size: patch in voxels; the two axes turned by the rotation must be equal.
        spacing_mm: target spacing of the data (``None``: native); stored in the recipe.
        lr: learning rate of the encoder and the pretext heads.
        optimizer: ``"adam"`` or ``"adamw"``.
        weight_decay: optimiser weight decay.
        warmup_epochs: linear warm-up before cosine decay.
        inpainting_weight, rotation_weight, contrastive_weight: weights of the three terms.
        mask_count: cut-outs per view.
        mask_size_fraction: edge of a cut-out as a share of the patch edge.
        rotation_axis: array axis the rotations turn about (2: head-feet in RAS arrays).
        temperature: NT-Xent temperature (Tang et al.: 0.5).
        projection_dim: size of the contrastive embedding.
        reconstruction_channels: hidden features of the reconstruction head.
    """

    def __init__(
        self,
        backbone: str = "swin_unetr",
        backbone_kwargs: dict[str, Any] | None = None,
        channels: Sequence[str] = CHANNELS,
        patch_size: Sequence[int] = (96, 96, 96),
        spacing_mm: Sequence[float] | None = None,
        lr: float = 1e-4,
        optimizer: OptimizerName = "adam",
        weight_decay: float = 1e-5,
        warmup_epochs: float = 10.0,
        inpainting_weight: float = 1.0,
        rotation_weight: float = 1.0,
        contrastive_weight: float = 1.0,
        mask_count: int = 4,
        mask_size_fraction: float = 0.25,
        rotation_axis: int = 2,
        temperature: float = 0.5,
        projection_dim: int = 128,
        reconstruction_channels: int = 16,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.channels = list(channels)
        self.patch_size = tuple(int(s) for s in patch_size)
        self.spacing_mm = None if spacing_mm is None else tuple(float(s) for s in spacing_mm)
        self.backbone_name = backbone
        self.backbone_kwargs = dict(backbone_kwargs or {})
        self.plane = rotation_plane(rotation_axis)
        _check_settings(self.patch_size, self.plane, optimizer, self.hparams)
        self.model: SegmentationBackbone = build_backbone(
            backbone, len(self.channels), len(SSL_HEAD_LABELS), **self.backbone_kwargs
        )
        width = self.model.bottleneck_channels
        if width is None:
            raise ValueError(
                f"Backbone {backbone!r} exposes no bottleneck (bottleneck_channels is None), "
                f"so it cannot be pretrained self-supervised. Use one of tiny_unet, swin_unetr "
                f"or the unet_* backbones, or implement encode_features() for it."
            )
        for name, param in self.model.named_parameters():
            param.requires_grad_(self.model.group_of(name) == "encoder")
        self.reconstruction_head = ReconstructionHead(
            width, len(self.channels), reconstruction_channels
        )
        self.rotation_head = PooledHead(width, ROTATION_CLASSES, hidden=width)
        self.projection_head = PooledHead(width, projection_dim, hidden=width)

    def recipe(self) -> ModelRecipe:
        """The network's recipe (task ``"ssl"``; its head is an untrained placeholder)."""
        return ModelRecipe(
            backbone=self.backbone_name,
            backbone_kwargs=dict(self.backbone_kwargs),
            channels=list(self.channels),
            labels=list(SSL_HEAD_LABELS),
            task="ssl",
            patch_size=self.patch_size,
            spacing_mm=self.spacing_mm,
        )

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["sap_recipe"] = self.recipe().to_dict()
        checkpoint["sap_trained_groups"] = ["encoder"]

    def pretext_losses(self, image: torch.Tensor) -> dict[str, torch.Tensor]:
        """The three loss terms (and the rotation accuracy) of one batch of patches."""
        batch = image.shape[0]
        # Both views of a patch share its rotation: a contrastive pull between differently
        # turned views would teach the pooled features to ignore the very rotation the
        # rotation head must name (the two terms then fight and rotation stays at chance).
        quarters = torch.randint(0, ROTATION_CLASSES, (batch,)).repeat(2)
        originals = rotate_quarters(torch.cat([image, image]), quarters, self.plane)
        views = mask_cutouts(originals, self.hparams.mask_count, self.hparams.mask_size_fraction)
        features = self.model.encode(views)
        reconstruction = self.reconstruction_head(features, views.shape[2:])
        rotation_logits = self.rotation_head(features)
        embeddings = self.projection_head(features)
        targets = quarters.to(image.device)
        return {
            "inpainting": F.l1_loss(reconstruction, originals),
            "rotation": F.cross_entropy(rotation_logits, targets),
            "contrastive": nt_xent(
                embeddings[:batch], embeddings[batch:], self.hparams.temperature
            ),
            "rotation_accuracy": (rotation_logits.argmax(1) == targets).float().mean(),
        }

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        terms = self.pretext_losses(batch["image"])
        loss = sum(getattr(self.hparams, f"{term}_weight") * terms[term] for term in LOSS_TERMS)
        size = batch["image"].shape[0]
        self.log("train/loss", loss, prog_bar=True, on_step=True, on_epoch=True, batch_size=size)
        for name, value in terms.items():
            key = f"train/loss_{name}" if name in LOSS_TERMS else f"train/{name}"
            self.log(key, value, on_step=False, on_epoch=True, batch_size=size)
        return loss

    def configure_optimizers(self) -> dict[str, Any]:
        params = [p for p in self.parameters() if p.requires_grad]
        optimizer_class = (
            torch.optim.AdamW if self.hparams.optimizer == "adamw" else torch.optim.Adam
        )
        optimizer = optimizer_class(
            params, lr=self.hparams.lr, weight_decay=self.hparams.weight_decay
        )
        total_steps = max(1, int(self.trainer.estimated_stepping_batches))
        epochs = max(1, int(self.trainer.max_epochs or 1))
        warmup_steps = int(round(self.hparams.warmup_epochs * total_steps / epochs))
        scheduler = torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda step: warmup_cosine_factor(step, warmup_steps, total_steps)
        )
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": scheduler, "interval": "step"},
        }


def _check_settings(
    patch_size: tuple[int, ...], plane: tuple[int, int], optimizer: str, hparams: Any
) -> None:
    if len(patch_size) != 3 or min(patch_size) < 1:
        raise ValueError(f"patch_size must be 3 positive voxel counts, got {list(patch_size)}")
    turned = (patch_size[plane[0] - 2], patch_size[plane[1] - 2])
    if turned[0] != turned[1]:
        raise ValueError(
            f"patch_size {list(patch_size)}: a quarter rotation about axis "
            f"{hparams.rotation_axis} swaps two axes of {turned[0]} and {turned[1]} voxels. "
            f"Make them equal, or choose the rotation_axis whose plane is square."
        )
    if optimizer not in ("adam", "adamw"):
        raise ValueError(f"optimizer must be 'adam' or 'adamw', got {optimizer!r}")
    weights = [getattr(hparams, f"{term}_weight") for term in LOSS_TERMS]
    if min(weights) < 0 or sum(weights) <= 0:
        raise ValueError(
            f"The loss weights {dict(zip(LOSS_TERMS, weights))} must be >= 0, and not all 0."
        )


__all__ = ["LOSS_TERMS", "SSL_HEAD_LABELS", "SelfSupervisedPretraining"]
