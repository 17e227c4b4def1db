"""The ``sap`` model zoo: export, share and load pretrained models.

- :func:`load_pretrained` — a zoo name, ``hf://owner/repo@revision``, an export folder or a
  Lightning checkpoint -> a ready network (optionally with a new head or input channels).
- :func:`list_models` — what the zoo holds (the ``model_zoo/*.yaml`` catalogue + bundled models).
- :func:`save_pretrained` / :func:`export_checkpoint` — write an export folder
  (``model.safetensors`` + ``config.json`` + ``README.md`` model card).
- :func:`push_to_hub` / :func:`pull_from_hub` — share export folders through the Hugging Face
  Hub, pinned by commit and verified by hash.
- :class:`PretrainedModel` — ``from_pretrained`` / ``save_pretrained`` / ``push_to_hub`` as
  methods: every loaded model has them (``model.push_to_hub("owner/repo")``,
  ``PretrainedModel.from_pretrained("hf://owner/repo@rev")``), through the functions above.
- :func:`read_checkpoint` / :func:`read_state_dict` / :func:`read_weights` — weights from
  files, never code; :func:`resolve_source` / :func:`read_pretrained_weights` — what a
  pretrained source names (checked at once) and its tensors (to initialise a fine-tune).
- :func:`import_reference_checkpoint` — convert checkpoints of the SAP reference code.

Modules: :mod:`~sap.zoo.metadata` (``config.json``), :mod:`~sap.zoo.model_card` (its
``README.md``), :mod:`~sap.zoo.catalogue` (``model_zoo/*.yaml``) and
:mod:`~sap.zoo.catalogue_readme` (``model_zoo/README.md``), :mod:`~sap.zoo.checkpoint`,
:mod:`~sap.zoo.network`, :mod:`~sap.zoo.sources`, :mod:`~sap.zoo.adapt`,
:mod:`~sap.zoo.export`, :mod:`~sap.zoo.load`, :mod:`~sap.zoo.hub` with
:mod:`~sap.zoo.hub_errors`, :mod:`~sap.zoo.hub_mixin`, :mod:`~sap.zoo.reference`.
Heavy dependencies (MONAI, huggingface_hub, safetensors) are imported only inside the
functions that use them.
"""

from __future__ import annotations

from sap.zoo.adapt import adapt_input_channels
from sap.zoo.catalogue import (
    ModelZoo,
    UnknownModelError,
    ZooEntry,
    ZooEntryError,
    list_models,
    read_entry,
)
from sap.zoo.checkpoint import (
    CheckpointError,
    TaskCheckpoint,
    read_checkpoint,
    read_state_dict,
    read_weights,
)
from sap.zoo.export import ExportError, export_checkpoint, file_sha256, save_pretrained
from sap.zoo.hub import PushResult, list_revisions, pull_from_hub, push_to_hub
from sap.zoo.hub_errors import (
    CacheIntegrityError,
    HubError,
    HubRepoNotFoundError,
    HubRevisionNotFoundError,
    HubUnreachableError,
    NotInCacheError,
)
from sap.zoo.hub_mixin import PretrainedModel
from sap.zoo.load import (
    PretrainedWeights,
    WeightsIntegrityError,
    load_export,
    load_pretrained,
    read_pretrained_weights,
)
from sap.zoo.metadata import (
    ModelConfig,
    ModelConfigError,
    TrainingData,
    WeightsInfo,
    read_config,
)
from sap.zoo.network import WeightsMismatchError
from sap.zoo.reference import ReferenceImportError, import_reference_checkpoint
from sap.zoo.sources import PretrainedSource, resolve_source

__all__ = [
    "CacheIntegrityError",
    "CheckpointError",
    "ExportError",
    "HubError",
    "HubRepoNotFoundError",
    "HubRevisionNotFoundError",
    "HubUnreachableError",
    "ModelConfig",
    "ModelConfigError",
    "ModelZoo",
    "NotInCacheError",
    "PretrainedModel",
    "PretrainedSource",
    "PretrainedWeights",
    "PushResult",
    "ReferenceImportError",
    "TaskCheckpoint",
    "TrainingData",
    "UnknownModelError",
    "WeightsInfo",
    "WeightsIntegrityError",
    "WeightsMismatchError",
    "ZooEntry",
    "ZooEntryError",
    "adapt_input_channels",
    "export_checkpoint",
    "file_sha256",
    "import_reference_checkpoint",
    "list_models",
    "list_revisions",
    "load_export",
    "load_pretrained",
    "pull_from_hub",
    "push_to_hub",
    "read_checkpoint",
    "read_config",
    "read_entry",
    "read_pretrained_weights",
    "read_state_dict",
    "read_weights",
    "resolve_source",
    "save_pretrained",
]
