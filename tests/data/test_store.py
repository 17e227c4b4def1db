"""Specification of the patch store: keys, atomic builds, verification, and what it feeds.

Each case is preprocessed once into ``<cache>/<case>.<key>/`` (channels, label map, class
and lesion tables, manifest). These tests change sources and recipes, clear the store, and
compare what training and validation get from the store with the on-the-fly path. Killed
builds, damaged entries and an unwritable store: ``tests/faults/test_store_faults.py``.
"""

from __future__ import annotations

import math
import os
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
import torchio as tio

from sap.data.cases import discover_cases
from sap.data.datamodules import LesionDataModule, SkeletonDataModule
from sap.data.lesions import find_lesions
from sap.data.preprocess import preprocessing
from sap.data.samplers import LESION_COMPONENT
from sap.data.store import (
    CACHE_DIR_ENV,
    StoreRecipe,
    clear_store,
    open_store,
    resolve_cache_dir,
)
from sap.data.store import build as store_build
from sap.data.store.entry import MANIFEST
from tests.helpers.data import write_nifti, write_small_cohort

RECIPE = StoreRecipe(("T1", "b1000"), ("lesion",))


@pytest.fixture
def cohort(tmp_path: Path) -> Path:
    return write_small_cohort(tmp_path / "cohort", 3)


def count_builds(monkeypatch) -> list[str]:
    """Record the case id of every entry built from now on."""
    built: list[str] = []
    real = store_build.build_entry

    def counting(case, recipe, cache_dir):
        built.append(case.case_id)
        return real(case, recipe, cache_dir)

    monkeypatch.setattr(store_build, "build_entry", counting)
    return built


def entry_folders(cache: Path) -> set[str]:
    return {p.name for p in cache.iterdir() if (p / MANIFEST).exists()}


# ---- what an entry holds ----------------------------------------------------------------


def test_entry_holds_the_preprocessed_case_and_its_lesion_table(cohort: Path) -> None:
    cases = discover_cases(cohort)
    (entry,) = open_store(cases[:1], RECIPE, cohort.parent / "store", progress=False)
    subject = preprocessing(("T1", "b1000"))(tio.Subject(
        T1=tio.ScalarImage(cases[0].images["T1"]),
        b1000=tio.ScalarImage(cases[0].images["b1000"]),
        lesion=tio.LabelMap(cases[0].lesion),
    ))  # fmt: skip
    assert entry.image.dtype == np.float32 and entry.shape == subject.spatial_shape
    assert np.array_equal(entry.image[0], subject["T1"].data[0].numpy())
    assert np.array_equal(entry.image[1], subject["b1000"].data[0].numpy())  # on T1's grid
    assert np.array_equal(entry.label("lesion"), subject["lesion"].data[0].numpy())
    assert np.allclose(entry.affine, subject["T1"].affine)
    expected = find_lesions(subject["lesion"].data[0].numpy())
    stored = entry.lesions()
    assert [(x.lower, x.upper, x.num_voxels) for x in stored] == [
        (x.lower, x.upper, x.num_voxels) for x in expected
    ]
    assert all(np.array_equal(a.voxels, b.voxels) for a, b in zip(stored, expected))
    values, counts, flat = entry.class_voxels("lesion")
    assert values.tolist() == [1] and counts.tolist() == [int(subject["lesion"].data.sum())]
    assert np.array_equal(np.sort(flat), np.flatnonzero(entry.label("lesion")))


# ---- keys ---------------------------------------------------------------------------------


def test_a_changed_source_file_rebuilds_that_case_only(cohort: Path, monkeypatch) -> None:
    cache = cohort.parent / "store"
    cases = discover_cases(cohort)
    open_store(cases, RECIPE, cache, progress=False)
    before = entry_folders(cache)
    built = count_builds(monkeypatch)

    open_store(discover_cases(cohort), RECIPE, cache, progress=False)
    assert built == [], "unchanged sources and recipe: every entry is reused"

    rng = np.random.default_rng(9)
    t1 = rng.random((12, 12, 10), dtype=np.float32)
    write_nifti(cohort / "case_1" / "T1.nii.gz", t1, np.diag([2.0, 2.0, 3.0, 1.0]))
    (entry,) = open_store(discover_cases(cohort)[1:2], RECIPE, cache, progress=False)
    after = entry_folders(cache)

    assert built == ["case_1"]
    assert before - after == {n for n in before if n.startswith("case_1.")}, "old entry removed"
    assert len(after - before) == 1 and entry.folder.name in after - before
    assert entry.image[0].max() == 1.0 and not np.array_equal(
        entry.image[0], open_store(cases[:1], RECIPE, cache, progress=False)[0].image[0]
    )


def test_a_touched_source_file_rebuilds_that_case_only(cohort: Path, monkeypatch) -> None:
    """Same bytes, newer modification time (a re-copied file): the key changes, so it rebuilds."""
    cache = cohort.parent / "store"
    open_store(discover_cases(cohort), RECIPE, cache, progress=False)
    built = count_builds(monkeypatch)
    source = cohort / "case_2" / "b1000.nii.gz"
    content, stat = source.read_bytes(), source.stat()
    os.utime(source, ns=(stat.st_atime_ns, stat.st_mtime_ns + 5_000_000_000))

    open_store(discover_cases(cohort), RECIPE, cache, progress=False)
    assert source.read_bytes() == content
    assert built == ["case_2"]
    open_store(discover_cases(cohort), RECIPE, cache, progress=False)
    assert built == ["case_2"], "rebuilt once, then reused"


def test_a_changed_recipe_gets_its_own_entries_and_keeps_the_others(
    cohort: Path, monkeypatch
) -> None:
    cache = cohort.parent / "store"
    cases = discover_cases(cohort)
    open_store(cases, RECIPE, cache, progress=False)
    built = count_builds(monkeypatch)
    other = StoreRecipe(("T1", "b1000"), ("lesion",), percentiles=(2, 98))

    entries = open_store(cases, other, cache, progress=False)

    assert sorted(built) == ["case_0", "case_1", "case_2"]
    assert len(entry_folders(cache)) == 6, "entries of the first recipe stay for their users"
    assert all(e.manifest["recipe"]["percentiles"] == [2.0, 98.0] for e in entries)
    open_store(cases, RECIPE, cache, progress=False)
    assert len(built) == 3, "the first recipe's entries are still valid"


def test_the_store_folder_comes_from_the_argument_then_the_environment_then_the_data(
    tmp_path: Path, monkeypatch
) -> None:
    monkeypatch.delenv(CACHE_DIR_ENV, raising=False)
    assert resolve_cache_dir(None, tmp_path / "cases") == tmp_path / ".sap-cache" / "cases"
    assert resolve_cache_dir(None, tmp_path / "list.csv") == tmp_path / ".sap-cache" / "list"
    monkeypatch.setenv(CACHE_DIR_ENV, str(tmp_path / "fast"))
    assert resolve_cache_dir(None, tmp_path / "cases") == tmp_path / "fast"
    assert resolve_cache_dir(tmp_path / "mine", tmp_path / "cases") == tmp_path / "mine"


# ---- atomic builds and verification ---------------------------------------------------------


def test_clear_store_removes_only_what_the_store_wrote(cohort: Path) -> None:
    cache = cohort.parent / "store"
    open_store(discover_cases(cohort), RECIPE, cache, progress=False)
    (cache / "notes.txt").write_text("mine")
    (cache / ".tmp~elsewhere~1~ab~case_9.x").mkdir()

    freed = clear_store(cache)

    assert freed > 0 and sorted(p.name for p in cohort.iterdir()) == ["case_0", "case_1", "case_2"]
    assert freed > 0 and [p.name for p in cache.iterdir()] == ["notes.txt"]
    assert all(len(list((cohort / f"case_{i}").iterdir())) == 4 for i in range(3))
    (cache / "notes.txt").unlink()
    clear_store(cache)
    assert not cache.exists()


# ---- what training and validation get --------------------------------------------------------


def lesion_module(cohort: Path, **kwargs) -> LesionDataModule:
    options = {"patch_size": 8, "val_cases": ["case_2"], "queue_length": 4, "augment": False}
    return LesionDataModule(str(cohort), **{**options, **kwargs})


@pytest.mark.parametrize("patch_size", [8, (16, 16, 6)])
def test_store_epochs_hold_the_same_patches_as_the_on_the_fly_ones(
    cohort: Path, patch_size
) -> None:
    """Same cases in the same order, same lesions, same counts, same voxels at each place.

    Placements differ under a seed: TorchIO draws a random number for every transform call,
    even deterministic ones (preprocessing, padding, the crop of each patch), which the store
    path does not make.
    """
    torch.manual_seed(0)
    plain = lesion_module(cohort, patch_size=patch_size, patch_store=False)
    reference = list(plain.make_train_queue())
    torch.manual_seed(0)
    store = lesion_module(cohort, patch_size=patch_size)
    patches = list(store.make_train_queue())

    def summary(drawn):
        cases = [str(p["case_id"]) for p in drawn]
        order = [c for i, c in enumerate(cases) if c not in cases[:i]]
        return order, Counter((str(p["case_id"]), int(p[LESION_COMPONENT])) for p in drawn)

    assert summary(patches) == summary(reference)
    assert (cohort.parent / ".sap-cache" / "cohort").is_dir(), "default: next to the data"
    assert store.lesion_counts == plain.lesion_counts
    volumes = {
        str(s["case_id"]): s
        for s in tio.SubjectsDataset(plain._subjects(plain.train_cases), plain.eval_transform())
    }
    for patch in patches:
        start, stop = np.split(np.asarray(patch[tio.LOCATION]), 2)
        box = (slice(None), *(slice(a, b) for a, b in zip(start, stop)))
        volume = volumes[str(patch["case_id"])]
        for name in ("T1", "b1000", "lesion"):
            assert torch.equal(patch[name].data, volume[name].data[box]), name
        if not patch[LESION_COMPONENT]:
            assert int(patch["lesion"].data.sum()) == 0


def test_store_batches_do_not_depend_on_the_number_of_workers(cohort: Path) -> None:
    def batches(workers: int) -> list[dict]:
        torch.manual_seed(1)
        module = lesion_module(cohort, num_workers=workers, batch_size=3)
        return list(module.train_dataloader())

    serial, parallel = batches(0), batches(2)
    assert len(serial) == len(parallel) == math.ceil((2 + 2 + 3 + 3) / 3)  # cases 0 and 1
    assert [b["case_id"] for b in serial] == [b["case_id"] for b in parallel]
    assert all(torch.equal(a["image"], b["image"]) for a, b in zip(serial, parallel))
    assert all(torch.equal(a["label"], b["label"]) for a, b in zip(serial, parallel))


@pytest.mark.parametrize("patch_size", [8, (16, 16, 6)])
def test_store_validation_volumes_equal_the_on_the_fly_ones(cohort: Path, patch_size) -> None:
    plain = list(lesion_module(cohort, patch_size=patch_size, patch_store=False).val_dataloader())
    store = list(lesion_module(cohort, patch_size=patch_size).val_dataloader())
    assert [b["case_id"] for b in store] == [b["case_id"] for b in plain] == [["case_2"]]
    for a, b in zip(store, plain):
        assert torch.equal(a["image"], b["image"]) and torch.equal(a["label"], b["label"])
        assert torch.equal(a["affine"], b["affine"])  # padding moves the origin alike


def test_store_augmentation_is_drawn_per_patch_and_reproducible(cohort: Path) -> None:
    def draw(seed: int) -> list[tio.Subject]:
        torch.manual_seed(seed)
        return list(lesion_module(cohort, augment=True, intensity_p=1.0).make_train_queue())

    def where(patches):
        return [(str(p["case_id"]), *p[tio.LOCATION].tolist()[:3]) for p in patches]

    patches = draw(3)
    assert where(draw(3)) == where(patches) and where(draw(4)) != where(patches)
    scales = [p.history[-2].scale for p in patches]  # RandomScaleIntensity's draw
    assert len(set(scales)) == len(patches), "each patch has its own augmentation"
    # Golden values (case, patch corner) of the store path for seed 3.
    assert where(patches)[:6] == [
        ("case_0", 10, 5, 19), ("case_0", 1, 8, 11), ("case_0", 7, 0, 10),
        ("case_0", 1, 3, 2), ("case_1", 2, 10, 5), ("case_1", 15, 6, 18),
    ]  # fmt: skip


def test_skeleton_patches_from_the_store_are_class_balanced(cohort: Path) -> None:
    torch.manual_seed(0)
    module = SkeletonDataModule(
        str(cohort), patch_size=5, samples_per_volume=200, val_fraction=0.0, queue_length=50
    )
    patches = list(module.make_train_queue())
    assert len(patches) == 600
    centres = [int(p["skeleton"].data[0, 2, 2, 2]) for p in patches]
    background = sum(c == 0 for c in centres) / len(centres)
    assert 0.42 < background < 0.58  # background_probability 0.5
    bone = Counter(c for c in centres if c)
    assert set(bone) == set(range(1, 10))
    assert max(bone.values()) < 2.2 * min(bone.values())  # classes equally likely


def test_a_patch_not_square_in_the_axial_plane_cannot_be_rotated_from_the_store(
    cohort: Path,
) -> None:
    with pytest.raises(ValueError, match=r"not square in the axial plane.*patch_store=False"):
        LesionDataModule(str(cohort), patch_size=(8, 6, 8), rot90_p=0.2)
    LesionDataModule(str(cohort), patch_size=(8, 6, 8), rot90_p=0.0)
    LesionDataModule(str(cohort), patch_size=(8, 6, 8), patch_store=False)
