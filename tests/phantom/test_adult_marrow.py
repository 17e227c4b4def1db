"""marrow="adult": red marrow, benign focal marrow lesions and subtler metastases, same body."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy import ndimage

from sap.labels import SKELETON_LABELS
from sap.phantom import TISSUES, generate_case, generate_cohort
from sap.phantom.marrow import (
    ADULT_LESION_DWI_RANGE,
    DEFAULT_LESION_DWI_RANGE,
    RED_MARROW_REGIONS,
    adult_lesion_dwi,
)

SEED = 4  # a patient with many lesions (tests/phantom/test_phantom.py)
TISSUE = {name: index for index, name in enumerate(TISSUES)}


@pytest.fixture(scope="module")
def pair():
    """The same patient with fatty and with adult marrow."""
    return (
        generate_case(SEED, metastatic=True),
        generate_case(SEED, metastatic=True, marrow="adult"),
    )


def _deep(mask: np.ndarray) -> np.ndarray:
    """Voxels two voxels inside ``mask``: away from the blur of its surroundings."""
    return ndimage.binary_erosion(mask, iterations=2)


def test_the_body_lesions_and_everything_outside_bone_stay_the_same(pair) -> None:
    fatty, adult = pair
    for name in ("skeleton", "lesion", "tissue", "body"):
        np.testing.assert_array_equal(getattr(fatty, name), getattr(adult, name), err_msg=name)
    assert fatty.lesions == adult.lesions
    # The point-spread blur reaches 2 voxels along each axis (a 5^3 box around bone).
    box = np.ones((3, 3, 3), dtype=bool)
    far_from_bone = ~ndimage.binary_dilation(fatty.skeleton > 0, box, iterations=2)
    np.testing.assert_array_equal(fatty.t1[far_from_bone], adult.t1[far_from_bone])
    np.testing.assert_array_equal(fatty.b1000[far_from_bone], adult.b1000[far_from_bone])
    # The default phantom is untouched by the option's existence: no "marrow" record.
    assert "adult_marrow" not in fatty.subject["signal"]
    assert set(adult.subject["signal"]["adult_marrow"]) == {"cellularity", "mimics"}


def test_red_marrow_darkens_t1_in_the_axial_skeleton_but_stays_brighter_than_muscle(pair):
    fatty, adult = pair
    muscle = _deep(fatty.tissue == TISSUE["muscle"])
    pelvis = _deep(fatty.skeleton == SKELETON_LABELS.index("pelvis")) & (fatty.lesion == 0)
    femurs = _deep(fatty.skeleton == SKELETON_LABELS.index("femurs")) & (fatty.lesion == 0)
    assert "pelvis" in RED_MARROW_REGIONS and "femurs" not in RED_MARROW_REGIONS
    ratio = np.median(adult.t1[pelvis]) / np.median(fatty.t1[pelvis])
    assert ratio < 0.9, "red marrow is darker on T1 than fatty marrow"
    assert np.median(adult.b1000[pelvis]) > 1.5 * np.median(fatty.b1000[pelvis])
    assert np.median(adult.t1[pelvis]) > 1.2 * np.median(adult.t1[muscle]), "brighter than muscle"
    # Long bones keep fatty marrow (their centre is far from any red-marrow region).
    assert np.median(adult.t1[femurs]) == pytest.approx(np.median(fatty.t1[femurs]), rel=0.02)


def test_mimics_are_in_labelled_bone_away_from_lesions_with_their_own_signal() -> None:
    """Benign focal marrow lesions: inside bone, never next to a metastasis, T1-intermediate."""
    from sap.phantom.body import build_anatomy
    from sap.phantom.generate import make_grid
    from sap.phantom.marrow import MIMIC_DWI_RANGE, MIMIC_T1_RANGE, adult_marrow
    from sap.phantom.subject import sample_subject

    grid = make_grid()
    anatomy = build_anatomy(grid, sample_subject(np.random.default_rng(0), grid))
    lesion_map = np.zeros(grid.shape, dtype=np.int16)
    lumbar = np.argwhere(anatomy.skeleton == SKELETON_LABELS.index("lumbar_spine"))
    lesion_map[tuple(lumbar[len(lumbar) // 2])] = 1
    found = 0
    for seed in range(6):
        adult = adult_marrow(
            np.random.default_rng(seed), anatomy, grid, (0.85, 0.07), lesion_map, 4
        )
        mimics = adult.mimics
        found += adult.info["mimics"]
        assert np.all(anatomy.skeleton[mimics] > 0)
        near_lesion = ndimage.binary_dilation(lesion_map > 0, np.ones((3, 3, 3), dtype=bool))
        assert not np.any(mimics & near_lesion)
        t1, dwi = adult.levels[0][mimics], adult.levels[1][mimics]
        assert np.all((t1 >= MIMIC_T1_RANGE[0]) & (t1 <= MIMIC_T1_RANGE[1]))
        assert np.all((dwi >= MIMIC_DWI_RANGE[0]) & (dwi <= MIMIC_DWI_RANGE[1]))
        # Red marrow only in its regions: elsewhere the marrow keeps the fatty level exactly.
        elsewhere = (
            ~np.isin(anatomy.skeleton, [SKELETON_LABELS.index(r) for r in RED_MARROW_REGIONS])
            & ~mimics
        )
        assert np.all(adult.levels[0][elsewhere] == 0.85)
        assert 0.2 <= adult.info["cellularity"] <= 0.6
    assert found >= 6, "about 3 mimics per subject"


def test_metastases_reach_less_bright_dwi_levels() -> None:
    low, high = DEFAULT_LESION_DWI_RANGE
    assert adult_lesion_dwi(low) == pytest.approx(ADULT_LESION_DWI_RANGE[0])
    assert adult_lesion_dwi(high) == pytest.approx(ADULT_LESION_DWI_RANGE[1])
    assert adult_lesion_dwi((low + high) / 2) < (low + high) / 2


def test_a_cohort_records_its_marrow_and_a_wrong_name_is_refused(tmp_path) -> None:
    tiny = {"shape": (40, 26, 96), "spacing_mm": (12.0, 12.0, 12.0)}
    generate_cohort(tmp_path / "adult", healthy=1, metastatic=1, marrow="adult", **tiny)
    generate_cohort(tmp_path / "fatty", healthy=1, metastatic=1, **tiny)
    adult = json.loads((tmp_path / "adult" / "cohort.json").read_text(encoding="utf-8"))
    fatty = json.loads((tmp_path / "fatty" / "cohort.json").read_text(encoding="utf-8"))
    assert adult["parameters"]["marrow"] == "adult" and "marrow" not in fatty["parameters"]
    with pytest.raises(ValueError, match=r"marrow must be one of \('fatty', 'adult'\)"):
        generate_cohort(tmp_path / "bad", healthy=1, metastatic=0, marrow="red", **tiny)
    assert not (tmp_path / "bad").exists()


def test_sap_phantom_writes_an_adult_marrow_cohort(tmp_path) -> None:
    from sap.cli import main

    out = tmp_path / "cohort"
    args = ["phantom", str(out), "--healthy", "1", "--metastatic", "1", "--marrow", "adult",
            "--shape", "40", "26", "96", "--spacing-mm", "12", "12", "12", "--quiet"]  # fmt: skip
    assert main(args) == 0
    report = json.loads((out / "cohort.json").read_text(encoding="utf-8"))
    assert report["parameters"]["marrow"] == "adult"
