"""``from_pretrained`` / ``save_pretrained`` / ``push_to_hub`` on the models ``sap`` loads.

Users of segmentation_models_pytorch and timm expect these three methods on a model
(``PyTorchModelHubMixin`` style). Every model :func:`sap.zoo.load_pretrained` returns has them:
its class is the backbone's own class with :class:`PretrainedModel` mixed in, so it still is
that backbone (``isinstance``, ``state_dict`` keys and ``repr`` unchanged). The methods are
thin: they call the zoo's one loader, exporter and uploader, so the export format
(``model.safetensors`` + ``config.json`` + model card) and the sha256 checks are the same as
everywhere else.

    >>> from sap.zoo import PretrainedModel
    >>> model = PretrainedModel.from_pretrained("sap-skeleton-phantom")
    >>> type(model).__name__, model.recipe.task
    ('TinyUNet', 'skeleton')
    >>> model.push_to_hub("owner/repo")                                   # doctest: +SKIP
    >>> model = PretrainedModel.from_pretrained("hf://owner/repo@<commit>")  # doctest: +SKIP
"""

from __future__ import annotations

import copyreg
import dataclasses
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sap.zoo.metadata import ModelConfig

if TYPE_CHECKING:
    from sap.recipe import ModelRecipe
    from sap.zoo.hub import PushResult

_HUB_CLASSES: dict[type, type] = {}


class PretrainedModel:
    """Mixin for loaded backbones: load, export and share through :mod:`sap.zoo`.

    A model gets it from :func:`sap.zoo.load_pretrained`; its ``recipe`` and
    ``pretrained_cfg`` say what it is and where it came from.
    """

    recipe: ModelRecipe
    pretrained_cfg: dict[str, Any]

    @classmethod
    def from_pretrained(cls, name_or_path: str | Path, **kwargs: Any) -> Any:
        """:func:`sap.zoo.load_pretrained` (same arguments): zoo name, ``hf://owner/repo@rev``,
        export folder or ``.ckpt``; the weights are checked against their sha256.

        Called on a concrete class (``type(model).from_pretrained``) it also checks that the
        loaded model is of that architecture.
        """
        from sap.zoo.load import load_pretrained

        model = load_pretrained(name_or_path, **kwargs)
        if cls is not PretrainedModel and not isinstance(model, cls):
            raise TypeError(
                f"{name_or_path} holds a {type(model).__name__} ({model.recipe.backbone}), not a "
                f"{cls.__name__}. Use PretrainedModel.from_pretrained or sap.load_pretrained to "
                "load any architecture."
            )
        return model

    def export_config(self, **changes: Any) -> ModelConfig:
        """The metadata an export of this model gets: the loaded ``config.json``, with this
        model's recipe (a new head or new channels included) and ``changes`` (any
        :class:`~sap.zoo.ModelConfig` field: ``name``, ``description``, ``training_data``,
        ``metrics``, ``base_model``, ...).

        A model whose head or input channels were changed at load time is a new model: its
        metrics are dropped and ``base_model`` names the model it came from. After training the
        weights further, pass the new ``metrics`` (or ``metrics={}``) yourself.
        """
        from sap.zoo.export import base_model_name

        cfg = getattr(self, "pretrained_cfg", None) or {}
        recipe = getattr(self, "recipe", None)
        if recipe is None or "config" not in cfg:
            raise ValueError(
                "This model carries no recipe (it was not loaded with sap.zoo.load_pretrained); "
                "export it with sap.zoo.save_pretrained(model, out_dir, ModelConfig(recipe=...))."
            )
        config = ModelConfig.from_dict(dict(cfg["config"]), source=str(cfg.get("source", "model")))
        config = dataclasses.replace(config, recipe=recipe, weights=None)
        if cfg.get("head_replaced") or cfg.get("in_channels_adapted"):
            config = dataclasses.replace(
                config,
                metrics={},
                metrics_description="",
                base_model=base_model_name(str(cfg.get("source", ""))) or config.base_model,
            )
        return dataclasses.replace(config, **changes)

    def save_pretrained(
        self, out_dir: str | Path, *, overwrite: bool = False, **changes: Any
    ) -> Path:
        """Write this model as an export folder (:func:`sap.zoo.save_pretrained`).

        Args:
            out_dir: the folder to create.
            overwrite: replace an existing export folder.
            **changes: metadata to change, see :meth:`export_config`.
        """
        from sap.zoo.export import save_pretrained

        return save_pretrained(self, out_dir, self.export_config(**changes), overwrite=overwrite)  # type: ignore[arg-type]

    def push_to_hub(
        self,
        repo_id: str,
        *,
        revision: str | None = None,
        commit_message: str | None = None,
        private: bool | None = None,
        token: str | None = None,
        endpoint: str | None = None,
        **changes: Any,
    ) -> PushResult:
        """Export this model to a temporary folder and upload it (:func:`sap.zoo.push_to_hub`).

        Returns the commit; ``result.uri`` (``hf://owner/repo@<commit>``) loads exactly these
        weights again. ``changes``: metadata, see :meth:`export_config`.
        """
        from sap.zoo.hub import push_to_hub

        with tempfile.TemporaryDirectory(prefix="sap-export-") as tmp:
            folder = self.save_pretrained(Path(tmp) / "export", **changes)
            return push_to_hub(
                folder,
                repo_id,
                revision=revision,
                commit_message=commit_message,
                private=private,
                token=token,
                endpoint=endpoint,
            )

    def __reduce_ex__(self, protocol: Any) -> Any:
        # Pickle (torch.save of a whole model, copy.deepcopy) by the backbone's importable class;
        # _rebuild mixes the methods in again on the way back.
        reduced = super().__reduce_ex__(protocol)
        if isinstance(reduced, tuple) and reduced[0] is copyreg.__newobj__:
            return (_rebuild, (plain_class(type(self)),), *reduced[2:])
        return reduced


def plain_class(cls: type) -> type:
    """The backbone class under a class made by :func:`hub_class`."""
    return next(base for base in cls.__mro__[1:] if base is not PretrainedModel)


def hub_class(cls: type) -> type:
    """``cls`` with :class:`PretrainedModel` mixed in (one class per backbone class, cached)."""
    if issubclass(cls, PretrainedModel):
        return cls
    if cls not in _HUB_CLASSES:
        _HUB_CLASSES[cls] = type(
            cls.__name__,
            (PretrainedModel, cls),
            {
                "__module__": cls.__module__,
                "__qualname__": cls.__qualname__,
                "__doc__": cls.__doc__,
            },
        )
    return _HUB_CLASSES[cls]


def with_hub_methods(model: Any) -> Any:
    """Give ``model`` (a loaded backbone) the methods of :class:`PretrainedModel`, in place."""
    model.__class__ = hub_class(type(model))
    return model


def _rebuild(cls: type) -> Any:
    klass = hub_class(cls)
    return klass.__new__(klass)


__all__ = ["PretrainedModel", "hub_class", "plain_class", "with_hub_methods"]
