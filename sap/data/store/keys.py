"""What a store entry depends on, and where the store lives.

An entry is keyed by the identity of the case's source files (resolved path, size and
modification time in ns) and by the preprocessing recipe (:class:`StoreRecipe`): touching,
replacing or moving a file, or changing a preprocessing parameter, gives a new key, so that
case (and only that case) is built again.

The store folder is, in order of precedence: the ``cache_dir`` argument
(``--data.cache_dir``), the environment variable ``SAP_CACHE_DIR``, or next to the data:
``.sap-cache/<name>`` in the folder that holds the data set ``<name>`` (a folder of case
folders, a case folder, or a CSV manifest without its suffix). The data set's own folder
is never written to, and case discovery skips folders whose name starts with ``.``.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path

from sap.data.cases import Case

#: Environment variable that moves the store of every data set (e.g. to a fast local disk).
CACHE_DIR_ENV = "SAP_CACHE_DIR"
#: Name of the default store folder, next to the data.
DEFAULT_CACHE_NAME = ".sap-cache"
#: Version of the on-disk layout; part of every key, so a new layout rebuilds.
STORE_FORMAT = 1


@dataclass(frozen=True)
class StoreRecipe:
    """The preprocessing an entry holds: the arguments of :func:`sap.data.preprocess.preprocessing`
    plus which label maps are stored and how lesions are counted.

    Args:
        channels: input channels, in stacking order; the first one is the reference grid.
        labels: label maps stored with the images (``"skeleton"``, ``"lesion"``).
        spacing_mm: target voxel spacing in mm (one number or three), or ``None``.
        percentiles: intensity percentiles mapped to 0 and 1, or ``None``.
        connectivity: neighbourhood of the lesion component table (6, 18, 26); only
            used when ``"lesion"`` is stored.

    >>> recipe = StoreRecipe(("T1", "b1000"), ("lesion",))
    >>> recipe.digest() == StoreRecipe(["T1", "b1000"], ["lesion"], None, (1, 99)).digest()
    True
    >>> recipe.digest() == StoreRecipe(("T1", "b1000"), ("lesion",), spacing_mm=4).digest()
    False
    """

    channels: tuple[str, ...]
    labels: tuple[str, ...]
    spacing_mm: float | tuple[float, ...] | None = None
    percentiles: tuple[float, float] | None = (1.0, 99.0)
    connectivity: int = 26
    format: int = field(default=STORE_FORMAT)

    def __post_init__(self) -> None:
        object.__setattr__(self, "channels", tuple(str(c) for c in self.channels))
        object.__setattr__(self, "labels", tuple(str(name) for name in self.labels))
        spacing = self.spacing_mm
        if spacing is not None:
            spacing = (
                float(spacing) if isinstance(spacing, int | float) else tuple(map(float, spacing))
            )
        object.__setattr__(self, "spacing_mm", spacing)
        if self.percentiles is not None:
            object.__setattr__(self, "percentiles", tuple(float(p) for p in self.percentiles))
        if "lesion" not in self.labels:
            object.__setattr__(self, "connectivity", 0)

    def to_dict(self) -> dict:
        """JSON-ready form (written into every entry's manifest)."""
        return asdict(self)

    def digest(self) -> str:
        """Hash of the recipe: equal recipes, equal digests."""
        return _hash(self.to_dict())


def file_identity(path: str | Path) -> dict:
    """Resolved path, size in bytes and modification time in ns of a source file."""
    resolved = Path(path).expanduser().resolve()
    stat = resolved.stat()
    return {"path": str(resolved), "bytes": stat.st_size, "mtime_ns": stat.st_mtime_ns}


def case_sources(case: Case, recipe: StoreRecipe) -> dict[str, dict]:
    """Identity of every file an entry of ``case`` is built from, by channel / label name."""
    files = {channel: case.images[channel] for channel in recipe.channels}
    for name in recipe.labels:
        path = case.labels.get(name)
        if path is None:
            raise ValueError(f"case '{case.case_id}' has no {name} label map to store.")
        files[name] = path
    return {name: file_identity(path) for name, path in files.items()}


def entry_key(case: Case, recipe: StoreRecipe) -> str:
    """Key of the entry of ``case`` under ``recipe``: a hash of its sources and the recipe."""
    return _hash({"case_id": case.case_id, "sources": case_sources(case, recipe)}, recipe)[:20]


def entry_name(case_id: str, key: str) -> str:
    """Folder name of an entry: the case id (made file-system safe) and its key.

    >>> entry_name("patient 7/a", "0123abcd")
    'patient_7_a.0123abcd'
    """
    safe = re.sub(r"[^A-Za-z0-9_.-]", "_", case_id).lstrip(".") or "case"
    return f"{safe}.{key}"


def resolve_cache_dir(cache_dir: str | Path | None, data_source: str | Path) -> Path:
    """Where the store of ``data_source`` lives: ``cache_dir``, ``$SAP_CACHE_DIR`` or next to it.

    Args:
        cache_dir: explicit folder (``--data.cache_dir``), or ``None``.
        data_source: the data set (a folder of case folders, one case folder or a CSV
            manifest); the default store is ``.sap-cache/<name>`` beside it.

    >>> import os; os.environ.pop(CACHE_DIR_ENV, None) and None
    >>> resolve_cache_dir(None, "/data/lesions").as_posix()
    '/data/.sap-cache/lesions'
    >>> resolve_cache_dir(None, "/data/lists/train.csv").as_posix()
    '/data/lists/.sap-cache/train'
    >>> resolve_cache_dir("/fast/cache", "/data/lesions").as_posix()
    '/fast/cache'
    """
    if cache_dir is not None and str(cache_dir).strip():
        return Path(cache_dir).expanduser()
    from_env = os.environ.get(CACHE_DIR_ENV, "").strip()
    if from_env:
        return Path(from_env).expanduser()
    source = Path(os.path.abspath(Path(data_source).expanduser()))
    is_manifest = source.suffix.lower() in (".csv", ".tsv")
    name = (source.stem if is_manifest else source.name) or "data"
    return source.parent / DEFAULT_CACHE_NAME / name


def _hash(*parts: object) -> str:
    text = json.dumps([p.to_dict() if hasattr(p, "to_dict") else p for p in parts], sort_keys=True)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


__all__ = [
    "CACHE_DIR_ENV",
    "DEFAULT_CACHE_NAME",
    "STORE_FORMAT",
    "StoreRecipe",
    "case_sources",
    "entry_key",
    "entry_name",
    "file_identity",
    "resolve_cache_dir",
]
