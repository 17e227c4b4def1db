"""The recipe a model carries with its weights: everything needed to use it correctly.

A :class:`ModelRecipe` is written into ``config.json`` by the zoo, stored in Lightning
checkpoints by the tasks, and read by inference to preprocess a scan exactly the way the
model was trained. Rebuilding a model needs this object and the weights, nothing else.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Literal

from sap.labels import CHANNELS, LESION_LABELS, SKELETON_LABELS

#: ``"ssl"``: a self-supervised encoder (``sap.tasks.SelfSupervisedPretraining``) whose head
#: is an untrained placeholder; it initialises other models and predicts nothing itself.
TaskName = Literal["skeleton", "lesion", "ssl"]


@dataclass
class ModelRecipe:
    """How a model was built and how its input must be prepared.

    Args:
        backbone: registered backbone name (see :func:`sap.backbones.list_backbones`).
        backbone_kwargs: keyword arguments given to the backbone builder, without
            ``in_channels`` / ``out_channels`` (those follow from ``channels`` and ``labels``).
        channels: input channel names, in the order they are stacked (e.g. ``["T1", "b1000"]``).
        labels: output class names; index ``i`` of the network output is ``labels[i]``.
        task: ``"skeleton"`` (anatomy, 10 classes), ``"lesion"`` (binary metastasis) or
            ``"ssl"`` (self-supervised encoder, see :data:`TaskName`).
        patch_size: training / sliding-window patch size in voxels, array axis order.
        spacing_mm: voxel spacing the model expects in mm (array axis order after
            canonical orientation), or ``None`` to use images at their native spacing.
        orientation: axis codes of the canonical orientation (TorchIO ``ToCanonical`` = RAS).
        normalisation: per-channel intensity normalisation applied after resampling.
    """

    backbone: str
    backbone_kwargs: dict[str, Any] = field(default_factory=dict)
    channels: list[str] = field(default_factory=lambda: list(CHANNELS))
    labels: list[str] = field(default_factory=lambda: list(SKELETON_LABELS))
    task: TaskName = "skeleton"
    patch_size: tuple[int, int, int] = (96, 96, 96)
    spacing_mm: tuple[float, float, float] | None = None
    orientation: str = "RAS"
    normalisation: dict[str, Any] = field(
        default_factory=lambda: {
            "kind": "percentile",
            "lower": 1.0,
            "upper": 99.0,
            "out": [0.0, 1.0],
        }
    )

    @property
    def in_channels(self) -> int:
        return len(self.channels)

    @property
    def num_classes(self) -> int:
        return len(self.labels)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable dict (tuples become lists)."""
        data = dataclasses.asdict(self)
        data["patch_size"] = list(self.patch_size)
        data["spacing_mm"] = None if self.spacing_mm is None else list(self.spacing_mm)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelRecipe:
        """Rebuild from :meth:`to_dict` output; unknown keys are an error, not ignored."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(
                f"Unknown model recipe fields {unknown}; expected some of {sorted(known)}"
            )
        missing = [name for name in ("backbone",) if name not in data]
        if missing:
            raise ValueError(f"Model recipe is missing required field(s) {missing}")
        values = dict(data)
        if "patch_size" in values:
            values["patch_size"] = tuple(int(v) for v in values["patch_size"])
        if values.get("spacing_mm") is not None:
            values["spacing_mm"] = tuple(float(v) for v in values["spacing_mm"])
        if values.get("task", "skeleton") not in ("skeleton", "lesion", "ssl"):
            raise ValueError(
                f"Model recipe task must be 'skeleton', 'lesion' or 'ssl', got {values['task']!r}"
            )
        return cls(**values)

    @classmethod
    def default_labels(cls, task: TaskName) -> list[str]:
        return list(SKELETON_LABELS if task == "skeleton" else LESION_LABELS)
