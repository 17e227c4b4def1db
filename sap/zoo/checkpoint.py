"""Read weights from files without running code: the one reader of checkpoints in ``sap``.

Two questions, two functions:

- :func:`read_checkpoint` — a Lightning ``.ckpt`` of a ``sap`` task: its recipe (the
  ``sap_recipe`` entry every task writes) and the backbone's weights (``state_dict`` keys under
  ``model.``). No LightningModule is built, so a checkpoint loads whatever wrote it (``sap fit``
  through LightningCLI stores ``_class_path`` and ``_instantiator`` among its hyper-parameters).
- :func:`read_state_dict` — tensors from any weights file: a Lightning ``.ckpt``, a plain
  ``.pt`` / ``.pth`` state dict (possibly nested), a ``.safetensors`` file or an export folder;
  :func:`read_weights` — the network's tensors and, when the file has one, its recipe.

Every file is first checked to start like a file ``torch.save`` writes, so a wrong path is
reported as "a text file", "empty", "gzip" rather than as an unpickling error.

Pickled files are read with ``torch.load(weights_only=True)``: tensors and plain values only.
"""

from __future__ import annotations

import zipfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from sap.errors import MissingPathError, UserError
from sap.recipe import ModelRecipe
from sap.zoo.metadata import WEIGHTS_FILE
from sap.zoo.network import build_from_recipe, load_state_strict

if TYPE_CHECKING:
    from sap.backbones import SegmentationBackbone

#: Prefix of the backbone's keys in a task's ``state_dict`` (the task's ``model`` attribute).
BACKBONE_PREFIX = "model."
#: Keys under which checkpoints of other code nest their state dict, tried in order.
NESTED_STATE_KEYS: tuple[str, ...] = ("state_dict", "model", "model_state_dict", "network_weights")


#: First bytes of the files ``torch.save`` writes: a zip archive, or (legacy) a pickle.
TORCH_FILE_MAGIC: tuple[bytes, ...] = (b"PK\x03\x04", b"\x80")


class CheckpointError(UserError, ValueError):
    """A file that cannot be read safely, or that does not hold what was asked for."""


@dataclass
class TaskCheckpoint:
    """What a Lightning checkpoint of a ``sap`` task holds.

    Attributes:
        path: the ``.ckpt`` file.
        recipe: the model recipe the task stored (``checkpoint["sap_recipe"]``).
        state_dict: the whole task's tensors (backbone under ``model.``, plus metric states).
        hyper_parameters: the task's saved arguments, as Lightning stored them.
        transfer: how the weights were initialised before training
            (``checkpoint["sap_transfer"]``: ``source``, ``base_model``, ``transfer``, ...);
            empty for a model trained from scratch.
    """

    path: Path
    recipe: ModelRecipe
    state_dict: dict[str, torch.Tensor]
    hyper_parameters: dict[str, Any]
    transfer: dict[str, Any] = field(default_factory=dict)

    @property
    def base_model(self) -> str | None:
        """The pretrained model this one was fine-tuned from (a zoo name, ``hf://owner/repo@rev``
        or ``"<file name> sha256:<hex>"``), or ``None`` when trained from scratch."""
        value = self.transfer.get("base_model") or self.transfer.get("source")
        return str(value) if value else None

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


def read_checkpoint(
    path: str | Path, map_location: str | torch.device = "cpu", *, mmap: bool = False
) -> TaskCheckpoint:
    """Read a Lightning checkpoint written while training a ``sap`` task.

    Args:
        path: the ``.ckpt`` file.
        map_location: where tensors go.
        mmap: map the file instead of reading it (``torch.load(mmap=True)``): tensors are read
            only when used, so checking a large checkpoint's recipe costs almost nothing.

    Raises:
        MissingPathError: no such file (a ``FileNotFoundError``).
        CheckpointError: unreadable with ``weights_only=True``, or not a ``sap`` task checkpoint.
    """
    path = _existing_file(path)
    checkpoint = _task_checkpoint(path, _torch_load(path, map_location, mmap=mmap))
    if checkpoint is None:
        raise CheckpointError(
            f"{path} is not a checkpoint of a sap task: it has no 'sap_recipe' entry. Checkpoints "
            "written by `sap fit` (or a Trainer fitting sap.tasks) have one; for plain weights "
            "files use sap.zoo.read_state_dict."
        )
    return checkpoint


def read_weights(path: str | Path) -> tuple[dict[str, torch.Tensor], ModelRecipe | None]:
    """The network's tensors in a weights file, with its recipe when the file has one.

    A ``sap`` task checkpoint gives its backbone's tensors (keys without ``model.``) and its
    recipe; any other file gives what :func:`read_state_dict` gives and ``None``. The file
    is read once.
    """
    path = Path(path)
    if path.is_dir() or path.suffix == ".safetensors":
        return read_state_dict(path), None
    path = _existing_file(path)
    payload = _torch_load(path, "cpu")
    checkpoint = _task_checkpoint(path, payload)
    if checkpoint is not None:
        return checkpoint.backbone_state(), checkpoint.recipe
    return _tensors_of(path, payload), None


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Tensors of a weights file, keys as stored (prefixes such as ``model.`` kept).

    Args:
        path: a Lightning ``.ckpt``, a ``.pt`` / ``.pth`` state dict (possibly nested under one
            of :data:`NESTED_STATE_KEYS`), a ``.safetensors`` file, or an export folder.

    Raises:
        CheckpointError: unreadable, or holding something other than tensors.
        MissingPathError: no such file.
    """
    path = Path(path)
    if path.is_dir():
        if not (path / WEIGHTS_FILE).is_file():
            raise CheckpointError(
                f"{path} is a folder without {WEIGHTS_FILE}; expected an export folder."
            )
        path = path / WEIGHTS_FILE
    path = _existing_file(path)
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            return dict(load_file(str(path)))
        except Exception as error:  # safetensors raises several types for corrupt files
            raise CheckpointError(f"Cannot read safetensors weights {path}: {error}") from error
    return _tensors_of(path, _torch_load(path, "cpu"))


def _existing_file(path: str | Path) -> Path:
    path = Path(path)
    if path.is_dir():
        raise CheckpointError(f"{path} is a folder; expected a checkpoint file.")
    if not path.is_file():
        raise MissingPathError(f"Checkpoint {path} does not exist.")
    return path


def _task_checkpoint(path: Path, payload: Any) -> TaskCheckpoint | None:
    """The task checkpoint ``payload`` holds, or ``None`` when it has no ``sap_recipe``."""
    recipe = payload.get("sap_recipe") if isinstance(payload, Mapping) else None
    if recipe is None:
        return None
    if not isinstance(recipe, Mapping):
        raise CheckpointError(f"{path}: its 'sap_recipe' entry is not a mapping.")
    try:
        parsed = ModelRecipe.from_dict(dict(recipe))
    except (TypeError, ValueError) as error:
        raise CheckpointError(f"{path}: its 'sap_recipe' entry is invalid: {error}") from error
    state = payload.get("state_dict")
    if not isinstance(state, Mapping):
        raise CheckpointError(f"{path} has no 'state_dict' of tensors.")
    transfer = payload.get("sap_transfer")
    return TaskCheckpoint(
        path=path,
        recipe=parsed,
        state_dict=dict(state),
        hyper_parameters=dict(payload.get("hyper_parameters") or {}),
        transfer=dict(transfer) if isinstance(transfer, Mapping) else {},
    )


def _tensors_of(path: Path, payload: Any) -> dict[str, torch.Tensor]:
    """The state dict of tensors in ``payload`` (possibly nested under a known key)."""
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


def check_torch_file(path: Path) -> None:
    """Raise :class:`CheckpointError` unless ``path`` starts like a file ``torch.save`` wrote.

    Says what the file looks like instead (text, empty, gzip, safetensors), so that a wrong
    path is reported as such rather than as an unpickling error.
    """
    with open(path, "rb") as handle:
        head = handle.read(64)
    if any(head.startswith(magic) for magic in TORCH_FILE_MAGIC):
        return
    raise CheckpointError(
        f"{path} is not a PyTorch checkpoint: {describe_bytes(head)}. Expected a file written by "
        "torch.save or Lightning (a .ckpt or .pt, which starts as a zip archive)."
    )


def describe_bytes(head: bytes) -> str:
    """What the first bytes of a file suggest it is, in words.

    >>> describe_bytes(b"root:x:0:0:root:/root:/bin/bash")
    "it is a text file starting with 'root:x:0:0:root:/root:/bin/bash'"
    >>> describe_bytes(b"")
    'it is empty'
    """
    if not head:
        return "it is empty"
    if head.startswith(b"\x1f\x8b"):
        return "it is gzip-compressed (a .nii.gz image?)"
    if len(head) > 8 and head[8:9] == b"{":
        return "it looks like a bare safetensors file (give the export folder that holds it)"
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        return f"it starts with the bytes {head[:8]!r}"
    first_line = text.splitlines()[0] if text.strip() else text
    return f"it is a text file starting with {first_line[:40]!r}"


def _torch_load(path: Path, map_location: str | torch.device, mmap: bool = False) -> Any:
    check_torch_file(path)
    # Only files in torch's zip format can be mapped; the legacy format is read whole.
    mmap = mmap and zipfile.is_zipfile(path)
    try:
        return torch.load(path, map_location=map_location, weights_only=True, mmap=mmap)
    except Exception as error:  # unpickling refusals and corrupt files raise many types
        raise CheckpointError(
            f"Cannot read {path} safely (torch.load weights_only=True): {error}. Only tensors and "
            "plain Python values are accepted; convert other files to safetensors."
        ) from error


__all__ = [
    "BACKBONE_PREFIX",
    "TORCH_FILE_MAGIC",
    "NESTED_STATE_KEYS",
    "CheckpointError",
    "TaskCheckpoint",
    "check_torch_file",
    "describe_bytes",
    "read_checkpoint",
    "read_state_dict",
    "read_weights",
]
