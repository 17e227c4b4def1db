"""Lesion fine-tuning: binary bone-metastasis segmentation, from scratch or SAP-initialised."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from sap.inference.sliding import SlidingWindowResult
from sap.labels import CHANNELS, LESION_LABELS
from sap.tasks.base import OptimizerName, SegmentationTask
from sap.tasks.transfer import TransferReport, transfer_encoder_decoder
from sap.volume import spacing_from_affine
from sap.zoo.checkpoint import read_state_dict

log = logging.getLogger(__name__)

#: Which backbone groups each ``transfer`` mode loads from the pretrained model.
TRANSFER_GROUPS: dict[str, tuple[str, ...]] = {
    "encoder+decoder": ("encoder", "decoder"),
    "encoder": ("encoder",),
}


class LesionFinetuning(SegmentationTask):
    """Segment bone metastases; optionally start from a skeleton model (SAP).

    With ``init`` pointing at a skeleton checkpoint, encoder *and* decoder are loaded from it,
    its head is dropped, and a freshly initialised 2-class head is used — the model keeps its
    anatomical knowledge and only learns what a lesion is. Encoder, decoder and head get their
    own learning rates (paper: encoder 2e-6 < decoder 1e-5), so the pretrained features move
    slowly while the new head catches up.

    The transfer happens when training starts (``setup("fit")``) rather than in ``__init__``,
    so that a checkpoint of this module can be reloaded on a machine without the original
    skeleton checkpoint.

    Args:
        init: ``"scratch"`` or the path of a skeleton model: Lightning ``.ckpt``, zoo export
            folder, ``.safetensors`` or a reference-code ``.pt``/``.pth`` state dict.
        backbone: registered backbone name; must match the pretrained model's.
        backbone_kwargs: extra builder arguments; must match the pretrained model's.
        channels: input channel names in order.
        labels: class names (``["background", "lesion"]``).
        patch_size: training / sliding-window patch in voxels (paper: 96³).
        spacing_mm: target spacing the data module resamples to (``None``: native).
        lr_encoder: encoder learning rate (paper, SAP: 2e-6; scratch: 1e-5).
        lr_decoder: decoder learning rate (paper: 1e-5).
        lr_head: head learning rate (paper: same as decoder).
        optimizer: ``"adam"`` (paper) or ``"adamw"``.
        weight_decay: paper 1e-5.
        warmup_epochs: linear warm-up before cosine decay (paper: 10 of 400 epochs).
        sw_overlap: validation sliding-window overlap (paper 0.5).
        sw_batch_size: windows per forward pass in validation.
        lambda_dice: Dice weight of the loss.
        lambda_ce: cross-entropy weight of the loss.
        batch_dice: Dice over the whole batch instead of per patch (see
            :class:`~sap.tasks.base.SegmentationTask`).
        ce_background_weight: cross-entropy weight of the background class (see
            :class:`~sap.tasks.base.SegmentationTask`; paper: 1).
        detection_threshold: lesion probability above which a voxel counts as lesion in the
            validation detection metrics.
        transfer: backbone groups loaded from ``init``: ``"encoder+decoder"`` (SAP) or
            ``"encoder"`` (an SSL checkpoint, whose decoder was never trained).
    """

    def __init__(
        self,
        init: str = "scratch",
        backbone: str = "swin_unetr",
        backbone_kwargs: dict[str, Any] | None = None,
        channels: Sequence[str] = CHANNELS,
        labels: Sequence[str] = LESION_LABELS,
        patch_size: Sequence[int] = (96, 96, 96),
        spacing_mm: Sequence[float] | None = None,
        lr_encoder: float = 2e-6,
        lr_decoder: float = 1e-5,
        lr_head: float = 1e-5,
        optimizer: OptimizerName = "adam",
        weight_decay: float = 1e-5,
        warmup_epochs: float = 10.0,
        sw_overlap: float = 0.5,
        sw_batch_size: int = 2,
        lambda_dice: float = 1.0,
        lambda_ce: float = 1.0,
        batch_dice: bool = False,
        ce_background_weight: float = 1.0,
        detection_threshold: float = 0.5,
        transfer: Literal["encoder+decoder", "encoder"] = "encoder+decoder",
    ) -> None:
        super().__init__(
            backbone=backbone,
            backbone_kwargs=backbone_kwargs,
            channels=channels,
            labels=labels,
            task="lesion",
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
        if init != "scratch" and not str(init).strip():
            raise ValueError("init must be 'scratch' or the path of a skeleton model")
        if transfer not in TRANSFER_GROUPS:
            raise ValueError(f"transfer must be one of {list(TRANSFER_GROUPS)}, got {transfer!r}")
        self.init = str(init)
        self.transfer = transfer
        self.lr_encoder = float(lr_encoder)
        self.lr_decoder = float(lr_decoder)
        self.lr_head = float(lr_head)
        self.detection_threshold = float(detection_threshold)
        self.transfer_report: TransferReport | None = None
        self.save_hyperparameters()
        from sap.metrics import LesionDetection

        # One metric object per stage: its state accumulates exams over the epoch and is
        # synchronised across DDP ranks by torchmetrics before compute().
        self.detection = torch.nn.ModuleDict(
            {
                stage: LesionDetection(threshold=self.detection_threshold)
                for stage in ("val", "test")
            }
        )

    def learning_rates(self) -> dict[str, float]:
        return {"encoder": self.lr_encoder, "decoder": self.lr_decoder, "head": self.lr_head}

    def initialise_from(self, source: str | Path) -> TransferReport:
        """Load encoder and decoder from a pretrained model now; keep the fresh head.

        Raises :class:`sap.tasks.transfer.TransferError` when the encoder or decoder did not
        load completely. The report (every loaded, missing and unexpected key) is kept in
        ``self.transfer_report`` and logged.
        """
        state = read_state_dict(source)
        report = transfer_encoder_decoder(
            self.model, state, source=str(source), groups=TRANSFER_GROUPS[self.transfer]
        )
        self.transfer_report = report
        log.warning(report.summary())
        return report

    def setup(self, stage: str) -> None:
        if stage != "fit" or self.init == "scratch" or self.transfer_report is not None:
            return
        resuming = self._trainer is not None and self.trainer.ckpt_path is not None
        if resuming:
            # Resuming a fine-tuning run: the checkpoint about to be restored already holds
            # the transferred (and since trained) weights.
            return
        self.initialise_from(self.init)

    #: Detection metrics logged after each validation / test epoch (paper, "Evaluation").
    LOGGED_DETECTION_METRICS: tuple[str, ...] = (
        "sensitivity",
        "precision",
        "fp_per_exam",
        "f_beta",
        "dice_detected",
        "global_dice",
    )

    def kept_probability_classes(self) -> tuple[int, ...]:
        return (1,)  # the lesion probability, thresholded by the detection metrics

    def _on_volume_evaluated(
        self,
        stage: str,
        result: SlidingWindowResult,
        reference: np.ndarray,
        batch: dict[str, Any],
        index: int,
    ) -> None:
        spacing = spacing_from_affine(batch["affine"][index]) if "affine" in batch else None
        self.detection[stage].update(result.probabilities[0], reference, spacing)

    def _log_detection(self, stage: str) -> None:
        metric = self.detection[stage]
        if not metric.update_called:
            return
        values = metric.compute()
        for name in self.LOGGED_DETECTION_METRICS:
            value = float(values[name])
            if value == value:  # NaN (e.g. no lesion in the validation cases) is not logged
                self.log(f"{stage}/lesion_{name}", value, rank_zero_only=True)
        metric.reset()

    def on_validation_epoch_end(self) -> None:
        self._log_detection("val")

    def on_test_epoch_end(self) -> None:
        self._log_detection("test")

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_save_checkpoint(checkpoint)
        if self.transfer_report is not None:
            checkpoint["sap_transfer"] = {
                "source": self.transfer_report.source,
                "loaded": len(self.transfer_report.loaded),
                "skipped_head": list(self.transfer_report.skipped_head),
                "unexpected": list(self.transfer_report.unexpected),
            }
