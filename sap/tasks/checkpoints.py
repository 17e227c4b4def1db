"""Rebuild a task from a Lightning checkpoint without unpickling arbitrary objects."""

from __future__ import annotations

from pathlib import Path

import torch

from sap.tasks.base import SegmentationTask
from sap.tasks.finetuning import LesionFinetuning
from sap.tasks.initialisation import restoring_weights
from sap.tasks.pretraining import AnatomicalPretraining
from sap.zoo.checkpoint import CheckpointError, read_checkpoint

TASK_CLASSES: dict[str, type[SegmentationTask]] = {
    "skeleton": AnatomicalPretraining,
    "lesion": LesionFinetuning,
}


def load_task_checkpoint(
    path: str | Path, map_location: str | torch.device = "cpu"
) -> SegmentationTask:
    """Rebuild an :class:`AnatomicalPretraining` or :class:`LesionFinetuning` from a ``.ckpt``.

    The file is read by :func:`sap.zoo.read_checkpoint` (``weights_only=True``: tensors and
    plain values, never code). The task class comes from the stored recipe; the module is
    rebuilt from its saved hyper-parameters, without the ``_class_path`` / ``_instantiator``
    entries LightningCLI adds, inside :func:`~sap.tasks.initialisation.restoring_weights`:
    a fine-tuning module keeps its recorded ``init`` (and ``transfer_record``) but never
    reads it — its weights are in the checkpoint.

    Raises:
        FileNotFoundError: no such file.
        CheckpointError: unreadable, not a task checkpoint, or weights that do not fit.
    """
    checkpoint = read_checkpoint(path, map_location=map_location)
    task_class = TASK_CLASSES[checkpoint.recipe.task]
    hparams = {
        key: value for key, value in checkpoint.hyper_parameters.items() if not key.startswith("_")
    }
    with restoring_weights():
        module = task_class(**hparams)
    if isinstance(module, LesionFinetuning):
        module.transfer_record = dict(checkpoint.transfer)
    missing, unexpected = module.load_state_dict(checkpoint.state_dict, strict=False)
    if missing or unexpected:
        raise CheckpointError(
            f"Checkpoint {checkpoint.path} does not fit the module it describes: missing "
            f"{missing}, unexpected {unexpected}."
        )
    return module
