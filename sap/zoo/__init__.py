"""The ``sap`` model zoo: export, share and load pretrained models.

- :func:`load_pretrained` — a zoo name, ``hf://owner/repo@revision``, an export folder or a
  Lightning checkpoint -> a ready network (optionally with a new head or input channels).
- :func:`list_models` — what the zoo holds (``model_zoo/*.yaml`` cards + bundled models).
- :func:`save_pretrained` / :func:`export_checkpoint` — write an export folder
  (``model.safetensors`` + ``config.json`` + ``README.md`` model card).
- :func:`push_to_hub` / :func:`pull_from_hub` — share export folders through the Hugging Face
  Hub, pinned by commit and verified by hash.
- :func:`import_reference_checkpoint` — convert checkpoints of the SAP reference code.

Heavy dependencies (MONAI, Lightning, huggingface_hub) are imported only when used.
"""

from __future__ import annotations

from sap.zoo.config import ModelConfig, ModelConfigError, TrainingData, WeightsInfo, read_config
from sap.zoo.export import ExportError, export_checkpoint, save_pretrained
from sap.zoo.hub import (
    CacheIntegrityError,
    HubError,
    HubRepoNotFoundError,
    HubRevisionNotFoundError,
    HubUnreachableError,
    NotInCacheError,
    PushResult,
    list_revisions,
    pull_from_hub,
    push_to_hub,
)
from sap.zoo.load import (
    WeightsIntegrityError,
    WeightsMismatchError,
    adapt_input_channels,
    load_export,
    load_pretrained,
)
from sap.zoo.reference import ReferenceImportError, import_reference_checkpoint
from sap.zoo.registry import ModelZoo, UnknownModelError, ZooCard, ZooCardError, list_models

__all__ = [
    "CacheIntegrityError",
    "ExportError",
    "HubError",
    "HubRepoNotFoundError",
    "HubRevisionNotFoundError",
    "HubUnreachableError",
    "ModelConfig",
    "ModelConfigError",
    "ModelZoo",
    "NotInCacheError",
    "PushResult",
    "ReferenceImportError",
    "TrainingData",
    "UnknownModelError",
    "WeightsInfo",
    "WeightsIntegrityError",
    "WeightsMismatchError",
    "ZooCard",
    "ZooCardError",
    "adapt_input_channels",
    "export_checkpoint",
    "import_reference_checkpoint",
    "list_models",
    "list_revisions",
    "load_export",
    "load_pretrained",
    "pull_from_hub",
    "push_to_hub",
    "read_config",
    "save_pretrained",
]
