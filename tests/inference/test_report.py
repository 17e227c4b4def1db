"""Postprocessing and the lesion report: volumes, positions, bone regions, totals."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from sap.inference.postprocess import remove_small_components, skeleton_majority_vote
from sap.inference.report import (
    CSV_COLUMNS,
    OUTSIDE_SKELETON,
    build_lesion_report,
    render_overview,
)
from sap.labels import SKELETON_LABELS

# 2 x 2 x 2.5 mm voxels: 0.01 mL each; 100 voxels make 1 mL.
AFFINE = np.array(
    [[-2.0, 0.0, 0.0, 100.0], [0.0, 2.0, 0.0, -50.0], [0.0, 0.0, 2.5, 20.0], [0.0, 0.0, 0.0, 1.0]]
)
FEMURS = SKELETON_LABELS.index("femurs")
PELVIS = SKELETON_LABELS.index("pelvis")
LUMBAR = SKELETON_LABELS.index("lumbar_spine")


@pytest.fixture
def constructed_case():
    """Three lesions: in a femur, straddling pelvis (60%) and lumbar spine (40%), in soft tissue."""
    shape = (40, 40, 40)
    skeleton = np.zeros(shape, np.uint8)
    skeleton[2:12, 2:12, 2:20] = FEMURS
    skeleton[20:30, 20:26, 20:30] = PELVIS
    skeleton[20:30, 26:40, 20:30] = LUMBAR
    lesion = np.zeros(shape, np.uint8)
    lesion[4:9, 4:9, 4:9] = 1  # 125 voxels, 1.25 mL, femur
    lesion[22:24, 20:30, 22:24] = 1  # 40 voxels: y 20..25 pelvis (24), 26..29 lumbar (16)
    lesion[35:37, 2:4, 35:37] = 1  # 8 voxels, no bone
    probability = np.where(lesion > 0, 0.8, 0.1).astype(np.float16)
    probability[6, 6, 6] = 0.99
    return lesion, probability, skeleton


def test_report_volume_is_voxel_count_times_voxel_volume(constructed_case):
    lesion, probability, skeleton = constructed_case
    report = build_lesion_report(
        "c",
        lesion,
        AFFINE,
        probability=probability,
        skeleton=skeleton,
        skeleton_labels=SKELETON_LABELS,
    )
    assert report.voxel_volume_ml == pytest.approx(0.01)
    assert [r.voxel_count for r in report.lesions] == [125, 40, 8]
    for record in report.lesions:
        assert record.volume_ml == pytest.approx(record.voxel_count * 2 * 2 * 2.5 / 1000)
    assert report.total_volume_ml == pytest.approx(lesion.sum() * 0.01)
    assert report.lesion_count == 3
    assert report.count_at_least_1ml == 1
    assert [r.at_least_1ml for r in report.lesions] == [True, False, False]


def test_bone_region_is_the_region_with_most_overlap(constructed_case):
    lesion, probability, skeleton = constructed_case
    report = build_lesion_report(
        "c",
        lesion,
        AFFINE,
        probability=probability,
        skeleton=skeleton,
        skeleton_labels=SKELETON_LABELS,
    )
    femur, straddling, soft_tissue = report.lesions
    assert femur.bone_region == "femurs" and femur.bone_overlap_fraction == pytest.approx(1.0)
    assert straddling.bone_region == "pelvis"
    assert straddling.bone_overlap_fraction == pytest.approx(24 / 40)
    assert soft_tissue.bone_region == OUTSIDE_SKELETON
    assert soft_tissue.bone_overlap_fraction == 0.0


def test_position_bbox_and_probabilities_are_in_input_space(constructed_case):
    lesion, probability, skeleton = constructed_case
    femur = build_lesion_report("c", lesion, AFFINE, probability=probability).lesions[0]
    assert femur.bbox_min_voxel == (4, 4, 4) and femur.bbox_max_voxel == (8, 8, 8)
    centre_voxel = np.array([6.0, 6.0, 6.0, 1.0])
    np.testing.assert_allclose(femur.centroid_mm, (AFFINE @ centre_voxel)[:3])
    assert femur.max_probability == pytest.approx(0.99, abs=1e-3)
    assert femur.mean_probability == pytest.approx((124 * 0.8 + 0.99) / 125, abs=1e-3)
    assert femur.bone_region is None  # no skeleton given


def test_report_files_hold_rows_and_totals(constructed_case, tmp_path):
    lesion, probability, skeleton = constructed_case
    report = build_lesion_report(
        "case_7",
        lesion,
        AFFINE,
        probability=probability,
        skeleton=skeleton,
        skeleton_labels=SKELETON_LABELS,
        metadata={"threshold": 0.5},
    )
    report.write_csv(tmp_path / "lesions.csv")
    report.write_json(tmp_path / "lesions.json")
    with open(tmp_path / "lesions.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert tuple(rows[0]) == CSV_COLUMNS
    assert [row["bone_region"] for row in rows] == ["femurs", "pelvis", OUTSIDE_SKELETON]
    assert float(rows[1]["volume_ml"]) == pytest.approx(0.4)
    data = json.loads((tmp_path / "lesions.json").read_text(encoding="utf-8"))
    assert data["case_id"] == "case_7" and data["lesion_count"] == 3
    assert data["count_at_least_1ml"] == 1
    assert data["total_volume_ml"] == pytest.approx(1.73)
    assert data["metadata"]["threshold"] == 0.5
    assert len(data["lesions"]) == 3


def test_no_lesion_gives_an_empty_table_with_zero_totals(tmp_path):
    report = build_lesion_report("empty", np.zeros((5, 5, 5), np.uint8), AFFINE)
    assert report.lesion_count == 0 and report.total_volume_ml == 0.0
    assert report.csv_text().strip() == ",".join(CSV_COLUMNS)


SPACING_MM = (2.0, 2.0, 2.5)  # 0.01 mL per voxel, as AFFINE


def test_small_components_are_dropped_by_volume():
    mask = np.zeros((30, 30, 30), np.uint8)
    mask[2:7, 2:7, 2:6] = 1  # 100 voxels = 1.0 mL
    mask[20:22, 20:22, 20:22] = 1  # 8 voxels = 0.08 mL
    mask[10, 10, 10] = mask[11, 11, 11] = 1  # corner-touching: one 26-connected component
    cleaned, components, count = remove_small_components(mask, SPACING_MM, min_volume_ml=0.05)
    assert count == 2
    assert cleaned[20, 20, 20] == 1 and cleaned[10, 10, 10] == 0
    assert (components == 1).sum() == 100  # numbered by decreasing volume
    assert (components == 2).sum() == 8
    _, _, exact = remove_small_components(mask, SPACING_MM, min_volume_ml=1.0)
    assert exact == 1  # a lesion of exactly min_volume_ml is kept


def test_corner_touching_voxels_are_one_lesion_unless_connectivity_says_otherwise():
    mask = np.zeros((6, 6, 6), np.uint8)
    mask[1, 1, 1] = mask[2, 2, 2] = 1  # 2 voxels = 0.02 mL together, 0.01 mL each
    assert remove_small_components(mask, SPACING_MM, min_volume_ml=0.015)[2] == 1
    assert remove_small_components(mask, SPACING_MM, 0.015, connectivity=6)[2] == 0
    assert build_lesion_report("c", mask, AFFINE).lesion_count == 1
    assert build_lesion_report("c", mask, AFFINE, connectivity=6).lesion_count == 2


def test_equal_lesions_are_numbered_in_scan_order():
    mask = np.zeros((10, 10, 10), np.uint8)
    mask[7:9, 1, 1] = 1  # met second in C order
    mask[1:3, 5, 5] = 1  # met first
    first, second = build_lesion_report("c", mask, AFFINE).lesions
    assert first.bbox_min_voxel == (1, 5, 5) and second.bbox_min_voxel == (7, 1, 1)


def test_majority_vote_gives_each_bone_piece_its_most_frequent_label():
    labels = np.zeros((20, 20, 20), np.uint8)
    labels[2:10, 2:10, 2:10] = FEMURS
    labels[2:4, 2:10, 2:10] = PELVIS  # a minority of the same connected piece
    labels[15:18, 15:18, 15:18] = LUMBAR  # a separate piece keeps its label
    voted = skeleton_majority_vote(labels, len(SKELETON_LABELS))
    assert set(np.unique(voted[2:10, 2:10, 2:10])) == {FEMURS}
    assert set(np.unique(voted[15:18, 15:18, 15:18])) == {LUMBAR}
    assert (voted > 0).sum() == (labels > 0).sum()


def test_overview_png_is_written(constructed_case, tmp_path):
    lesion, _, skeleton = constructed_case
    background = np.random.default_rng(0).random(lesion.shape).astype(np.float32)
    path = render_overview(
        tmp_path / "overview.png",
        background,
        AFFINE,
        lesion_mask=lesion,
        skeleton=skeleton,
        title="c",
    )
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def _left_only_case():
    """b1000, skeleton and one lesion in the patient's left femur, on an LPS-oriented grid."""
    affine = np.diag([-2.0, -2.0, 2.5, 1.0])  # array axis 0 runs towards the patient's left
    shape = (30, 12, 40)
    b1000 = np.random.default_rng(0).random(shape).astype(np.float32)
    skeleton = np.zeros(shape, np.uint8)
    skeleton[3:8, 4:8, 5:15] = FEMURS  # right femur: low index 0
    skeleton[22:27, 4:8, 5:15] = FEMURS  # left femur
    skeleton[12:18, 4:8, 20:30] = PELVIS
    lesion = np.zeros(shape, np.uint8)
    lesion[23:26, 5:7, 8:11] = 1  # 18 voxels in the left femur
    lesion[24:25, 5:6, 13:14] = 1  # 1 voxel, also left
    return affine, b1000, skeleton, lesion


def test_overview_shows_a_left_lesion_on_the_right_with_legend_and_report_ids(tmp_path):
    from sap.metrics.case_plots import plot_case
    from sap.metrics.views import RadiologicalView

    affine, b1000, skeleton, lesion = _left_only_case()
    path = render_overview(
        tmp_path / "overview.png", b1000, affine, lesion_mask=lesion, skeleton=skeleton
    )
    assert path.read_bytes().startswith(b"\x89PNG")
    fig = plot_case(b1000, affine, lesion=lesion, skeleton=skeleton, panels=("mip",))
    (ax,) = fig.axes
    texts = {t.get_text(): t for t in ax.texts}
    # R on the left edge of the picture, L on the right (radiological convention).
    assert texts["R"].get_position()[0] < 0.5 < texts["L"].get_position()[0]
    lesion_layer = ax.images[-1].get_array()
    columns = np.flatnonzero(~np.ma.getmaskarray(lesion_layer).all(axis=0))
    assert columns.min() > lesion_layer.shape[1] / 2  # the patient's left: right half
    # Lesion numbers sit on the lesions of lesions.csv, in its order (1 = largest).
    report = build_lesion_report("c", lesion, affine)
    view = RadiologicalView.of(affine, lesion.shape)
    for finding in report.lesions:
        voxel = np.linalg.solve(affine[:3, :3], np.asarray(finding.centroid_mm) - affine[:3, 3])
        col, row = view.coronal_point(voxel)
        x, y = texts[str(finding.lesion_id)].get_position()
        assert (x - 2, y) == pytest.approx((col, row), abs=1e-3)
    labels = [text.get_text() for text in fig.legends[0].get_texts()]
    assert labels == ["lesion", "pelvis", "femurs"]  # bone colours named, only those present
