"""Export a model to a self-describing folder: ``model.safetensors`` + ``config.json`` + ``README.md``.

Why this format: safetensors holds tensors and nothing else, so loading a model never runs code
from it (a pickled checkpoint can); ``config.json`` carries the recipe, so the folder alone
rebuilds the model; ``README.md`` is the model card, generated from the config, so it cannot
drift from the weights. The same folder is what :func:`sap.zoo.push_to_hub` uploads.

The folder is written whole or not at all (:func:`sap.io.replace_folder`): everything goes
into a hidden sibling folder that is renamed into place at the end, so an interrupted export
never leaves a folder that looks complete but is not. The folder carries ``.sap-output.json``
(never uploaded) so that ``overwrite`` replaces an earlier export and nothing else. Files and
folders get the user's umask, like any other tool's.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from sap.io import file_sha256, replace_folder
from sap.recipe import ModelRecipe
from sap.zoo.metadata import (
    CARD_FILE,
    CONFIG_FILE,
    DEFAULT_LICENSE,
    WEIGHTS_FILE,
    ModelConfig,
    TrainingData,
    WeightsInfo,
    read_config,
)
from sap.zoo.model_card import render_model_card

if TYPE_CHECKING:
    from sap.backbones import SegmentationBackbone


#: The command named in an export folder's marker (also for ``import-reference`` and Python).
EXPORT_COMMAND = "sap zoo export"


class ExportError(ValueError):
    """The model and its recipe disagree, or the destination cannot be written."""


def state_dict_for_export(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """CPU, contiguous, unshared copies of every tensor of ``model.state_dict()``.

    safetensors refuses tensors that share memory (tied weights, views); cloning gives each
    key its own storage, at the cost of storing a tied tensor twice.
    """
    return {
        key: value.detach().to("cpu").contiguous().clone()
        for key, value in model.state_dict().items()
    }


def check_model_matches_recipe(model: SegmentationBackbone, recipe: ModelRecipe) -> None:
    """Raise :class:`ExportError` when ``recipe`` would rebuild a different network than ``model``."""
    problems = []
    if getattr(model, "name", "") and model.name != recipe.backbone:
        problems.append(f"backbone is {model.name!r} but the recipe says {recipe.backbone!r}")
    if model.in_channels != recipe.in_channels:
        problems.append(
            f"model takes {model.in_channels} channel(s) but the recipe lists {recipe.channels}"
        )
    if model.out_channels != recipe.num_classes:
        problems.append(
            f"model outputs {model.out_channels} class(es) but the recipe lists {recipe.labels}"
        )
    model_kwargs = getattr(model, "kwargs", None)
    if model_kwargs:
        differing = {
            key: (model_kwargs.get(key), value)
            for key, value in recipe.backbone_kwargs.items()
            if _jsonish(model_kwargs.get(key)) != _jsonish(value)
        }
        if differing:
            problems.append(f"backbone kwargs differ (model, recipe): {differing}")
    if problems:
        raise ExportError("Cannot export: " + "; ".join(problems) + ".")


def save_pretrained(
    model: SegmentationBackbone,
    out_dir: str | Path,
    config: ModelConfig,
    *,
    overwrite: bool = False,
    load_id: str | None = None,
) -> Path:
    """Write ``model`` as an export folder: weights, config and model card.

    Args:
        model: the network (a :class:`sap.backbones.SegmentationBackbone`).
        out_dir: destination folder: new or empty, or an earlier export with ``overwrite``.
        config: recipe and metadata. Its ``weights`` field is filled in here (sha256, size,
            parameter count); the caller's object is not modified.
        overwrite: replace an earlier export folder (atomically; only a folder this package
            exported, holding nothing else).
        load_id: identifier shown in the card's "How to load" example.

    Returns:
        ``out_dir``.

    Raises:
        ExportError: the recipe does not describe ``model``.
        sap.io.OutputFolderError: ``out_dir`` is not empty and is not an earlier export, or it
            is one and ``overwrite`` is False.
    """
    check_model_matches_recipe(model, config.recipe)
    tensors = state_dict_for_export(model)
    num_parameters = sum(p.numel() for p in model.parameters())
    dtypes = sorted({str(p.dtype).removeprefix("torch.") for p in model.parameters()})

    def write(folder: Path) -> None:
        from safetensors.torch import save_file

        weights_path = folder / WEIGHTS_FILE
        save_file(
            tensors,
            str(weights_path),
            # One key only: safetensors keeps metadata in an unordered map, so a second key
            # would make the file bytes (and its sha256) differ between identical exports.
            metadata={"format": "pt"},
        )
        final = dataclasses.replace(
            config,
            weights=WeightsInfo(
                sha256=file_sha256(weights_path),
                size_bytes=weights_path.stat().st_size,
                num_parameters=num_parameters,
                dtype=",".join(dtypes) or "float32",
            ),
        )
        final.validate(str(folder / CONFIG_FILE))
        (folder / CONFIG_FILE).write_text(final.to_json(), encoding="utf-8")
        (folder / CARD_FILE).write_text(render_model_card(final, load_id=load_id), encoding="utf-8")

    replace_folder(out_dir, EXPORT_COMMAND, write, overwrite=overwrite)
    return Path(out_dir)


def export_checkpoint(
    checkpoint: str | Path,
    out_dir: str | Path,
    *,
    name: str = "",
    description: str = "",
    training_data: TrainingData | Mapping[str, Any] | None = None,
    metrics: Mapping[str, float] | None = None,
    metrics_description: str = "",
    license: str = DEFAULT_LICENSE,
    base_model: str | None = None,
    overwrite: bool = False,
) -> Path:
    """Export a Lightning checkpoint of a ``sap`` task (``sap zoo export CKPT OUT``).

    The checkpoint is read by :func:`sap.zoo.checkpoint.read_checkpoint` (``weights_only=True``,
    no module built); its stored recipe becomes the recipe of the export, and only the backbone
    (the task's ``model``) is written. A fine-tuning checkpoint records where its weights came
    from (``checkpoint["sap_transfer"]``): that source goes into the provenance and,
    as the Hub names it (:func:`base_model_name`), into the card's ``base_model``, unless
    ``base_model`` is given.
    """
    from sap.zoo.checkpoint import read_checkpoint

    checkpoint = Path(checkpoint)
    task_checkpoint = read_checkpoint(checkpoint)
    if isinstance(training_data, Mapping):
        training_data = TrainingData(**training_data)
    provenance: dict[str, Any] = {
        "source": "lightning-checkpoint",
        "checkpoint": checkpoint.name,
        "sha256": file_sha256(checkpoint),
    }
    # What the fine-tune recorded: a zoo name, hf://owner/repo@rev, or "<file> sha256:<hex>".
    initialised_from = task_checkpoint.base_model
    if initialised_from:
        provenance["initialised_from"] = str(initialised_from)
    if base_model is None:
        base_model = base_model_name(str(initialised_from)) if initialised_from else ""
    config = ModelConfig(
        recipe=task_checkpoint.recipe,
        name=name,
        description=description,
        training_data=training_data or TrainingData(),
        metrics={key: float(value) for key, value in (metrics or {}).items()},
        metrics_description=metrics_description,
        base_model=base_model,
        license=license,
        provenance=provenance,
    )
    return save_pretrained(task_checkpoint.build_backbone(), out_dir, config, overwrite=overwrite)


def base_model_name(source: str) -> str:
    """How the Hub names the model behind a ``load_pretrained`` source ("" when it has no name).

    ``hf://owner/repo@rev`` -> ``owner/repo``; a zoo name -> its Hub repository, or the zoo
    name for a bundled model; an export folder -> the name in its ``config.json`` (mapped the
    same way); a checkpoint or anything else -> "".

    >>> base_model_name("hf://sap-org/sap-skeleton@v1")
    'sap-org/sap-skeleton'
    """
    from sap.zoo.hub import HF_URI_PREFIX, parse_hf_uri

    text = str(source).strip()
    if text.startswith(HF_URI_PREFIX):
        return parse_hf_uri(text).repo_id
    path = Path(text).expanduser()
    if path.is_dir() and (path / CONFIG_FILE).is_file():
        name = read_config(path).name
        return base_model_name(name) if name and name != text else ""
    if path.exists():
        return ""
    from sap.zoo.catalogue import ModelZoo

    zoo = ModelZoo.default()
    if text in zoo:
        entry = zoo.get(text)
        return entry.hub_repo or entry.name
    return ""


def rewrite_metadata(folder: str | Path, **changes: Any) -> ModelConfig:
    """Change the metadata of an export (``config.json`` and its card); the weights stay.

    The weights are checked against the recorded sha256 first and copied byte for byte
    (hard-linked where possible); the folder is replaced as a whole. ``changes`` are
    :class:`ModelConfig` fields (``training_data=TrainingData(...)``, ``base_model=...``);
    the citation and ``sap_version`` are brought up to date.

    Returns:
        The new config.
    """
    folder = Path(folder)
    config = read_config(folder)
    weights = folder / WEIGHTS_FILE
    if config.weights is None or file_sha256(weights) != config.weights.sha256:
        raise ExportError(
            f"{weights} does not match the sha256 in {folder / CONFIG_FILE}; refusing to rewrite "
            "the metadata of weights that are not the exported ones."
        )
    from sap._version import __version__
    from sap.citation import CITATION

    final = dataclasses.replace(config, citation=CITATION, sap_version=__version__, **changes)
    final.validate(str(folder / CONFIG_FILE))

    def write(tmp: Path) -> None:
        try:
            os.link(weights, tmp / WEIGHTS_FILE)
        except OSError:
            shutil.copy2(weights, tmp / WEIGHTS_FILE)
        (tmp / CONFIG_FILE).write_text(final.to_json(), encoding="utf-8")
        (tmp / CARD_FILE).write_text(render_model_card(final), encoding="utf-8")

    replace_folder(folder, EXPORT_COMMAND, write, overwrite=True)
    return final


def describe_export(folder: str | Path) -> str:
    """Two or three lines on an export folder: where, weights size and parameters, sha256."""
    config = read_config(folder)
    lines = [f"wrote {folder}"]
    if config.weights is not None:
        lines.append(
            f"  {config.weights.file}: {config.weights.size_bytes / 1e6:.2f} MB, "
            f"{config.weights.num_parameters:,} parameters"
        )
        lines.append(f"  sha256: {config.weights.sha256}")
    return "\n".join(lines)


def _jsonish(value: Any) -> Any:
    """Normalise tuples to lists so kwargs that went through JSON compare equal."""
    if isinstance(value, tuple | list):
        return [_jsonish(v) for v in value]
    if isinstance(value, dict):
        return {k: _jsonish(v) for k, v in value.items()}
    return value


__all__ = [
    "EXPORT_COMMAND",
    "ExportError",
    "base_model_name",
    "check_model_matches_recipe",
    "describe_export",
    "export_checkpoint",
    "file_sha256",
    "rewrite_metadata",
    "save_pretrained",
    "state_dict_for_export",
]
