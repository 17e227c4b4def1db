"""Read weights from files without running code: the one reader of checkpoints in ``sap``.

Two questions, two functions:

- :func:`read_checkpoint` — a Lightning ``.ckpt`` of a ``sap`` task: its recipe (the
  ``sap_recipe`` entry every task writes) and the backbone's weights (``state_dict`` keys under
  ``model.``). No LightningModule is built, so a checkpoint loads whatever wrote it (``sap fit``
  through LightningCLI stores ``_class_path`` and ``_instantiator`` among its hyper-parameters).
- :func:`read_state_dict` — tensors from any weights file: a Lightning ``.ckpt``, a plain
  ``.pt`` / ``.pth`` state dict (possibly nested), a ``.safetensors`` file or an export folder.

Pickled files are read with ``torch.load(weights_only=True)``: tensors and plain values only.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from sap.recipe import ModelRecipe
from sap.zoo.metadata import WEIGHTS_FILE
from sap.zoo.network import build_from_recipe, load_state_strict

if TYPE_CHECKING:
    from sap.backbones import SegmentationBackbone

#: Prefix of the backbone's keys in a task's ``state_dict`` (the task's ``model`` attribute).
BACKBONE_PREFIX = "model."
#: Keys under which checkpoints of other code nest their state dict, tried in order.
NESTED_STATE_KEYS: tuple[str, ...] = ("state_dict", "model", "model_state_dict", "network_weights")


class CheckpointError(ValueError):
    """A file that cannot be read safely, or that does not hold what was asked for."""


@dataclass
class TaskCheckpoint:
    """What a Lightning checkpoint of a ``sap`` task holds.

    Attributes:
        path: the ``.ckpt`` file.
        recipe: the model recipe the task stored (``checkpoint["sap_recipe"]``).
        state_dict: the whole task's tensors (backbone under ``model.``, plus metric states).
        hyper_parameters: the task's saved arguments, as Lightning stored them.
        transfer: what a fine-tuning task recorded about its initialisation
            (``checkpoint["sap_transfer"]``: ``source`` and counts), empty otherwise.
    """

    path: Path
    recipe: ModelRecipe
    state_dict: dict[str, torch.Tensor]
    hyper_parameters: dict[str, Any]
    transfer: dict[str, Any] = field(default_factory=dict)

    def backbone_state(self) -> dict[str, torch.Tensor]:
        """The backbone's tensors, keys without the ``model.`` prefix."""
        return {
            key.removeprefix(BACKBONE_PREFIX): value
            for key, value in self.state_dict.items()
            if key.startswith(BACKBONE_PREFIX)
        }

    def build_backbone(self) -> SegmentationBackbone:
        """The network of the recipe holding the checkpoint's weights (strictly loaded)."""
        model = build_from_recipe(self.recipe, source=str(self.path))
        load_state_strict(model, self.backbone_state(), source=str(self.path))
        return model


def read_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> TaskCheckpoint:
    """Read a Lightning checkpoint written while training a ``sap`` task.

    Raises:
        FileNotFoundError: no such file.
        CheckpointError: unreadable with ``weights_only=True``, or not a ``sap`` task checkpoint.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"Checkpoint {path} does not exist.")
    payload = _torch_load(path, map_location)
    recipe = payload.get("sap_recipe") if isinstance(payload, Mapping) else None
    if not isinstance(recipe, Mapping):
        raise CheckpointError(
            f"{path} is not a checkpoint of a sap task: it has no 'sap_recipe' entry. Checkpoints "
            "written by `sap fit` (or a Trainer fitting sap.tasks) have one; for plain weights "
            "files use sap.zoo.read_state_dict."
        )
    try:
        parsed = ModelRecipe.from_dict(dict(recipe))
    except (TypeError, ValueError) as error:
        raise CheckpointError(f"{path}: its 'sap_recipe' entry is invalid: {error}") from error
    transfer = payload.get("sap_transfer")
    state = payload.get("state_dict")
    if not isinstance(state, Mapping):
        raise CheckpointError(f"{path} has no 'state_dict' of tensors.")
    return TaskCheckpoint(
        path=path,
        recipe=parsed,
        state_dict=dict(state),
        hyper_parameters=dict(payload.get("hyper_parameters") or {}),
        transfer=dict(transfer) if isinstance(transfer, Mapping) else {},
    )


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Tensors of a weights file, keys as stored (prefixes such as ``model.`` kept).

    Args:
        path: a Lightning ``.ckpt``, a ``.pt`` / ``.pth`` state dict (possibly nested under one
            of :data:`NESTED_STATE_KEYS`), a ``.safetensors`` file, or an export folder.

    Raises:
        CheckpointError: missing, unreadable, or holding something other than tensors.
    """
    path = Path(path)
    if path.is_dir():
        if not (path / WEIGHTS_FILE).is_file():
            raise CheckpointError(
                f"{path} is a folder without {WEIGHTS_FILE}; expected an export folder."
            )
        path = path / WEIGHTS_FILE
    if not path.is_file():
        raise CheckpointError(f"Weights file {path} does not exist.")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            return dict(load_file(str(path)))
        except Exception as error:  # safetensors raises several types for corrupt files
            raise CheckpointError(f"Cannot read safetensors weights {path}: {error}") from error
    payload = _torch_load(path, "cpu")
    if isinstance(payload, Mapping):
        for nested in NESTED_STATE_KEYS:
            if isinstance(payload.get(nested), Mapping):
                payload = payload[nested]
                break
    if not isinstance(payload, Mapping) or not all(
        isinstance(value, torch.Tensor) for value in payload.values()
    ):
        raise CheckpointError(
            f"{path} holds no state dict of tensors (found {type(payload).__name__})."
        )
    return dict(payload)


def _torch_load(path: Path, map_location: str | torch.device) -> Any:
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as error:  # unpickling refusals and corrupt files raise many types
        raise CheckpointError(
            f"Cannot read {path} safely (torch.load weights_only=True): {error}. Only tensors and "
            "plain Python values are accepted; convert other files to safetensors."
        ) from error


__all__ = [
    "BACKBONE_PREFIX",
    "NESTED_STATE_KEYS",
    "CheckpointError",
    "TaskCheckpoint",
    "read_checkpoint",
    "read_state_dict",
]
