"""Reload a task from a Lightning checkpoint without unpickling arbitrary objects."""

from __future__ import annotations

from pathlib import Path

import torch

from sap.tasks.base import SegmentationTask
from sap.tasks.finetuning import LesionFinetuning
from sap.tasks.pretraining import AnatomicalPretraining

TASK_CLASSES: dict[str, type[SegmentationTask]] = {
    "skeleton": AnatomicalPretraining,
    "lesion": LesionFinetuning,
}


def load_task_checkpoint(
    path: str | Path, map_location: str | torch.device = "cpu"
) -> SegmentationTask:
    """Rebuild an :class:`AnatomicalPretraining` or :class:`LesionFinetuning` from a ``.ckpt``.

    The checkpoint is read with ``torch.load(weights_only=True)``: only tensors and plain values,
    never code. The task class comes from the model recipe stored in the checkpoint; the
    module is rebuilt from its saved hyper-parameters (a fine-tuning module comes back with
    ``init="scratch"``, since its weights are in the checkpoint already).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"Checkpoint {path} does not exist")
    try:
        checkpoint = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as error:
        raise ValueError(
            f"Cannot read checkpoint {path} safely (torch.load weights_only=True): {error}"
        ) from error
    recipe = checkpoint.get("sap_recipe")
    if not isinstance(recipe, dict) or "task" not in recipe:
        raise ValueError(f"{path} is not a sap task checkpoint: it has no 'sap_recipe' entry")
    task_class = TASK_CLASSES[recipe["task"]]
    hparams = dict(checkpoint.get("hyper_parameters", {}))
    if task_class is LesionFinetuning:
        hparams["init"] = "scratch"
    module = task_class(**hparams)
    missing, unexpected = module.load_state_dict(checkpoint["state_dict"], strict=False)
    if missing or unexpected:
        raise ValueError(
            f"Checkpoint {path} does not fit the module it describes: missing {missing}, unexpected {unexpected}"
        )
    return module
