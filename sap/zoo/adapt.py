"""Make a pretrained model fit a new job: a new head, or new input channels (timm's idea).

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
from collections.abc import Sequence
from typing import TYPE_CHECKING

import torch

from sap.recipe import ModelRecipe
from sap.zoo.network import WeightsMismatchError

if TYPE_CHECKING:
    from sap.backbones import SegmentationBackbone


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


def adapt_model(
    model: SegmentationBackbone,
    recipe: ModelRecipe,
    task: str | None,
    num_classes: int | None,
    labels: Sequence[str] | None,
    in_channels: int | None,
    channels: Sequence[str] | None,
) -> tuple[SegmentationBackbone, ModelRecipe, dict[str, bool]]:
    """Put a new head and/or new input channels on ``model`` (see the module docstring).

    Returns:
        The adapted model, the recipe describing it, and which adaptations were applied
        (``head_replaced``, ``in_channels_adapted``).
    """
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


__all__ = ["adapt_input_channels", "adapt_model"]
