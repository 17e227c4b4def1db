"""Pictures of one case: image, bones and lesions in radiological convention, with a legend.

- :func:`plot_case` — a coronal maximum-intensity projection plus a coronal and an axial
  slice through lesion 1, bones coloured by region, lesions numbered like
  ``lesions.csv`` of ``sap predict`` (1 = largest); with a ``reference`` the lesions are
  coloured detected / missed / false positive instead.
- :func:`plot_detections` — the per-case picture of ``sap evaluate``: a coronal MIP of
  detected, missed and false-positive lesions, numbered like ``per_lesion.csv`` (lesion id)
  and ``false_positives.csv`` (``FP<fp_index>``).

Every picture marks the patient's right (R) and left (L); orientations come from
:class:`sap.metrics.views.RadiologicalView`. Figures are built with matplotlib's object API
(no pyplot state), so they are safe in tests, scripts and notebooks (a returned Figure shows
itself in Jupyter).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from sap.labels import SKELETON_LABELS
from sap.metrics.views import RadiologicalView, largest_first
from sap.volume import DEFAULT_CONNECTIVITY, as_mask, find_components

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

#: Colour of predicted lesions when there is no reference.
LESION_COLOUR = "red"
#: Colours of the detection categories (reference given).
DETECTION_COLOURS: dict[str, str] = {
    "detected": "lime",
    "missed": "red",
    "false positive": "magenta",
}
_CATEGORY_CODES = {"detected": 1, "false positive": 2, "missed": 3}  # MIP keeps the highest
#: Colour map of bone regions (no red in it: red is for lesions).
BONE_CMAP = "viridis"
#: The panels :func:`plot_case` can draw.
PANELS: tuple[str, ...] = ("mip", "coronal", "axial")


@dataclass(frozen=True)
class Mark:
    """A numbered lesion: its array index (centroid), its text and its category."""

    voxel: tuple[float, float, float]
    text: str
    category: str


def lesion_marks(lesion_mask: object, connectivity: int = DEFAULT_CONNECTIVITY) -> list[Mark]:
    """One mark per lesion, numbered like ``lesions.csv`` (1 = largest)."""
    parts = find_components(as_mask(lesion_mask, "lesion_mask"), connectivity)
    return [
        Mark(tuple(float(c) for c in parts.centroid_voxel[label]), str(rank), "lesion")  # type: ignore[arg-type]
        for rank, label in enumerate(largest_first(parts), start=1)
    ]


def detection_categories(
    pred_mask: object, ref_mask: object, connectivity: int = DEFAULT_CONNECTIVITY
) -> tuple[np.ndarray, list[Mark]]:
    """Voxels coded by category (1 detected, 2 false positive, 3 missed; 0 none) and marks.

    Matching is the evaluation's (any overlap, same connectivity): reference lesion ``n`` is
    lesion ``n`` of ``per_lesion.csv``, ``FP<k>`` row ``k`` of ``false_positives.csv``.
    """
    pred = as_mask(pred_mask, "pred_mask")
    ref = as_mask(ref_mask, "ref_mask")
    ref_c = find_components(ref, connectivity)
    pred_c = find_components(pred, connectivity)
    hit = pred.reshape(-1)[ref_c.flat_index]
    detected = np.zeros(ref_c.count + 1, dtype=bool)
    detected[ref_c.flat_label[hit]] = True
    matched = np.zeros(pred_c.count + 1, dtype=bool)
    matched[pred_c.labels.reshape(-1)[ref_c.flat_index[hit]]] = True
    codes = np.zeros(ref.shape, dtype=np.uint8)
    flat = codes.reshape(-1)
    unmatched = ~matched[pred_c.flat_label]
    flat[pred_c.flat_index[unmatched]] = _CATEGORY_CODES["false positive"]
    flat[ref_c.flat_index] = np.where(
        detected[ref_c.flat_label], _CATEGORY_CODES["detected"], _CATEGORY_CODES["missed"]
    )
    marks = [
        Mark(
            tuple(float(c) for c in ref_c.centroid_voxel[label]),  # type: ignore[arg-type]
            str(label),
            "detected" if detected[label] else "missed",
        )
        for label in range(1, ref_c.count + 1)
    ]
    fp_labels = np.flatnonzero(~matched[1:]) + 1
    marks += [
        Mark(tuple(float(c) for c in pred_c.centroid_voxel[label]), f"FP{k}", "false positive")  # type: ignore[arg-type]
        for k, label in enumerate(fp_labels, start=1)
    ]
    return codes, marks


def plot_detections(
    pred_mask: object,
    ref_mask: object,
    affine: np.ndarray,
    *,
    image: np.ndarray | None = None,
    connectivity: int = DEFAULT_CONNECTIVITY,
    title: str = "",
) -> Figure:
    """Coronal MIP of detected, missed and false-positive lesions (``sap evaluate``'s picture).

    Args:
        pred_mask: binarised prediction (3D).
        ref_mask: reference lesion mask on the same grid.
        affine: voxel-to-scanner matrix of the grid (for orientation and R/L).
        image: an image of the case on the same grid (e.g. T1), shown as grey background.
        connectivity: as in the evaluation.
        title: figure title.
    """
    codes, marks = detection_categories(pred_mask, ref_mask, connectivity)
    if image is None:
        image = np.zeros(codes.shape, np.float32)
    return _draw(image, affine, codes, marks, _detection_legend(marks), None, (), ("mip",), title)


def plot_case(
    image: np.ndarray,
    affine: np.ndarray,
    *,
    lesion: np.ndarray | None = None,
    skeleton: np.ndarray | None = None,
    reference: np.ndarray | None = None,
    label_names: Sequence[str] = SKELETON_LABELS,
    connectivity: int = DEFAULT_CONNECTIVITY,
    panels: Sequence[str] = PANELS,
    title: str = "",
) -> Figure:
    """A case at a glance: coronal MIP, coronal and axial slice through lesion 1.

    Lesion 1 is the largest lesion (``lesions.csv`` numbering), or reference lesion 1 when a
    ``reference`` is given; without lesions the slices go through the middle of the volume.

    Args:
        image: one channel (e.g. b1000) on the case's grid.
        affine: its voxel-to-scanner matrix (RAS+ mm), for orientation and the R/L marks.
        lesion: predicted (or reference) lesion mask, numbered like ``lesions.csv``.
        skeleton: bone label map (0 background), coloured by region with a legend.
        reference: reference lesion mask; with ``lesion`` the lesions are coloured detected
            (lime), missed (red) and false positive (magenta), numbered like ``sap evaluate``.
        label_names: names of the skeleton labels, index 0 background.
        connectivity: what counts as one lesion.
        panels: which of ``"mip"``, ``"coronal"``, ``"axial"`` to draw, in order.
        title: figure title.

    Returns:
        The matplotlib Figure (nothing is shown or saved; ``fig.savefig(path)`` saves it).

    Example:
        >>> import numpy as np
        >>> image = np.random.default_rng(0).random((12, 6, 20))
        >>> lesion = np.zeros(image.shape, bool); lesion[2:4, 2:4, 5:8] = True
        >>> fig = plot_case(image, np.eye(4), lesion=lesion)
        >>> [ax.get_title() for ax in fig.axes]
        ['coronal MIP', 'coronal slice', 'axial slice']
    """
    if lesion is not None and reference is not None:
        codes, marks = detection_categories(lesion, reference, connectivity)
        legend = _detection_legend(marks)
    elif lesion is not None or reference is not None:
        mask = as_mask(lesion if lesion is not None else reference, "lesion")
        codes = mask.astype(np.uint8) * np.uint8(_CATEGORY_CODES["missed"])
        marks = lesion_marks(mask, connectivity)
        legend = [_patch(LESION_COLOUR, "lesion" if lesion is not None else "reference lesion")]
    else:
        codes, marks, legend = None, [], []
    return _draw(image, affine, codes, marks, legend, skeleton, label_names, panels, title)


def _draw(
    image: np.ndarray,
    affine: np.ndarray,
    codes: np.ndarray | None,
    marks: list[Mark],
    legend: list,
    skeleton: np.ndarray | None,
    label_names: Sequence[str],
    panels: Sequence[str],
    title: str,
) -> Figure:
    """The figure of :func:`plot_case` / :func:`plot_detections`: one axis per panel."""
    from matplotlib.figure import Figure

    unknown = [p for p in panels if p not in PANELS]
    if unknown or not panels:
        raise ValueError(f"panels must be some of {PANELS}, got {list(panels)}.")
    image = np.asarray(image, dtype=np.float32)
    view = RadiologicalView.of(affine, image.shape)
    x, y, z = (int(round(v)) for v in view.ras_index(_focus(marks, image.shape)))
    drawers = {
        "mip": ("coronal MIP", view.coronal_mip, view.coronal_aspect, view.coronal_point),
        "coronal": ("coronal slice", lambda v: view.coronal_slice(v, y), view.coronal_aspect, None),
        "axial": ("axial slice", lambda v: view.axial_slice(v, z), view.axial_aspect, None),
    }
    fig = Figure(figsize=(4.2 * len(panels) + 1.5, 8), dpi=100, layout="constrained")
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    for ax, panel in zip(axes, panels):
        name, project, aspect, point = drawers[panel]
        picture = project(image)
        low, high = np.percentile(picture, (1, 99.5))
        ax.imshow(picture, cmap="gray", vmin=low, vmax=max(high, low + 1e-6), aspect=aspect)
        if skeleton is not None:
            _bones(ax, project(np.asarray(skeleton)), aspect, len(label_names))
        if codes is not None:
            _categories(ax, project(codes), aspect)
        if point is not None:
            _marks(ax, marks, point)
        _rl(ax)
        ax.set_title(name, fontsize=9)
        ax.set_axis_off()
    if skeleton is not None:
        legend = legend + _bone_legend(label_names, np.unique(np.asarray(skeleton)))
    if legend:
        fig.legend(handles=legend, loc="outside right upper", fontsize=8)
    if title:
        fig.suptitle(title, fontsize=10)
    return fig


def _focus(marks: list[Mark], shape: Sequence[int]) -> tuple[float, ...]:
    """Where the slices go: the first mark (the largest lesion, or reference lesion 1), else
    the middle of the volume."""
    if marks:
        return marks[0].voxel
    return tuple((n - 1) / 2 for n in shape)


def _bones(ax: Axes, picture: np.ndarray, aspect: float, n_labels: int) -> None:
    ax.imshow(
        np.ma.masked_equal(picture.astype(np.float32), 0),
        cmap=BONE_CMAP,
        vmin=1,
        vmax=max(n_labels - 1, 2),
        alpha=0.45,
        aspect=aspect,
        interpolation="nearest",
    )


def _categories(ax: Axes, picture: np.ndarray, aspect: float) -> None:
    from matplotlib.colors import ListedColormap

    colours = [
        DETECTION_COLOURS["detected"],
        DETECTION_COLOURS["false positive"],
        DETECTION_COLOURS["missed"],
    ]
    ax.imshow(
        np.ma.masked_equal(picture, 0),
        cmap=ListedColormap(colours),
        vmin=0.5,
        vmax=3.5,
        alpha=0.9,
        aspect=aspect,
        interpolation="nearest",
    )


def _marks(ax: Axes, marks: list[Mark], point) -> None:
    from matplotlib import patheffects

    outline = [patheffects.withStroke(linewidth=2, foreground="black")]
    for mark in marks:
        col, row = point(mark.voxel)
        colour = DETECTION_COLOURS.get(mark.category, "white")
        ax.text(col + 2, row, mark.text, color=colour, fontsize=7, path_effects=outline)


def _rl(ax: Axes) -> None:
    """R on the left edge, L on the right edge (radiological convention)."""
    style = {"color": "yellow", "fontsize": 11, "fontweight": "bold", "va": "top"}
    ax.text(0.02, 0.99, "R", transform=ax.transAxes, ha="left", **style)
    ax.text(0.98, 0.99, "L", transform=ax.transAxes, ha="right", **style)


def _patch(colour: str, label: str):
    from matplotlib.patches import Patch

    return Patch(facecolor=colour, edgecolor="none", label=label)


def _detection_legend(marks: list[Mark]) -> list:
    counts = {name: sum(m.category == name for m in marks) for name in DETECTION_COLOURS}
    return [_patch(DETECTION_COLOURS[n], f"{n} ({counts[n]})") for n in DETECTION_COLOURS]


def _bone_legend(label_names: Sequence[str], present: np.ndarray) -> list:
    from matplotlib import colormaps

    cmap = colormaps[BONE_CMAP]
    top = max(len(label_names) - 1, 2)
    return [
        _patch(cmap((index - 1) / (top - 1)), str(label_names[index]))
        for index in range(1, len(label_names))
        if index in present
    ]


__all__ = [
    "BONE_CMAP",
    "DETECTION_COLOURS",
    "LESION_COLOUR",
    "PANELS",
    "Mark",
    "detection_categories",
    "lesion_marks",
    "plot_case",
    "plot_detections",
]
