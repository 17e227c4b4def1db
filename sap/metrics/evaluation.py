"""Evaluate a set of exams from Python: per-lesion and per-exam tables and one summary dict.

:class:`Evaluation` takes exams one at a time (whole-body volumes never pile up in memory);
:func:`evaluate_exams` is the one-call version for arrays in memory. Tables come as lists of
dicts or as pandas DataFrames (``.exams``, ``.lesions``, ``.to_dataframe()``). Exams whose
prediction looks degenerate raise a :class:`~sap.metrics.DegeneratePredictionWarning` and
are listed in the summary. What each number means: ``docs/metrics.md``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

import numpy as np

from sap.metrics.degenerate import warn_degenerate
from sap.metrics.detection import DetectionSettings, ExamResult, evaluate_exam
from sap.metrics.froc import DEFAULT_MIN_PROB, ExamFROC, exam_froc
from sap.metrics.summary import (
    DEFAULT_BOOTSTRAP,
    BootstrapSettings,
    froc_summary,
    json_ready,
    summarise,
)

if TYPE_CHECKING:
    import pandas as pd


class Evaluation:
    """Accumulate exams, then report.

    Args:
        settings: detection settings (connectivity, volume limit, NSD, β).
        min_prob: lowest FROC threshold for exams given with a probability map.
        threshold: the threshold the binary predictions came from, if any (reported only).

    Example:
        >>> import numpy as np
        >>> ref = np.zeros((8, 8, 8), bool); ref[1:3, 1:3, 1:3] = True
        >>> evaluation = Evaluation()
        >>> _ = evaluation.add("case_a", ref.copy(), ref, (1.0, 1.0, 1.0))
        >>> evaluation.summary(bootstrap=None)["metrics"]["sensitivity"]["median"]
        1.0
        >>> evaluation.exams.loc["case_a", ["tp", "fp", "volume_ratio"]].tolist()
        [1.0, 0.0, 1.0]
    """

    def __init__(
        self,
        settings: DetectionSettings | None = None,
        *,
        min_prob: float = DEFAULT_MIN_PROB,
        threshold: float | None = None,
    ) -> None:
        self.settings = settings or DetectionSettings()
        self.min_prob = float(min_prob)
        self.threshold = threshold
        self.case_ids: list[str] = []
        self.results: list[ExamResult] = []
        self.frocs: dict[str, ExamFROC] = {}
        self.affines: dict[str, np.ndarray] = {}

    def add(
        self,
        case_id: str,
        pred_mask: object,
        ref_mask: object,
        spacing_mm: Sequence[float] | np.ndarray,
        *,
        prob: object | None = None,
        affine: np.ndarray | None = None,
        body_mask: object | None = None,
    ) -> ExamResult:
        """Evaluate one exam and keep its results.

        Args:
            case_id: unique name of the exam (used in every table).
            pred_mask: binarised prediction (3D).
            ref_mask: reference lesion mask (3D, same grid).
            spacing_mm: voxel size in mm along array axes 0, 1, 2.
            prob: the probability map the prediction came from, for the FROC (optional).
            affine: voxel-to-scanner matrix, to report lesion centroids in scanner mm.
            body_mask: the patient's body (same grid, optional), for the degenerate flags.

        A degenerate prediction (see ``docs/metrics.md``) raises a
        :class:`~sap.metrics.DegeneratePredictionWarning` naming the case.
        """
        if case_id in self.case_ids:
            raise ValueError(f"Case {case_id!r} was added twice; case ids must be unique.")
        try:
            result = evaluate_exam(
                pred_mask, ref_mask, spacing_mm, self.settings, body_mask=body_mask, warn=False
            )
            froc = None
            if prob is not None:
                froc = exam_froc(
                    prob,
                    ref_mask,
                    spacing_mm,
                    connectivity=self.settings.connectivity,
                    min_volume_ml=self.settings.min_volume_ml,
                    min_prob=self.min_prob,
                    body_mask=body_mask,
                    warn=False,
                )
        except ValueError as error:
            raise ValueError(f"Case {case_id!r}: {error}") from error
        self.case_ids.append(case_id)
        self.results.append(result)
        if froc is not None:
            self.frocs[case_id] = froc
        if affine is not None:
            self.affines[case_id] = np.asarray(affine, dtype=np.float64)
        warn_degenerate(self.degenerate().get(case_id, []), case_id)
        return result

    def degenerate(self) -> dict[str, list[str]]:
        """Flagged exams and why: ``{case_id: [reason, ...]}`` (binary mask and FROC flags)."""
        flagged = {}
        for case_id, result in zip(self.case_ids, self.results):
            froc = self.frocs.get(case_id)
            reasons = [*result.flags, *(froc.flags if froc is not None else ())]
            if reasons:
                flagged[case_id] = reasons
        return flagged

    # Tables ------------------------------------------------------------------------------
    def exam_table(self) -> list[dict[str, object]]:
        """One row per exam: ``case_id`` plus :meth:`ExamResult.metrics`."""
        return [
            {"case_id": case_id, **result.metrics()}
            for case_id, result in zip(self.case_ids, self.results)
        ]

    def lesion_table(self) -> list[dict[str, object]]:
        """One row per reference lesion: case, lesion id, volume, centroid, detection, Dice, NSD.

        Centroids: ``centroid_mm_{x,y,z}`` in scanner coordinates when the exam came with an
        affine (else voxel index times spacing), and ``centroid_voxel_{i,j,k}``.
        """
        rows = []
        for case_id, result in zip(self.case_ids, self.results):
            affine = self.affines.get(case_id)
            for lesion in result.lesions:
                voxel = np.asarray(lesion.centroid_voxel)
                if affine is not None:
                    mm = affine[:3, :3] @ voxel + affine[:3, 3]
                else:
                    mm = voxel * np.asarray(result.spacing_mm)
                rows.append(
                    {
                        "case_id": case_id,
                        "lesion_id": lesion.lesion_id,
                        "volume_ml": lesion.volume_ml,
                        "large": lesion.large,
                        "centroid_mm_x": float(mm[0]),
                        "centroid_mm_y": float(mm[1]),
                        "centroid_mm_z": float(mm[2]),
                        "centroid_voxel_i": float(voxel[0]),
                        "centroid_voxel_j": float(voxel[1]),
                        "centroid_voxel_k": float(voxel[2]),
                        "detected": lesion.detected,
                        "n_pred_components": lesion.n_pred_components,
                        "dice": lesion.dice,
                        "nsd": lesion.nsd,
                    }
                )
        return rows

    @property
    def exams(self) -> pd.DataFrame:
        """:meth:`exam_table` as a DataFrame indexed by ``case_id``."""
        from sap.metrics.frames import exam_frame

        return exam_frame(self.exam_table())

    @property
    def lesions(self) -> pd.DataFrame:
        """:meth:`lesion_table` as a DataFrame indexed by ``(case_id, lesion_id)``."""
        from sap.metrics.frames import lesion_frame

        return lesion_frame(self.lesion_table())

    def to_dataframe(self, bootstrap: BootstrapSettings | None = DEFAULT_BOOTSTRAP) -> pd.DataFrame:
        """The summary's metrics as a DataFrame: one row per metric (median, CI, mean, pooled)."""
        from sap.metrics.frames import summary_frame

        return summary_frame(self.summary(bootstrap))

    def fp_volumes_ml(self) -> np.ndarray:
        """Volumes of all false-positive components, all exams together."""
        volumes = [v for result in self.results for v in result.fp_volumes_ml]
        return np.asarray(volumes, dtype=np.float64)

    # Summary -----------------------------------------------------------------------------
    def summary(self, bootstrap: BootstrapSettings | None = DEFAULT_BOOTSTRAP) -> dict:
        """The summary dict (JSON-ready: NaN written as None). ``bootstrap=None``: no CIs."""
        if not self.results:
            raise ValueError("No exams were evaluated; add at least one exam first.")
        exam_rows = self.exam_table()
        lesion_rows = self.lesion_table()
        summary = summarise(
            exam_rows, lesion_rows, self.settings, bootstrap, degenerate=self.degenerate()
        )
        summary["settings"]["min_prob"] = self.min_prob
        summary["settings"]["threshold"] = self.threshold
        if self.frocs:
            ids = [c for c in self.case_ids if c in self.frocs]
            summary["froc"] = froc_summary([self.frocs[c] for c in ids], case_ids=ids)
        return json_ready(summary)


def evaluate_exams(
    pred_masks: Iterable[object] | None,
    ref_masks: Iterable[object],
    spacings_mm: Iterable[Sequence[float]] | Sequence[float],
    *,
    case_ids: Sequence[str] | None = None,
    prob_maps: Iterable[object] | None = None,
    threshold: float = 0.5,
    settings: DetectionSettings | None = None,
    min_prob: float = DEFAULT_MIN_PROB,
    bootstrap: BootstrapSettings | None = DEFAULT_BOOTSTRAP,
    body_masks: Iterable[object] | None = None,
) -> dict:
    """Evaluate a set of exams in one call and return the summary dict.

    Args:
        pred_masks: binarised predictions, one 3D array/tensor per exam; ``None`` to derive
            them from ``prob_maps >= threshold``.
        ref_masks: reference lesion masks, same grids.
        spacings_mm: one ``(s0, s1, s2)`` per exam (mm, array-axis order), or one triple
            for all exams.
        case_ids: names of the exams (default ``exam_000``, ``exam_001``, ...).
        prob_maps: probability maps, one per exam, to add the FROC (optional).
        threshold: binarisation threshold when ``pred_masks`` is None.
        settings: detection settings (default: 26-connectivity, 1 mL, NSD 2 mm boundary, F2).
        min_prob: lowest FROC threshold.
        bootstrap: CI settings of the medians; None skips the bootstrap.
        body_masks: the patients' body masks, one per exam (optional), for the flags.

    Returns:
        The summary (see :class:`Evaluation`): ``summary["metrics"][name]["median"]`` etc.
    """
    refs = list(ref_masks)
    probs = list(prob_maps) if prob_maps is not None else None
    bodies = list(body_masks) if body_masks is not None else [None] * len(refs)
    if pred_masks is None:
        if probs is None:
            raise ValueError("Give pred_masks, or prob_maps to binarise at `threshold`.")
        preds: list[object] = [None] * len(refs)
    else:
        preds = list(pred_masks)
    spacing_list = _per_exam_spacings(spacings_mm, len(refs))
    ids = list(case_ids) if case_ids is not None else [f"exam_{i:03d}" for i in range(len(refs))]
    lengths = {len(preds), len(refs), len(ids), len(spacing_list), len(bodies)} | (
        {len(probs)} if probs is not None else set()
    )
    if len(lengths) != 1:
        raise ValueError(
            f"Need one prediction, reference, spacing and case id per exam; got {len(preds)} "
            f"predictions, {len(refs)} references, {len(spacing_list)} spacings, {len(ids)} ids, "
            f"{len(bodies)} body masks"
            + (f", {len(probs)} probability maps." if probs is not None else ".")
        )
    evaluation = Evaluation(
        settings, min_prob=min_prob, threshold=threshold if pred_masks is None else None
    )
    for i, case_id in enumerate(ids):
        prob = None if probs is None else probs[i]
        pred = preds[i]
        if pred is None:
            pred = _as_array(prob) >= np.float64(threshold)
        evaluation.add(case_id, pred, refs[i], spacing_list[i], prob=prob, body_mask=bodies[i])
    return evaluation.summary(bootstrap)


def _per_exam_spacings(spacings_mm: object, n: int) -> list[np.ndarray]:
    """One triple for all exams, or one triple per exam."""
    if np.isscalar(spacings_mm):
        return [np.asarray(spacings_mm, dtype=np.float64)] * n
    items = [_as_array(s) for s in spacings_mm]  # type: ignore[union-attr]
    if all(item.ndim == 0 for item in items):
        return [np.asarray(items, dtype=np.float64)] * n
    return [np.asarray(item, dtype=np.float64) for item in items]


def _as_array(value: object) -> np.ndarray:
    if hasattr(value, "detach"):
        value = value.detach().cpu().numpy()  # type: ignore[attr-defined]
    return np.asarray(value)


__all__ = ["Evaluation", "evaluate_exams"]
