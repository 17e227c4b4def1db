"""Turn TorchIO subjects (patches or whole volumes) into the batches the tasks expect."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torchio as tio

from sap.data.preprocess import stack_channels


class SubjectCollate:
    """Collate TorchIO subjects (patches or whole volumes) into the batches tasks expect.

    Returns ``{"image": float32 [B, C, X, Y, Z], "label": int64 [B, X, Y, Z],
    "case_id": list[str]}``, plus ``"affine": float64 [B, 4, 4]`` (voxel to RAS+ mm of the
    first channel) with ``with_affine``. A class, not a closure, so it pickles into
    data-loader workers.

    Args:
        channels: channel names, stacked in this order.
        label_name: the label map that becomes ``"label"``.
        with_affine: also return each subject's affine.
    """

    def __init__(self, channels: Sequence[str], label_name: str, with_affine: bool = False) -> None:
        self.channels = list(channels)
        self.label_name = label_name
        self.with_affine = with_affine

    def __call__(self, subjects: Sequence[tio.Subject]) -> dict:
        batch = {
            "image": torch.stack([stack_channels(s, self.channels) for s in subjects]),
            "label": torch.stack([s[self.label_name].data[0].long() for s in subjects]),
            "case_id": [str(s["case_id"]) for s in subjects],
        }
        if self.with_affine:
            affines = [np.asarray(s[self.channels[0]].affine, dtype=np.float64) for s in subjects]
            batch["affine"] = torch.from_numpy(np.stack(affines))
        return batch


__all__ = ["SubjectCollate"]
