"""sap.metrics: the SAP paper's clinical evaluation, exact and fast on whole-body volumes.

Four ways in:

- Folders of NIfTI files: :func:`evaluate_folders` (tables, summary, files; what
  ``sap evaluate`` runs), :func:`compare_folders`.
- Python on arrays: :func:`evaluate_exams` (one call, summary dict), :class:`Evaluation`
  (exam by exam, tables + summary), :func:`evaluate_exam`, :func:`exam_froc`,
  :func:`froc_curve`, :func:`tune_threshold`, :func:`dice`, :func:`surface_dice`,
  :func:`class_dice`, :func:`icc_2_1`; statistics in :mod:`sap.metrics.stats`.
- Notebooks: tables as pandas DataFrames (``.exams``, ``.lesions``, ``.to_dataframe()`` of
  :class:`Evaluation` and :class:`FolderEvaluation`); figures from :mod:`sap.metrics.plots`
  (``plot_case``, ``plot_froc``, ``plot_detection_by_volume``, ``plot_volume_agreement``).
- Lightning / torchmetrics: :class:`LesionDetection`, :class:`LesionFROC`,
  :class:`SkeletonDice` (DDP-safe states).
- Command line: ``sap evaluate`` (:mod:`sap.cli.evaluate`).

Every summary reports ``merged_predictions`` and ``volume_ratio``, and a prediction that
scores well for the wrong reason (one blob over many lesions, most of the body, a constant
probability map) raises a :class:`DegeneratePredictionWarning`. Every definition (detection
by any overlap, the ≥ 1 mL subset, Dice/NSD, FROC and its AUC limits, ICC(2,1), threshold
tuning, statistics, degenerate predictions) and the known weaknesses are on one page:
``docs/metrics.md``.
"""

from __future__ import annotations

from sap.metrics.agreement import icc_2_1, volume_icc
from sap.metrics.degenerate import DegeneratePredictionWarning
from sap.metrics.detection import (
    DetectionSettings,
    ExamResult,
    LesionRecord,
    evaluate_exam,
    f_beta,
    precision,
    sensitivity,
)
from sap.metrics.evaluation import Evaluation, evaluate_exams
from sap.metrics.folders import FolderEvaluation, compare_folders, evaluate_folders
from sap.metrics.froc import ExamFROC, FROCCurve, exam_froc, froc_auc, froc_curve
from sap.metrics.overlap import NSD_VARIANTS, dice, surface_dice
from sap.metrics.segmentation import class_dice
from sap.metrics.summary import BootstrapSettings, headline_metrics
from sap.metrics.threshold import ThresholdTuning, tune_threshold
from sap.volume import (
    CONNECTIVITIES,
    DEFAULT_CONNECTIVITY,
    label_components,
    spacing_from_affine,
)

# The torchmetrics classes load torch and torchmetrics (seconds); array users and the CLI's
# --help should not pay for that, so they are imported on first use.
_LAZY = {
    name: "sap.metrics.torch_metrics" for name in ("LesionDetection", "LesionFROC", "SkeletonDice")
}


def __getattr__(name: str) -> object:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'sap.metrics' has no attribute {name!r}")


__all__ = [
    "CONNECTIVITIES",
    "DEFAULT_CONNECTIVITY",
    "NSD_VARIANTS",
    "BootstrapSettings",
    "DegeneratePredictionWarning",
    "DetectionSettings",
    "Evaluation",
    "ExamFROC",
    "ExamResult",
    "FROCCurve",
    "FolderEvaluation",
    "LesionDetection",
    "LesionFROC",
    "LesionRecord",
    "SkeletonDice",
    "ThresholdTuning",
    "class_dice",
    "compare_folders",
    "dice",
    "evaluate_exam",
    "evaluate_exams",
    "evaluate_folders",
    "exam_froc",
    "f_beta",
    "froc_auc",
    "froc_curve",
    "headline_metrics",
    "icc_2_1",
    "label_components",
    "precision",
    "sensitivity",
    "spacing_from_affine",
    "surface_dice",
    "tune_threshold",
    "volume_icc",
]
