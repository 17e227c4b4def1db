"""Build, verify and clear the patch store: each case preprocessed once, atomically.

:func:`open_store` is what the data modules call: for every case it computes the entry key
(:mod:`~sap.data.store.keys`), trusts an existing entry only after
:func:`~sap.data.store.entry.verify_entry` agrees with its manifest, and otherwise builds
it (:func:`build_entry`), in ``num_workers`` processes with a progress bar. An entry found
corrupted is rebuilt with a :class:`PatchStoreWarning`.

Building is atomic per case: the entry is written into a temporary folder
(``.tmp~<host>~<pid>~...``) which is renamed into place only once complete, manifest last.
A killed build leaves at most a temporary folder, which is never read and is removed by
the next build on the same host once its process is gone.
"""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from sap.data.cases import Case, case_to_subject
from sap.data.lesions import find_lesions
from sap.data.store.entry import (
    IMAGE,
    MANIFEST,
    StoreEntry,
    StoreEntryError,
    class_tables,
    label_file,
    lesion_tables,
    read_manifest,
    verify_entry,
    write_array,
    write_manifest,
    write_tables,
)
from sap.data.store.keys import StoreRecipe, case_sources, entry_key, entry_name

_TMP, _TRASH = ".tmp~", ".trash~"
#: Entry folders verified in this process, with the (name, size, mtime) of their files
#: then: an entry is checked again only if one of its files changed since.
_VERIFIED: dict[str, tuple] = {}


class PatchStoreWarning(RuntimeWarning):
    """A store entry was found damaged and has been rebuilt."""


def build_entry(case: Case, recipe: StoreRecipe, cache_dir: Path) -> Path:
    """Preprocess ``case`` and write its entry into ``cache_dir`` atomically; return its folder.

    Preprocessing is :func:`sap.data.preprocess.preprocessing` with the recipe's settings,
    the very transform the on-the-fly path applies, so stored arrays equal what it computes.
    The caller's torch RNG state is left as it was (TorchIO draws a number per transform
    call): whether the store had to be built does not change what a seed trains on.
    """
    import torch

    with torch.random.fork_rng(devices=[]):
        return _build_entry(case, recipe, cache_dir)


def _build_entry(case: Case, recipe: StoreRecipe, cache_dir: Path) -> Path:
    from sap.data.preprocess import preprocessing

    key = entry_key(case, recipe)
    final = cache_dir / entry_name(case.case_id, key)
    token = f"{socket.gethostname()}~{os.getpid()}~{secrets.token_hex(4)}"
    tmp = cache_dir / f"{_TMP}{token}~{final.name}"
    tmp.mkdir(parents=True)
    try:
        subject = case_to_subject(case)
        for name in list(case.labels):
            if name not in recipe.labels:
                subject.remove_image(name)  # not stored: do not read it
        subject = preprocessing(recipe.channels, recipe.spacing_mm, recipe.percentiles)(subject)
        first = subject[recipe.channels[0]]
        image = np.stack([subject[c].data[0].numpy() for c in recipe.channels])
        files = {IMAGE: write_array(tmp, IMAGE, image.astype(np.float32, copy=False))}
        del image
        tables: dict[str, np.ndarray] = {}
        for name in recipe.labels:
            label = _uint8_label(subject[name].data[0].numpy(), case, name)
            files[label_file(name)] = write_array(tmp, label_file(name), label)
            tables.update(class_tables(name, label))
            if name == "lesion":
                tables.update(lesion_tables(name, find_lesions(label, recipe.connectivity)))
        files["tables.npz"] = write_tables(tmp, tables)
        write_manifest(
            tmp,
            {
                "case_id": case.case_id,
                "key": key,
                "recipe": recipe.to_dict(),
                "recipe_digest": recipe.digest(),
                "sources": case_sources(case, recipe),
                "shape": [int(n) for n in first.spatial_shape],
                "affine": np.asarray(first.affine, np.float64).tolist(),
                "files": files,
            },
        )
        _publish(tmp, final)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    _trust(final)
    return final


def _fingerprint(folder: Path) -> tuple:
    try:
        return tuple(
            sorted((f.name, f.stat().st_size, f.stat().st_mtime_ns) for f in folder.iterdir())
        )
    except FileNotFoundError:
        return ()


def _trust(folder: Path) -> None:
    _VERIFIED[str(folder)] = _fingerprint(folder)


def _trusted(folder: Path) -> bool:
    """Whether ``folder`` was verified in this process and none of its files changed since."""
    known = _VERIFIED.get(str(folder))
    return known is not None and known == _fingerprint(folder)


def _uint8_label(label: np.ndarray, case: Case, name: str) -> np.ndarray:
    if label.size and (label.min() < 0 or label.max() > 255):
        raise ValueError(
            f"case '{case.case_id}': the {name} label map holds values outside 0-255 "
            f"({label.min()}..{label.max()}); label maps are stored as uint8."
        )
    return label.astype(np.uint8, copy=False)


def _publish(tmp: Path, final: Path) -> None:
    """Rename the finished ``tmp`` to ``final``; if another process got there first, keep theirs."""
    try:
        os.rename(tmp, final)
    except OSError:
        if not (final / MANIFEST).exists():
            raise


def _discard(folder: Path) -> None:
    """Move an untrusted entry out of the way (atomically), then delete it."""
    trash = folder.with_name(f"{_TRASH}{secrets.token_hex(4)}~{folder.name}")
    try:
        os.rename(folder, trash)
    except FileNotFoundError:
        return
    shutil.rmtree(trash, ignore_errors=True)


def ensure_entry(case: Case, recipe: StoreRecipe, cache_dir: Path) -> tuple[str, str, str]:
    """Make sure ``case`` has a trusted entry: reuse a verified one or (re)build it.

    Returns:
        ``(folder, status, reason)``; status ``"reused"``, ``"built"`` or ``"rebuilt"``
        (then ``reason`` says what was wrong with the old entry).
    """
    key = entry_key(case, recipe)
    final = cache_dir / entry_name(case.case_id, key)
    reason = ""
    if final.exists():
        if _trusted(final):
            return str(final), "reused", ""
        try:
            verify_entry(final, key)
            _trust(final)
            return str(final), "reused", ""
        except StoreEntryError as error:
            reason = str(error)
            _discard(final)
    build_entry(case, recipe, cache_dir)
    _remove_replaced(case, recipe, cache_dir, keep=final)
    return str(final), "rebuilt" if reason else "built", reason


def _remove_replaced(case: Case, recipe: StoreRecipe, cache_dir: Path, keep: Path) -> None:
    """Delete entries of ``case`` with the same recipe but older sources (superseded)."""
    prefix = entry_name(case.case_id, "")
    for folder in cache_dir.glob(f"{prefix}*"):
        if folder == keep or not folder.is_dir():
            continue
        try:
            manifest = read_manifest(folder)
        except StoreEntryError:
            continue
        if manifest.get("case_id") == case.case_id and manifest.get("recipe_digest") == (
            recipe.digest()
        ):
            _discard(folder)


class _EnsureCases:
    """Map-style dataset: item ``i`` makes sure case ``i`` has an entry (run in workers)."""

    def __init__(self, cases: Sequence[Case], recipe: StoreRecipe, cache_dir: Path) -> None:
        self.cases, self.recipe, self.cache_dir = list(cases), recipe, cache_dir

    def __len__(self) -> int:
        return len(self.cases)

    def __getitem__(self, index: int) -> tuple[str, str, str]:
        return ensure_entry(self.cases[index], self.recipe, self.cache_dir)


def open_store(
    cases: Sequence[Case],
    recipe: StoreRecipe,
    cache_dir: str | Path,
    num_workers: int = 0,
    progress: bool = True,
) -> list[StoreEntry]:
    """The trusted entries of ``cases`` under ``recipe``, built or rebuilt where needed.

    Args:
        cases: the cases to store.
        recipe: their preprocessing.
        cache_dir: the store folder (see :func:`~sap.data.store.keys.resolve_cache_dir`).
        num_workers: processes that verify and build entries in parallel (0: this one).
        progress: show a progress bar (tqdm) while entries are checked or built.

    Returns:
        One :class:`~sap.data.store.entry.StoreEntry` per case, in order.

    Raises:
        PermissionError: the store folder cannot be created or written; the message says
            how to put it elsewhere.
    """
    import torch

    cache_dir = _writable_store(Path(cache_dir))
    remove_abandoned(cache_dir)
    folders = [cache_dir / entry_name(c.case_id, entry_key(c, recipe)) for c in cases]
    pending = [case for case, folder in zip(cases, folders) if not _trusted(folder)]
    if pending:
        with torch.random.fork_rng(devices=[]):  # the caller's draws do not depend on a build
            _check_or_build(pending, recipe, cache_dir, num_workers, progress)
    return [StoreEntry(folder, read_manifest(folder)) for folder in folders]


def _check_or_build(
    pending: Sequence[Case], recipe: StoreRecipe, cache_dir: Path, num_workers: int, progress: bool
) -> None:
    from torch.utils.data import DataLoader
    from tqdm.auto import tqdm

    loader = DataLoader(
        _EnsureCases(pending, recipe, cache_dir),
        batch_size=None,
        num_workers=min(int(num_workers), len(pending)),
    )
    bar = tqdm(loader, total=len(pending), desc="patch store", unit="case", disable=not progress)
    for (folder, status, reason), case in zip(bar, pending):  # bar first: it reaches 100 %
        _trust(Path(folder))
        if status == "rebuilt":
            warnings.warn(
                f"patch store: the entry of case '{case.case_id}' could not be trusted "
                f"({reason}); it has been rebuilt.",
                PatchStoreWarning,
                stacklevel=3,
            )


def _writable_store(cache_dir: Path) -> Path:
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
        probe = cache_dir / f"{_TMP}probe~{os.getpid()}"
        probe.mkdir(exist_ok=True)
        probe.rmdir()
    except OSError as error:
        raise PermissionError(
            f"cannot write the patch store to {cache_dir} ({error.strerror or error}). Put it "
            f"on a writable disk with --data.cache_dir DIR or the environment variable "
            f"SAP_CACHE_DIR, or train without it (--data.patch_store false)."
        ) from None
    return cache_dir


def remove_abandoned(cache_dir: Path) -> None:
    """Delete temporary folders left by killed builds of this host (their process is gone)."""
    host = socket.gethostname()
    for folder in Path(cache_dir).glob(f"{_TMP}*"):
        parts = folder.name[len(_TMP) :].split("~")
        if len(parts) >= 2 and parts[0] == host and not _alive(parts[1]):
            shutil.rmtree(folder, ignore_errors=True)
    for folder in Path(cache_dir).glob(f"{_TRASH}*"):
        shutil.rmtree(folder, ignore_errors=True)


def _alive(pid: str) -> bool:
    try:
        os.kill(int(pid), 0)
    except (ValueError, ProcessLookupError):
        return False
    except PermissionError:
        return True
    return True


def clear_store(cache_dir: str | Path) -> int:
    """Delete every entry and temporary folder the store wrote in ``cache_dir``.

    Other files are left alone (and the folder too, unless it ends up empty), so pointing
    this at a wrong folder cannot delete data.

    Returns:
        The number of bytes freed.
    """
    cache_dir = Path(cache_dir)
    if not cache_dir.is_dir():
        return 0
    freed = 0
    for folder in cache_dir.iterdir():
        ours = folder.name.startswith((_TMP, _TRASH))
        if not ours and folder.is_dir():
            try:
                read_manifest(folder)
                ours = True
            except StoreEntryError:
                ours = False
        if ours and folder.is_dir():
            freed += sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())
            shutil.rmtree(folder, ignore_errors=True)
            _VERIFIED.pop(str(folder), None)
    if not any(cache_dir.iterdir()):
        cache_dir.rmdir()
    return freed


__all__ = [
    "PatchStoreWarning",
    "build_entry",
    "clear_store",
    "ensure_entry",
    "open_store",
    "remove_abandoned",
]
