"""Figures of an evaluation: the FROC curve and detection against lesion volume (paper Fig. 6).

Both return the matplotlib figure and, given a path, save it as PNG atomically. matplotlib
is imported inside the functions, with the non-interactive Agg backend when nothing else
was chosen, so that plotting works on headless machines.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from sap.io import atomic_write
from sap.metrics.froc import FROCCurve

#: Lesion-volume bin edges (mL) of the detection-by-volume figure.
DEFAULT_VOLUME_BINS_ML: tuple[float, ...] = (0.0, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, np.inf)


def _pyplot():
    import matplotlib

    if matplotlib.get_backend().lower() not in ("agg", "module://matplotlib_inline.backend_inline"):
        matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: str | Path | None) -> None:
    if path is not None:
        atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=150, bbox_inches="tight", format="png"))


def plot_froc(
    curve: FROCCurve,
    curve_large: FROCCurve | None = None,
    path: str | Path | None = None,
    *,
    max_fp_per_exam: float = 15.0,
    max_fp_per_exam_large: float = 4.0,
    connectivity: int | None = None,
    min_volume_ml: float = 1.0,
):
    """FROC curves (envelope as steps, every threshold as a dot) with their AUCs."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 4.5))
    for c, limit, colour, label in (
        (curve, max_fp_per_exam, "tab:blue", "all lesions"),
        (curve_large, max_fp_per_exam_large, "tab:orange", f"lesions ≥ {min_volume_ml:g} mL"),
    ):
        if c is None or c.n_lesions == 0:
            continue
        x, s = c.envelope(limit)
        ax.step(
            np.append(x, limit),
            np.append(s, s[-1]),
            where="post",
            color=colour,
            label=f"{label} (n={c.n_lesions}): AUC to {limit:g} FP/exam = {c.auc(limit):.2f}",
        )
        keep = c.fp_per_exam <= limit
        ax.plot(
            c.fp_per_exam[keep], c.sensitivity[keep], ".", color=colour, alpha=0.3, markersize=3
        )
    ax.set_xlim(0, max(max_fp_per_exam, max_fp_per_exam_large))
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("false positives per exam")
    ax.set_ylabel("lesion sensitivity")
    title = f"FROC ({curve.n_exams} exams"
    title += f", {connectivity}-connectivity)" if connectivity else ")"
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    _save(fig, path)
    return fig


def plot_detection_by_volume(
    lesion_volumes_ml: Sequence[float],
    lesion_detected: Sequence[bool],
    fp_volumes_ml: Sequence[float],
    n_exams: int,
    path: str | Path | None = None,
    bins_ml: Sequence[float] = DEFAULT_VOLUME_BINS_ML,
):
    """Sensitivity per lesion-volume bin and false positives per exam per component-volume bin."""
    plt = _pyplot()
    edges = np.asarray(bins_ml, dtype=np.float64)
    volumes = np.asarray(lesion_volumes_ml, dtype=np.float64)
    detected = np.asarray(lesion_detected, dtype=bool)
    fp = np.asarray(fp_volumes_ml, dtype=np.float64)
    which = np.clip(np.searchsorted(edges, volumes, side="right") - 1, 0, edges.size - 2)
    which_fp = np.clip(np.searchsorted(edges, fp, side="right") - 1, 0, edges.size - 2)
    n_bins = edges.size - 1
    counts = np.bincount(which, minlength=n_bins)
    hits = np.bincount(which, weights=detected, minlength=n_bins)
    fp_per_exam = np.bincount(which_fp, minlength=n_bins) / max(n_exams, 1)
    with np.errstate(invalid="ignore", divide="ignore"):
        sens = np.where(counts > 0, hits / counts, np.nan)
    labels = [
        f"{a:g}–{b:g}" if np.isfinite(b) else f"≥{a:g}" for a, b in zip(edges[:-1], edges[1:])
    ]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    positions = np.arange(n_bins)
    ax1.bar(positions, np.nan_to_num(sens), color="tab:blue")
    for p, s, n in zip(positions, sens, counts):
        ax1.text(p, (0 if np.isnan(s) else s) + 0.02, f"n={n}", ha="center", fontsize=7)
    ax1.set_ylim(0, 1.1)
    ax1.set_ylabel("sensitivity")
    ax1.set_title("sensitivity vs reference lesion volume")
    ax2.bar(positions, fp_per_exam, color="tab:red")
    ax2.set_ylabel("false positives per exam")
    ax2.set_title("false positives vs predicted component volume")
    for ax in (ax1, ax2):
        ax.set_xticks(positions, labels, rotation=45, ha="right", fontsize=8)
        ax.set_xlabel("volume (mL)")
        ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    _save(fig, path)
    return fig


__all__ = ["DEFAULT_VOLUME_BINS_ML", "plot_detection_by_volume", "plot_froc"]
