"""Fault catalogue, patch store: a build killed half-way, a damaged entry, nowhere to write.

Every test works on real files in a temporary folder and checks the exact outcome: the
warning or error names the case or folder and the problem, nothing half-built is ever
trusted (an entry is used only after its files match its manifest), and the data folder the
store is built from is unchanged (:func:`tests.helpers.faults.tree_digest`).

| # | input / fault | expected outcome | test |
|---|---|---|---|
| 1 | store build killed (SIGKILL) half-way through a case | no entry trusted, only a `.tmp~` folder; the next build removes it and builds the case | test_a_killed_build_leaves_nothing_trusted_and_is_redone |
| 2 | stored image with bytes changed in place (same size) | PatchStoreWarning naming the case, "does not match its checksum", "rebuilt"; rebuilt equal | test_a_damaged_entry_is_detected_and_rebuilt_with_a_warning[flipped bytes] |
| 3 | stored label map truncated | PatchStoreWarning naming the case and the byte counts; rebuilt equal | test_a_damaged_entry_is_detected_and_rebuilt_with_a_warning[truncated] |
| 4 | entry manifest deleted | PatchStoreWarning "missing (an interrupted build)"; rebuilt equal | test_a_damaged_entry_is_detected_and_rebuilt_with_a_warning[manifest missing] |
| 5 | store folder cannot be created (a file in its way) | PermissionError naming the folder, `--data.cache_dir`, `SAP_CACHE_DIR`; nothing written | test_a_read_only_store_folder_is_refused_with_the_way_out |
| 6 | data module builds its store in the default place | data folder unchanged; store in `.sap-cache/<name>` beside it | test_building_the_store_never_writes_into_the_data_folder |
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from sap.data.cases import discover_cases
from sap.data.datamodules import LesionDataModule
from sap.data.store import PatchStoreWarning, StoreRecipe, open_store
from sap.data.store.entry import IMAGE, MANIFEST, label_file
from tests.helpers.data import write_small_cohort
from tests.helpers.faults import tree_digest

RECIPE = StoreRecipe(("T1", "b1000"), ("lesion",))


@pytest.fixture
def cohort(tmp_path: Path) -> Path:
    return write_small_cohort(tmp_path / "cohort", 3)


def entry_folders(cache: Path) -> set[str]:
    return {p.name for p in cache.iterdir() if (p / MANIFEST).exists()}


def test_a_read_only_store_folder_is_refused_with_the_way_out(cohort: Path) -> None:
    blocked = cohort / "not-a-folder"
    blocked.write_text("x")
    with pytest.raises(PermissionError, match=r"not-a-folder.*--data.cache_dir.*SAP_CACHE_DIR"):
        open_store(discover_cases(cohort), RECIPE, blocked / "store", progress=False)


KILLED_BUILD = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from sap.data.cases import discover_cases
    from sap.data.store import StoreRecipe, open_store
    from sap.data.store import build

    real = build.write_array

    def write_then_hang(folder, name, array):
        record = real(folder, name, array)
        Path(sys.argv[2]).write_text("image written")
        time.sleep(120)  # killed here, half-way through the entry
        return record

    build.write_array = write_then_hang
    cases = discover_cases(sys.argv[1])
    open_store(cases[:1], StoreRecipe(("T1", "b1000"), ("lesion",)), Path(sys.argv[1]).parent / "store")
    """
)


def test_a_killed_build_leaves_nothing_trusted_and_is_redone(cohort: Path) -> None:
    marker = cohort.parent / "marker"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    process = subprocess.Popen(
        [sys.executable, "-c", KILLED_BUILD, str(cohort), str(marker)],
        env=env,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 120
        while not marker.exists():
            assert process.poll() is None, process.stderr.read().decode()  # type: ignore[union-attr]
            assert time.monotonic() < deadline, "the build never started"
            time.sleep(0.1)
        process.send_signal(signal.SIGKILL)
    finally:
        process.wait()
    cache = cohort.parent / "store"
    leftovers = [p.name for p in cache.iterdir()]
    assert entry_folders(cache) == set(), "no entry may be trusted after a killed build"
    assert len(leftovers) == 1 and leftovers[0].startswith(".tmp~")
    assert (cache / leftovers[0] / IMAGE).exists(), "killed half-way: the image was written"

    (entry,) = open_store(discover_cases(cohort)[:1], RECIPE, cache, progress=False)

    assert [p.name for p in cache.iterdir()] == [entry.folder.name], "leftover removed"
    assert entry.image.shape[0] == 2 and len(entry.lesions()) > 0


@pytest.mark.parametrize("damage", ["flipped bytes", "truncated", "manifest missing"])
def test_a_damaged_entry_is_detected_and_rebuilt_with_a_warning(cohort: Path, damage: str) -> None:
    cache = cohort.parent / "store"
    cases = discover_cases(cohort)[:1]
    (entry,) = open_store(cases, RECIPE, cache, progress=False)
    image, label = np.array(entry.image), np.array(entry.label("lesion"))
    if damage == "flipped bytes":
        with open(entry.folder / IMAGE, "r+b") as stream:
            stream.seek(-100, os.SEEK_END)
            stream.write(b"\xff" * 8)
    elif damage == "truncated":
        with open(entry.folder / label_file("lesion"), "r+b") as stream:
            stream.truncate(200)
    else:
        (entry.folder / MANIFEST).unlink()
    reason = {"flipped bytes": "checksum", "truncated": "bytes", "manifest missing": "missing"}

    with pytest.warns(PatchStoreWarning, match=rf"case_0.*{reason[damage]}.*rebuilt"):
        (rebuilt,) = open_store(cases, RECIPE, cache, progress=False)

    assert np.array_equal(rebuilt.image, image) and np.array_equal(rebuilt.label("lesion"), label)


def test_building_the_store_never_writes_into_the_data_folder(cohort: Path, monkeypatch) -> None:
    monkeypatch.delenv("SAP_CACHE_DIR", raising=False)
    before = tree_digest(cohort)
    module = LesionDataModule(str(cohort), patch_size=8, val_cases=["case_2"])
    module.setup("fit")
    list(module.val_dataloader())

    assert tree_digest(cohort) == before
    store = cohort.parent / ".sap-cache" / "cohort"
    assert len(entry_folders(store)) == 3  # two training cases and the validation case
