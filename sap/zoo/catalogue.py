"""The zoo catalogue: one YAML entry per published model, a lookup that explains itself, a listing.

An entry (``model_zoo/<name>.yaml``) says what a model is and where its weights are: bundled in
the package (``source: {bundled: <folder>}``, under ``sap/zoo_bundled/``) or on the Hub
(``source: {hub: owner/repo, revision: <40-hex commit>}`` — always a pinned commit, so a name
means the same weights forever), with the sha256 of ``model.safetensors`` that the loader
checks. Unknown names fail with the closest known names.

Where entries are read from, first match wins per name:

1. ``$SAP_MODEL_ZOO`` (a folder of ``*.yaml`` entries), when set;
2. ``model_zoo/`` of the source tree ``sap`` runs from (a git checkout or editable install);
3. bundled export folders without an entry (an installed wheel ships ``sap/zoo_bundled/`` but
   not ``model_zoo/``): their ``config.json`` supplies the entry's fields.

Like timm's ``list_models`` but a small object instead of module-level dictionaries, so tests
can build their own zoo from a temporary folder.
"""

from __future__ import annotations

import difflib
import fnmatch
import os
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from sap.zoo.metadata import CONFIG_FILE, DEFAULT_LICENSE, WEIGHTS_FILE, read_config

#: Folder of bundled export folders inside the installed package.
BUNDLED_DIR = Path(__file__).resolve().parent.parent / "zoo_bundled"
#: ``model_zoo/`` of the source tree (absent in an installed wheel).
SOURCE_ZOO_DIR = Path(__file__).resolve().parents[2] / "model_zoo"

_NAME = re.compile(r"^[a-z0-9][a-z0-9._\-]*$")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_COMMIT = re.compile(r"^[0-9a-f]{40}$")
_REQUIRED = ("name", "summary", "task", "backbone", "channels", "labels", "source", "sha256")
_OPTIONAL = (
    "size_bytes",
    "num_parameters",
    "metrics",
    "metrics_description",
    "license",
    "synthetic",
    "training",
)


class ZooEntryError(ValueError):
    """A catalogue YAML file is malformed; the message names the file and the field."""


class UnknownModelError(LookupError):
    """No model of that name in the zoo; the message lists close names."""


@dataclass(frozen=True)
class ZooEntry:
    """One published model.

    Attributes:
        name: zoo name, lowercase (``"sap-skeleton-phantom"``).
        summary: one line for listings.
        task: ``"skeleton"`` or ``"lesion"``.
        backbone: registered backbone name.
        channels: input channel names in order.
        labels: output class names.
        sha256: hex digest of ``model.safetensors``; the loader refuses other bytes.
        bundled: folder name under ``sap/zoo_bundled/`` (bundled models), else ``None``.
        hub_repo: ``owner/repo`` (Hub models), else ``None``.
        hub_revision: pinned 40-hex commit of ``hub_repo``.
        size_bytes: size of ``model.safetensors``.
        num_parameters: number of parameters.
        metrics: metric name -> value as stated by the publisher.
        metrics_description: where/how the metrics were measured.
        license: licence id of the weights.
        synthetic: trained on synthetic phantoms (demo models).
        training: how the model was made (command, runtime, seed, ...), free form.
        path: the YAML file (``None`` for an entry derived from a bundled ``config.json``).
    """

    name: str
    summary: str
    task: str
    backbone: str
    channels: tuple[str, ...]
    labels: tuple[str, ...]
    sha256: str
    bundled: str | None = None
    hub_repo: str | None = None
    hub_revision: str | None = None
    size_bytes: int | None = None
    num_parameters: int | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    metrics_description: str = ""
    license: str = DEFAULT_LICENSE
    synthetic: bool = False
    training: dict[str, Any] = field(default_factory=dict)
    path: Path | None = field(default=None, compare=False)

    @property
    def source(self) -> str:
        """``"bundled"`` or ``"hf://owner/repo@commit"``."""
        return "bundled" if self.bundled else f"hf://{self.hub_repo}@{self.hub_revision}"

    @property
    def bundled_path(self) -> Path | None:
        return BUNDLED_DIR / self.bundled if self.bundled else None

    def __repr__(self) -> str:
        size = f"{self.size_bytes / 1e6:.2f} MB" if self.size_bytes else "?"
        return (
            f"ZooEntry(name={self.name!r}, task={self.task!r}, backbone={self.backbone!r}, "
            f"size={size!r}, source={self.source!r})"
        )

    def to_yaml(self) -> str:
        """The entry as YAML (the format :func:`read_entry` reads)."""
        return yaml.safe_dump(entry_to_dict(self), sort_keys=False, allow_unicode=True)


def entry_to_dict(entry: ZooEntry) -> dict[str, Any]:
    """The entry as the mapping its YAML file holds."""
    source = (
        {"bundled": entry.bundled}
        if entry.bundled
        else {"hub": entry.hub_repo, "revision": entry.hub_revision}
    )
    return {
        "name": entry.name,
        "summary": entry.summary,
        "task": entry.task,
        "backbone": entry.backbone,
        "channels": list(entry.channels),
        "labels": list(entry.labels),
        "source": source,
        "sha256": entry.sha256,
        "size_bytes": entry.size_bytes,
        "num_parameters": entry.num_parameters,
        "metrics": dict(entry.metrics),
        "metrics_description": entry.metrics_description,
        "license": entry.license,
        "synthetic": entry.synthetic,
        "training": dict(entry.training),
    }


def entry_from_dict(data: Any, source: str) -> ZooEntry:
    """Validate a parsed entry; raise :class:`ZooEntryError` naming ``source`` and the field."""
    _check_fields(data, source)
    name = str(data["name"])
    if not _NAME.match(name):
        raise ZooEntryError(
            f"{source}: name {name!r} must be lowercase letters, digits, '.', '_', '-'."
        )
    if data["task"] not in ("skeleton", "lesion"):
        raise ZooEntryError(
            f"{source}: task must be 'skeleton' or 'lesion', found {data['task']!r}."
        )
    if not _SHA256.match(str(data["sha256"])):
        raise ZooEntryError(
            f"{source}: sha256 must be 64 lowercase hex digits of {WEIGHTS_FILE}, found {data['sha256']!r}."
        )
    bundled, hub, revision = _parse_source(data["source"], source)
    return ZooEntry(
        name=name,
        summary=str(data["summary"]),
        task=data["task"],
        backbone=str(data["backbone"]),
        channels=tuple(str(c) for c in data["channels"]),
        labels=tuple(str(c) for c in data["labels"]),
        sha256=str(data["sha256"]),
        bundled=bundled,
        hub_repo=hub,
        hub_revision=revision,
        size_bytes=data.get("size_bytes"),
        num_parameters=data.get("num_parameters"),
        metrics=_parse_metrics(data.get("metrics") or {}, source),
        metrics_description=str(data.get("metrics_description") or ""),
        license=str(data.get("license") or DEFAULT_LICENSE),
        synthetic=bool(data.get("synthetic", False)),
        training=dict(data.get("training") or {}),
        path=Path(source) if source.endswith((".yaml", ".yml")) else None,
    )


def _check_fields(data: Any, source: str) -> None:
    if not isinstance(data, dict):
        raise ZooEntryError(
            f"{source}: a zoo catalogue entry is a YAML mapping, found {type(data).__name__}."
        )
    missing = [key for key in _REQUIRED if key not in data]
    unknown = sorted(set(data) - set(_REQUIRED) - set(_OPTIONAL))
    if missing or unknown:
        parts = [
            f"missing field(s) {missing}" if missing else "",
            f"unknown field(s) {unknown}" if unknown else "",
        ]
        raise ZooEntryError(
            f"{source}: "
            + " and ".join(p for p in parts if p)
            + f"; fields are {list(_REQUIRED + _OPTIONAL)}."
        )


def _parse_source(src: Any, source: str) -> tuple[str | None, str | None, str | None]:
    """``(bundled folder, hub repo, hub revision)`` of an entry's ``source`` field."""
    if isinstance(src, dict) and set(src) == {"bundled"}:
        return str(src["bundled"]), None, None
    if isinstance(src, dict) and set(src) == {"hub", "revision"}:
        revision = str(src["revision"])
        if not _COMMIT.match(revision):
            raise ZooEntryError(
                f"{source}: source.revision must be a pinned 40-hex commit (a branch or tag can change "
                f"under the same name), found {revision!r}."
            )
        return None, str(src["hub"]), revision
    raise ZooEntryError(
        f"{source}: source must be {{bundled: <folder>}} or {{hub: owner/repo, revision: <commit>}}, found {src!r}."
    )


def _parse_metrics(metrics: Any, source: str) -> dict[str, float]:
    if not isinstance(metrics, dict) or not all(
        isinstance(v, int | float) and not isinstance(v, bool) for v in metrics.values()
    ):
        raise ZooEntryError(f"{source}: metrics must map names to numbers, found {metrics!r}.")
    return {str(k): float(v) for k, v in metrics.items()}


def read_entry(path: str | Path) -> ZooEntry:
    """Read and validate one catalogue file (``model_zoo/<name>.yaml``)."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as error:
        raise ZooEntryError(f"{path} is not valid YAML: {error}") from error
    entry = entry_from_dict(data, str(path))
    if entry.name != path.stem:
        raise ZooEntryError(
            f"{path}: the file must be named after the model, i.e. {entry.name}.yaml."
        )
    return entry


def entry_from_export(folder: str | Path, summary: str = "") -> ZooEntry:
    """The catalogue entry of a bundled export folder, built from its ``config.json``."""
    folder = Path(folder)
    config = read_config(folder)
    if config.weights is None:
        raise ZooEntryError(
            f"{folder / CONFIG_FILE} records no weights sha256; re-export the model."
        )
    recipe = config.recipe
    return ZooEntry(
        name=config.name or folder.name,
        summary=summary or (config.description.splitlines()[0] if config.description else ""),
        task=recipe.task,
        backbone=recipe.backbone,
        channels=tuple(recipe.channels),
        labels=tuple(recipe.labels),
        sha256=config.weights.sha256,
        bundled=folder.name,
        size_bytes=config.weights.size_bytes,
        num_parameters=config.weights.num_parameters,
        metrics=dict(config.metrics),
        metrics_description=config.metrics_description,
        license=config.license,
        synthetic=config.training_data.synthetic,
    )


class ModelZoo:
    """A set of :class:`ZooEntry` by name."""

    def __init__(self, entries: Iterable[ZooEntry] = ()) -> None:
        self._entries: dict[str, ZooEntry] = {}
        for entry in entries:
            if entry.name in self._entries:
                other = self._entries[entry.name]
                raise ZooEntryError(
                    f"Model {entry.name!r} is defined twice: {other.path} and {entry.path}."
                )
            self._entries[entry.name] = entry

    @classmethod
    def from_directory(cls, folder: str | Path) -> ModelZoo:
        """All ``*.yaml`` entries of ``folder``."""
        return cls(read_entry(path) for path in sorted(Path(folder).glob("*.yaml")))

    @staticmethod
    def catalogue_directory() -> Path:
        """Where entries are read from: ``$SAP_MODEL_ZOO``, else the source tree's ``model_zoo/``."""
        env = os.environ.get("SAP_MODEL_ZOO")
        return Path(env) if env else SOURCE_ZOO_DIR

    @classmethod
    def default(cls) -> ModelZoo:
        """The zoo ``sap`` ships: see the module docstring for where entries come from."""
        folder = cls.catalogue_directory()
        zoo = cls.from_directory(folder) if folder.is_dir() else cls()
        if BUNDLED_DIR.is_dir():
            covered = {entry.bundled for entry in zoo if entry.bundled}
            extra = [
                entry_from_export(path)
                for path in sorted(BUNDLED_DIR.iterdir())
                if (path / CONFIG_FILE).is_file() and path.name not in covered
            ]
            zoo = cls([*zoo, *(entry for entry in extra if entry.name not in zoo)])
        return zoo

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[ZooEntry]:
        return iter(self._entries[name] for name in sorted(self._entries))

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, name: str) -> ZooEntry:
        """The entry of ``name``; :class:`UnknownModelError` with close matches otherwise."""
        try:
            return self._entries[name]
        except KeyError:
            raise UnknownModelError(self._unknown_message(name)) from None

    def list(self, pattern: str = "*", task: str | None = None) -> list[ZooEntry]:
        """Entries whose name matches shell-style ``pattern``, optionally of one ``task``, by name."""
        return [
            entry
            for entry in self
            if fnmatch.fnmatchcase(entry.name, pattern) and (task is None or entry.task == task)
        ]

    def _unknown_message(self, name: str) -> str:
        names = sorted(self._entries)
        close = difflib.get_close_matches(str(name).lower(), names, n=3, cutoff=0.5)
        hint = f" Did you mean {', '.join(repr(n) for n in close)}?" if close else ""
        return (
            f"No model named {name!r} in the sap model zoo.{hint} Known models: {', '.join(names) or '(none)'}. "
            "load_pretrained also takes a local export folder, a Lightning .ckpt, or 'hf://owner/repo@revision'."
        )


def list_models(pattern: str = "*", task: str | None = None) -> list[ZooEntry]:
    """Models in the zoo matching ``pattern`` (shell wildcards), optionally of one ``task``.

    Each entry's ``repr`` shows name, task, backbone, size and source; ``[m.name for m in
    list_models()]`` gives the names to pass to :func:`sap.load_pretrained`.
    """
    return ModelZoo.default().list(pattern, task=task)


__all__ = [
    "BUNDLED_DIR",
    "SOURCE_ZOO_DIR",
    "ModelZoo",
    "UnknownModelError",
    "ZooEntry",
    "ZooEntryError",
    "entry_from_dict",
    "entry_from_export",
    "entry_to_dict",
    "list_models",
    "read_entry",
]
