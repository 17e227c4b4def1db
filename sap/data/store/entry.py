"""One case in the patch store: a folder of ``.npy`` arrays, tables and a manifest.

Layout of an entry folder ``<cache>/<case>.<key>/``:

* ``image.npy``: the preprocessed channels, float32 ``(C, X, Y, Z)``, C order;
* ``<label>.npy``: each stored label map, uint8 ``(X, Y, Z)``, on the same grid;
* ``tables.npz``: per label map, the voxels of each class (flat indices grouped by class,
  for class-balanced patch centres) and, for ``lesion``, the lesion component table
  (bounding boxes, voxel counts and voxels, what :class:`~sap.data.lesions.Lesion` holds);
* ``manifest.json``: case, key, recipe, source files, grid (shape, affine) and, per file,
  its size, shape, dtype and CRC-32. Written last: a folder is an entry only once it holds
  a manifest, and only after :func:`verify_entry` agrees with it is it trusted.

Arrays are opened as read-only memory maps, so a patch reads only the bytes of its window.
"""

from __future__ import annotations

import json
import zlib
from pathlib import Path
from typing import Any

import numpy as np

from sap.data.lesions import Lesion
from sap.io import atomic_write, write_text_atomic

MANIFEST = "manifest.json"
IMAGE = "image.npy"
TABLES = "tables.npz"
#: Marks a manifest as written by the patch store (clear_store only removes such folders).
GENERATOR = "sap.data.store"


class StoreEntryError(RuntimeError):
    """A store entry that cannot be trusted (missing, incomplete or corrupted file)."""


def label_file(name: str) -> str:
    """File name of label map ``name`` in an entry."""
    return f"{name}.npy"


def file_checksum(path: Path, block_bytes: int = 1 << 24) -> int:
    """CRC-32 of a file's bytes, read in blocks (about 1.5 GB/s)."""
    crc = 0
    with open(path, "rb") as stream:
        while block := stream.read(block_bytes):
            crc = zlib.crc32(block, crc)
    return crc


def write_array(folder: Path, name: str, array: np.ndarray) -> dict[str, Any]:
    """Save ``array`` as ``folder/name`` (``.npy``) atomically; return its manifest record."""
    path = atomic_write(folder / name, lambda tmp: np.save(tmp, array, allow_pickle=False))
    return {
        "bytes": path.stat().st_size,
        "crc32": file_checksum(path),
        "shape": list(array.shape),
        "dtype": str(array.dtype),
    }


def write_tables(folder: Path, tables: dict[str, np.ndarray]) -> dict[str, Any]:
    """Save the class and lesion tables as ``tables.npz`` atomically; return its record."""
    path = atomic_write(folder / TABLES, lambda tmp: np.savez(tmp, **tables))
    return {"bytes": path.stat().st_size, "crc32": file_checksum(path)}


def write_manifest(folder: Path, manifest: dict[str, Any]) -> Path:
    """Write ``manifest.json`` (last, once every file it lists is complete)."""
    text = json.dumps({"generator": GENERATOR, **manifest}, indent=1, sort_keys=True)
    return write_text_atomic(folder / MANIFEST, text)


def read_manifest(folder: Path) -> dict[str, Any]:
    """The manifest of an entry folder, or StoreEntryError if it is missing or unreadable."""
    path = folder / MANIFEST
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise StoreEntryError(f"{path} is missing (an interrupted build)") from None
    except (OSError, ValueError) as error:
        raise StoreEntryError(f"{path} is unreadable ({error})") from None
    if not isinstance(manifest, dict) or manifest.get("generator") != GENERATOR:
        raise StoreEntryError(f"{path} is not a patch-store manifest")
    return manifest


def verify_entry(folder: Path, expected_key: str | None = None) -> dict[str, Any]:
    """Check every file of an entry against its manifest; return the manifest.

    Checks, per file: present, size, ``.npy`` shape and dtype, CRC-32 of the bytes.

    Raises:
        StoreEntryError: naming the first file that does not match and how.
    """
    manifest = read_manifest(folder)
    if expected_key is not None and manifest.get("key") != expected_key:
        raise StoreEntryError(f"{folder} holds key {manifest.get('key')}, not {expected_key}")
    for name, record in manifest.get("files", {}).items():
        path = folder / name
        if not path.is_file():
            raise StoreEntryError(f"{path} is missing")
        size = path.stat().st_size
        if size != record["bytes"]:
            raise StoreEntryError(f"{path} has {size} bytes, its manifest says {record['bytes']}")
        if "shape" in record:
            try:
                array = np.load(path, mmap_mode="r", allow_pickle=False)
            except (OSError, ValueError) as error:
                raise StoreEntryError(f"{path} is not a readable .npy file ({error})") from None
            if list(array.shape) != record["shape"] or str(array.dtype) != record["dtype"]:
                raise StoreEntryError(
                    f"{path} holds {array.dtype} {list(array.shape)}, its manifest says "
                    f"{record['dtype']} {record['shape']}"
                )
            del array
        if file_checksum(path) != record["crc32"]:
            raise StoreEntryError(f"{path} does not match its checksum (the bytes changed)")
    return manifest


class StoreEntry:
    """A verified entry: memory-mapped arrays and the tables of one preprocessed case.

    Arrays are opened lazily, once per process, and never pickled: an entry sent to a
    data-loader worker reopens its memory maps there.

    Args:
        folder: the entry folder.
        manifest: its manifest (from :func:`verify_entry`).
    """

    def __init__(self, folder: Path, manifest: dict[str, Any]) -> None:
        self.folder = Path(folder)
        self.manifest = manifest
        self.case_id: str = manifest["case_id"]
        self.key: str = manifest["key"]
        self.channels: tuple[str, ...] = tuple(manifest["recipe"]["channels"])
        self.shape: tuple[int, int, int] = tuple(manifest["shape"])  # type: ignore[assignment]
        self.affine = np.asarray(manifest["affine"], dtype=np.float64)
        self._arrays: dict[str, np.ndarray] = {}
        self._tables: dict[str, np.ndarray] | None = None

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_arrays": {}, "_tables": None}

    def __repr__(self) -> str:
        return f"StoreEntry({self.case_id!r}, shape={self.shape}, folder={str(self.folder)!r})"

    def _array(self, name: str) -> np.ndarray:
        if name not in self._arrays:
            self._arrays[name] = np.load(self.folder / name, mmap_mode="r", allow_pickle=False)
        return self._arrays[name]

    @property
    def image(self) -> np.ndarray:
        """The channels, float32 ``(C, X, Y, Z)``, memory-mapped."""
        return self._array(IMAGE)

    def label(self, name: str) -> np.ndarray:
        """Label map ``name``, uint8 ``(X, Y, Z)``, memory-mapped."""
        return self._array(label_file(name))

    def tables(self) -> dict[str, np.ndarray]:
        """Every table of the entry (read once per process; small)."""
        if self._tables is None:
            with np.load(self.folder / TABLES, allow_pickle=False) as stored:
                self._tables = {name: stored[name] for name in stored.files}
        return self._tables

    def class_voxels(self, name: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(values, counts, flat_index)`` of label map ``name``'s non-zero classes.

        ``flat_index`` holds the C-order flat indices of the voxels of ``values[0]``, then
        of ``values[1]``, ...; ``counts`` says how many each.
        """
        tables = self.tables()
        return tables[f"{name}.values"], tables[f"{name}.counts"], tables[f"{name}.flat_index"]

    def lesions(self, name: str = "lesion") -> list[Lesion]:
        """The lesion component table of label map ``name``, as :class:`Lesion` objects."""
        tables = self.tables()
        lower, upper = tables[f"{name}.lesion_lower"], tables[f"{name}.lesion_upper"]
        counts, offsets = tables[f"{name}.lesion_voxels"], tables[f"{name}.lesion_offsets"]
        voxels = tables[f"{name}.lesion_coords"]
        return [
            Lesion(
                index + 1,
                tuple(int(n) for n in lower[index]),  # type: ignore[arg-type]
                tuple(int(n) for n in upper[index]),  # type: ignore[arg-type]
                int(counts[index]),
                voxels[offsets[index] : offsets[index + 1]].astype(np.int64),
            )
            for index in range(len(lower))
        ]


def lesion_tables(name: str, lesions: list[Lesion]) -> dict[str, np.ndarray]:
    """The component table of ``lesions`` as arrays for ``tables.npz``."""
    voxels = [lesion.voxels for lesion in lesions]
    if any(v is None for v in voxels):
        raise ValueError(
            "the lesion table needs every lesion's voxels (keep_voxels_larger_than=None)."
        )
    sizes = [len(v) for v in voxels]  # type: ignore[arg-type]
    return {
        f"{name}.lesion_lower": np.asarray([x.lower for x in lesions], np.int64).reshape(-1, 3),
        f"{name}.lesion_upper": np.asarray([x.upper for x in lesions], np.int64).reshape(-1, 3),
        f"{name}.lesion_voxels": np.asarray([x.num_voxels for x in lesions], np.int64),
        f"{name}.lesion_offsets": np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64),
        f"{name}.lesion_coords": (
            np.concatenate(voxels).astype(np.int32)  # type: ignore[arg-type]
            if lesions
            else np.zeros((0, 3), np.int32)
        ),
    }


def class_tables(name: str, label: np.ndarray) -> dict[str, np.ndarray]:
    """The voxels of each non-zero class of ``label``, grouped by class, as table arrays."""
    flat = np.flatnonzero(label)
    values_of_voxels = label.reshape(-1)[flat]
    order = np.argsort(values_of_voxels, kind="stable")  # by class, raster order within
    values, counts = np.unique(values_of_voxels, return_counts=True)
    index_dtype = np.uint32 if label.size < 2**32 else np.int64
    return {
        f"{name}.values": values.astype(np.int64),
        f"{name}.counts": counts.astype(np.int64),
        f"{name}.flat_index": flat[order].astype(index_dtype),
    }


__all__ = [
    "IMAGE",
    "MANIFEST",
    "TABLES",
    "StoreEntry",
    "StoreEntryError",
    "class_tables",
    "label_file",
    "lesion_tables",
    "read_manifest",
    "verify_entry",
    "write_array",
    "write_manifest",
    "write_tables",
]
