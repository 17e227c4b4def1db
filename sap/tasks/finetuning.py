"""Lesion fine-tuning: binary bone-metastasis segmentation, from scratch or SAP-initialised."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from sap.inference.sliding import SlidingWindowResult
from sap.labels import CHANNELS, LESION_LABELS
from sap.tasks.base import OptimizerName, SegmentationTask
from sap.tasks.checks import check_range
from sap.tasks.initialisation import (
    TransferMode,
    check_init,
    check_transfer_mode,
    is_scratch,
    load_init,
)
from sap.tasks.transfer import TransferReport
from sap.volume import spacing_from_affine

log = logging.getLogger(__name__)


class LesionFinetuning(SegmentationTask):
    """Segment bone metastases; optionally start from a skeleton model (SAP).

    With ``init`` naming a skeleton model, encoder *and* decoder are loaded from it, its head
    is dropped, and a freshly initialised 2-class head is used — the model keeps its
    anatomical knowledge and only learns what a lesion is. Encoder, decoder and head get their
    own learning rates (paper: encoder 2e-6 < decoder 1e-5), so the pretrained features move
    slowly while the new head catches up.

    ``init`` is checked when the module is built and read when training starts
    (:mod:`sap.tasks.initialisation`); a run resumed from a checkpoint keeps the restored
    weights and never reads ``init`` again. The source is recorded in every checkpoint
    (``checkpoint["sap_transfer"]``: ``source``, ``base_model``, ``transfer``, ...).

    Args:
        init: ``None`` / ``"scratch"`` (random), or any source :func:`sap.zoo.load_pretrained`
            takes (zoo name, ``hf://owner/repo@revision``, export folder, ``.ckpt``) or a
            plain state dict (reference-code ``.pt``/``.pth``, ``.safetensors``).
        transfer: ``"encoder+decoder"`` (SAP) or ``"encoder"`` (decoder and head fresh, as
            for an SSL encoder).
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
    """

    def __init__(
        self,
        init: str | None = "scratch",
        transfer: TransferMode = "encoder+decoder",
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
        self.init = check_init(init)
        self.transfer = transfer
        check_transfer_mode(transfer)
        rate = "learning rates are positive (paper: encoder 2e-6, decoder and head 1e-5)"
        self.lr_encoder = check_range("lr_encoder", lr_encoder, low=0.0, low_open=True, hint=rate)
        self.lr_decoder = check_range("lr_decoder", lr_decoder, low=0.0, low_open=True, hint=rate)
        self.lr_head = check_range("lr_head", lr_head, low=0.0, low_open=True, hint=rate)
        self.detection_threshold = check_range(
            "detection_threshold", detection_threshold, low=0.0, high=1.0, low_open=True
        )
        #: The transfer done by this process (None: none done here).
        self.transfer_report: TransferReport | None = None
        #: ``checkpoint["sap_transfer"]``: from this process's transfer or a restored checkpoint.
        self.transfer_record: dict[str, Any] = {}
        self._weights_restored = False
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

    def initialise(self) -> TransferReport | None:
        """Load the ``transfer`` groups from ``init`` now (nothing for ``"scratch"``).

        Raises:
            ConfigError: the pretrained model has other channels, channel order or backbone.
            TransferError: a transferred tensor is missing or has another shape.
        """
        if is_scratch(self.init):
            return None
        self.transfer_report, self.transfer_record = load_init(
            self.model,
            self.init,
            self.transfer,
            self.channels,
            self.backbone_name,
            self.backbone_kwargs,
        )
        return self.transfer_report

    def on_fit_start(self) -> None:
        # Here, not in setup(): Lightning restores a checkpoint (on_load_checkpoint) after
        # setup() and before on_fit_start(), so only now is it known whether the weights
        # come from a checkpoint (resume: the restored weights win, init is never read).
        if self._weights_restored or self.transfer_record:
            return
        self.initialise()

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
        """Log every number :class:`sap.metrics.LesionDetection` computes as ``<stage>/lesion_<name>``.

        All of them, the degenerate-prediction flags (merged predictions, volume ratio)
        included, so that a model selected on one metric can be checked on the others. NaN
        (e.g. no lesion in the validation cases) is not logged.
        """
        metric = self.detection[stage]
        if not metric.update_called:
            return
        for name, value in metric.compute().items():
            number = float(value) if torch.is_tensor(value) and value.numel() == 1 else None
            if number is not None and number == number:
                self.log(f"{stage}/lesion_{name}", number, rank_zero_only=True)
        metric.reset()

    def on_validation_epoch_end(self) -> None:
        self._log_detection("val")

    def on_test_epoch_end(self) -> None:
        self._log_detection("test")

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_save_checkpoint(checkpoint)
        if self.transfer_record:
            checkpoint["sap_transfer"] = dict(self.transfer_record)

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Restored weights win: no transfer follows; the original source stays recorded."""
        super().on_load_checkpoint(checkpoint)
        self._weights_restored = True
        record = checkpoint.get("sap_transfer")
        if isinstance(record, dict):
            self.transfer_record = dict(record)
