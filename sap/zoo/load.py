"""``load_pretrained``: one call from a name, a Hub URI, a folder or a checkpoint to a ready model.

Accepted sources, tried in this order:

1. ``"hf://owner/repo"`` or ``"hf://owner/repo@<revision>"`` — a Hub repo written by
   :func:`sap.zoo.push_to_hub`;
2. an existing path — an export folder (``model.safetensors`` + ``config.json``) or a Lightning
   ``.ckpt`` of a ``sap`` task;
3. a zoo name (``"sap-skeleton-phantom"``, see :func:`sap.zoo.list_models`).

Weights are data, never code: export folders are safetensors; a checkpoint is read with
``torch.load(weights_only=True)``. The weights' sha256 is checked against ``config.json`` and,
for zoo models, against their catalogue entry, before any tensor is used.

A new head or new input channels are put on as :mod:`sap.zoo.adapt` describes.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from sap.recipe import ModelRecipe
from sap.zoo.adapt import adapt_model
from sap.zoo.hub_mixin import with_hub_methods
from sap.zoo.metadata import CONFIG_FILE, WEIGHTS_FILE, ModelConfig, ModelConfigError, read_config
from sap.zoo.network import build_from_recipe, load_state_strict
from sap.zoo.sources import STATE_DICT_SUFFIXES, resolve_source

if TYPE_CHECKING:
    from sap.backbones import SegmentationBackbone
    from sap.zoo.catalogue import ZooEntry


class WeightsIntegrityError(ValueError):
    """The weights file is not the one the config or catalogue entry describes (tampered, corrupt, swapped)."""


def load_pretrained(
    name_or_path: str | Path,
    task: str | None = None,
    num_classes: int | None = None,
    in_channels: int | None = None,
    *,
    labels: Sequence[str] | None = None,
    channels: Sequence[str] | None = None,
    device: str | torch.device = "cpu",
    sha256: str | None = None,
    local_files_only: bool | None = None,
    force_download: bool = False,
    cache_dir: str | Path | None = None,
    token: str | None = None,
) -> SegmentationBackbone:
    """Load a pretrained ``sap`` model, optionally with a new head or new input channels.

    Args:
        name_or_path: zoo name, ``"hf://owner/repo[@revision]"``, export folder or ``.ckpt``.
        task: ``"skeleton"`` or ``"lesion"``. A task other than the model's puts on a fresh
            head with that task's labels (unless ``num_classes`` / ``labels`` say otherwise).
        num_classes: output classes; a different count than the model's gives a fresh head.
        in_channels: input channels; a different count adapts the stem (see module docstring).
        labels: output class names (sets ``num_classes``); default: the task's standard labels.
        channels: input channel names in order (sets ``in_channels``); default: the model's
            channels plus ``channel_<i>`` for added ones.
        device: where to put the model.
        sha256: expected sha256 of ``model.safetensors``, checked in addition to the config.
        local_files_only: Hub sources only: use the cache, never the network (also implied by
            ``HF_HUB_OFFLINE=1`` at call time).
        force_download: Hub sources only: download again (repairs a damaged cache).
        cache_dir: Hub sources only: Hugging Face cache folder.
        token: Hub sources only: token for private repositories.

    Returns:
        The network in eval mode, with ``model.recipe`` (a :class:`sap.recipe.ModelRecipe`
        describing it as returned, adaptations included), ``model.pretrained_cfg`` (source,
        the loaded ``config.json`` content, and which adaptations were applied) and the methods
        ``from_pretrained`` / ``save_pretrained`` / ``push_to_hub``
        (:class:`sap.zoo.hub_mixin.PretrainedModel`).

    Raises:
        UnknownModelError: a name that is neither a path nor a zoo model (lists close names).
        WeightsIntegrityError: the weights' sha256 differs from the config / catalogue entry /
            ``sha256``.
        WeightsMismatchError: the weights do not fit the network the recipe describes.
        ModelConfigError: unreadable or invalid ``config.json``.
        sap.zoo.HubError: Hub problems (unreachable, unknown revision, not cached offline).

    Example:
        >>> from sap import load_pretrained                           # doctest: +SKIP
        >>> model = load_pretrained("sap-skeleton-phantom")            # doctest: +SKIP
        >>> lesion = load_pretrained("sap-skeleton-phantom", task="lesion", num_classes=2)  # doctest: +SKIP
    """
    hub_kwargs = {
        "local_files_only": local_files_only,
        "force_download": force_download,
        "cache_dir": cache_dir,
        "token": token,
    }
    model, config, source = _load_source(name_or_path, sha256, hub_kwargs)
    model, recipe, adapted = adapt_model(
        model, config.recipe, task, num_classes, labels, in_channels, channels
    )
    model.recipe = recipe
    model.pretrained_cfg = {"source": source, "config": config.to_dict(), **adapted}
    return with_hub_methods(model).to(device).eval()


def load_export(
    folder: str | Path, expected_sha256: str | Sequence[str] | None = None
) -> tuple[SegmentationBackbone, ModelConfig]:
    """Rebuild the model of an export folder; verify its weights first.

    Args:
        folder: holds ``model.safetensors`` and ``config.json``.
        expected_sha256: digest(s) the weights must have besides the one in ``config.json``
            (from a zoo catalogue entry or the caller).

    Raises:
        ModelConfigError, WeightsIntegrityError, WeightsMismatchError: see :func:`load_pretrained`.
    """
    folder = Path(folder)
    config = read_config(folder)
    weights_path = folder / WEIGHTS_FILE
    if not weights_path.is_file():
        raise WeightsIntegrityError(
            f"{weights_path} is missing: {folder} is not a complete export folder. Re-export or re-download it."
        )
    data = weights_path.read_bytes()
    found = hashlib.sha256(data).hexdigest()
    expected: list[tuple[str, str]] = []
    if config.weights is not None:
        expected.append((str(folder / CONFIG_FILE), config.weights.sha256))
    if isinstance(expected_sha256, str):
        expected_sha256 = [expected_sha256]
    expected += [
        ("the zoo catalogue entry / caller", digest.lower()) for digest in expected_sha256 or ()
    ]
    if not expected:
        raise WeightsIntegrityError(
            f"{folder / CONFIG_FILE} records no sha256 of {WEIGHTS_FILE}, so its integrity cannot be checked. "
            "Re-export the model with sap.zoo.save_pretrained."
        )
    for origin, digest in expected:
        if digest != found:
            raise WeightsIntegrityError(
                f"{weights_path} has sha256 {found}, but {origin} expects {digest}. The file was modified, "
                "corrupted or swapped: do not use it. Download or export it again (for a Hub model: "
                "force_download=True, or `sap zoo pull ... --force-download`)."
            )
    from safetensors.torch import load as load_safetensors

    try:
        state = load_safetensors(data)
    except Exception as error:  # safetensors raises its own error type for malformed headers
        raise WeightsIntegrityError(
            f"{weights_path} is not a readable safetensors file ({error}). Re-export or re-download it."
        ) from error
    model = build_from_recipe(config.recipe, source=str(folder / CONFIG_FILE))
    load_state_strict(model, state, source=str(weights_path))
    return model, config


def pull_and_verify(
    repo_or_uri: str, revision: str | None = None, **hub_kwargs: Any
) -> tuple[Path, ModelConfig]:
    """Pull an export from the Hub and check that its weights are intact and fit its recipe.

    Args:
        repo_or_uri: ``"owner/name"`` or ``"hf://owner/name[@revision]"``.
        revision: branch, tag or commit; overrides one in the URI.
        **hub_kwargs: passed to :func:`sap.zoo.pull_from_hub` (``local_files_only``,
            ``force_download``, ``cache_dir``, ``token``, ...).

    Returns:
        The snapshot folder in the cache and its config.
    """
    from sap.zoo.hub import pull_from_hub, resolve_location

    location = resolve_location(repo_or_uri, revision)
    folder = pull_from_hub(location.repo_id, location.revision, **hub_kwargs)
    _, config = load_export(folder)
    return folder, config


@dataclass
class PretrainedWeights:
    """Pretrained tensors to initialise a model from, with where they came from.

    Attributes:
        state_dict: the network's tensors (keys as the file stores them).
        recipe: the pretrained model's recipe; ``None`` for a plain state dict (reference
            ``.pt``), which says nothing about channels or architecture.
        source: the source as given.
        base_model: the source in the form a model card names a base model: the zoo name,
            ``hf://owner/repo@revision`` as given, or ``"<file or folder name> sha256:<hex>"``
            (of the weights file) for a local source.
    """

    state_dict: dict[str, torch.Tensor]
    recipe: ModelRecipe | None
    source: str
    base_model: str


def read_pretrained_weights(
    name_or_path: str | Path, sha256: str | None = None, **hub_kwargs: Any
) -> PretrainedWeights:
    """The tensors of any source :func:`load_pretrained` takes, or of a plain state dict file.

    Export folders, Hub and zoo models are checked against their sha256 (as
    :func:`load_pretrained` does); ``sha256`` adds a check of the weights file.

    Args:
        name_or_path: zoo name, ``hf://owner/repo[@revision]``, export folder, ``.ckpt``, or a
            ``.pt`` / ``.pth`` / ``.safetensors`` state dict (e.g. of the reference code).
        sha256: expected sha256 of the weights file.
        **hub_kwargs: passed to :func:`sap.zoo.pull_from_hub` for Hub sources.
    """
    source = resolve_source(name_or_path)
    if source.kind == "file":
        from sap.io import file_sha256
        from sap.zoo.checkpoint import read_weights

        assert source.path is not None
        digest = file_sha256(source.path)
        if sha256 and digest != sha256.lower():
            raise WeightsIntegrityError(
                f"{source.path} has sha256 {digest}, but {sha256} was expected. Do not use it."
            )
        state, recipe = read_weights(source.path)
        return PretrainedWeights(state, recipe, source.text, f"{source.path.name} sha256:{digest}")
    defaults = {"local_files_only": None, "force_download": False, "cache_dir": None, "token": None}
    model, config, _ = _load_source(name_or_path, sha256, {**defaults, **hub_kwargs})
    if source.kind == "folder":
        assert source.path is not None and config.weights is not None
        base_model = f"{source.path.resolve().name} sha256:{config.weights.sha256}"
    else:
        base_model = source.text
    return PretrainedWeights(model.state_dict(), config.recipe, source.text, base_model)


# ---------------------------------------------------------------------------- internals


def _load_source(
    name_or_path: str | Path, sha256: str | None, hub_kwargs: dict[str, Any]
) -> tuple[SegmentationBackbone, ModelConfig, str]:
    source = resolve_source(name_or_path)
    if source.kind == "hub":
        from sap.zoo.hub import parse_hf_uri, pull_from_hub

        location = parse_hf_uri(source.text)
        folder = pull_from_hub(location.repo_id, location.revision, **hub_kwargs)
        model, config = load_export(folder, sha256)
        return model, config, source.text
    if source.kind == "folder":
        assert source.path is not None
        model, config = load_export(source.path, sha256)
        return model, config, str(source.path)
    if source.kind == "file":
        assert source.path is not None
        if source.path.suffix in STATE_DICT_SUFFIXES:
            raise ModelConfigError(
                f"{source.path} is a bare weights file; load the export folder that holds it with its {CONFIG_FILE}."
            )
        return (*_load_checkpoint(source.path, sha256), str(source.path))
    assert source.entry is not None
    return _load_zoo_entry(source.entry, sha256, hub_kwargs)


def _load_zoo_entry(
    entry: ZooEntry, sha256: str | None, hub_kwargs: dict[str, Any]
) -> tuple[SegmentationBackbone, ModelConfig, str]:
    """The model a catalogue entry names, checked against the entry's sha256 (and ``sha256``)."""
    expected = [entry.sha256] + ([sha256] if sha256 else [])
    if entry.bundled:
        folder = entry.bundled_path
        assert folder is not None  # resolve_source checked that the bundled weights exist
    else:
        from sap.zoo.hub import pull_from_hub

        folder = pull_from_hub(entry.hub_repo, entry.hub_revision, **hub_kwargs)
    model, config = load_export(folder, expected)
    return model, config, f"zoo:{entry.name}"


def _load_checkpoint(path: Path, sha256: str | None) -> tuple[SegmentationBackbone, ModelConfig]:
    """Backbone and recipe of a Lightning checkpoint of a ``sap`` task (``weights_only=True``)."""
    from sap.io import file_sha256
    from sap.zoo.checkpoint import read_checkpoint

    digest = file_sha256(path)
    if sha256 and digest != sha256.lower():
        raise WeightsIntegrityError(
            f"{path} has sha256 {digest}, but {sha256} was expected. Do not use it."
        )
    checkpoint = read_checkpoint(path)
    config = ModelConfig(
        recipe=checkpoint.recipe,
        provenance={"source": "lightning-checkpoint", "checkpoint": path.name, "sha256": digest},
    )
    return checkpoint.build_backbone(), config


__all__ = [
    "PretrainedWeights",
    "WeightsIntegrityError",
    "load_export",
    "load_pretrained",
    "pull_and_verify",
    "read_pretrained_weights",
]
