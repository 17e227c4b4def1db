"""Load a model for inference from a zoo name, an exported folder or a Lightning checkpoint.

Whatever the source, the result is a :class:`sap.backbones.SegmentationBackbone` with a
``recipe`` attribute (:class:`sap.recipe.ModelRecipe`): inference reads channels, patch
size, spacing, orientation and normalisation from there, never from command-line flags.
"""

from __future__ import annotations

from pathlib import Path

import torch

from sap.recipe import ModelRecipe


def load_model(name_or_path: str | Path, device: str | torch.device = "cpu") -> torch.nn.Module:
    """Load a model that carries its recipe.

    Args:
        name_or_path: a zoo name (see ``sap zoo list``), ``hf://owner/repo[@revision]``, a
            folder exported by the zoo (``config.json`` + weights), or a ``.ckpt`` written
            by ``sap fit``; everything goes through :func:`sap.zoo.load_pretrained`.
        device: where to put the weights.

    Returns:
        The network in eval mode, with ``model.recipe`` set.
    """
    try:
        from sap.zoo import load_pretrained
    except ImportError:  # a build without the zoo: Lightning checkpoints still work
        load_pretrained = None
    path = Path(name_or_path).expanduser()
    if load_pretrained is not None:
        model = load_pretrained(name_or_path, device=device)
    elif path.suffix == ".ckpt":
        if not path.is_file():
            raise FileNotFoundError(f"Checkpoint {path} does not exist.")
        from sap.tasks import load_task_checkpoint

        module = load_task_checkpoint(path, map_location="cpu")
        model = module.model
        model.recipe = module.recipe()
    else:
        raise ValueError(
            f"Cannot load model {str(name_or_path)!r}: this installation of sap has no model "
            "zoo (sap.zoo.load_pretrained); pass a Lightning checkpoint (.ckpt) instead."
        )
    recipe = getattr(model, "recipe", None)
    if not isinstance(recipe, ModelRecipe):
        raise ValueError(
            f"Model {str(name_or_path)!r} carries no ModelRecipe (model.recipe), so inference "
            "cannot know its channels, patch size and preprocessing. Re-export it with sap zoo."
        )
    return model.to(device).eval()


__all__ = ["load_model"]
