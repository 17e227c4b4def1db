"""Data for `sap`: find and check cases, preprocess and augment them, sample patches.

The main names of the package are importable from here and loaded on first use (PEP 562
``__getattr__``), so ``import sap.data`` stays cheap: torch and TorchIO are imported only
when a name that needs them is used.

Modules, in the order data flows through them: :mod:`~sap.data.cases` and
:mod:`~sap.data.manifest` (find cases), :mod:`~sap.data.validation` (check their files),
:mod:`~sap.data.preprocess` and :mod:`~sap.data.transforms` (TorchIO pipelines),
:mod:`~sap.data.store` (each case preprocessed once, on disk),
:mod:`~sap.data.lesions`, :mod:`~sap.data.placement` and :mod:`~sap.data.samplers`
(patches), :mod:`~sap.data.patch_queue`, :mod:`~sap.data.distributed`,
:mod:`~sap.data.datasets`, :mod:`~sap.data.splits`, :mod:`~sap.data.collate`,
:mod:`~sap.data.base`, :mod:`~sap.data.datamodules` and :mod:`~sap.data.unlabelled`
(LightningDataModules).
Synthetic cohorts come from :mod:`sap.phantom`.

>>> import sap.data
>>> sap.data.LABEL_KINDS
('skeleton', 'lesion')
"""

from __future__ import annotations

import importlib
from typing import Any

# name -> module (relative to this package) that defines it.
_EXPORTS: dict[str, str] = {
    # cases
    "Case": "cases",
    "CaseLayout": "cases",
    "LABEL_KINDS": "cases",
    "case_to_subject": "cases",
    "discover_cases": "cases",
    # problems
    "CaseProblem": "problems",
    "CaseValidationError": "problems",
    # validation
    "ImplausibleSpacingWarning": "validation",
    "validate_cases": "validation",
    # transforms
    "PadToMinimumShape": "transforms",
    "RandomRot90": "transforms",
    "RandomScaleIntensity": "transforms",
    "RandomShiftIntensity": "transforms",
    "Rot90": "transforms",
    "ScaleShiftIntensity": "transforms",
    # preprocess
    "augmentation": "preprocess",
    "load_subject": "preprocess",
    "preprocessing": "preprocess",
    "stack_channels": "preprocess",
    # samplers
    "InstanceBalancedSampler": "samplers",
    "skeleton_sampler": "samplers",
    # lesions
    "Lesion": "lesions",
    "count_lesions": "lesions",
    "find_lesions": "lesions",
    # patch store
    "PatchStoreWarning": "store.build",
    "StoreRecipe": "store.keys",
    "clear_store": "store.build",
    "open_store": "store.build",
    "resolve_cache_dir": "store.keys",
    # datamodules
    "LesionDataModule": "datamodules",
    "SegmentationDataModule": "base",
    "SkeletonDataModule": "datamodules",
    "UnlabelledDataModule": "unlabelled",
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
