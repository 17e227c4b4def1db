"""Load a model for prediction and check it is a model for the task it is used for.

Every source (zoo name, ``hf://`` id, export folder, Lightning ``.ckpt``) goes through
:func:`sap.zoo.load_pretrained`, which rebuilds the network from its
:class:`~sap.recipe.ModelRecipe`: inference reads channels, patch size, spacing, orientation
and normalisation from there, never from command-line flags.
"""

from __future__ import annotations

from pathlib import Path

import torch


def load_model(
    name_or_path: str | Path,
    device: str | torch.device = "cpu",
    *,
    task: str | None = None,
) -> torch.nn.Module:
    """Load a model that carries its recipe, optionally checking its task.

    Args:
        name_or_path: a zoo name (see ``sap zoo list``), ``hf://owner/repo[@revision]``, a
            folder exported by the zoo (``config.json`` + weights), or a ``.ckpt`` written
            by ``sap fit``.
        device: where to put the weights.
        task: ``"lesion"`` or ``"skeleton"``: refuse a model of another task (and a lesion
            model with more than two classes, since lesion masks come from thresholding
            the lesion probability).

    Returns:
        The network in eval mode, with ``model.recipe`` set.

    Raises:
        ValueError: the model is not a ``task`` model.

    >>> model = load_model("sap-lesion-phantom", task="lesion")
    >>> model.recipe.task, model.recipe.labels, model.training
    ('lesion', ['background', 'lesion'], False)
    """
    from sap.zoo import load_pretrained

    model = load_pretrained(name_or_path, device=device)
    recipe = model.recipe
    if task is None:
        return model
    expected = "a two-class lesion model" if task == "lesion" else f"a {task} model"
    if recipe.task != task or (task == "lesion" and recipe.num_classes != 2):
        raise ValueError(
            f"Model {str(name_or_path)!r} is a {recipe.task} model with labels "
            f"{recipe.labels}; expected {expected}."
        )
    return model


__all__ = ["load_model"]
