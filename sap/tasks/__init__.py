"""Lightning tasks of SAP: skeleton pretraining, lesion fine-tuning and the SSL baseline."""

from __future__ import annotations

from sap.tasks.base import SegmentationTask
from sap.tasks.checkpoints import load_task_checkpoint
from sap.tasks.finetuning import LesionFinetuning
from sap.tasks.initialisation import TransferMode, restoring_weights
from sap.tasks.lightning_noise import quiet_lightning
from sap.tasks.pretraining import AnatomicalPretraining
from sap.tasks.schedule import WarmupCosineSchedule
from sap.tasks.ssl import SelfSupervisedPretraining
from sap.tasks.transfer import TransferError, TransferReport, transfer_encoder_decoder

quiet_lightning()

__all__ = [
    "AnatomicalPretraining",
    "LesionFinetuning",
    "SegmentationTask",
    "SelfSupervisedPretraining",
    "TransferError",
    "TransferMode",
    "TransferReport",
    "WarmupCosineSchedule",
    "load_task_checkpoint",
    "restoring_weights",
    "transfer_encoder_decoder",
]
