"""Whole-body prediction of one case: files in, label maps on the input T1 grid out.

:class:`Predictor` wraps a model that carries its :class:`~sap.recipe.ModelRecipe` and does,
for one case:

1. read the channels the recipe names (:mod:`sap.inference.inputs`) and preprocess them as
   in training (:mod:`sap.inference.preparation`), after checking the memory it will need;
2. sliding-window prediction in bounded memory (:mod:`sap.inference.sliding`), optionally
   with flip test-time augmentation that never mirrors left and right (:mod:`sap.inference.tta`);
3. back onto the input T1 grid, exactly its shape and affine (:mod:`sap.inference.space`);
4. postprocessing: lesion components below ``min_volume_ml`` dropped, or the skeleton
   majority vote (:mod:`sap.inference.postprocess`).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

from sap.inference.inputs import CaseInput, open_case
from sap.inference.memory import (
    InsufficientMemoryError,
    MemoryEstimate,
    available_memory_bytes,
    check_memory,
)
from sap.inference.postprocess import remove_small_components, skeleton_majority_vote
from sap.inference.prediction import Prediction, PreparedInput
from sap.inference.preparation import (
    estimate_case_memory,
    normalisation_percentiles,
    prepare_case,
    preprocessing_key,
)
from sap.inference.sliding import (
    BLENDING_MODES,
    PredictFn,
    SlidingWindowResult,
    sliding_window_predict,
    softmax_predict_fn,
    window_starts,
)
from sap.inference.space import resample_to_grid
from sap.inference.spill import release_pages, slabs
from sap.inference.tta import flip_tta, tta_flip_axes
from sap.labels import TASK_LABEL_FILES
from sap.recipe import ModelRecipe
from sap.volume import spacing_from_affine


def _model_recipe(model: torch.nn.Module, recipe: ModelRecipe | None) -> ModelRecipe:
    """The recipe to predict with, checked against the network it describes."""
    recipe = recipe if recipe is not None else getattr(model, "recipe", None)
    if not isinstance(recipe, ModelRecipe):
        raise ValueError(
            "The model carries no ModelRecipe: load it with sap.zoo.load_pretrained or "
            "sap.inference.load_model, or pass recipe=ModelRecipe(...)."
        )
    if recipe.task not in TASK_LABEL_FILES:
        raise ValueError(
            f"Recipe task {recipe.task!r} is not one of {sorted(TASK_LABEL_FILES)}; "
            "inference does not know how to postprocess and name its output."
        )
    in_channels = getattr(model, "in_channels", recipe.in_channels)
    out_channels = getattr(model, "out_channels", recipe.num_classes)
    if in_channels != recipe.in_channels or out_channels != recipe.num_classes:
        raise ValueError(
            f"The model takes {in_channels} channel(s) and gives {out_channels} class(es) but "
            f"its recipe says channels {recipe.channels} and labels {recipe.labels}."
        )
    multiple = int(getattr(model, "spatial_multiple", 1))
    if any(int(p) % multiple for p in recipe.patch_size):
        raise ValueError(
            f"Recipe patch size {tuple(recipe.patch_size)} is not a multiple of {multiple}, "
            "which this network needs."
        )
    if recipe.num_classes > 255:
        raise ValueError("Inference stores labels as uint8: at most 255 classes.")
    normalisation_percentiles(recipe)  # unsupported normalisations fail here, early
    return recipe


def _check_settings(
    overlap: float,
    blending: str,
    batch_size: int,
    min_volume_ml: float,
    threshold: float | None,
    input_dtype: torch.dtype,
) -> None:
    if not 0.0 <= overlap < 1.0:
        raise ValueError(f"overlap must be in [0, 1), got {overlap}.")
    if blending not in BLENDING_MODES:
        raise ValueError(f"blending must be one of {list(BLENDING_MODES)}, got {blending!r}.")
    if int(batch_size) < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}.")
    if min_volume_ml < 0:
        raise ValueError(f"min_volume_ml must be >= 0, got {min_volume_ml}.")
    if threshold is not None and not 0.0 < threshold < 1.0:
        raise ValueError(f"threshold must be between 0 and 1, got {threshold}.")
    if input_dtype not in (torch.float16, torch.bfloat16, torch.float32):
        raise ValueError(f"input_dtype must be float16, bfloat16 or float32, got {input_dtype}.")


def _kept_classes(recipe: ModelRecipe, names: Sequence[str] | None) -> list[int]:
    """Class indices whose probability maps are kept; a lesion model always keeps class 1."""
    binary = recipe.num_classes == 2
    if names is None:
        names = list(recipe.labels[1:]) if binary else []
    unknown = [name for name in names if name not in recipe.labels]
    if unknown:
        raise ValueError(
            f"keep_probabilities {unknown} are not labels of the model {recipe.labels}."
        )
    kept = [recipe.labels.index(name) for name in names]
    if binary and 1 not in kept:
        kept.append(1)  # lesion masks come from this map
    return kept


class Predictor:
    """Predict one model on whole-body scans, from files to maps on the input T1 grid.

    Args:
        model: a network (``[B, C, *patch] -> logits [B, K, *patch]``) with a ``recipe``
            attribute (as :func:`sap.zoo.load_pretrained` and :func:`load_model` return),
            or give ``recipe`` explicitly.
        device: ``"cpu"``, ``"cuda"`` or ``"cuda:1"``; the model is moved there.
        overlap: fraction of a window shared with its neighbours (paper: 0.5).
        blending: ``"gaussian"`` (paper), ``"hann"`` or ``"constant"``.
        batch_size: windows per forward pass. On CUDA, an out-of-memory error halves it
            and retries.
        tta: flip test-time augmentation along the anterior-posterior and head-feet axes
            (never left-right; see :mod:`sap.inference.tta`); 4x the compute.
        amp: mixed precision; ``None`` means on for CUDA, off for CPU.
        min_volume_ml: lesion components smaller than this are removed (lesion models).
        threshold: lesion probability at or above which a voxel is lesion (lesion models;
            paper: tuned on a held-out fold). Default 0.5, the arg-max of two classes.
        majority_vote: skeleton models: each connected bone piece takes its most
            frequent label (paper).
        keep_probabilities: class names whose probability maps to keep; default: the
            lesion class for two-class models, none for the skeleton (10 maps are big).
        recipe: overrides ``model.recipe``.
        memory_limit_bytes: refuse cases whose estimated peak RAM exceeds this;
            ``"auto"`` uses the memory available now, ``None`` skips the check.
        dicom_series: for DICOM input, channel -> SeriesDescription / UID / folder.
        input_dtype: how the preprocessed scan is held during the sliding window. Default:
            ``torch.float16`` when the recipe normalises intensities to [0, 1] (rounding
            error below 2.5e-4, far under MRI noise and the ±0.1 intensity augmentation of
            training; halves the largest array of the run, 1 GB for a whole-body scan),
            else ``torch.float32``. Windows are always cast to float32 for the model.
        progress: show a progress bar over the windows of each case (in a terminal, or as a
            Jupyter widget with ipywidgets; hidden where output is not a terminal).
        spill: keep the whole-volume arrays (network input, probabilities) in temporary
            files, RAM holding the slabs in use (:mod:`sap.inference.spill`); ``None``:
            for inputs of at least ``SPILL_MIN_BYTES`` (whole-body scans), in ``TMPDIR``.
    """

    def __init__(
        self,
        model: torch.nn.Module,
        *,
        device: str | torch.device = "cpu",
        overlap: float = 0.5,
        blending: str = "gaussian",
        batch_size: int = 2,
        tta: bool = False,
        amp: bool | None = None,
        min_volume_ml: float = 0.1,
        threshold: float | None = None,
        majority_vote: bool = True,
        keep_probabilities: Sequence[str] | None = None,
        recipe: ModelRecipe | None = None,
        memory_limit_bytes: int | str | None = "auto",
        dicom_series: Mapping[str, str] | None = None,
        input_dtype: torch.dtype | None = None,
        progress: bool = False,
        spill: bool | None = None,
    ) -> None:
        self.recipe = _model_recipe(model, recipe)
        if input_dtype is None:
            normalised = normalisation_percentiles(self.recipe) is not None
            input_dtype = torch.float16 if normalised else torch.float32
        _check_settings(overlap, blending, batch_size, min_volume_ml, threshold, input_dtype)
        self.input_dtype = input_dtype
        self.device = torch.device(device)
        self.model = model.to(self.device).eval()
        self.overlap = float(overlap)
        self.blending = blending
        self.batch_size = int(batch_size)
        self.tta = bool(tta)
        self.amp = (self.device.type == "cuda") if amp is None else bool(amp)
        self.min_volume_ml = float(min_volume_ml)
        self.threshold = 0.5 if threshold is None else float(threshold)
        self.majority_vote = bool(majority_vote)
        self.binary = self.recipe.num_classes == 2
        self.keep_probabilities = _kept_classes(self.recipe, keep_probabilities)
        self.memory_limit_bytes = memory_limit_bytes
        self.dicom_series = dict(dicom_series or {})
        self.progress = progress
        self.spill = spill

    # ------------------------------------------------------------------ reading, memory
    def estimate_memory(self, case_or_paths: CaseInput) -> MemoryEstimate:
        """Estimated RAM per stage for ``case_or_paths``, from image headers."""
        return self._estimate(open_case(case_or_paths, self.recipe.channels, self.dicom_series))

    def _estimate(self, case) -> MemoryEstimate:
        return estimate_case_memory(
            case,
            self.recipe,
            kept_probabilities=len(self.keep_probabilities),
            batch_size=self.batch_size,
            tta_passes=4 if self.tta else 1,
            accumulator_on_host=self.device.type == "cpu",
            input_dtype=self.input_dtype,
            spill=self.spill,
        )

    def _memory_limit(self) -> int | None:
        if self.memory_limit_bytes == "auto":
            return available_memory_bytes()
        return None if self.memory_limit_bytes is None else int(self.memory_limit_bytes)

    def prepare(self, case_or_paths: CaseInput | PreparedInput) -> PreparedInput:
        """Read and preprocess one case for this model's recipe (checked, on the model grid)."""
        if isinstance(case_or_paths, PreparedInput):
            return case_or_paths
        case = open_case(case_or_paths, self.recipe.channels, self.dicom_series)
        check_memory(self._estimate(case), self._memory_limit(), f"case '{case.case_id}'")
        return prepare_case(case, self.recipe, self.input_dtype, spill=self.spill)

    # ------------------------------------------------------------------ prediction
    def _predict_fn(self) -> PredictFn:
        predict = softmax_predict_fn(self.model, amp=self.amp)
        if self.tta:
            return flip_tta(predict, tta_flip_axes(self.recipe.orientation))
        return predict

    def _progress_bar(self, prepared: PreparedInput):
        if not self.progress:
            return None
        from sap.progress import progress_bar

        shape = prepared.image.shape[1:]
        total = math.prod(
            len(window_starts(n, p, self.overlap)) for n, p in zip(shape, self.recipe.patch_size)
        )
        # disable=None: a bar in a terminal, a widget in Jupyter (with ipywidgets: the
        # `notebook` extra; sap.progress), nothing where each refresh would become a line of its own (logs,
        # notebooks without widgets); leave=False: it disappears when the case is done.
        return progress_bar(
            total=total,
            desc=f"{prepared.case_id} {self.recipe.task}",
            unit="window",
            leave=False,
            disable=None,
        )

    def _sliding(self, prepared: PreparedInput) -> SlidingWindowResult:
        """The sliding window; on CUDA out-of-memory, retry with half the batch size."""
        bar = self._progress_bar(prepared)
        batch_size = self.batch_size
        storage = prepared.storage
        try:
            while True:
                try:
                    with torch.inference_mode():
                        return sliding_window_predict(
                            prepared.image,
                            self._predict_fn(),
                            self.recipe.patch_size,
                            self.recipe.num_classes,
                            overlap=self.overlap,
                            blending=self.blending,
                            batch_size=batch_size,
                            device=self.device,
                            keep_probabilities=self.keep_probabilities,
                            return_labels=not self.binary,
                            progress=None if bar is None else bar.update,
                            slab_axis=prepared.row_axis,
                            spill_outputs=storage is not None,
                            after_row=None if storage is None else lambda: release_pages(storage),
                        )
                except torch.cuda.OutOfMemoryError as error:
                    torch.cuda.empty_cache()
                    if batch_size == 1:
                        raise InsufficientMemoryError(
                            f"Case '{prepared.case_id}': the GPU ran out of memory even with one "
                            f"window of {tuple(self.recipe.patch_size)} voxels per batch. Use a GPU "
                            "with more memory, turn AMP on, or run on the CPU (--device cpu)."
                        ) from error
                    batch_size = max(1, batch_size // 2)
                    warnings.warn(
                        f"GPU out of memory; retrying with batch_size={batch_size}.", stacklevel=2
                    )
                    if bar is not None:
                        bar.reset()
        finally:
            if bar is not None:
                bar.close()

    def predict(self, case_or_paths: CaseInput | PreparedInput) -> Prediction:
        """Predict one case and return maps on its input T1 grid.

        Args:
            case_or_paths: a :class:`sap.data.cases.Case`, ``{channel: path}``, a case
                folder, a folder of DICOM series (one per channel), or a
                :class:`PreparedInput` from :meth:`prepare` (e.g. shared by a lesion and a
                skeleton model with the same preprocessing).

        Returns:
            A :class:`~sap.inference.prediction.Prediction`.

        Raises:
            InputError: missing / extra channels, unreadable, 4D or non-finite images.
            sap.inference.dicom.DicomSeriesError: DICOM series missing, ambiguous or mismatched.
            InsufficientMemoryError: the estimated memory exceeds what is available.
        """
        prepared = self.prepare(case_or_paths)
        if prepared.preprocessing_key != preprocessing_key(self.recipe):
            raise ValueError(
                f"Case '{prepared.case_id}' was prepared for another preprocessing "
                f"({prepared.preprocessing_key}); this model needs {preprocessing_key(self.recipe)}. "
                "Call this predictor's prepare() or pass the case itself."
            )
        result = self._sliding(prepared)
        to_input = {
            "source_affine": prepared.model_affine,
            "target_shape": prepared.reference_shape,
            "target_affine": prepared.reference_affine,
        }
        label_names = tuple(self.recipe.labels)
        probabilities = {
            label_names[k]: resample_to_grid(result.probabilities[i], order=1, **to_input)
            for i, k in enumerate(result.kept_classes)
        }
        result.probabilities = np.empty((0,), np.float16)  # free the model-grid copy
        if self.binary:
            labels, info = self._lesion_mask(probabilities[label_names[1]], prepared)
        else:
            labels, info = self._skeleton_labels(
                resample_to_grid(result.labels, order=0, **to_input)
            )
        return Prediction(
            case_id=prepared.case_id,
            task=self.recipe.task,
            label_names=label_names,
            labels=labels.astype(np.uint8, copy=False),
            probabilities=probabilities,
            affine=np.asarray(prepared.reference_affine, np.float64),
            info={**self._settings(result.num_windows), **info},
        )

    def _settings(self, num_windows: int) -> dict[str, Any]:
        return {
            "windows": num_windows,
            "overlap": self.overlap,
            "blending": self.blending,
            "tta": self.tta,
            "tta_flip_axes": list(tta_flip_axes(self.recipe.orientation)) if self.tta else [],
            "patch_size": list(self.recipe.patch_size),
        }

    def _lesion_mask(
        self, probability: np.ndarray, prepared: PreparedInput
    ) -> tuple[np.ndarray, dict[str, Any]]:
        """Threshold, then drop components below ``min_volume_ml``."""
        spacing = spacing_from_affine(prepared.reference_affine)
        mask = np.empty(probability.shape, dtype=bool)
        for part in slabs(probability.shape):  # no whole-volume float32 comparison
            np.greater_equal(probability[part], np.float16(self.threshold), out=mask[part])
        release_pages(probability)
        labels, _, count = remove_small_components(mask, spacing, self.min_volume_ml, out=mask)
        return labels, {
            "threshold": self.threshold,
            "min_volume_ml": self.min_volume_ml,
            "components": count,
        }

    def _skeleton_labels(self, labels: np.ndarray) -> tuple[np.ndarray, dict[str, Any]]:
        """The majority vote per bone piece, when asked for."""
        if self.majority_vote:
            labels = skeleton_majority_vote(labels, self.recipe.num_classes)
        return labels, {"majority_vote": self.majority_vote}


__all__ = ["Predictor"]
