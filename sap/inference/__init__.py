"""Whole-body inference: from scans (NIfTI or DICOM) to lesion maps and a lesion report.

>>> import tempfile
>>> from pathlib import Path
>>> import nibabel as nib, numpy as np
>>> from sap.inference import Predictor, load_model
>>> case = Path(tempfile.mkdtemp()) / "patient_01"
>>> case.mkdir()
>>> for channel in ("T1", "b1000"):
...     volume = np.random.default_rng(0).random((32, 32, 40), dtype=np.float32)
...     nib.save(nib.Nifti1Image(volume, np.diag([2.0, 2.0, 2.5, 1.0])), case / f"{channel}.nii.gz")
>>> predictor = Predictor(load_model("sap-lesion-phantom", task="lesion"), device="cpu")
>>> prediction = predictor.predict(case)
>>> prediction.labels.shape == nib.load(case / "T1.nii.gz").shape
True
>>> [path.name for path in prediction.save(case / "predicted", save_probabilities=True)]
['lesion.nii.gz', 'lesion_probability.nii.gz']
>>> import shutil; shutil.rmtree(case.parent)

Modules, in the order a case goes through them: :mod:`~sap.inference.inputs` (cases and
their channel images; :mod:`~sap.inference.dicom` for DICOM series),
:mod:`~sap.inference.preparation` (preprocessing from the recipe, memory estimate via
:mod:`~sap.inference.memory`), :mod:`~sap.inference.predictor` (the :class:`Predictor`),
:mod:`~sap.inference.sliding` (the bounded-memory sliding window, also used by validation),
:mod:`~sap.inference.tta` (flips that keep left and right), :mod:`~sap.inference.space` (back
to the input grid), :mod:`~sap.inference.postprocess`, :mod:`~sap.inference.prediction` (the
result), :mod:`~sap.inference.writer`, :mod:`~sap.inference.report` (the lesion table),
:mod:`~sap.inference.loading` (models by name or path) and :mod:`~sap.inference.pipeline`
(what ``sap predict`` runs).
"""

from __future__ import annotations

from sap.inference.dicom import DicomSeriesError, load_dicom_case
from sap.inference.inputs import CaseChannels, CaseSource, InputError, open_case, resolve_inputs
from sap.inference.loading import load_model
from sap.inference.memory import InsufficientMemoryError, MemoryEstimate
from sap.inference.pipeline import PipelineResult, predict_cases, predict_from_files
from sap.inference.postprocess import remove_small_components, skeleton_majority_vote
from sap.inference.prediction import Prediction, PreparedInput
from sap.inference.predictor import Predictor
from sap.inference.preparation import prepare_case, preprocessing_key
from sap.inference.report import LesionFinding, LesionReport, build_lesion_report
from sap.inference.sliding import SlidingWindowResult, sliding_window_predict, softmax_predict_fn
from sap.inference.tta import flip_tta, tta_flip_axes
from sap.inference.writer import OutputExistsError

__all__ = [
    "CaseChannels",
    "CaseSource",
    "DicomSeriesError",
    "InputError",
    "InsufficientMemoryError",
    "LesionFinding",
    "LesionReport",
    "MemoryEstimate",
    "OutputExistsError",
    "PipelineResult",
    "Prediction",
    "PreparedInput",
    "Predictor",
    "SlidingWindowResult",
    "build_lesion_report",
    "flip_tta",
    "load_dicom_case",
    "load_model",
    "open_case",
    "predict_cases",
    "predict_from_files",
    "prepare_case",
    "preprocessing_key",
    "remove_small_components",
    "resolve_inputs",
    "skeleton_majority_vote",
    "sliding_window_predict",
    "softmax_predict_fn",
    "tta_flip_axes",
]
