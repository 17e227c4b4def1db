"""Whole-body prediction of one case: files in, label maps on the input T1 grid out.

:class:`Predictor` wraps a model that carries its :class:`~sap.recipe.ModelRecipe` and does,
for one case:

1. read the channels the recipe names (NIfTI files, a case folder, or DICOM series folders),
   checking names, dimensionality (3D) and finite values;
2. preprocess exactly as in training, from the recipe: canonical orientation, DWI onto the
   T1 grid, optional target spacing, per-channel percentile normalisation
   (:func:`sap.data.preprocess.preprocessing`);
3. sliding-window prediction in bounded memory (:mod:`sap.inference.sliding`), optionally
   with flip test-time augmentation that never mirrors left and right (:mod:`sap.inference.tta`);
4. back onto the input T1 grid, exactly its shape and affine (:mod:`sap.inference.space`);
5. postprocessing: lesion components below ``min_volume_ml`` dropped, or the skeleton
   majority vote (:mod:`sap.inference.postprocess`).

>>> from sap.inference import Predictor                      # doctest: +SKIP
>>> prediction = Predictor(model, device="cuda").predict("cases/patient_01")  # doctest: +SKIP
>>> prediction.save("predictions/patient_01")                 # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import json
import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from sap.inference.memory import (
    InsufficientMemoryError,
    MemoryEstimate,
    available_memory_bytes,
    check_memory,
    estimate_memory,
)
from sap.inference.postprocess import remove_small_components, skeleton_majority_vote
from sap.inference.report import voxel_volume_ml
from sap.inference.sliding import BLENDING_MODES, sliding_window_predict, window_starts
from sap.inference.space import resample_to_grid
from sap.inference.tta import flip_tta, tta_flip_axes
from sap.recipe import ModelRecipe

CaseInput = Any
"""A :class:`sap.data.cases.Case`, ``{channel: path}``, a case folder, a DICOM folder, or a
:class:`PreparedInput`."""


class InputError(ValueError):
    """An input scan cannot be used as it is; the message names the file and the fix."""


@dataclass
class PreparedInput:
    """A case read and preprocessed for a recipe, reusable by models with the same recipe.

    Attributes:
        case_id: name of the case.
        image: ``[C, X, Y, Z]`` network input on the model grid (float16 by default; see
            ``input_dtype`` of :class:`Predictor`).
        model_affine: voxel-to-scanner matrix of the model grid.
        reference_shape, reference_affine: the input T1 grid every output goes back to.
        preprocessing_key: what the preprocessing depended on (channels, spacing,
            orientation, normalisation); a model with another key needs its own preparation.
        channels: channel names in ``image`` order.
    """

    case_id: str
    image: torch.Tensor
    model_affine: np.ndarray
    reference_shape: tuple[int, int, int]
    reference_affine: np.ndarray
    preprocessing_key: str
    channels: tuple[str, ...]

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
        return voxel_volume_ml(self.affine)

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
        """
        from sap.inference.writer import check_outputs_free, prediction_paths, write_prediction

        paths = prediction_paths(folder, self.task, self.probabilities, save_probabilities)
        check_outputs_free(list(paths.values()), overwrite)
        return write_prediction(self, paths)


def _percentiles(recipe: ModelRecipe) -> tuple[float, float] | None:
    normalisation = dict(recipe.normalisation or {})
    kind = normalisation.get("kind", "percentile")
    if kind == "none":
        return None
    if kind != "percentile":
        raise ValueError(
            f"Model recipe normalisation kind {kind!r} is not supported by inference; "
            "expected 'percentile' or 'none'."
        )
    out = [float(v) for v in normalisation.get("out", (0.0, 1.0))]
    if out != [0.0, 1.0]:
        raise ValueError(f"Model recipe normalisation maps to {out}; inference supports [0, 1].")
    return float(normalisation.get("lower", 1.0)), float(normalisation.get("upper", 99.0))


def preprocessing_key(recipe: ModelRecipe) -> str:
    """What preprocessing depends on; equal keys mean one preparation serves both models."""
    return json.dumps(
        {
            "channels": list(recipe.channels),
            "spacing_mm": None if recipe.spacing_mm is None else list(recipe.spacing_mm),
            "orientation": recipe.orientation,
            "normalisation": recipe.normalisation,
        },
        sort_keys=True,
    )


def _load_nifti_channel(path: Path, channel: str, case_id: str) -> tuple[np.ndarray, np.ndarray]:
    import nibabel as nib

    try:
        image = nib.load(str(path))
    except Exception as error:  # nibabel raises many types for broken files
        raise InputError(
            f"Case '{case_id}', channel '{channel}': cannot read {path} ({error}). "
            "Check that it is a complete NIfTI file."
        ) from error
    shape = image.shape
    if len(shape) == 4 and shape[3] == 1:
        shape = shape[:3]
    if len(shape) != 3:
        raise InputError(
            f"Case '{case_id}', channel '{channel}': {path} has shape {image.shape}, expected "
            "one 3D volume. Extract the single volume this channel stands for (e.g. the "
            "b=1000 image of a multi-b-value DWI) and save it as a 3D NIfTI."
        )
    data = np.asarray(image.dataobj, dtype=np.float32).reshape(shape)
    return data, np.asarray(image.affine, np.float64)


def _check_finite(data: np.ndarray, channel: str, case_id: str, where: str) -> None:
    bad = int(data.size - np.count_nonzero(np.isfinite(data)))
    if bad:
        raise InputError(
            f"Case '{case_id}', channel '{channel}': {where} has {bad} NaN or infinite "
            "voxel(s). Replace them (e.g. with 0) before prediction; the model cannot "
            "interpret them."
        )


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
        progress: show a progress bar over windows.
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
    ) -> None:
        recipe = recipe if recipe is not None else getattr(model, "recipe", None)
        if not isinstance(recipe, ModelRecipe):
            raise ValueError(
                "The model carries no ModelRecipe: load it with sap.zoo.load_pretrained or "
                "sap.inference.load_model, or pass recipe=ModelRecipe(...)."
            )
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
        percentiles = _percentiles(recipe)  # unsupported normalisations fail here, early
        if input_dtype is None:
            input_dtype = torch.float16 if percentiles is not None else torch.float32
        if input_dtype not in (torch.float16, torch.bfloat16, torch.float32):
            raise ValueError(
                f"input_dtype must be float16, bfloat16 or float32, got {input_dtype}."
            )
        self.input_dtype = input_dtype
        self.recipe = recipe
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
        self.binary = recipe.num_classes == 2
        if keep_probabilities is None:
            keep_probabilities = list(recipe.labels[1:]) if self.binary else []
        unknown = [name for name in keep_probabilities if name not in recipe.labels]
        if unknown:
            raise ValueError(
                f"keep_probabilities {unknown} are not labels of the model {recipe.labels}."
            )
        self.keep_probabilities = [recipe.labels.index(name) for name in keep_probabilities]
        if self.binary and 1 not in self.keep_probabilities:
            self.keep_probabilities.append(1)  # lesion masks come from this map
        self.memory_limit_bytes = memory_limit_bytes
        self.dicom_series = dict(dicom_series or {})
        self.progress = progress

    # ------------------------------------------------------------------ reading
    def _read_channels(
        self, source: CaseInput
    ) -> tuple[str, dict[str, tuple[np.ndarray, np.ndarray]] | dict[str, Path], bool]:
        """``(case_id, channel -> path or (array, affine), is_loaded)`` for the recipe's channels."""
        from sap.data.cases import Case

        channels = list(self.recipe.channels)
        if isinstance(source, Case):
            return source.case_id, self._check_names(dict(source.images), source.case_id), False
        if isinstance(source, Mapping):
            paths = {str(k): Path(v) for k, v in source.items()}
            first = paths.get(channels[0], next(iter(paths.values()), Path("case")))
            case_id = first.resolve().parent.name or "case"
            return case_id, self._check_names(paths, case_id), False
        path = Path(source)
        if not path.exists():
            raise InputError(f"Input {path} does not exist.")
        if path.is_file():
            raise InputError(
                f"Input {path} is a file; Predictor.predict takes one case: a case folder, a "
                "DICOM folder, a Case or {channel: path}. Use sap.data.cases.discover_cases "
                "for a CSV manifest or a folder of cases."
            )
        from sap.data.cases import CaseLayout, discover_cases

        layout = CaseLayout(channels=tuple(channels))
        if all((path / layout.channel_file(c)).is_file() for c in channels):
            (case,) = discover_cases(path, layout)
            return case.case_id, self._check_names(dict(case.images), case.case_id), False
        from sap.inference.dicom import contains_dicom, load_dicom_case

        if contains_dicom(path):
            return path.name, load_dicom_case(path, channels, self.dicom_series), True
        expected = [layout.channel_file(c) for c in channels]
        found = sorted(p.name for p in path.iterdir())[:10]
        raise InputError(
            f"Input folder {path} holds neither the NIfTI files {expected} nor DICOM series "
            f"(found {found}). The model needs channels {channels}."
        )

    def _check_names(self, images: dict[str, Path], case_id: str) -> dict[str, Path]:
        channels = list(self.recipe.channels)
        missing = [c for c in channels if c not in images]
        extra = [c for c in images if c not in channels]
        if missing or extra:
            raise InputError(
                f"Case '{case_id}' has channels {list(images)} but the model takes {channels} "
                f"(missing {missing}, unexpected {extra}). Name the input images after the "
                "model's channels, in any order."
            )
        return {c: Path(images[c]) for c in channels}

    def _channel_shapes(self, sources: Mapping[str, Any]) -> dict[str, tuple[int, ...]]:
        import nibabel as nib

        shapes = {}
        for channel, value in sources.items():
            if isinstance(value, tuple):
                shapes[channel] = tuple(value[0].shape)
            else:
                try:
                    shapes[channel] = tuple(nib.load(str(value)).shape[:3])
                except Exception:  # unreadable: reported with context when loaded
                    shapes[channel] = (0, 0, 0)
        return shapes

    # ------------------------------------------------------------------ memory
    def estimate_memory(self, case_or_paths: CaseInput) -> MemoryEstimate:
        """Estimated RAM per stage for ``case_or_paths``, from image headers."""
        _, sources, _ = self._read_channels(case_or_paths)
        return self._estimate(sources)

    def _estimate(self, sources: Mapping[str, Any]) -> MemoryEstimate:
        import nibabel as nib

        shapes = self._channel_shapes(sources)
        reference = list(sources.values())[0]
        reference_shape = shapes[self.recipe.channels[0]]
        if isinstance(reference, tuple):
            affine = reference[1]
        else:
            try:
                affine = nib.load(str(reference)).affine
            except Exception:
                affine = np.eye(4)
        spacing = np.linalg.norm(np.asarray(affine)[:3, :3], axis=0)
        model_shape = list(reference_shape)
        if self.recipe.spacing_mm is not None:
            order = np.argsort(nib.orientations.io_orientation(affine)[:, 0])
            extent = (np.array(reference_shape) * spacing)[order]
            model_shape = [max(1, math.ceil(e / t)) for e, t in zip(extent, self.recipe.spacing_mm)]
        return estimate_memory(
            reference_shape,
            [math.prod(s) for s in shapes.values()],
            model_shape,
            self.recipe.num_classes,
            self.recipe.patch_size,
            kept_probabilities=len(self.keep_probabilities),
            batch_size=self.batch_size,
            tta_passes=4 if self.tta else 1,
            accumulator_on_host=self.device.type == "cpu",
            input_bytes_per_voxel=torch.finfo(self.input_dtype).bits // 8,
        )

    def _memory_limit(self) -> int | None:
        if self.memory_limit_bytes == "auto":
            return available_memory_bytes()
        return None if self.memory_limit_bytes is None else int(self.memory_limit_bytes)

    # ------------------------------------------------------------------ preprocessing
    def prepare(self, case_or_paths: CaseInput) -> PreparedInput:
        """Read and preprocess one case for this model's recipe (checked, on the model grid)."""
        import torchio as tio

        from sap.data.preprocess import preprocessing

        if isinstance(case_or_paths, PreparedInput):
            return case_or_paths
        case_id, sources, loaded = self._read_channels(case_or_paths)
        check_memory(self._estimate(sources), self._memory_limit(), f"case '{case_id}'")
        images = {}
        reference: tuple[tuple[int, int, int], np.ndarray] | None = None
        for channel in self.recipe.channels:
            value = sources[channel]
            if loaded:
                data, affine = value
                where = f"DICOM series of channel '{channel}'"
            else:
                data, affine = _load_nifti_channel(value, channel, case_id)
                where = str(value)
            _check_finite(data, channel, case_id, where)
            if reference is None:
                reference = (tuple(int(n) for n in data.shape), affine)
            images[channel] = tio.ScalarImage(tensor=torch.from_numpy(data)[None], affine=affine)
        del sources, data, value  # the subject holds the only reference: freed once transformed
        subject = tio.Subject(images)
        del images
        transform = preprocessing(
            channels=tuple(self.recipe.channels),
            spacing_mm=self.recipe.spacing_mm,
            percentiles=_percentiles(self.recipe),
        )
        if self.recipe.orientation.upper() != "RAS":
            transform = tio.Compose([transform, tio.ToOrientation(self.recipe.orientation.upper())])
        subject = transform(subject)
        first = subject[self.recipe.channels[0]]
        model_affine = np.asarray(first.affine, np.float64)
        stacked = torch.empty(
            (len(self.recipe.channels), *first.spatial_shape), dtype=self.input_dtype
        )
        for index, channel in enumerate(self.recipe.channels):
            stacked[index] = subject[channel].data[0]
            subject.remove_image(channel)  # free each channel once copied
        for index, channel in enumerate(self.recipe.channels):
            if not torch.isfinite(stacked[index]).all():
                raise InputError(
                    f"Case '{case_id}', channel '{channel}': preprocessing produced NaN or "
                    "infinite values (is the image constant?). Check the input image."
                )
        assert reference is not None
        return PreparedInput(
            case_id=case_id,
            image=stacked,
            model_affine=model_affine,
            reference_shape=reference[0],
            reference_affine=reference[1],
            preprocessing_key=preprocessing_key(self.recipe),
            channels=tuple(self.recipe.channels),
        )

    # ------------------------------------------------------------------ prediction
    def _predict_fn(self):
        model, device, amp = self.model, self.device, self.amp
        dtype = torch.float16 if device.type == "cuda" else torch.bfloat16

        def predict(batch: torch.Tensor) -> torch.Tensor:
            context = torch.autocast(device.type, dtype=dtype) if amp else contextlib.nullcontext()
            with context:
                logits = model(batch)
            return torch.softmax(logits.float(), dim=1)

        if self.tta:
            return flip_tta(predict, tta_flip_axes(self.recipe.orientation))
        return predict

    def _sliding(self, prepared: PreparedInput):
        image = prepared.image
        shape = image.shape[1:]
        total = math.prod(
            len(window_starts(n, p, self.overlap)) for n, p in zip(shape, self.recipe.patch_size)
        )
        bar = None
        if self.progress:
            from tqdm.auto import tqdm

            bar = tqdm(
                total=total,
                desc=f"{prepared.case_id} {self.recipe.task}",
                unit="window",
                leave=False,
            )
        batch_size = self.batch_size
        try:
            while True:
                try:
                    with torch.inference_mode():
                        return sliding_window_predict(
                            image,
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

    def predict(self, case_or_paths: CaseInput) -> Prediction:
        """Predict one case and return maps on its input T1 grid.

        Args:
            case_or_paths: a :class:`sap.data.cases.Case`, ``{channel: path}``, a case
                folder, a folder of DICOM series (one per channel), or a
                :class:`PreparedInput` from :meth:`prepare` (e.g. shared by a lesion and a
                skeleton model with the same preprocessing).

        Returns:
            A :class:`Prediction`.

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
        labels_names = tuple(self.recipe.labels)
        probabilities = {
            labels_names[k]: resample_to_grid(result.probabilities[i], order=1, **to_input)
            for i, k in enumerate(result.kept_classes)
        }
        result.probabilities = np.empty((0,), np.float16)  # free the model-grid copy
        unit_ml = voxel_volume_ml(prepared.reference_affine)
        info: dict[str, Any] = {
            "windows": result.num_windows,
            "overlap": self.overlap,
            "blending": self.blending,
            "tta": self.tta,
            "tta_flip_axes": list(tta_flip_axes(self.recipe.orientation)) if self.tta else [],
            "patch_size": list(self.recipe.patch_size),
        }
        if self.binary:
            mask = probabilities[labels_names[1]] >= self.threshold
            labels, _, count = remove_small_components(mask, unit_ml, self.min_volume_ml)
            info.update(
                threshold=self.threshold, min_volume_ml=self.min_volume_ml, components=count
            )
        else:
            labels = resample_to_grid(result.labels, order=0, **to_input)
            if self.majority_vote:
                labels = skeleton_majority_vote(labels, self.recipe.num_classes)
            info.update(majority_vote=self.majority_vote)
        return Prediction(
            case_id=prepared.case_id,
            task=self.recipe.task,
            label_names=labels_names,
            labels=labels.astype(np.uint8, copy=False),
            probabilities=probabilities,
            affine=np.asarray(prepared.reference_affine, np.float64),
            info=info,
        )


__all__ = ["InputError", "Prediction", "PreparedInput", "Predictor", "preprocessing_key"]
