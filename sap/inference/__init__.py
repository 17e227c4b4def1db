"""Whole-body inference: from scans (NIfTI or DICOM) to lesion maps and a lesion report.

>>> from sap.inference import Predictor, load_model           # doctest: +SKIP
>>> predictor = Predictor(load_model("lesion.ckpt"), device="cuda", tta=True)  # doctest: +SKIP
>>> prediction = predictor.predict("cases/patient_01")        # doctest: +SKIP
>>> prediction.labels.shape == nib.load("cases/patient_01/T1.nii.gz").shape  # doctest: +SKIP
True

Modules: :mod:`~sap.inference.predictor` (the :class:`Predictor`),
:mod:`~sap.inference.sliding` (bounded-memory sliding window), :mod:`~sap.inference.tta`
(flips that keep left and right), :mod:`~sap.inference.space` (back to the input grid),
:mod:`~sap.inference.postprocess`, :mod:`~sap.inference.report`, :mod:`~sap.inference.dicom`,
:mod:`~sap.inference.writer`, :mod:`~sap.inference.memory`, :mod:`~sap.inference.pipeline`
(what ``sap predict`` runs).
"""

from __future__ import annotations

from sap.inference.dicom import DicomSeriesError, load_dicom_case
from sap.inference.memory import InsufficientMemoryError, MemoryEstimate
from sap.inference.models import load_model
from sap.inference.pipeline import predict_cases, resolve_inputs
from sap.inference.postprocess import remove_small_components, skeleton_majority_vote
from sap.inference.predictor import InputError, Prediction, Predictor, PreparedInput
from sap.inference.report import LesionRecord, LesionReport, build_lesion_report
from sap.inference.sliding import sliding_window_predict
from sap.inference.tta import flip_tta, tta_flip_axes
from sap.inference.writer import OutputExistsError

__all__ = [
    "DicomSeriesError",
    "InputError",
    "InsufficientMemoryError",
    "LesionRecord",
    "LesionReport",
    "MemoryEstimate",
    "OutputExistsError",
    "Prediction",
    "PreparedInput",
    "Predictor",
    "build_lesion_report",
    "flip_tta",
    "load_dicom_case",
    "load_model",
    "predict_cases",
    "remove_small_components",
    "resolve_inputs",
    "skeleton_majority_vote",
    "sliding_window_predict",
    "tta_flip_axes",
]
