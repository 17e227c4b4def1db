"""The shared base of every segmentation task: loss, optimiser groups, schedule, validation.

Skeleton pretraining and lesion fine-tuning differ only in their labels, how the backbone is
initialised and which learning rate each parameter group gets. Everything else lives here, so
the two tasks cannot drift apart: the same Dice + cross-entropy loss (background left out of
the Dice term, as in the paper), the same warm-up + cosine schedule, the same sliding-window
validation over whole volumes.

Lightning owns the loop: this module says *what* is learned; devices, precision, DDP,
checkpoints and loggers are Trainer configuration.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from typing import Any, Literal

import lightning as L
import numpy as np
import torch
from monai.losses import DiceCELoss

from sap.backbones import SegmentationBackbone, build_backbone
from sap.errors import ConfigError
from sap.inference.sliding import SlidingWindowResult, sliding_window_predict
from sap.metrics import class_dice
from sap.recipe import ModelRecipe, TaskName
from sap.tasks.checks import check_patch_size, check_range
from sap.tasks.panels import validation_panel
from sap.tasks.schedule import WarmupCosineSchedule, check_training_length

OptimizerName = Literal["adam", "adamw"]

log = logging.getLogger(__name__)


class SegmentationTask(L.LightningModule):
    """Common machinery for SAP's segmentation tasks.

    Args:
        backbone: registered backbone name (``sap.backbones.list_backbones()``).
        backbone_kwargs: extra keyword arguments for the backbone builder.
        channels: input channel names in network order; must match the data module.
        labels: output class names; index 0 is background.
        task: ``"skeleton"`` or ``"lesion"``; stored in the model recipe.
        patch_size: training patch size and sliding-window size in voxels.
        spacing_mm: voxel spacing the data was resampled to (``None``: native); recorded in
            the recipe so inference prepares scans the same way.
        optimizer: ``"adam"`` (paper) or ``"adamw"``.
        weight_decay: optimiser weight decay (paper: 1e-5).
        warmup_epochs: linear warm-up length (paper: 10 of 400 epochs); may be fractional.
        sw_overlap: sliding-window overlap in validation (paper: 0.5).
        sw_batch_size: windows per forward pass in validation.
        lambda_dice: weight of the Dice term of the loss.
        lambda_ce: weight of the cross-entropy term of the loss.
        batch_dice: compute the Dice term over the whole batch instead of per patch. With
            instance-balanced sampling half the patches hold no lesion; a per-patch Dice
            punishes any lesion probability there with a loss of ~1, which pushes small
            models to predict nothing. Batch Dice (as nnU-Net uses) avoids that. The paper's
            MONAI default is per patch (``False``).
        ce_background_weight: weight of the background class in the cross-entropy term
            (others 1). Bone is ~1-2 % of a whole-body patch; with weight 1 a small network
            first learns "everything is background" and stays there for a long time. A low
            weight (e.g. 0.05) lets it find the bones within a CPU budget. Paper: 1.
    """

    task_name: TaskName = "skeleton"

    def __init__(
        self,
        backbone: str,
        backbone_kwargs: dict[str, Any] | None,
        channels: Sequence[str],
        labels: Sequence[str],
        task: TaskName,
        patch_size: Sequence[int],
        spacing_mm: Sequence[float] | None,
        optimizer: OptimizerName,
        weight_decay: float,
        warmup_epochs: float,
        sw_overlap: float,
        sw_batch_size: int,
        lambda_dice: float,
        lambda_ce: float,
        batch_dice: bool = False,
        ce_background_weight: float = 1.0,
    ) -> None:
        super().__init__()
        if len(labels) < 2:
            raise ConfigError(
                f"model.labels needs at least 2 labels (background + one), got {list(labels)}."
            )
        if not channels or len(set(channels)) != len(channels):
            raise ConfigError(
                f"model.channels must name each input channel once, got {list(channels)}."
            )
        if optimizer not in ("adam", "adamw"):
            raise ConfigError(f"model.optimizer must be 'adam' or 'adamw', got {optimizer!r}.")
        self.channels = list(channels)
        self.labels = list(labels)
        self.task = task
        self.patch_size = tuple(int(s) for s in patch_size)
        self.spacing_mm = None if spacing_mm is None else tuple(float(s) for s in spacing_mm)
        self.backbone_name = backbone
        self.backbone_kwargs = dict(backbone_kwargs or {})
        self.model: SegmentationBackbone = build_backbone(
            backbone,
            in_channels=len(self.channels),
            out_channels=len(self.labels),
            **self.backbone_kwargs,
        )
        multiple = int(getattr(self.model, "spatial_multiple", 1))
        self.patch_size = check_patch_size(patch_size, multiple, backbone)
        self.optimizer_name = optimizer
        self.weight_decay = check_range("weight_decay", weight_decay, low=0.0)
        self.warmup_epochs = check_range("warmup_epochs", warmup_epochs, low=0.0)
        self.sw_overlap = check_range("sw_overlap", sw_overlap, low=0.0, high=1.0, high_open=True)
        self.sw_batch_size = int(check_range("sw_batch_size", sw_batch_size, low=1))
        check_range("lambda_dice", lambda_dice, low=0.0)
        check_range("lambda_ce", lambda_ce, low=0.0)
        if lambda_dice == 0 and lambda_ce == 0:
            raise ConfigError("model.lambda_dice and model.lambda_ce are both 0: nothing to learn.")
        self.schedule: WarmupCosineSchedule | None = None
        self._restored_schedule: tuple[WarmupCosineSchedule, int] | None = None
        # Background is excluded from the Dice term only: cross-entropy still needs it, and a
        # Dice on background (most of a whole-body volume) would drown the small foreground.
        self.loss_fn = DiceCELoss(
            include_background=False,
            to_onehot_y=True,
            softmax=True,
            lambda_dice=lambda_dice,
            lambda_ce=lambda_ce,
            batch=batch_dice,
            weight=self._ce_weights(len(self.labels), ce_background_weight),
        )

    @staticmethod
    def _ce_weights(num_classes: int, background_weight: float) -> torch.Tensor | None:
        check_range("ce_background_weight", background_weight, low=0.0, low_open=True)
        if background_weight == 1.0:
            return None
        weights = torch.ones(num_classes)
        weights[0] = background_weight
        return weights

    # ------------------------------------------------------------------ recipe
    def recipe(self) -> ModelRecipe:
        """What this model needs to be used correctly, saved with every checkpoint."""
        return ModelRecipe(
            backbone=self.backbone_name,
            backbone_kwargs=dict(self.backbone_kwargs),
            channels=list(self.channels),
            labels=list(self.labels),
            task=self.task,
            patch_size=self.patch_size,
            spacing_mm=self.spacing_mm,
        )

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["sap_recipe"] = self.recipe().to_dict()
        if self.schedule is not None:
            checkpoint["sap_schedule"] = self.schedule.to_dict()

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Keep the schedule a resumed run had, to report a change of length."""
        schedule = checkpoint.get("sap_schedule")
        if isinstance(schedule, dict):
            self._restored_schedule = (
                WarmupCosineSchedule.from_dict(schedule),
                int(checkpoint.get("global_step", 0)),
            )

    # ------------------------------------------------------------------ forward / loss
    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.model(image)

    def compute_loss(self, logits: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
        return self.loss_fn(logits, label.unsqueeze(1).long())

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        image, label = batch["image"], batch["label"]
        loss = self.compute_loss(self(image), label)
        self.log(
            "train/loss",
            loss,
            prog_bar=True,
            on_step=True,
            on_epoch=True,
            batch_size=image.shape[0],
        )
        return loss

    # ------------------------------------------------------------------ whole-volume evaluation
    def kept_probability_classes(self) -> tuple[int, ...]:
        """Classes whose probability maps whole-volume evaluation keeps (none: labels only)."""
        return ()

    @torch.no_grad()
    def predict_volume(
        self, image: torch.Tensor, keep_probabilities: Sequence[int] | None = None
    ) -> SlidingWindowResult:
        """Labels and chosen class probabilities of one whole volume ``[C, X, Y, Z]``.

        Gaussian-blended sliding window over ``patch_size`` windows in bounded memory
        (:func:`sap.inference.sliding.sliding_window_predict`): ``uint8`` labels plus
        ``float16`` maps of ``keep_probabilities`` (default
        :meth:`kept_probability_classes`), never a float map per class of the whole volume.
        """
        keep = self.kept_probability_classes() if keep_probabilities is None else keep_probabilities
        return sliding_window_predict(
            image.detach().cpu(),
            self._window_probabilities,
            self.patch_size,
            len(self.labels),
            overlap=self.sw_overlap,
            blending="gaussian",
            batch_size=self.sw_batch_size,
            device=self.device,
            keep_probabilities=tuple(keep),
            return_labels=True,
        )

    def _window_probabilities(self, windows: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.model(windows), dim=1)

    def _evaluate_volumes(self, batch: dict[str, Any], stage: str, batch_idx: int = 0) -> None:
        """Per-class and foreground Dice of every whole volume of ``batch``, then task metrics.

        No whole-volume loss is logged: it would need float logits of every class over the
        whole volume (~6 GB for a 10-class whole-body scan), the memory this path avoids; the
        Dice scores and the detection metrics are what model selection uses.
        """
        for index in range(batch["image"].shape[0]):
            result = self.predict_volume(batch["image"][index])
            reference = batch["label"][index].detach().cpu().numpy()
            self._log_dice(stage, result.labels, reference)
            self._on_volume_evaluated(stage, result, reference, batch, index)
            if stage == "val" and batch_idx == 0 and index == 0:
                self._log_panel(batch, index, reference, result.labels)

    def _image_loggers(self) -> list[Any]:
        """Attached loggers that take images (W&B, TensorBoard), on the main process only."""
        from lightning.pytorch.loggers import TensorBoardLogger, WandbLogger

        if self._trainer is None or self.trainer.sanity_checking or not self.trainer.is_global_zero:
            return []
        return [
            logger
            for logger in self.trainer.loggers
            if isinstance(logger, WandbLogger | TensorBoardLogger)
        ]

    def _log_panel(
        self, batch: dict[str, Any], index: int, reference: np.ndarray, prediction: np.ndarray
    ) -> None:
        """The first validation case as a coronal panel (:mod:`sap.tasks.panels`), if logged."""
        loggers = self._image_loggers()
        if not loggers:
            return
        from lightning.pytorch.loggers import WandbLogger

        panel = validation_panel(
            batch["image"][index].detach().cpu().numpy(), reference, prediction
        )
        case_id = str(batch.get("case_id", ["case"])[index])
        caption = f"{case_id}: image | reference | prediction"
        for logger in loggers:
            if isinstance(logger, WandbLogger):
                logger.log_image("val/panel", [panel], step=self.global_step, caption=[caption])
            else:
                logger.experiment.add_image("val/panel", panel, self.global_step, dataformats="HWC")

    def _log_dice(self, stage: str, prediction: np.ndarray, reference: np.ndarray) -> None:
        """Dice of each class and of the foreground; classes absent from both are NaN, not logged."""
        scores = class_dice(prediction, reference, self.labels)
        names = [(f"dice_{name}", name) for name in self.labels[1:]]
        for logged, key in [*names, ("dice_foreground", "foreground")]:
            if not math.isnan(scores[key]):
                self.log(
                    f"{stage}/{logged}",
                    scores[key],
                    prog_bar=key == "foreground",
                    on_epoch=True,
                    batch_size=1,
                    sync_dist=True,
                )

    def _on_volume_evaluated(
        self,
        stage: str,
        result: SlidingWindowResult,
        reference: np.ndarray,
        batch: dict[str, Any],
        index: int,
    ) -> None:
        """Hook for task-specific whole-volume metrics (lesion detection)."""

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        self._evaluate_volumes(batch, "val", batch_idx)

    def test_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        self._evaluate_volumes(batch, "test", batch_idx)

    def predict_step(self, batch: dict[str, Any], batch_idx: int) -> list[SlidingWindowResult]:
        return [self.predict_volume(image) for image in batch["image"]]

    # ------------------------------------------------------------------ optimisation
    def learning_rates(self) -> dict[str, float]:
        """Learning rate of each backbone parameter group: ``encoder``, ``decoder``, ``head``."""
        raise NotImplementedError

    def configure_optimizers(self) -> dict[str, Any]:
        groups = self.model.parameter_groups()
        rates = self.learning_rates()
        param_groups = [
            {"params": groups[name], "lr": rates[name], "name": name}
            for name in ("encoder", "decoder", "head")
            if groups[name]
        ]
        optimizer_class = torch.optim.AdamW if self.optimizer_name == "adamw" else torch.optim.Adam
        optimizer = optimizer_class(param_groups, weight_decay=self.weight_decay)
        schedule = self._build_schedule()
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: schedule(step))
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": scheduler, "interval": "step"},
        }

    def _build_schedule(self) -> WarmupCosineSchedule:
        """Warm-up + cosine over this run's steps; a resumed run continues its own schedule.

        Resumed with a larger ``max_epochs``, the schedule is the one of a run planned that
        long (see :mod:`sap.tasks.schedule`); the change is logged.
        """
        trainer = self.trainer
        check_training_length(trainer.max_epochs, trainer.max_steps)
        total_steps = trainer.estimated_stepping_batches
        if not math.isfinite(total_steps):
            raise ConfigError(
                "The training length is unbounded (max_epochs -1 and no max_steps); give "
                "--trainer.max_epochs N."
            )
        total_steps = max(1, int(total_steps))
        batches = trainer.num_training_batches
        steps_per_epoch = (
            max(1, math.ceil(batches / trainer.accumulate_grad_batches))
            if math.isfinite(batches)
            else total_steps
        )
        warmup_steps = min(total_steps, int(round(self.warmup_epochs * steps_per_epoch)))
        self.schedule = WarmupCosineSchedule(warmup_steps, total_steps)
        if self._restored_schedule is not None and self._restored_schedule[0] != self.schedule:
            restored, step = self._restored_schedule
            log.warning(
                "Resumed at step %d with a schedule of %d steps (the checkpoint planned %d): the "
                "learning-rate factor goes from %.3g to %.3g and decays to 0 at step %d.",
                step,
                total_steps,
                restored.total_steps,
                restored(step),
                self.schedule(step),
                total_steps,
            )
        return self.schedule
