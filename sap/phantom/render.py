"""Coronal previews of phantom cases, so a person can see what was generated.

Matplotlib is imported inside the function and used without pyplot (no display, no global
backend switch), so importing the phantom stays cheap and a notebook's backend is untouched.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from sap.io import atomic_write
from sap.labels import SKELETON_LABELS
from sap.phantom.case import PhantomCase
from sap.volume import spacing_from_affine

# Colours of the skeleton labels in previews (index = label).
_LABEL_COLOURS = (
    (0, 0, 0),
    (0.95, 0.9, 0.25),
    (0.3, 0.8, 0.35),
    (0.2, 0.75, 0.9),
    (0.6, 0.4, 0.85),
    (0.95, 0.55, 0.2),
    (0.9, 0.35, 0.6),
    (0.5, 0.85, 0.8),
    (0.75, 0.75, 0.3),
    (0.55, 0.6, 1.0),
)


def render_case_png(case: PhantomCase, path: str | Path) -> Path:
    """A coronal preview: T1 slice through the spinal canal | b1000 MIP | labels.

    The label panel shows, at each point, the bone nearest the T1 slice (coloured by region)
    and every lesion (red), over the T1 slice. Radiological convention: the subject's right
    is on the left of the image.

    Args:
        case: the case to draw.
        path: where to write the PNG (atomically).

    Returns:
        ``path``.
    """
    # A bare Figure (no pyplot) renders through Agg whatever backend the user has selected.
    from matplotlib.colors import ListedColormap
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch

    spine = np.isin(case.skeleton, (1, 2, 3))
    y_index = int(np.median(np.nonzero(spine)[1])) if spine.any() else case.t1.shape[1] // 2
    y_index = min(y_index + 1, case.t1.shape[1] - 1)  # just behind the bodies: the canal

    def coronal(volume: np.ndarray) -> np.ndarray:
        return volume[::-1, :].T  # rows: inferior->superior; columns: subject right->left

    t1_slice = coronal(case.t1[:, y_index, :])
    dwi = case.b1000.max(axis=1)
    dwi_mip = coronal(dwi)
    distance = np.abs(np.arange(case.skeleton.shape[1]) - y_index)[None, :, None]
    distance = np.where(case.skeleton > 0, distance, np.iinfo(np.int32).max)
    nearest = np.take_along_axis(case.skeleton, distance.argmin(axis=1)[:, None, :], 1)[:, 0, :]
    labels = coronal(nearest)
    extent_t1 = (0, case.t1.shape[0] * case.spacing_mm[0], 0, case.t1.shape[2] * case.spacing_mm[2])
    dwi_spacing = spacing_from_affine(case.b1000_affine)
    extent_dwi = (0, dwi.shape[0] * dwi_spacing[0], 0, dwi.shape[1] * dwi_spacing[2])

    figure = Figure(figsize=(10.5, 8.4), dpi=100)
    axes = figure.subplots(1, 3)
    clip = np.percentile(case.t1, 99.5)
    axes[0].imshow(t1_slice, cmap="gray", origin="lower", extent=extent_t1, vmax=clip)
    axes[0].set_title(f"T1 (coronal, y={y_index})")
    axes[1].imshow(
        dwi_mip, cmap="gray_r", origin="lower", extent=extent_dwi, vmax=np.percentile(dwi, 99.7)
    )
    axes[1].set_title("b1000 MIP (inverted)")
    axes[2].imshow(t1_slice, cmap="gray", origin="lower", extent=extent_t1, vmax=clip)
    cmap = ListedColormap(_LABEL_COLOURS)
    axes[2].imshow(
        np.ma.masked_equal(labels, 0),
        cmap=cmap,
        vmin=0,
        vmax=len(_LABEL_COLOURS) - 1,
        origin="lower",
        extent=extent_t1,
        alpha=0.75,
        interpolation="nearest",
    )
    if case.lesion is not None and case.lesion.any():
        lesion_mip = coronal(case.lesion.max(axis=1))
        axes[2].imshow(
            np.ma.masked_equal(lesion_mip, 0),
            cmap=ListedColormap([(1, 0, 0)]),
            origin="lower",
            extent=extent_t1,
            interpolation="nearest",
        )
    axes[2].set_title(f"labels, {len(case.lesions)} lesions (red)")
    for axis in axes:
        axis.set_xticks([])
        axis.set_yticks([])
        axis.text(0.02, 0.98, "R", color="w", transform=axis.transAxes, va="top")
    handles = [
        Patch(color=_LABEL_COLOURS[i], label=SKELETON_LABELS[i])
        for i in range(1, len(SKELETON_LABELS))
    ]
    figure.legend(handles=handles, loc="lower center", ncol=5, fontsize=8, frameon=False)
    figure.suptitle(case.case_id)
    figure.subplots_adjust(left=0.01, right=0.99, top=0.92, bottom=0.08, wspace=0.04)
    return atomic_write(path, lambda tmp: figure.savefig(tmp, format="png"))


__all__ = ["render_case_png"]
