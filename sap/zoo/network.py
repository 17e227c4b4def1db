"""The network a recipe describes, and loading weights into it with every problem reported."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

import torch

from sap.recipe import ModelRecipe
from sap.zoo.metadata import ModelConfigError

if TYPE_CHECKING:
    from sap.backbones import SegmentationBackbone


class WeightsMismatchError(ValueError):
    """The weights do not fit the network the recipe builds (missing keys, wrong shapes)."""


def build_from_recipe(recipe: ModelRecipe, source: str = "recipe") -> SegmentationBackbone:
    """The (randomly initialised) network a recipe describes.

    Args:
        recipe: backbone name and kwargs, channels and labels.
        source: what to call the recipe's origin in errors (a file path).

    Raises:
        ModelConfigError: an unknown backbone or kwargs its builder does not take.
    """
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

    Raises:
        WeightsMismatchError: listing missing, unexpected and differently shaped tensors.
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


__all__ = ["WeightsMismatchError", "build_from_recipe", "load_state_strict"]
