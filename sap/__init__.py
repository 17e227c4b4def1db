"""sap: Supervised Anatomical Pretraining for bone-metastasis segmentation in whole-body MRI.

The public API is small on purpose::

    from sap import load_pretrained, list_models      # the model zoo
    from sap import build_backbone, list_backbones    # architectures by name
    from sap import ModelRecipe                        # what a model needs to be used correctly

Everything else lives in the sub-packages (``sap.data``, ``sap.tasks``, ``sap.metrics``,
``sap.inference``, ``sap.zoo``). Names are imported on first use, so ``import sap`` stays
fast and does not pull in torch for the command-line help.
"""

from __future__ import annotations

import importlib
from typing import Any

from sap._version import __version__

_LAZY: dict[str, str] = {
    "load_pretrained": "sap.zoo",
    "list_models": "sap.zoo",
    "build_backbone": "sap.backbones",
    "list_backbones": "sap.backbones",
    "register_backbone": "sap.backbones",
    "ModelRecipe": "sap.recipe",
}

__all__ = [
    "ModelRecipe",
    "__version__",
    "build_backbone",
    "list_backbones",
    "list_models",
    "load_pretrained",
    "register_backbone",
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'sap' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
