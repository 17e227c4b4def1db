"""The phantom: a synthetic WB-MRI cohort that must look like the data SAP is about.

Whole-volume anatomy checks use one default-size metastatic case and one healthy case (built
once per module); everything written to disk uses a coarse grid (12 mm voxels) to stay fast.
"""

from __future__ import annotations

import json
import subprocess
import sys

import nibabel as nib
import numpy as np
import pytest
from scipy import ndimage

from sap.labels import SKELETON_LABELS
from sap.phantom import (
    DEFAULT_SHAPE,
    DEFAULT_SPACING_MM,
    MIN_LESION_VOXELS,
    TISSUES,
    case_seed,
    generate_case,
    generate_cohort,
    write_case,
)
from sap.phantom.lesions import sample_lesion_count, sample_lesion_volumes_ml
from sap.volume import label_components, spacing_from_affine

TINY = {"shape": (40, 26, 96), "spacing_mm": (12.0, 12.0, 12.0)}
# Case seed of a default-size patient with many lesions (asserted below, so a change of the
# generator that breaks this choice shows up as a clear failure, not a weaker test).
MANY_LESIONS_SEED = 4
TISSUE = {name: index for index, name in enumerate(TISSUES)}
NEIGHBOURS_26 = np.ones((3, 3, 3), dtype=bool)


@pytest.fixture(scope="module")
def patient():
    case = generate_case(MANY_LESIONS_SEED, metastatic=True, case_id="patient")
    assert len(case.lesions) >= 10, "pick another MANY_LESIONS_SEED: this one has few lesions"
    return case


@pytest.fixture(scope="module")
def volunteer():
    return generate_case(case_seed(0, "healthy", 0), metastatic=False, case_id="volunteer")


def _read(path):
    image = nib.load(str(path))
    return np.asarray(image.dataobj), image


# ---------------------------------------------------------------- determinism


def test_same_seed_gives_byte_identical_arrays_and_other_seed_differs():
    first = generate_case(11, metastatic=True, **TINY)
    again = generate_case(11, metastatic=True, **TINY)
    other = generate_case(12, metastatic=True, **TINY)
    for name in ("t1", "b1000", "skeleton", "lesion"):
        assert getattr(first, name).tobytes() == getattr(again, name).tobytes(), name
    assert first.t1.tobytes() != other.t1.tobytes()
    assert first.skeleton.tobytes() != other.skeleton.tobytes()


def test_case_is_the_same_whatever_the_cohort_size(tmp_path):
    generate_cohort(tmp_path / "small", healthy=0, metastatic=1, seed=5, **TINY)
    generate_cohort(tmp_path / "large", healthy=1, metastatic=2, seed=5, **TINY)
    for name in ("T1.nii.gz", "b1000.nii.gz", "skeleton.nii.gz", "lesion.nii.gz"):
        small, _ = _read(tmp_path / "small" / "metastatic_000" / name)
        large, _ = _read(tmp_path / "large" / "metastatic_000" / name)
        np.testing.assert_array_equal(small, large, err_msg=name)


def test_healthy_and_metastatic_case_with_one_seed_share_the_body():
    healthy = generate_case(3, metastatic=False, **TINY)
    patient = generate_case(3, metastatic=True, **TINY)
    np.testing.assert_array_equal(healthy.skeleton, patient.skeleton)
    assert healthy.lesion is None and patient.lesion is not None and patient.lesion.any()


# ---------------------------------------------------------------- anatomy


def test_default_case_has_every_skeleton_label_and_default_grid(patient, volunteer):
    for case in (patient, volunteer):
        assert case.t1.shape == DEFAULT_SHAPE
        assert case.spacing_mm == pytest.approx(DEFAULT_SPACING_MM)
        present = set(np.unique(case.skeleton).tolist())
        missing = [SKELETON_LABELS[i] for i in range(len(SKELETON_LABELS)) if i not in present]
        assert not missing, f"{case.case_id}: labels missing: {missing}"


def test_skeleton_labels_only_inside_the_body_and_on_bone(patient, volunteer):
    for case in (patient, volunteer):
        bone = case.skeleton > 0
        assert not np.any(bone & ~case.body)
        assert np.all(np.isin(case.tissue[bone], (TISSUE["bone"], TISSUE["lesion"])))
        assert not np.any(case.tissue[~case.body])  # air outside the body outline


def test_body_fits_the_field_of_view_except_the_thighs_at_the_bottom(patient, volunteer):
    for case in (patient, volunteer):
        body = case.body
        for edge in (body[0], body[-1], body[:, 0], body[:, -1], body[:, :, -1]):
            assert not edge.any()
        assert body[:, :, 0].any()  # vertex-to-mid-thigh: the legs leave through the bottom


def test_bone_regions_sit_in_anatomical_order(volunteer):
    """Superior-inferior order of region centroids: cervical > thoracic > lumbar > pelvis >
    femurs; clavicles above the sternum's centre; humeri lateral to the spine."""
    coords = {
        name: np.argwhere(volunteer.skeleton == i).mean(axis=0)
        for i, name in enumerate(SKELETON_LABELS)
        if i > 0
    }
    z = {name: c[2] for name, c in coords.items()}
    assert z["cervical_spine"] > z["thoracic_spine"] > z["lumbar_spine"] > z["pelvis"] > z["femurs"]
    assert z["clavicles"] > z["sternum"]
    spine_x = np.argwhere(volunteer.skeleton == 2)[:, 0].mean()
    humeri = np.argwhere(volunteer.skeleton == SKELETON_LABELS.index("humeri"))
    assert (humeri[:, 0] < spine_x).any() and (humeri[:, 0] > spine_x).any()
    assert np.abs(humeri[:, 0] - spine_x).min() > 20  # > 100 mm from the midline


def test_spinal_cord_is_in_the_canal_behind_the_vertebral_bodies_and_not_bone(volunteer):
    cord = volunteer.tissue == TISSUE["spinal_cord"]
    assert cord.sum() > 20
    assert not np.any(volunteer.skeleton[cord])
    thoracic = volunteer.skeleton == SKELETON_LABELS.index("thoracic_spine")
    checked = 0
    for k in range(volunteer.t1.shape[2]):
        if cord[:, :, k].any() and thoracic[:, :, k].sum() > 10:
            cord_y = np.argwhere(cord[:, :, k])[:, 1].mean()
            bone_y = np.argwhere(thoracic[:, :, k])[:, 1]
            # posterior to the vertebral body (anterior 1/3 of the vertebra) ...
            assert cord_y < np.percentile(bone_y, 80)
            # ... and anterior to the spinous process (inside the ring of bone)
            assert cord_y > bone_y.min()
            checked += 1
    assert checked >= 10


def test_dwi_bright_distractors_exist_outside_bone(patient):
    marrow = (patient.tissue == TISSUE["bone"]) & (patient.skeleton > 0)
    marrow_dwi = np.median(patient.b1000[marrow])
    for organ in ("kidney", "spleen", "spinal_cord", "lymph_node"):
        mask = patient.tissue == TISSUE[organ]
        if organ in ("kidney", "spleen"):  # rim voxels are blurred into darker neighbours
            mask = ndimage.binary_erosion(mask)
        assert mask.sum() > 0, organ
        assert not np.any(patient.skeleton[mask]), f"{organ} overlaps bone labels"
        assert np.median(patient.b1000[mask]) > 3 * marrow_dwi, organ


def test_marrow_is_t1_bright_and_dwi_dark_compared_with_muscle(volunteer):
    deep_marrow = ndimage.binary_erosion(volunteer.skeleton == SKELETON_LABELS.index("pelvis"))
    muscle = ndimage.binary_erosion(volunteer.tissue == TISSUE["muscle"], iterations=2)
    assert np.median(volunteer.t1[deep_marrow]) > 1.5 * np.median(volunteer.t1[muscle])
    assert np.median(volunteer.b1000[deep_marrow]) < np.median(volunteer.b1000[muscle])


# ---------------------------------------------------------------- lesions


def test_lesions_only_inside_labelled_bone(patient):
    lesion = patient.lesion.astype(bool)
    assert lesion.any()
    assert not np.any(lesion & (patient.skeleton == 0))


def test_lesion_components_are_the_lesions_listed(patient):
    components, count = label_components(patient.lesion)
    assert count == len(patient.lesions)
    voxel_ml = float(np.prod(patient.spacing_mm)) / 1000
    sizes = np.sort(np.bincount(components.ravel())[1:])
    listed = np.sort([lesion["voxels"] for lesion in patient.lesions])
    np.testing.assert_array_equal(sizes, listed)
    assert min(lesion["voxels"] for lesion in patient.lesions) >= MIN_LESION_VOXELS
    for lesion in patient.lesions:
        assert lesion["volume_ml"] == pytest.approx(lesion["voxels"] * voxel_ml, abs=1e-3)
        assert lesion["region"] in SKELETON_LABELS[1:]


def test_lesions_are_t1_darker_and_dwi_brighter_than_surrounding_marrow(patient):
    lesion = patient.lesion.astype(bool)
    components, count = label_components(lesion)
    marrow = patient.tissue == TISSUE["bone"]
    darker = brighter = compared = 0
    for index, box in enumerate(ndimage.find_objects(components), start=1):
        box = tuple(slice(max(s.start - 4, 0), s.stop + 4) for s in box)
        mask = components[box] == index
        near = ndimage.binary_dilation(mask, NEIGHBOURS_26, iterations=3)
        ring = near & ~ndimage.binary_dilation(mask, NEIGHBOURS_26) & marrow[box]
        if ring.sum() < 3:
            continue
        compared += 1
        darker += patient.t1[box][mask].mean() < patient.t1[box][ring].mean()
        brighter += patient.b1000[box][mask].mean() > patient.b1000[box][ring].mean()
    assert compared >= 0.8 * count
    assert darker >= 0.9 * compared and brighter >= 0.9 * compared


def test_placed_lesions_reach_their_target_volumes(patient):
    volumes = np.array([lesion["volume_ml"] for lesion in patient.lesions])
    targets = np.array([lesion["target_volume_ml"] for lesion in patient.lesions])
    assert np.median(np.abs(volumes - targets) / targets) < 0.25
    assert (volumes >= 1.0).any() and (volumes < 1.0).any()


def test_lesion_count_and_volume_distributions_are_heavy_tailed():
    rng = np.random.default_rng(0)
    counts = np.array([sample_lesion_count(rng) for _ in range(3000)])
    assert counts.min() == 1 and counts.max() == 30
    assert np.median(counts) <= 5 and np.percentile(counts, 95) >= 15  # most few, some many
    volumes = sample_lesion_volumes_ml(rng, 20000)
    assert volumes.min() >= 0.1 and volumes.max() <= 20.0
    assert 0.4 < np.median(volumes) < 0.6
    assert 0.2 < np.mean(volumes >= 1.0) < 0.3  # about a quarter >= 1 mL
    assert np.mean(volumes >= 5.0) > 0.01  # a long right tail


def test_no_lesion_is_smaller_than_the_voxel_clamp():
    case = generate_case(21, metastatic=True, min_lesion_voxels=6, **TINY)
    components, count = label_components(case.lesion)
    sizes = np.bincount(components.ravel())[1:]
    assert count == len(case.lesions) and sizes.min() >= 6


# ---------------------------------------------------------------- files


def test_cohort_files_dtypes_affines_and_cohort_json(tmp_path):
    folders = generate_cohort(tmp_path / "cohort", healthy=1, metastatic=2, seed=1, **TINY)
    assert [f.name for f in folders] == ["healthy_000", "metastatic_000", "metastatic_001"]
    assert not (folders[0] / "lesion.nii.gz").exists()
    report = json.loads((tmp_path / "cohort" / "cohort.json").read_text(encoding="utf-8"))
    assert report["seed"] == 1 and report["parameters"]["spacing_mm"] == [12.0, 12.0, 12.0]
    entries = {entry["case_id"]: entry for entry in report["cases"]}
    for folder in folders:
        t1, t1_image = _read(folder / "T1.nii.gz")
        b1000, b_image = _read(folder / "b1000.nii.gz")
        skeleton, s_image = _read(folder / "skeleton.nii.gz")
        assert t1_image.get_data_dtype() == np.float32 and b_image.get_data_dtype() == np.float32
        assert s_image.get_data_dtype() == np.uint8 and skeleton.max() <= 9
        assert t1.shape == TINY["shape"] and b1000.shape == TINY["shape"]
        assert nib.aff2axcodes(t1_image.affine) == ("R", "A", "S")
        np.testing.assert_allclose(t1_image.header.get_zooms(), TINY["spacing_mm"])
        for image in (b_image, s_image):
            np.testing.assert_allclose(image.affine, t1_image.affine)
        assert np.isfinite(t1).all() and t1.min() >= 0
        entry = entries[folder.name]
        if folder.name.startswith("metastatic"):
            lesion, l_image = _read(folder / "lesion.nii.gz")
            assert l_image.get_data_dtype() == np.uint8 and set(np.unique(lesion)) <= {0, 1}
            _, count = label_components(lesion)
            assert entry["lesion_count"] == count == len(entry["lesion_volumes_ml"])
            voxel_ml = float(np.prod(TINY["spacing_mm"])) / 1000
            assert entry["total_lesion_volume_ml"] == pytest.approx(lesion.sum() * voxel_ml)
        else:
            assert entry["lesion_count"] == 0


def test_dwi_on_a_coarser_grid_covers_the_same_field_of_view():
    case = generate_case(4, metastatic=True, dwi_downsample=2, **TINY)
    assert case.b1000.shape == tuple(-(-n // 2) for n in TINY["shape"])
    np.testing.assert_allclose(
        spacing_from_affine(case.b1000_affine), np.array(TINY["spacing_mm"]) * 2
    )
    # voxel (0,0,0) of the DWI is the centre of T1 voxels (0..1, 0..1, 0..1)
    np.testing.assert_allclose(case.b1000_affine @ [0, 0, 0, 1], case.affine @ [0.5, 0.5, 0.5, 1])
    assert case.skeleton.shape == TINY["shape"] and case.lesion.shape == TINY["shape"]


def test_bad_arguments_fail_with_a_message_saying_what_to_do(tmp_path):
    with pytest.raises(ValueError, match="shape must be 3 whole numbers"):
        generate_case(0, metastatic=False, shape=(4, 4, 4))
    with pytest.raises(ValueError, match="spacing_mm must be 3 positive"):
        generate_case(0, metastatic=False, spacing_mm=(5, 0, 6))
    with pytest.raises(ValueError, match="at least one case"):
        generate_cohort(tmp_path / "none", healthy=0, metastatic=0)


def test_generate_cohort_refuses_a_non_empty_folder(tmp_path):
    out = tmp_path / "cohort"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="overwrite"):
        generate_cohort(out, healthy=1, metastatic=0, **TINY)
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt"]


def test_write_case_rewrites_a_folder_without_the_old_cases_files(tmp_path):
    folder = tmp_path / "case"
    write_case(generate_case(2, metastatic=True, **TINY), folder, render_png=True)
    assert (folder / "lesion.nii.gz").is_file() and (folder / "preview.png").is_file()
    healthy = generate_case(2, metastatic=False, **TINY)
    write_case(healthy, folder)
    assert sorted(p.name for p in folder.iterdir()) == [
        "T1.nii.gz",
        "b1000.nii.gz",
        "skeleton.nii.gz",
    ]
    t1, image = _read(folder / "T1.nii.gz")
    np.testing.assert_array_equal(t1, healthy.t1)
    np.testing.assert_allclose(image.affine, healthy.affine)


def test_max_lesions_caps_the_lesions_of_a_patient():
    counts = [len(generate_case(s, metastatic=True, max_lesions=2, **TINY).lesions) for s in (4, 8)]
    assert all(1 <= n <= 2 for n in counts), counts


# ---------------------------------------------------------------- CLI


def test_cli_writes_a_cohort_with_previews_then_refuses_then_overwrites(tmp_path, capsys):
    from sap.cli import main

    out = tmp_path / "cli_cohort"
    common = ["--shape", "40", "26", "96", "--spacing-mm", "12", "12", "12", "--seed", "3"]
    assert main(["phantom", str(out), "--healthy", "1", "--metastatic", "1", "--png", *common]) == 0
    assert "wrote 2 cases" in capsys.readouterr().out
    for case_id in ("healthy_000", "metastatic_000"):
        assert (out / case_id / "T1.nii.gz").is_file()
        assert (out / case_id / "preview.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (out / "metastatic_000" / "lesion.nii.gz").is_file()
    before = (out / "healthy_000" / "T1.nii.gz").read_bytes()

    assert main(["phantom", str(out), "--healthy", "1", *common]) == 2
    error = capsys.readouterr().err
    assert str(out) in error and "--overwrite" in error
    assert (out / "healthy_000" / "T1.nii.gz").read_bytes() == before

    assert (
        main(["phantom", str(out), "--healthy", "1", "--metastatic", "0", "--overwrite", *common])
        == 0
    )
    assert not (out / "metastatic_000").exists()  # the old cohort's extra case is gone
    assert not (out / "healthy_000" / "preview.png").exists()  # no stale preview
    report = json.loads((out / "cohort.json").read_text(encoding="utf-8"))
    assert [entry["case_id"] for entry in report["cases"]] == ["healthy_000"]


def test_cli_defaults_match_the_library_and_import_lazily():
    import sap.cli.phantom as cli

    assert tuple(cli.DEFAULT_SHAPE) == DEFAULT_SHAPE
    assert tuple(cli.DEFAULT_SPACING_MM) == DEFAULT_SPACING_MM
    code = "import sys, sap.cli.phantom; print('numpy' in sys.modules, 'scipy' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.stdout.split() == ["False", "False"], result.stderr
