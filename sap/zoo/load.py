"""``load_pretrained``: one call from a name, a Hub URI, a folder or a checkpoint to a ready model.

Accepted sources, tried in this order:

1. ``"hf://owner/repo"`` or ``"hf://owner/repo@<revision>"`` — a Hub repo written by
   :func:`sap.zoo.push_to_hub`;
2. an existing path — an export folder (``model.safetensors`` + ``config.json``) or a Lightning
   ``.ckpt`` of a ``sap`` task;
3. a zoo name (``"sap-skeleton-phantom"``, see :func:`sap.zoo.list_models`).

Weights are data, never code: export folders are safetensors; a checkpoint is read with
``torch.load(weights_only=True)``. The weights' sha256 is checked against ``config.json`` and,
for zoo models, against the card, before any tensor is used.

Two adaptations make a pretrained model fit a new job (timm's ``num_classes`` / ``in_chans``):

- **New head** (``task``, ``num_classes``, ``labels``): encoder and decoder keep their
  weights; the head is replaced by a freshly initialised one (SAP transfer: skeleton model ->
  ``task="lesion", num_classes=2``). Only renaming labels of the same count and task keeps it.
- **New input channels** (``in_channels`` / ``channels``): every weight whose shape depends on
  the number of input channels (the stem; for Swin UNETR the patch embedding and the first
  residual block) is adapted; all other weights are copied unchanged. With ``C`` old and
  ``C'`` new channels, the old channels keep their weights and each added channel gets the mean
  of the old channels' weights, and the whole kernel is then scaled by ``C / C'``; when
  channels are removed, the dropped channels' weights are spread evenly over the kept ones.
  Either way the summed kernel is unchanged, so an image whose channels all carry the same
  values gives exactly the response the original network gave: the adapted model starts where
  the pretrained one was and fine-tuning learns what the new channel adds.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from sap.recipe import ModelRecipe
from sap.zoo.config import CONFIG_FILE, WEIGHTS_FILE, ModelConfig, ModelConfigError, read_config
from sap.zoo.hub import HF_URI_PREFIX

if TYPE_CHECKING:
    from sap.backbones import SegmentationBackbone


class WeightsIntegrityError(ValueError):
    """The weights file is not the one the config or card describes (tampered, corrupt, swapped)."""


class WeightsMismatchError(ValueError):
    """The weights do not fit the network the recipe builds (missing keys, wrong shapes)."""


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
        describing it as returned, adaptations included) and ``model.pretrained_cfg`` (source,
        the loaded ``config.json`` content, and which adaptations were applied).

    Raises:
        UnknownModelError: a name that is neither a path nor a zoo model (lists close names).
        WeightsIntegrityError: the weights' sha256 differs from the config / card / ``sha256``.
        WeightsMismatchError: the weights do not fit the network the recipe describes.
        ModelConfigError: unreadable or invalid ``config.json``.
        sap.zoo.hub.HubError: Hub problems (unreachable, unknown revision, not cached offline).

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
    model, recipe, adapted = _adapt(
        model, config.recipe, task, num_classes, labels, in_channels, channels
    )
    model.recipe = recipe
    model.pretrained_cfg = {"source": source, "config": config.to_dict(), **adapted}
    return model.to(device).eval()


def load_export(
    folder: str | Path, expected_sha256: str | Sequence[str] | None = None
) -> tuple[SegmentationBackbone, ModelConfig]:
    """Rebuild the model of an export folder; verify its weights first.

    Args:
        folder: holds ``model.safetensors`` and ``config.json``.
        expected_sha256: digest(s) the weights must have besides the one in ``config.json``
            (from a zoo card or the caller).

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
    expected += [("the model card / caller", digest.lower()) for digest in expected_sha256 or ()]
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


def build_from_recipe(recipe: ModelRecipe, source: str = "recipe") -> SegmentationBackbone:
    """The (randomly initialised) network a recipe describes."""
    from sap.backbones import build_backbone
    from sap.backbones.registry import UnknownBackboneError

    try:
        return build_backbone(
            recipe.backbone, recipe.in_channels, recipe.num_classes, **recipe.backbone_kwargs
        )
    except UnknownBackboneError as error:
        raise ModelConfigError(
            f"{source} names backbone {recipe.backbone!r}, which this installation of sap does not know. "
            f"{error} Upgrade sap, or install the package that registers it."
        ) from error
    except TypeError as error:
        raise ModelConfigError(
            f"{source}: cannot build backbone {recipe.backbone!r}: {error}"
        ) from error


def load_state_strict(
    model: torch.nn.Module, state: Mapping[str, torch.Tensor], source: str
) -> None:
    """Load ``state`` into ``model``: every key present, no extra key, every shape equal.

    Unlike ``load_state_dict`` it reports all problems at once and says what they mean.
    """
    target = model.state_dict()
    missing = sorted(set(target) - set(state))
    unexpected = sorted(set(state) - set(target))
    shapes = [
        f"{key}: file {tuple(state[key].shape)} vs model {tuple(target[key].shape)}"
        for key in sorted(set(state) & set(target))
        if tuple(state[key].shape) != tuple(target[key].shape)
    ]
    if missing or unexpected or shapes:
        lines = [f"The weights in {source} do not fit the network its recipe builds:"]
        for title, items in (
            ("missing", missing),
            ("unexpected", unexpected),
            ("shape mismatch", shapes),
        ):
            if items:
                shown = "\n    ".join(items[:8]) + (
                    f"\n    ... and {len(items) - 8} more" if len(items) > 8 else ""
                )
                lines.append(f"  {title} ({len(items)}):\n    {shown}")
        lines.append(
            "  Check the backbone name and kwargs in the config; the file may belong to another model."
        )
        raise WeightsMismatchError("\n".join(lines))
    model.load_state_dict(state, strict=True)


def adapt_input_channels(model: SegmentationBackbone, in_channels: int) -> SegmentationBackbone:
    """A copy of ``model`` taking ``in_channels`` inputs, its stem adapted (module docstring)."""
    old_in = model.in_channels
    if in_channels == old_in:
        return model
    if isinstance(in_channels, bool) or not isinstance(in_channels, int) or in_channels < 1:
        raise ValueError(f"in_channels must be a positive integer, got {in_channels!r}.")
    from sap.backbones import build_backbone

    new = build_backbone(model.name, in_channels, model.out_channels, **model.kwargs)
    old_state, new_state = model.state_dict(), new.state_dict()
    if set(old_state) != set(new_state):
        changed = sorted(set(old_state) ^ set(new_state))
        raise WeightsMismatchError(
            f"Cannot adapt {model.name!r} to {in_channels} input channels: the network's layers change "
            f"with the channel count (added or removed: {changed[:5]}), so the weights cannot be carried over."
        )
    adapted: dict[str, torch.Tensor] = {}
    for key, target in new_state.items():
        value = old_state[key]
        if value.shape == target.shape:
            adapted[key] = value
        elif (
            value.ndim >= 2
            and value.shape[1] == old_in
            and target.shape[1] == in_channels
            and value.shape[:1] + value.shape[2:] == target.shape[:1] + target.shape[2:]
        ):
            adapted[key] = _adapt_kernel(value, in_channels)
        else:
            raise WeightsMismatchError(
                f"Cannot adapt {model.name!r} to {in_channels} input channels: {key} changes from "
                f"{tuple(value.shape)} to {tuple(target.shape)}, not only in its input-channel dimension."
            )
    new.load_state_dict(adapted, strict=True)
    return new


def _adapt_kernel(weight: torch.Tensor, in_channels: int) -> torch.Tensor:
    """Keep the summed kernel over input channels constant (see module docstring)."""
    old_in = weight.shape[1]
    if in_channels > old_in:
        mean = weight.mean(dim=1, keepdim=True)
        extra = mean.expand(-1, in_channels - old_in, *weight.shape[2:])
        return torch.cat([weight, extra], dim=1) * (old_in / in_channels)
    dropped = weight[:, in_channels:].sum(dim=1, keepdim=True)
    return weight[:, :in_channels] + dropped / in_channels


# ---------------------------------------------------------------------------- internals


def _load_source(
    name_or_path: str | Path, sha256: str | None, hub_kwargs: dict[str, Any]
) -> tuple[SegmentationBackbone, ModelConfig, str]:
    text = str(name_or_path)
    if isinstance(name_or_path, str) and text.startswith(HF_URI_PREFIX):
        from sap.zoo.hub import parse_hf_uri, pull_from_hub

        location = parse_hf_uri(text)
        folder = pull_from_hub(location.repo_id, location.revision, **hub_kwargs)
        model, config = load_export(folder, sha256)
        return model, config, text
    path = Path(name_or_path).expanduser()
    if path.is_dir():
        model, config = load_export(path, sha256)
        return model, config, str(path)
    if path.is_file():
        if path.suffix == ".safetensors":
            raise ModelConfigError(
                f"{path} is a bare weights file; load the export folder that holds it with its {CONFIG_FILE}."
            )
        return (*_load_checkpoint(path, sha256), str(path))
    from sap.zoo.registry import ModelZoo

    zoo = ModelZoo.default()
    looks_like_path = isinstance(name_or_path, Path) or any(sep in text for sep in ("/", "\\"))
    if text not in zoo and (looks_like_path or path.suffix in (".ckpt", ".pt", ".pth")):
        raise FileNotFoundError(
            f"{text} does not exist. Give an export folder, a .ckpt file, a zoo name, or a Hub repo as "
            f"'hf://{text if text.count('/') == 1 else 'owner/repo'}'."
        )
    card = zoo.get(text)  # unknown names: UnknownModelError listing close names
    expected = [card.sha256] + ([sha256] if sha256 else [])
    if card.bundled:
        folder = card.bundled_path
        if folder is None or not (folder / CONFIG_FILE).is_file():
            raise FileNotFoundError(
                f"The weights of bundled model {card.name!r} are not installed (expected {folder}). "
                "They are made by `python model_zoo/train_phantom_models.py`; reinstall sap or run it."
            )
    else:
        from sap.zoo.hub import pull_from_hub

        folder = pull_from_hub(card.hub_repo, card.hub_revision, **hub_kwargs)
    model, config = load_export(folder, expected)
    return model, config, f"zoo:{card.name}"


def _load_checkpoint(path: Path, sha256: str | None) -> tuple[SegmentationBackbone, ModelConfig]:
    """Backbone and recipe of a Lightning checkpoint of a ``sap`` task (``weights_only=True``)."""
    from sap.tasks import load_task_checkpoint
    from sap.zoo.export import file_sha256

    digest = file_sha256(path)
    if sha256 and digest != sha256.lower():
        raise WeightsIntegrityError(
            f"{path} has sha256 {digest}, but {sha256} was expected. Do not use it."
        )
    task = load_task_checkpoint(path)
    config = ModelConfig(
        recipe=task.recipe(),
        provenance={"source": "lightning-checkpoint", "checkpoint": path.name, "sha256": digest},
    )
    return task.model, config


def _adapt(
    model: SegmentationBackbone,
    recipe: ModelRecipe,
    task: str | None,
    num_classes: int | None,
    labels: Sequence[str] | None,
    in_channels: int | None,
    channels: Sequence[str] | None,
) -> tuple[SegmentationBackbone, ModelRecipe, dict[str, Any]]:
    if task is not None and task not in ("skeleton", "lesion"):
        raise ValueError(f"task must be 'skeleton' or 'lesion', got {task!r}.")
    new_channels = _new_channels(recipe, in_channels, channels)
    new_labels = _new_labels(recipe, task, num_classes, labels)
    new_task = task or recipe.task
    head_replaced = len(new_labels) != model.out_channels or new_task != recipe.task
    adapted_stem = len(new_channels) != model.in_channels
    if adapted_stem:
        model = adapt_input_channels(model, len(new_channels))
    if head_replaced:
        model.replace_head(len(new_labels))
    new_recipe = dataclasses.replace(
        recipe, channels=new_channels, labels=new_labels, task=new_task
    )
    return (
        model,
        new_recipe,
        {"head_replaced": head_replaced, "in_channels_adapted": adapted_stem},
    )


def _new_channels(
    recipe: ModelRecipe, in_channels: int | None, channels: Sequence[str] | None
) -> list[str]:
    if channels is not None:
        names = [str(c) for c in channels]
        if in_channels is not None and in_channels != len(names):
            raise ValueError(
                f"in_channels={in_channels} but {len(names)} channel names were given: {names}."
            )
        if len(set(names)) != len(names):
            raise ValueError(f"channel names must be unique, got {names}.")
        return names
    if in_channels is None or in_channels == recipe.in_channels:
        return list(recipe.channels)
    if isinstance(in_channels, bool) or not isinstance(in_channels, int) or in_channels < 1:
        raise ValueError(f"in_channels must be a positive integer, got {in_channels!r}.")
    if in_channels < recipe.in_channels:
        return list(recipe.channels[:in_channels])
    return list(recipe.channels) + [f"channel_{i}" for i in range(recipe.in_channels, in_channels)]


def _new_labels(
    recipe: ModelRecipe, task: str | None, num_classes: int | None, labels: Sequence[str] | None
) -> list[str]:
    if labels is not None:
        names = [str(n) for n in labels]
        if num_classes is not None and num_classes != len(names):
            raise ValueError(
                f"num_classes={num_classes} but {len(names)} labels were given: {names}."
            )
        return names
    new_task = task or recipe.task
    if num_classes is not None and (
        isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2
    ):
        raise ValueError(
            f"num_classes must be an integer >= 2 (background included), got {num_classes!r}."
        )
    if new_task == recipe.task and num_classes in (None, recipe.num_classes):
        return list(recipe.labels)
    defaults = ModelRecipe.default_labels(new_task)  # type: ignore[arg-type]
    if num_classes is None or num_classes == len(defaults):
        return list(defaults)
    return ["background"] + [f"class_{i}" for i in range(1, num_classes)]


__all__ = [
    "WeightsIntegrityError",
    "WeightsMismatchError",
    "adapt_input_channels",
    "build_from_recipe",
    "load_export",
    "load_pretrained",
    "load_state_strict",
]
