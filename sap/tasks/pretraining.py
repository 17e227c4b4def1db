"""Supervised anatomical pretraining: learn the skeleton on healthy whole-body MRI."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sap.labels import CHANNELS, SKELETON_LABELS
from sap.tasks.base import OptimizerName, SegmentationTask
from sap.tasks.checks import check_range


class AnatomicalPretraining(SegmentationTask):
    """Train a backbone to segment the 9 SAP bone regions (plus background).

    This is the pretraining stage of SAP: the model learns where bone marrow is and what it
    looks like on T1 and DWI, which is exactly the context a metastasis detector lacks when
    it starts from random weights. One learning rate for the whole network.

    Args:
        backbone: registered backbone name (paper: ``swin_unetr``).
        backbone_kwargs: extra builder arguments (e.g. ``{"feature_size": 48}``).
        channels: input channel names in order (paper: ``["T1", "b1000"]``).
        labels: class names, background first (paper: the 10 of :data:`sap.labels.SKELETON_LABELS`).
        patch_size: training / sliding-window patch in voxels (paper: 96³).
        spacing_mm: target spacing the data module resamples to (``None``: native).
        lr: learning rate of every parameter group.
        optimizer: ``"adam"`` or ``"adamw"``.
        weight_decay: paper 1e-5.
        warmup_epochs: linear warm-up length in epochs before the cosine decay.
        sw_overlap: validation sliding-window overlap (paper 0.5).
        sw_batch_size: windows per forward pass in validation.
        lambda_dice: Dice weight of the loss.
        lambda_ce: cross-entropy weight of the loss.
        batch_dice: Dice over the whole batch instead of per patch (see
            :class:`~sap.tasks.base.SegmentationTask`).
        ce_background_weight: cross-entropy weight of the background class (see
            :class:`~sap.tasks.base.SegmentationTask`; paper: 1).
    """

    def __init__(
        self,
        backbone: str = "swin_unetr",
        backbone_kwargs: dict[str, Any] | None = None,
        channels: Sequence[str] = CHANNELS,
        labels: Sequence[str] = SKELETON_LABELS,
        patch_size: Sequence[int] = (96, 96, 96),
        spacing_mm: Sequence[float] | None = None,
        lr: float = 1e-4,
        optimizer: OptimizerName = "adam",
        weight_decay: float = 1e-5,
        warmup_epochs: float = 10.0,
        sw_overlap: float = 0.5,
        sw_batch_size: int = 2,
        lambda_dice: float = 1.0,
        lambda_ce: float = 1.0,
        batch_dice: bool = False,
        ce_background_weight: float = 1.0,
    ) -> None:
        super().__init__(
            backbone=backbone,
            backbone_kwargs=backbone_kwargs,
            channels=channels,
            labels=labels,
            task="skeleton",
            patch_size=patch_size,
            spacing_mm=spacing_mm,
            optimizer=optimizer,
            weight_decay=weight_decay,
            warmup_epochs=warmup_epochs,
            sw_overlap=sw_overlap,
            sw_batch_size=sw_batch_size,
            lambda_dice=lambda_dice,
            lambda_ce=lambda_ce,
            batch_dice=batch_dice,
            ce_background_weight=ce_background_weight,
        )
        self.lr = check_range(
            "lr", lr, low=0.0, low_open=True, hint="learning rates are positive (paper: 1e-4)"
        )
        self.save_hyperparameters()

    def learning_rates(self) -> dict[str, float]:
        return {"encoder": self.lr, "decoder": self.lr, "head": self.lr}
