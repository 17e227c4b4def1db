"""Data for `sap`: find and check cases, preprocess and augment them, sample patches.

The public names of every module of the package are importable from here. They are loaded
on first use (PEP 562 ``__getattr__``), so ``import sap.data`` stays cheap (no torch, no
TorchIO) and a module that is not installed yet only fails when its names are used.

Modules: :mod:`sap.data.cases` (discovery and validation), :mod:`sap.data.preprocess`
(TorchIO transforms), :mod:`sap.data.samplers` (patch samplers) and
:mod:`sap.data.datamodules` (LightningDataModules). Synthetic cohorts come from :mod:`sap.phantom`.
"""

from __future__ import annotations

import importlib
from typing import Any

# name -> module (relative to this package) that defines it.
_EXPORTS: dict[str, str] = {
    # cases
    "Case": "cases",
    "CaseLayout": "cases",
    "CaseProblem": "cases",
    "CaseValidationError": "cases",
    "DEFAULT_LABEL_NAMES": "cases",
    "LABEL_KINDS": "cases",
    "case_to_subject": "cases",
    "discover_cases": "cases",
    "validate_cases": "cases",
    # preprocess
    "RandomRot90": "preprocess",
    "RandomScaleIntensity": "preprocess",
    "RandomShiftIntensity": "preprocess",
    "Rot90": "preprocess",
    "ScaleShiftIntensity": "preprocess",
    "augmentation": "preprocess",
    "load_subject": "preprocess",
    "preprocessing": "preprocess",
    "stack_channels": "preprocess",
    # samplers
    "InstanceBalancedSampler": "samplers",
    "skeleton_sampler": "samplers",
    # datamodules
    "LesionDataModule": "datamodules",
    "SkeletonDataModule": "datamodules",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module_name = _EXPORTS.get(name)
    if module_name is None:
        raise AttributeError(f"module 'sap.data' has no attribute '{name}'")
    module = importlib.import_module(f"{__name__}.{module_name}")
    value = getattr(module, name)
    globals()[name] = value  # cache: later look-ups skip __getattr__
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
