"""What prediction hands around: a case prepared for a recipe, and a model's result on it."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from sap.inference.space import resample_to_grid
from sap.inference.writer import check_outputs_free, prediction_paths, write_maps
from sap.volume import spacing_from_affine, voxel_volume_ml


@dataclass
class PreparedInput:
    """A case read and preprocessed for a recipe, reusable by models with the same recipe.

    Attributes:
        case_id: name of the case.
        image: ``[C, X, Y, Z]`` network input on the model grid (float16 by default; see
            ``input_dtype`` of :class:`~sap.inference.predictor.Predictor`).
        model_affine: voxel-to-scanner matrix of the model grid.
        reference_shape, reference_affine: the input T1 grid every output goes back to.
        preprocessing_key: what the preprocessing depended on (channels, spacing,
            orientation, normalisation); a model with another key needs its own preparation.
        channels: channel names in ``image`` order.
        storage: the temporary-file array behind ``image`` when it is spilled
            (:mod:`sap.inference.spill`), else ``None``.
        row_axis: the spatial axis along which ``storage`` is contiguous in slabs (the
            sliding window's best row axis), or ``None``.
    """

    case_id: str
    image: torch.Tensor
    model_affine: np.ndarray
    reference_shape: tuple[int, int, int]
    reference_affine: np.ndarray
    preprocessing_key: str
    channels: tuple[str, ...]
    storage: np.ndarray | None = None
    row_axis: int | None = None

    def channel_on_input_grid(self, channel: str) -> np.ndarray:
        """A preprocessed channel (normalised to [0, 1]) resampled onto the input T1 grid."""
        if channel not in self.channels:
            raise KeyError(f"No channel '{channel}'; this input has {list(self.channels)}.")
        data = self.image[self.channels.index(channel)].to(torch.float16).numpy()
        return resample_to_grid(
            data, self.model_affine, self.reference_shape, self.reference_affine, order=1
        )


@dataclass
class Prediction:
    """The result of one model on one case, on the input T1 grid.

    Attributes:
        case_id: the case.
        task: ``"lesion"`` or ``"skeleton"`` (the model recipe's task).
        label_names: class names, index 0 background.
        labels: ``uint8`` postprocessed label map, exactly the input T1's shape.
        probabilities: class name -> ``float16`` probability map on the same grid
            (the lesion class for a lesion model; empty for the skeleton by default).
        affine: the input T1's voxel-to-scanner matrix (RAS+, mm).
        info: settings and counts worth keeping (threshold, windows, TTA, ...).
    """

    case_id: str
    task: str
    label_names: tuple[str, ...]
    labels: np.ndarray
    probabilities: dict[str, np.ndarray]
    affine: np.ndarray
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.labels.shape)

    @property
    def voxel_volume_ml(self) -> float:
        return voxel_volume_ml(spacing_from_affine(self.affine))

    def save(
        self,
        folder: str | Path,
        *,
        save_probabilities: bool = False,
        overwrite: bool = False,
    ) -> list[Path]:
        """Write the label map (and probabilities) into ``folder`` atomically.

        Files: ``<task>.nii.gz`` (``lesion.nii.gz`` / ``skeleton.nii.gz``, as the training
        layout) and, with ``save_probabilities``, ``<task>_probability[_<class>].nii.gz``.

        Raises:
            OutputExistsError: a file exists already and ``overwrite`` is false; nothing
                is written then.
        """
        paths = prediction_paths(folder, self.task, self.probabilities, save_probabilities)
        check_outputs_free(list(paths.values()), overwrite)
        return write_maps(paths, self.labels, self.affine, self.probabilities)


__all__ = ["Prediction", "PreparedInput"]
