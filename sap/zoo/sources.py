"""What a pretrained-model source names, checked before any weights are downloaded or read.

:func:`sap.zoo.load_pretrained` and ``LesionFinetuning(init=...)`` take the same sources:

- ``"hf://owner/repo"`` or ``"hf://owner/repo@revision"`` — a Hub repo of an export folder;
- an export folder (``model.safetensors`` + ``config.json``);
- a file: a Lightning ``.ckpt`` of a ``sap`` task, or (for initialisation only) a plain
  state dict such as a reference-code ``.pt`` or a ``.safetensors`` file;
- a zoo name (``"sap-skeleton-phantom"``, see :func:`sap.zoo.list_models`).

:func:`resolve_source` says which one a string is and refuses what cannot work — an unknown
zoo name (with close names), a path that does not exist, a malformed Hub URI, a file that is
not a PyTorch checkpoint — in a fraction of a second, so that a typo fails when a model is
built rather than when training starts.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from sap.errors import ConfigError, MissingPathError
from sap.zoo.checkpoint import check_torch_file
from sap.zoo.hub import HF_URI_PREFIX, parse_hf_uri
from sap.zoo.metadata import CONFIG_FILE, WEIGHTS_FILE, ModelConfigError

if TYPE_CHECKING:
    from sap.zoo.catalogue import ZooEntry

SourceKind = Literal["hub", "folder", "file", "zoo"]

#: Suffixes of files that hold tensors only (no recipe): usable to initialise, not to predict.
STATE_DICT_SUFFIXES: tuple[str, ...] = (".safetensors",)


@dataclass(frozen=True)
class PretrainedSource:
    """A checked pretrained-model source.

    Attributes:
        text: the source as given.
        kind: ``"hub"``, ``"folder"`` (export folder), ``"file"`` (checkpoint or state
            dict) or ``"zoo"`` (catalogue name).
        path: the local folder or file (``"folder"`` / ``"file"``).
        entry: the catalogue entry (``"zoo"``).
    """

    text: str
    kind: SourceKind
    path: Path | None = None
    entry: ZooEntry | None = None


def resolve_source(name_or_path: str | Path) -> PretrainedSource:
    """Classify ``name_or_path`` and check that it can be loaded; nothing is downloaded.

    Raises:
        ConfigError: a malformed ``hf://`` URI.
        MissingPathError: a path (it has a separator or a weights suffix) that does not exist.
        ModelConfigError: a folder that is not an export folder.
        CheckpointError: a file that is not a PyTorch checkpoint or safetensors file.
        UnknownModelError: a name that is neither a path nor a zoo model (lists close names).
        MissingPathError: also for a bundled zoo model whose weights are not installed.

    >>> resolve_source("hf://sap-org/sap-skeleton@v1").kind
    'hub'
    """
    text = str(name_or_path)
    if isinstance(name_or_path, str) and text.startswith(HF_URI_PREFIX):
        try:
            parse_hf_uri(text)
        except ValueError as error:
            raise ConfigError(str(error)) from error
        return PretrainedSource(text, "hub")
    path = Path(name_or_path).expanduser()
    if path.is_dir():
        if not (path / CONFIG_FILE).is_file():
            raise ModelConfigError(
                f"{path} is a folder without {CONFIG_FILE}, so not an export folder. Give an "
                f"export folder ({WEIGHTS_FILE} + {CONFIG_FILE}, as `sap zoo export` writes), a "
                ".ckpt file, a zoo name or 'hf://owner/repo@revision'."
            )
        return PretrainedSource(text, "folder", path)
    if path.is_file():
        if path.suffix not in STATE_DICT_SUFFIXES:
            check_torch_file(path)
        return PretrainedSource(text, "file", path)
    return _zoo_source(name_or_path, text, path)


def _zoo_source(name_or_path: str | Path, text: str, path: Path) -> PretrainedSource:
    from sap.zoo.catalogue import ModelZoo

    zoo = ModelZoo.default()
    looks_like_path = isinstance(name_or_path, Path) or any(sep in text for sep in ("/", "\\"))
    if text not in zoo and (looks_like_path or path.suffix in (".ckpt", ".pt", ".pth")):
        repo = text if text.count("/") == 1 and not path.suffix else "owner/repo"
        raise MissingPathError(
            f"{text} does not exist. Give an export folder, a .ckpt file, a zoo name, or a Hub "
            f"repo as 'hf://{repo}'."
        )
    entry = zoo.get(text)
    if entry.bundled:
        folder = entry.bundled_path
        if folder is None or not (folder / CONFIG_FILE).is_file():
            raise MissingPathError(
                f"The weights of bundled model {entry.name!r} are not installed (expected {folder}). "
                "They are made by `python model_zoo/train_phantom_models.py`; reinstall sap or run it."
            )
    return PretrainedSource(text, "zoo", entry=entry)


__all__ = ["STATE_DICT_SUFFIXES", "PretrainedSource", "SourceKind", "resolve_source"]
