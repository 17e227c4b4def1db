"""The lesion table a reader gets for each scan: one row per lesion, totals per case.

Each lesion (a connected component of the final lesion mask, 26-connected by default,
numbered by decreasing volume) gets its volume, where it is (centroid in scanner mm,
bounding box in voxels of the input T1), how sure the model is (max / mean probability) and
in which bone it lies: the skeleton region it overlaps most, or ``"outside skeleton"`` when
it touches no predicted bone. Lesions of 1 mL or more are flagged: that is the MET-RADS-P
size for a measurable lesion (about a 12 mm sphere), and the paper reports detection for
them separately.

Coordinates: ``centroid_mm`` is in the RAS+ scanner space of the NIfTI affine (x grows
towards the patient's right, y towards anterior, z towards the head). DICOM viewers show
LPS: negate x and y to compare.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from sap.inference.spill import release_pages
from sap.io import atomic_write, write_text_atomic
from sap.labels import SKELETON_LABELS
from sap.metrics.views import largest_first
from sap.volume import (
    DEFAULT_CONNECTIVITY,
    find_components,
    spacing_from_affine,
    voxel_volume_ml,
)

if TYPE_CHECKING:
    import pandas as pd

OUTSIDE_SKELETON = "outside skeleton"
MEASURABLE_VOLUME_ML = 1.0

CSV_COLUMNS = (
    "case_id",
    "lesion_id",
    "voxel_count",
    "volume_ml",
    "centroid_x_mm",
    "centroid_y_mm",
    "centroid_z_mm",
    "bbox_min_i",
    "bbox_min_j",
    "bbox_min_k",
    "bbox_max_i",
    "bbox_max_j",
    "bbox_max_k",
    "max_probability",
    "mean_probability",
    "bone_region",
    "bone_overlap_fraction",
    "at_least_1ml",
)


@dataclass
class LesionFinding:
    """One lesion of a case: a row of the lesion table.

    Attributes:
        lesion_id: 1 for the largest lesion, 2 for the next, ...
        voxel_count: voxels of the input T1 grid in the lesion.
        volume_ml: ``voxel_count`` x voxel volume (mm³) / 1000.
        centroid_mm: centre of mass in RAS+ scanner coordinates (mm).
        bbox_min_voxel, bbox_max_voxel: inclusive voxel index bounds in the T1 grid.
        max_probability, mean_probability: lesion probability inside the lesion (``None``
            when no probability map was given).
        bone_region: skeleton region with the most lesion voxels, or ``"outside skeleton"``
            (``None`` when no skeleton prediction was given).
        bone_overlap_fraction: fraction of the lesion's voxels inside that region.
        at_least_1ml: ``volume_ml >= 1``.
    """

    lesion_id: int
    voxel_count: int
    volume_ml: float
    centroid_mm: tuple[float, float, float]
    bbox_min_voxel: tuple[int, int, int]
    bbox_max_voxel: tuple[int, int, int]
    max_probability: float | None
    mean_probability: float | None
    bone_region: str | None
    bone_overlap_fraction: float | None
    at_least_1ml: bool

    def to_row(self, case_id: str) -> dict[str, Any]:
        """A flat dict with the keys of :data:`CSV_COLUMNS`."""
        return {
            "case_id": case_id,
            "lesion_id": self.lesion_id,
            "voxel_count": self.voxel_count,
            "volume_ml": self.volume_ml,
            "centroid_x_mm": self.centroid_mm[0],
            "centroid_y_mm": self.centroid_mm[1],
            "centroid_z_mm": self.centroid_mm[2],
            "bbox_min_i": self.bbox_min_voxel[0],
            "bbox_min_j": self.bbox_min_voxel[1],
            "bbox_min_k": self.bbox_min_voxel[2],
            "bbox_max_i": self.bbox_max_voxel[0],
            "bbox_max_j": self.bbox_max_voxel[1],
            "bbox_max_k": self.bbox_max_voxel[2],
            "max_probability": self.max_probability,
            "mean_probability": self.mean_probability,
            "bone_region": self.bone_region,
            "bone_overlap_fraction": self.bone_overlap_fraction,
            "at_least_1ml": self.at_least_1ml,
        }


@dataclass
class LesionReport:
    """All lesions of one case and their totals.

    Attributes:
        case_id: the case.
        voxel_volume_ml: volume of one T1 voxel in mL.
        lesions: the lesions, largest first.
        metadata: anything worth keeping with the numbers (models, threshold, ...).
    """

    case_id: str
    voxel_volume_ml: float
    lesions: list[LesionFinding]
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def lesion_count(self) -> int:
        return len(self.lesions)

    @property
    def total_volume_ml(self) -> float:
        return float(sum(lesion.volume_ml for lesion in self.lesions))

    @property
    def count_at_least_1ml(self) -> int:
        return sum(lesion.at_least_1ml for lesion in self.lesions)

    def totals(self) -> dict[str, Any]:
        """Per-case summary: lesion count, total volume, count of lesions >= 1 mL."""
        return {
            "case_id": self.case_id,
            "lesion_count": self.lesion_count,
            "total_volume_ml": self.total_volume_ml,
            "count_at_least_1ml": self.count_at_least_1ml,
        }

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict: totals, metadata and the lesion list."""
        return {
            **self.totals(),
            "voxel_volume_ml": self.voxel_volume_ml,
            "coordinates": "centroid_mm in RAS+ scanner mm of the NIfTI affine (DICOM LPS: negate x, y); "
            "bounding boxes in voxel indices of the input T1, inclusive",
            "metadata": self.metadata,
            "lesions": [asdict(lesion) for lesion in self.lesions],
        }

    def csv_text(self) -> str:
        """The lesion table as CSV text (header only when there is no lesion)."""
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=CSV_COLUMNS, lineterminator="\n")
        writer.writeheader()
        for lesion in self.lesions:
            writer.writerow(lesion.to_row(self.case_id))
        return buffer.getvalue()

    def to_dataframe(self) -> pd.DataFrame:
        """The lesion table as a pandas DataFrame (columns of :data:`CSV_COLUMNS`, one row a
        lesion, largest first; no rows when there is no lesion).

        Example:
            >>> import numpy as np
            >>> mask = np.zeros((8, 8, 8), np.uint8); mask[1:3, 1:3, 1:3] = 1; mask[6, 6, 6] = 1
            >>> table = build_lesion_report("case", mask, np.eye(4)).to_dataframe()
            >>> table[["lesion_id", "voxel_count"]].values.tolist()
            [[1, 8], [2, 1]]
        """
        import pandas as pd

        rows = [lesion.to_row(self.case_id) for lesion in self.lesions]
        return pd.DataFrame(rows, columns=list(CSV_COLUMNS))

    def write_csv(self, path: str | Path) -> Path:
        """Write the lesion table atomically."""
        return write_text_atomic(path, self.csv_text())

    def write_json(self, path: str | Path) -> Path:
        """Write :meth:`to_dict` atomically."""
        return write_text_atomic(path, json.dumps(self.to_dict(), indent=2) + "\n")


def _bone_region(bone_labels: np.ndarray, skeleton_labels: Sequence[str]) -> tuple[str, float]:
    """``(region, fraction)``: the bone with most of a lesion's voxels and its share of them."""
    votes = np.bincount(bone_labels.astype(np.int64), minlength=len(skeleton_labels))[1:]
    if votes.sum() == 0:
        return OUTSIDE_SKELETON, 0.0
    best = int(np.argmax(votes)) + 1
    region = str(skeleton_labels[best]) if best < len(skeleton_labels) else str(best)
    return region, float(votes[best - 1] / len(bone_labels))


def build_lesion_report(
    case_id: str,
    lesion_mask: np.ndarray,
    affine: np.ndarray,
    *,
    probability: np.ndarray | None = None,
    skeleton: np.ndarray | None = None,
    skeleton_labels: Sequence[str] | None = None,
    connectivity: int = DEFAULT_CONNECTIVITY,
    metadata: Mapping[str, Any] | None = None,
) -> LesionReport:
    """Measure every lesion of a case on the input T1 grid.

    Args:
        case_id: name of the case.
        lesion_mask: 3D binary lesion mask on the T1 grid.
        affine: the T1's voxel-to-scanner matrix (RAS+, mm).
        probability: lesion probability map on the same grid, or ``None``.
        skeleton: skeleton label map on the same grid (0 = background), or ``None``.
        skeleton_labels: names of the skeleton classes, index 0 background.
        connectivity: 6, 18 or 26, for what counts as one lesion.
        metadata: extra facts stored in the JSON.

    Returns:
        A :class:`LesionReport` with lesions numbered by decreasing volume.
    """
    affine = np.asarray(affine, np.float64)
    mask = np.asarray(lesion_mask)  # non-zero is lesion (find_components needs no copy)
    for name, other in (("probability", probability), ("skeleton", skeleton)):
        if other is not None and other.shape != mask.shape:
            raise ValueError(
                f"Case '{case_id}': {name} map has shape {other.shape} but the lesion mask has "
                f"{mask.shape}; both must be on the input T1 grid."
            )
    if skeleton is not None and skeleton_labels is None:
        raise ValueError("skeleton_labels (class names) are needed with a skeleton map.")
    unit_ml = voxel_volume_ml(spacing_from_affine(affine))
    parts = find_components(mask, connectivity)
    inside_probability = probability_sums = None
    if probability is not None:
        inside_probability = np.asarray(probability).reshape(-1)[parts.flat_index]
        probability_sums = np.bincount(
            parts.flat_label, weights=inside_probability, minlength=parts.count + 1
        )
        release_pages(probability)  # a spilled map: its pages leave RAM again
    lesions = []
    for rank, label in enumerate(largest_first(parts), start=1):
        members = parts.flat_label == label
        voxel_count = int(parts.voxel_counts[label])
        region, fraction = None, None
        if skeleton is not None:
            bones = np.asarray(skeleton).reshape(-1)[parts.flat_index[members]]
            region, fraction = _bone_region(bones, skeleton_labels)
        centroid = affine[:3, :3] @ parts.centroid_voxel[label] + affine[:3, 3]
        volume_ml = voxel_count * unit_ml
        lesions.append(
            LesionFinding(
                lesion_id=rank,
                voxel_count=voxel_count,
                volume_ml=volume_ml,
                centroid_mm=tuple(round(float(v), 3) for v in centroid),
                bbox_min_voxel=tuple(int(v) for v in parts.bbox_start[label]),
                bbox_max_voxel=tuple(int(v) - 1 for v in parts.bbox_stop[label]),
                max_probability=None
                if inside_probability is None
                else float(inside_probability[members].max()),
                mean_probability=None
                if probability_sums is None
                else float(probability_sums[label] / voxel_count),
                bone_region=region,
                bone_overlap_fraction=fraction,
                at_least_1ml=volume_ml >= MEASURABLE_VOLUME_ML,
            )
        )
    return LesionReport(case_id, unit_ml, lesions, dict(metadata or {}))


def render_overview(
    path: str | Path,
    b1000: np.ndarray,
    affine: np.ndarray,
    *,
    lesion_mask: np.ndarray | None = None,
    skeleton: np.ndarray | None = None,
    skeleton_labels: Sequence[str] = SKELETON_LABELS,
    connectivity: int = DEFAULT_CONNECTIVITY,
    title: str = "",
) -> Path:
    """Save a coronal maximum-intensity projection of b1000 with lesions and bones on top.

    The arrays are on the T1 grid; the picture is in radiological convention (the patient's
    right on the left, marked R and L; head at the top), whatever the orientation of the
    affine (:class:`sap.metrics.views.RadiologicalView`). Bones are coloured by region with
    a legend of their names; lesions are red and numbered like ``lesions.csv`` (1 = largest,
    same ``connectivity``).
    """
    from sap.metrics.case_plots import plot_case

    figure = plot_case(
        b1000,
        affine,
        lesion=lesion_mask,
        skeleton=skeleton,
        label_names=skeleton_labels,
        connectivity=connectivity,
        panels=("mip",),
        title=title,
    )
    return atomic_write(path, lambda tmp: figure.savefig(tmp, format="png"))


__all__ = [
    "CSV_COLUMNS",
    "MEASURABLE_VOLUME_ML",
    "OUTSIDE_SKELETON",
    "LesionFinding",
    "LesionReport",
    "build_lesion_report",
    "render_overview",
]
