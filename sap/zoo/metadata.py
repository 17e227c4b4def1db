"""``config.json`` of an exported model: its recipe plus what a user must know about it.

One export folder is one model (``model.safetensors`` + ``config.json`` + ``README.md``). The
config is the single source the loader rebuilds the network from (backbone name and kwargs,
channels, labels; see :class:`sap.recipe.ModelRecipe`) and the single source the model card is
generated from (task, training data, metrics, licence, citation). It also records the sha256
of the weights file, so a corrupted or tampered download is refused before it is used.

Reading is strict: unknown or missing fields are errors that name the file, because a config
silently half-understood is a model silently half-configured.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sap._version import __version__
from sap.citation import CITATION
from sap.recipe import ModelRecipe

#: File names inside an export folder.
WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"
CARD_FILE = "README.md"
EXPORT_FILES: tuple[str, ...] = (WEIGHTS_FILE, CONFIG_FILE, CARD_FILE)

#: Identifies the folder layout; bump :data:`FORMAT_VERSION` when a field is added or changed
#: (a reader refuses configs newer than it knows, with "upgrade sap"; it reads all older ones).
FORMAT_NAME = "sap-model"
FORMAT_VERSION = 2

DEFAULT_LICENSE = "apache-2.0"

#: How to cite SAP; every exported model carries it (the card shows it).
SAP_CITATION = CITATION
#: Hub dataset name of the synthetic phantoms of :mod:`sap.phantom` (card metadata).
PHANTOM_DATASET = "sap-phantom"

_SHA256 = re.compile(r"^[0-9a-f]{64}$")


class ModelConfigError(ValueError):
    """A ``config.json`` that cannot be read or does not describe a usable model."""


@dataclass
class TrainingData:
    """What the model was trained on, in words a reader of the model card understands.

    Args:
        description: cohort, sites, scanner, preprocessing, split (free text).
        synthetic: True when trained on generated phantoms rather than patient scans; the
            card then says plainly that the model is for demos, tests and tutorials.
        num_cases: number of training scans, when known.
        dataset: short name of the data set for the Hub card's ``datasets`` (a Hub dataset id
            when it has one); default ``"sap-phantom"`` for synthetic data, else none.
    """

    description: str = ""
    synthetic: bool = False
    num_cases: int | None = None
    dataset: str = ""

    @property
    def dataset_name(self) -> str:
        """:attr:`dataset`, or ``"sap-phantom"`` for synthetic data without one."""
        return self.dataset or (PHANTOM_DATASET if self.synthetic else "")


@dataclass
class WeightsInfo:
    """Facts about ``model.safetensors``, written by the exporter.

    Args:
        sha256: hex digest of the weights file; the loader refuses a file that differs.
        size_bytes: file size in bytes.
        num_parameters: number of scalar parameters (buffers excluded).
        dtype: tensor dtype of the parameters (``"float32"``).
        file: file name inside the export folder.
    """

    sha256: str
    size_bytes: int
    num_parameters: int
    dtype: str = "float32"
    file: str = WEIGHTS_FILE


@dataclass
class ModelConfig:
    """Everything ``config.json`` holds.

    Args:
        recipe: how to rebuild the network and prepare its input.
        name: zoo name (``"sap-skeleton-phantom"``) or empty for an unnamed export.
        description: one paragraph: what the model does.
        training_data: see :class:`TrainingData`.
        metrics: metric name -> value on the data named in ``metrics_description``, e.g.
            ``{"whole_skeleton_dice": 0.91}``.
        metrics_description: where and how the metrics were measured (cases, protocol).
        metrics_dataset: name of the data set the metrics were measured on (the card's
            model-index); default: the training data set.
        base_model: the model this one was fine-tuned from, as the Hub names it
            (``"owner/repo"``) or a zoo name; empty when trained from scratch.
        license: SPDX-style licence id of the weights (Hub metadata), e.g. ``"apache-2.0"``.
        citation: BibTeX of the work to cite when using the model.
        sap_version: version of ``sap`` that wrote the export.
        weights: facts about the weights file (filled in by the exporter).
        provenance: where the weights came from (checkpoint file name, reference import, ...).
    """

    recipe: ModelRecipe
    name: str = ""
    description: str = ""
    training_data: TrainingData = field(default_factory=TrainingData)
    metrics: dict[str, float] = field(default_factory=dict)
    metrics_description: str = ""
    metrics_dataset: str = ""
    base_model: str = ""
    license: str = DEFAULT_LICENSE
    citation: str = SAP_CITATION
    sap_version: str = __version__
    weights: WeightsInfo | None = None
    provenance: dict[str, Any] = field(default_factory=dict)

    @property
    def task(self) -> str:
        return self.recipe.task

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict with the format marker first."""
        data: dict[str, Any] = {"format": FORMAT_NAME, "format_version": FORMAT_VERSION}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if isinstance(value, ModelRecipe):
                value = value.to_dict()
            elif dataclasses.is_dataclass(value):
                value = dataclasses.asdict(value)
            data[f.name] = value
        return data

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=False) + "\n"

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "config.json") -> ModelConfig:
        """Rebuild from :meth:`to_dict` output.

        Args:
            data: the parsed JSON object.
            source: what to call the origin in error messages (usually the file path).

        Raises:
            ModelConfigError: wrong format marker, a newer format version, unknown or missing
                fields, or malformed values.
        """
        if not isinstance(data, dict):
            raise ModelConfigError(
                f"{source}: expected a JSON object, found {type(data).__name__}."
            )
        values = dict(data)
        marker = values.pop("format", None)
        version = values.pop("format_version", None)
        if marker != FORMAT_NAME:
            raise ModelConfigError(
                f"{source} is not a sap model config: 'format' is {marker!r}, expected {FORMAT_NAME!r}. "
                "Export models with `sap zoo export` or sap.zoo.save_pretrained."
            )
        if not isinstance(version, int) or version > FORMAT_VERSION:
            raise ModelConfigError(
                f"{source} has format_version {version!r}; this sap ({__version__}) reads up to "
                f"{FORMAT_VERSION}. Upgrade sap to load it."
            )
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ModelConfigError(
                f"{source}: unknown field(s) {unknown}; expected some of {sorted(known)}."
            )
        if "recipe" not in values:
            raise ModelConfigError(
                f"{source}: the 'recipe' field is missing; it says how to rebuild the model."
            )
        try:
            values["recipe"] = ModelRecipe.from_dict(values["recipe"])
            if "training_data" in values:
                values["training_data"] = TrainingData(**values["training_data"])
            if values.get("weights") is not None:
                values["weights"] = WeightsInfo(**values["weights"])
        except (TypeError, ValueError) as error:
            raise ModelConfigError(f"{source}: {error}") from error
        config = cls(**values)
        config.validate(source)
        return config

    def validate(self, source: str = "config.json") -> None:
        """Check the values a loader and a card rely on; raise :class:`ModelConfigError` if not."""
        recipe = self.recipe
        problems = []
        if not recipe.channels:
            problems.append("recipe.channels is empty")
        if len(recipe.labels) < 2:
            problems.append(f"recipe.labels needs at least 2 classes, found {recipe.labels}")
        if len(set(recipe.labels)) != len(recipe.labels):
            problems.append(f"recipe.labels has duplicates: {recipe.labels}")
        for key, value in self.metrics.items():
            if (
                not isinstance(value, int | float)
                or isinstance(value, bool)
                or not math.isfinite(value)
            ):
                problems.append(f"metric {key!r} must be a finite number, found {value!r}")
        if self.weights is not None and not _SHA256.match(str(self.weights.sha256)):
            problems.append(
                f"weights.sha256 must be 64 lowercase hex digits, found {self.weights.sha256!r}"
            )
        if problems:
            raise ModelConfigError(f"{source}: " + "; ".join(problems) + ".")


def read_config(path: str | Path) -> ModelConfig:
    """Read and validate a ``config.json`` (or the one inside an export folder)."""
    path = Path(path)
    if path.is_dir():
        path = path / CONFIG_FILE
    if not path.is_file():
        raise ModelConfigError(
            f"{path} does not exist. An export folder holds {', '.join(EXPORT_FILES)}; "
            "create one with `sap zoo export CKPT OUT`."
        )
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ModelConfigError(
            f"{path} is not valid JSON ({error}). Re-export or re-download the model."
        ) from error
    return ModelConfig.from_dict(data, source=str(path))


__all__ = [
    "CARD_FILE",
    "CONFIG_FILE",
    "DEFAULT_LICENSE",
    "EXPORT_FILES",
    "FORMAT_NAME",
    "FORMAT_VERSION",
    "PHANTOM_DATASET",
    "SAP_CITATION",
    "WEIGHTS_FILE",
    "ModelConfig",
    "ModelConfigError",
    "TrainingData",
    "WeightsInfo",
    "read_config",
]
