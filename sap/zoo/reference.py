"""Import checkpoints of the SAP reference code (MONAI ``SwinUNETR`` scripts) into our format.

The authors' scripts save a plain MONAI ``SwinUNETR`` (paper: ``feature_size=48``, 2 input
channels; 10-class skeleton or 2-class lesion head) with ``torch.save``, sometimes wrapped in
``{"state_dict": ...}``, with ``module.`` (DataParallel) or ``backbone.`` prefixes, and with
``swin_vit`` where current MONAI writes ``swinViT``. This module reads such a file without
unpickling code (``torch.load(weights_only=True)``), renames the keys
(:func:`sap.backbones.convert_monai_swin_unetr_state_dict`), infers the architecture from the
tensor shapes, and proves the conversion by a forward pass: our ``swin_unetr`` backbone and a
plain MONAI ``SwinUNETR`` loaded with the same weights must give the same output.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from sap.labels import CHANNELS
from sap.recipe import ModelRecipe
from sap.zoo.checkpoint import CheckpointError, read_state_dict
from sap.zoo.metadata import DEFAULT_LICENSE, ModelConfig, TrainingData
from sap.zoo.network import load_state_strict

if TYPE_CHECKING:
    from sap.backbones import SegmentationBackbone

_STEM_KEY = "net.swinViT.patch_embed.proj.weight"
_HEAD_KEY = "net.out.conv.conv.weight"
#: Smallest input the forward check may use (32-multiples, bottleneck larger than 1 voxel).
CHECK_SHAPE: tuple[int, int, int] = (32, 32, 64)
CHECK_TOLERANCE = 1e-5


class ReferenceImportError(ValueError):
    """The file is not a reference SAP checkpoint we can convert, or the check failed."""


@dataclass
class ReferenceImport:
    """Result of :func:`import_reference_checkpoint`.

    Attributes:
        model: our ``swin_unetr`` backbone holding the reference weights.
        config: recipe and metadata (what an export writes to ``config.json``).
        max_abs_diff: largest output difference to MONAI's ``SwinUNETR`` in the forward check
            (``None`` when the check was skipped).
        filled_buffers: non-learned buffers absent from the file (older MONAI versions), taken
            from a freshly built network.
        folder: the export folder, when one was written.
    """

    model: SegmentationBackbone
    config: ModelConfig
    max_abs_diff: float | None
    filled_buffers: list[str]
    folder: Path | None = None


def import_reference_checkpoint(
    checkpoint: str | Path,
    task: str,
    out_dir: str | Path | None = None,
    *,
    channels: Sequence[str] | None = None,
    labels: Sequence[str] | None = None,
    patch_size: Sequence[int] = (96, 96, 96),
    spacing_mm: Sequence[float] | None = None,
    name: str = "",
    description: str = "",
    training_data: TrainingData | None = None,
    metrics: Mapping[str, float] | None = None,
    license: str = DEFAULT_LICENSE,
    check: bool = True,
    overwrite: bool = False,
) -> ReferenceImport:
    """Convert a reference SAP checkpoint; optionally export it (``sap zoo import-reference``).

    Args:
        checkpoint: ``.pt`` / ``.pth`` / ``.ckpt`` written by the reference scripts.
        task: ``"skeleton"`` (10-class head) or ``"lesion"`` (2-class head).
        out_dir: export folder to write; nothing is written when ``None``.
        channels: input channel names; default ``["T1", "b1000"]`` (must match the stem).
        labels: class names; default the task's standard labels (must match the head).
        patch_size: training patch in voxels, for the recipe (paper: 96³).
        spacing_mm: voxel spacing the model was trained at, for the recipe (``None``: native).
        name, description, training_data, metrics, license: export metadata.
        check: run the forward-pass equality check against MONAI's ``SwinUNETR``.
        overwrite: replace an existing ``out_dir``.

    Raises:
        ReferenceImportError: not a MONAI ``SwinUNETR`` state dict, head/stem sizes that do not
            match ``task`` / ``channels``, or outputs that differ from MONAI's.
    """
    checkpoint = Path(checkpoint)
    if task not in ("skeleton", "lesion"):
        raise ValueError(f"task must be 'skeleton' or 'lesion', got {task!r}.")
    channel_names = list(channels) if channels is not None else list(CHANNELS)
    label_names = list(labels) if labels is not None else ModelRecipe.default_labels(task)  # type: ignore[arg-type]
    state = _read_reference_state(checkpoint)
    model, filled = _build_reference_model(state, checkpoint, task, channel_names, label_names)
    max_diff = _forward_check(model, state, checkpoint) if check else None

    from sap.io import file_sha256

    config = ModelConfig(
        recipe=ModelRecipe(
            backbone="swin_unetr",
            backbone_kwargs=dict(model.kwargs),
            channels=channel_names,
            labels=label_names,
            task=task,  # type: ignore[arg-type]
            patch_size=tuple(int(s) for s in patch_size),  # type: ignore[arg-type]
            spacing_mm=None if spacing_mm is None else tuple(float(s) for s in spacing_mm),  # type: ignore[arg-type]
        ),
        name=name,
        description=description,
        training_data=training_data or TrainingData(),
        metrics={k: float(v) for k, v in (metrics or {}).items()},
        license=license,
        provenance={
            "source": "sap-reference-checkpoint",
            "checkpoint": checkpoint.name,
            "sha256": file_sha256(checkpoint),
            "forward_check_max_abs_diff": max_diff,
        },
    )
    result = ReferenceImport(
        model=model, config=config, max_abs_diff=max_diff, filled_buffers=filled
    )
    if out_dir is not None:
        from sap.zoo.export import save_pretrained

        result.folder = save_pretrained(model, out_dir, config, overwrite=overwrite)
    return result


def _read_reference_state(checkpoint: Path) -> dict[str, torch.Tensor]:
    """The file's tensors under our key names; refuse anything but a MONAI ``SwinUNETR``."""
    from sap.backbones import convert_monai_swin_unetr_state_dict

    try:
        state = convert_monai_swin_unetr_state_dict(read_state_dict(checkpoint))
    except CheckpointError as error:
        raise ReferenceImportError(str(error)) from error
    for key in (_STEM_KEY, _HEAD_KEY):
        if key not in state:
            example = ", ".join(list(state)[:5])
            raise ReferenceImportError(
                f"{checkpoint} is not a MONAI SwinUNETR checkpoint: no {key.removeprefix('net.')!r} "
                f"(after removing module./backbone. prefixes). Its first keys: {example}."
            )
    return state


def _build_reference_model(
    state: dict[str, torch.Tensor],
    checkpoint: Path,
    task: str,
    channel_names: list[str],
    label_names: list[str],
) -> tuple[SegmentationBackbone, list[str]]:
    """Our ``swin_unetr`` sized from the tensor shapes, holding ``state``; and the filled buffers."""
    from sap.backbones import build_backbone

    feature_size, in_channels = (int(s) for s in state[_STEM_KEY].shape[:2])
    out_channels = int(state[_HEAD_KEY].shape[0])
    if len(label_names) != out_channels:
        raise ReferenceImportError(
            f"{checkpoint} has a {out_channels}-class head, but task {task!r} has {len(label_names)} labels "
            f"{label_names}. Use --task {'skeleton' if out_channels == 10 else 'lesion'} or give matching labels."
        )
    if len(channel_names) != in_channels:
        raise ReferenceImportError(
            f"{checkpoint} takes {in_channels} input channel(s), but {len(channel_names)} channel names "
            f"{channel_names} were given. Pass the channel names in the order the model was trained on."
        )
    model = build_backbone("swin_unetr", in_channels, out_channels, feature_size=feature_size)
    filled = _fill_missing_buffers(model, state)
    load_state_strict(model, state, source=str(checkpoint))
    return model.eval(), filled


def _fill_missing_buffers(model: torch.nn.Module, state: dict[str, torch.Tensor]) -> list[str]:
    """Add non-learned buffers the file lacks (e.g. ``relative_position_index``) from ``model``."""
    parameters = {name for name, _ in model.named_parameters()}
    filled = []
    for key, value in model.state_dict().items():
        if key not in state and key not in parameters:
            state[key] = value
            filled.append(key)
    return filled


def _forward_check(
    model: SegmentationBackbone, state: Mapping[str, torch.Tensor], source: Path
) -> float:
    """Max |ours - MONAI| on a seeded random input; raise if above :data:`CHECK_TOLERANCE`."""
    from monai.networks.nets import SwinUNETR

    monai_kwargs: dict[str, Any] = {"feature_size": model.kwargs["feature_size"]}
    reference = SwinUNETR(
        in_channels=model.in_channels, out_channels=model.out_channels, **monai_kwargs
    )
    reference.load_state_dict(
        {key.removeprefix("net."): value for key, value in state.items()}, strict=True
    )
    reference.eval()
    generator = torch.Generator().manual_seed(0)
    x = torch.rand((1, model.in_channels, *CHECK_SHAPE), generator=generator)
    with torch.no_grad():
        diff = float((model(x) - reference(x)).abs().max())
    if not diff <= CHECK_TOLERANCE:
        raise ReferenceImportError(
            f"Converted {source} gives outputs that differ from MONAI's SwinUNETR with the same weights by up to "
            f"{diff:.3g} (tolerance {CHECK_TOLERANCE}). The conversion is wrong for this file; please report it."
        )
    return diff


__all__ = ["CHECK_SHAPE", "ReferenceImport", "ReferenceImportError", "import_reference_checkpoint"]
