"""The model zoo: one YAML card per published model, a lookup that explains itself, a listing.

A card (``model_zoo/<name>.yaml``) says what a model is and where its weights are: bundled in
the package (``source: {bundled: <folder>}``, under ``sap/zoo_bundled/``) or on the Hub
(``source: {hub: owner/repo, revision: <40-hex commit>}`` — always a pinned commit, so a name
means the same weights forever), with the sha256 of ``model.safetensors`` that the loader
checks. Unknown names fail with the closest known names.

Where cards are read from, first match wins per name:

1. ``$SAP_MODEL_ZOO`` (a folder of ``*.yaml`` cards), when set;
2. ``model_zoo/`` of the source tree ``sap`` runs from (a git checkout or editable install);
3. bundled export folders without a card (an installed wheel ships ``sap/zoo_bundled/`` but
   not ``model_zoo/``): their ``config.json`` supplies the card's fields.

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

from sap.zoo.config import CONFIG_FILE, WEIGHTS_FILE, read_config

#: Folder of bundled export folders inside the installed package.
BUNDLED_DIR = Path(__file__).resolve().parent.parent / "zoo_bundled"
#: ``model_zoo/`` of the source tree (absent in an installed wheel).
SOURCE_ZOO_DIR = Path(__file__).resolve().parents[2] / "model_zoo"

_NAME = re.compile(r"^[a-z0-9][a-z0-9._\-]*$")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_COMMIT = re.compile(r"^[0-9a-f]{40}$")


class ZooCardError(ValueError):
    """A model card YAML file is malformed; the message names the file and the field."""


class UnknownModelError(LookupError):
    """No model of that name in the zoo; the message lists close names."""


@dataclass(frozen=True)
class ZooCard:
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
        path: the card file (``None`` for a card derived from a bundled ``config.json``).
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
    license: str = "apache-2.0"
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
            f"ZooCard(name={self.name!r}, task={self.task!r}, backbone={self.backbone!r}, "
            f"size={size!r}, source={self.source!r})"
        )

    def to_yaml(self) -> str:
        """The card as YAML (the format :meth:`from_yaml` reads)."""
        return yaml.safe_dump(card_to_dict(self), sort_keys=False, allow_unicode=True)


def card_to_dict(card: ZooCard) -> dict[str, Any]:
    data: dict[str, Any] = {
        "name": card.name,
        "summary": card.summary,
        "task": card.task,
        "backbone": card.backbone,
        "channels": list(card.channels),
        "labels": list(card.labels),
        "source": {"bundled": card.bundled}
        if card.bundled
        else {"hub": card.hub_repo, "revision": card.hub_revision},
        "sha256": card.sha256,
        "size_bytes": card.size_bytes,
        "num_parameters": card.num_parameters,
        "metrics": dict(card.metrics),
        "metrics_description": card.metrics_description,
        "license": card.license,
        "synthetic": card.synthetic,
        "training": dict(card.training),
    }
    return data


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


def card_from_dict(data: Any, source: str) -> ZooCard:
    """Validate a parsed card; raise :class:`ZooCardError` naming ``source`` and the field."""
    if not isinstance(data, dict):
        raise ZooCardError(
            f"{source}: a model card is a YAML mapping, found {type(data).__name__}."
        )
    missing = [key for key in _REQUIRED if key not in data]
    unknown = sorted(set(data) - set(_REQUIRED) - set(_OPTIONAL))
    if missing or unknown:
        parts = [
            f"missing field(s) {missing}" if missing else "",
            f"unknown field(s) {unknown}" if unknown else "",
        ]
        raise ZooCardError(
            f"{source}: "
            + " and ".join(p for p in parts if p)
            + f"; fields are {list(_REQUIRED + _OPTIONAL)}."
        )
    name = str(data["name"])
    if not _NAME.match(name):
        raise ZooCardError(
            f"{source}: name {name!r} must be lowercase letters, digits, '.', '_', '-'."
        )
    if data["task"] not in ("skeleton", "lesion"):
        raise ZooCardError(
            f"{source}: task must be 'skeleton' or 'lesion', found {data['task']!r}."
        )
    if not _SHA256.match(str(data["sha256"])):
        raise ZooCardError(
            f"{source}: sha256 must be 64 lowercase hex digits of {WEIGHTS_FILE}, found {data['sha256']!r}."
        )
    src = data["source"]
    bundled = hub = revision = None
    if isinstance(src, dict) and set(src) == {"bundled"}:
        bundled = str(src["bundled"])
    elif isinstance(src, dict) and set(src) == {"hub", "revision"}:
        hub, revision = str(src["hub"]), str(src["revision"])
        if not _COMMIT.match(revision):
            raise ZooCardError(
                f"{source}: source.revision must be a pinned 40-hex commit (a branch or tag can change "
                f"under the same name), found {revision!r}."
            )
    else:
        raise ZooCardError(
            f"{source}: source must be {{bundled: <folder>}} or {{hub: owner/repo, revision: <commit>}}, found {src!r}."
        )
    metrics = data.get("metrics") or {}
    if not isinstance(metrics, dict) or not all(
        isinstance(v, int | float) and not isinstance(v, bool) for v in metrics.values()
    ):
        raise ZooCardError(f"{source}: metrics must map names to numbers, found {metrics!r}.")
    return ZooCard(
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
        metrics={str(k): float(v) for k, v in metrics.items()},
        metrics_description=str(data.get("metrics_description") or ""),
        license=str(data.get("license") or "apache-2.0"),
        synthetic=bool(data.get("synthetic", False)),
        training=dict(data.get("training") or {}),
        path=Path(source) if source.endswith((".yaml", ".yml")) else None,
    )


def read_card(path: str | Path) -> ZooCard:
    """Read and validate one card file."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as error:
        raise ZooCardError(f"{path} is not valid YAML: {error}") from error
    card = card_from_dict(data, str(path))
    if card.name != path.stem:
        raise ZooCardError(
            f"{path}: the file must be named after the model, i.e. {card.name}.yaml."
        )
    return card


def card_from_export(folder: str | Path, summary: str = "") -> ZooCard:
    """A card for a bundled export folder, built from its ``config.json``."""
    folder = Path(folder)
    config = read_config(folder)
    if config.weights is None:
        raise ZooCardError(
            f"{folder / CONFIG_FILE} records no weights sha256; re-export the model."
        )
    recipe = config.recipe
    return ZooCard(
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
    """A set of :class:`ZooCard` by name."""

    def __init__(self, cards: Iterable[ZooCard] = ()) -> None:
        self._cards: dict[str, ZooCard] = {}
        for card in cards:
            if card.name in self._cards:
                other = self._cards[card.name]
                raise ZooCardError(
                    f"Model {card.name!r} is defined twice: {other.path} and {card.path}."
                )
            self._cards[card.name] = card

    @classmethod
    def from_directory(cls, folder: str | Path) -> ModelZoo:
        """All ``*.yaml`` cards of ``folder``."""
        return cls(read_card(path) for path in sorted(Path(folder).glob("*.yaml")))

    @staticmethod
    def card_directory() -> Path:
        """Where the cards are read from: ``$SAP_MODEL_ZOO``, else the source tree's ``model_zoo/``."""
        env = os.environ.get("SAP_MODEL_ZOO")
        return Path(env) if env else SOURCE_ZOO_DIR

    @classmethod
    def default(cls) -> ModelZoo:
        """The zoo ``sap`` ships: see the module docstring for where cards come from."""
        folder = cls.card_directory()
        zoo = cls.from_directory(folder) if folder.is_dir() else cls()
        if BUNDLED_DIR.is_dir():
            covered = {card.bundled for card in zoo if card.bundled}
            extra = [
                card_from_export(path)
                for path in sorted(BUNDLED_DIR.iterdir())
                if (path / CONFIG_FILE).is_file() and path.name not in covered
            ]
            zoo = cls([*zoo, *(card for card in extra if card.name not in zoo)])
        return zoo

    def __contains__(self, name: object) -> bool:
        return name in self._cards

    def __iter__(self) -> Iterator[ZooCard]:
        return iter(self._cards[name] for name in sorted(self._cards))

    def __len__(self) -> int:
        return len(self._cards)

    def get(self, name: str) -> ZooCard:
        """The card of ``name``; :class:`UnknownModelError` with close matches otherwise."""
        try:
            return self._cards[name]
        except KeyError:
            raise UnknownModelError(self._unknown_message(name)) from None

    def list(self, pattern: str = "*", task: str | None = None) -> list[ZooCard]:
        """Cards whose name matches shell-style ``pattern``, optionally of one ``task``, by name."""
        return [
            card
            for card in self
            if fnmatch.fnmatchcase(card.name, pattern) and (task is None or card.task == task)
        ]

    def _unknown_message(self, name: str) -> str:
        names = sorted(self._cards)
        close = difflib.get_close_matches(str(name).lower(), names, n=3, cutoff=0.5)
        hint = f" Did you mean {', '.join(repr(n) for n in close)}?" if close else ""
        return (
            f"No model named {name!r} in the sap model zoo.{hint} Known models: {', '.join(names) or '(none)'}. "
            "load_pretrained also takes a local export folder, a Lightning .ckpt, or 'hf://owner/repo@revision'."
        )


def list_models(pattern: str = "*", task: str | None = None) -> list[ZooCard]:
    """Models in the zoo matching ``pattern`` (shell wildcards), optionally of one ``task``.

    Each entry's ``repr`` shows name, task, backbone, size and source; ``[m.name for m in
    list_models()]`` gives the names to pass to :func:`sap.load_pretrained`.
    """
    return ModelZoo.default().list(pattern, task=task)


def render_zoo_table(zoo: ModelZoo) -> str:
    """The Markdown table of ``model_zoo/README.md`` (kept in sync by a test)."""
    lines = [
        "| name | task | backbone | channels | classes | parameters | size (MB) | metrics | source | data |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for card in zoo:
        metrics = ", ".join(f"{k} {v:.3f}" for k, v in card.metrics.items()) or "—"
        params = f"{card.num_parameters:,}" if card.num_parameters else "—"
        size = f"{card.size_bytes / 1e6:.2f}" if card.size_bytes else "—"
        source = (
            "bundled"
            if card.bundled
            else f"[{card.hub_repo}](https://huggingface.co/{card.hub_repo})"
        )
        lines.append(
            f"| `{card.name}` | {card.task} | `{card.backbone}` | {', '.join(card.channels)} | "
            f"{len(card.labels)} | {params} | {size} | {metrics} | {source} | "
            f"{'synthetic' if card.synthetic else 'patients'} |"
        )
    return "\n".join(lines) + "\n"


_README_HEAD = """# The sap model zoo

<!-- Generated from the cards in this folder by `sap zoo list --write-readme model_zoo/README.md`.
     Do not edit by hand: tests/test_zoo_registry.py checks it is up to date. -->

One YAML card per published model (`model_zoo/<name>.yaml`): where the weights are (bundled
in the package, or a Hub repository pinned to a commit), the sha256 of `model.safetensors`
that `load_pretrained` checks, task, backbone, channels, labels, metrics and licence.

```python
from sap import list_models, load_pretrained

list_models()                                    # the table below, from Python
model = load_pretrained("sap-skeleton-phantom")  # bundled: works offline
lesion = load_pretrained("sap-skeleton-phantom", task="lesion", num_classes=2)  # SAP transfer
model = load_pretrained("hf://owner/repo@<commit>")  # any repo written by `sap zoo push`
```

Hub models are fetched with `huggingface_hub` into the standard Hugging Face cache; the code
that the test suite runs against a local Hub look-alike is the code that talks to
huggingface.co (`HF_ENDPOINT`, `HF_HUB_OFFLINE` and `HF_HUB_CACHE` are honoured).

Models marked *synthetic* were trained on generated phantoms: they exist for demos, tests and
tutorials, and say so in their model card. No model here is a medical device.

"""

_README_TAIL = """
Export your own: `sap zoo export CKPT OUT` (Lightning checkpoint -> export folder),
`sap zoo push OUT owner/repo`, then add a card here with the pinned commit and sha256.
Reference checkpoints of the SAP authors' MONAI scripts: `sap zoo import-reference CKPT OUT --task skeleton`.
"""


def render_zoo_readme(zoo: ModelZoo) -> str:
    """The complete ``model_zoo/README.md``: fixed prose around :func:`render_zoo_table`."""
    table = (
        render_zoo_table(zoo)
        if len(zoo)
        else "No models yet: `python model_zoo/train_phantom_models.py` makes the bundled demo models.\n"
    )
    details = []
    for card in zoo:
        training = card.training
        line = f"- `{card.name}`: {card.summary}"
        if training.get("command"):
            line += f" Made by `{training['command']}`"
            line += f" ({training['runtime']})." if training.get("runtime") else "."
        details.append(line)
    return (
        _README_HEAD
        + "## Models\n\n"
        + table
        + "\n"
        + "\n".join(details)
        + ("\n" if details else "")
        + _README_TAIL
    )


__all__ = [
    "BUNDLED_DIR",
    "SOURCE_ZOO_DIR",
    "ModelZoo",
    "UnknownModelError",
    "ZooCard",
    "ZooCardError",
    "card_from_export",
    "card_to_dict",
    "list_models",
    "read_card",
    "render_zoo_readme",
    "render_zoo_table",
]
