"""Where a fine-tune's weights start: random, or a pretrained model's encoder (and decoder).

``LesionFinetuning(init=...)`` takes every source :func:`sap.zoo.load_pretrained` takes (zoo
name, ``hf://owner/repo@revision``, export folder, ``.ckpt``) plus plain state dicts such as a
reference-code ``.pt``; ``None`` or ``"scratch"`` means random initialisation. The source is
checked when the module is built (:func:`check_init`: an unknown zoo name or a missing path
fails at once), and read when training starts (:func:`load_init`): export folders, Hub and
zoo models are sha256-checked, and a pretrained model whose recipe names other channels (or
the same channels in another order), another backbone or other backbone arguments is refused
with the fix, before any tensor is copied.

A module whose weights are about to be restored from a checkpoint (resuming, validating,
rebuilding from a ``.ckpt``) never needs its init source: build it inside
:func:`restoring_weights` and the source is not looked at, so a run can be resumed after the
pretrained file is gone.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator, Mapping, Sequence
from contextvars import ContextVar
from typing import Any, Literal

from sap.backbones import SegmentationBackbone
from sap.errors import ConfigError
from sap.recipe import ModelRecipe
from sap.tasks.checks import plain
from sap.tasks.transfer import TransferReport, transfer_encoder_decoder

log = logging.getLogger(__name__)

TransferMode = Literal["encoder+decoder", "encoder"]

#: Backbone parameter groups each transfer mode loads; the rest keeps its fresh initialisation.
TRANSFER_GROUPS: dict[str, tuple[str, ...]] = {
    "encoder+decoder": ("encoder", "decoder"),
    "encoder": ("encoder",),
}

#: ``init`` values that mean random initialisation.
SCRATCH: tuple[str, ...] = ("scratch", "none", "")

_RESTORING: ContextVar[bool] = ContextVar("sap_restoring_weights", default=False)


@contextlib.contextmanager
def restoring_weights() -> Iterator[None]:
    """Build tasks whose weights will come from a checkpoint: their ``init`` is not checked.

    >>> with restoring_weights():
    ...     check_init("/no/such/skeleton.ckpt")
    '/no/such/skeleton.ckpt'
    """
    token = _RESTORING.set(True)
    try:
        yield
    finally:
        _RESTORING.reset(token)


def is_scratch(init: str | None) -> bool:
    """Whether ``init`` asks for random initialisation."""
    return init is None or str(init).strip().lower() in SCRATCH


def check_init(init: str | None) -> str:
    """``init`` as stored in the module (``"scratch"`` for random); a source is checked at once.

    Raises:
        UnknownModelError, MissingPathError, ModelConfigError, CheckpointError, ConfigError:
            see :func:`sap.zoo.resolve_source` (not inside :func:`restoring_weights`).
    """
    if is_scratch(init):
        return "scratch"
    text = str(init).strip()
    if not _RESTORING.get():
        from sap.zoo.sources import resolve_source

        resolve_source(text)
    return text


def check_transfer_mode(transfer: str) -> tuple[str, ...]:
    """The groups ``transfer`` loads; :class:`~sap.errors.ConfigError` for an unknown mode."""
    if transfer not in TRANSFER_GROUPS:
        raise ConfigError(
            f"model.transfer must be one of {sorted(TRANSFER_GROUPS)}, got {transfer!r}."
        )
    return TRANSFER_GROUPS[transfer]


def check_compatible(
    recipe: ModelRecipe | None,
    source: str,
    channels: Sequence[str],
    backbone: str,
    backbone_kwargs: Mapping[str, Any],
) -> None:
    """Refuse pretrained weights made for other channels, channel order or architecture.

    A plain state dict has no recipe: nothing to compare (the transfer still checks every
    tensor's name and shape).
    """
    if recipe is None:
        log.warning(
            "%s carries no recipe: its channel order cannot be checked; this fine-tune feeds %s.",
            source,
            list(channels),
        )
        return
    pretrained, given = list(recipe.channels), list(channels)
    if pretrained != given:
        order = "the same channels in another order" if sorted(pretrained) == sorted(given) else ""
        raise ConfigError(
            f"{source} was trained on input channels {pretrained}, but this fine-tune feeds "
            f"{given}{f' ({order})' if order else ''}: its first layer would read each channel "
            f"as another. Set --model.channels [{', '.join(pretrained)}] (the data module takes "
            "the model's channels), or initialise from a model trained on your channels."
        )
    differing = {
        key: (value, backbone_kwargs[key])
        for key, value in recipe.backbone_kwargs.items()
        if key in backbone_kwargs and plain(value) != plain(backbone_kwargs[key])
    }
    if recipe.backbone != backbone or differing:
        raise ConfigError(
            f"{source} is a {recipe.backbone!r} with backbone_kwargs {dict(recipe.backbone_kwargs)}, "
            f"but this fine-tune builds {backbone!r} with {dict(backbone_kwargs)}. Set "
            f"--model.backbone {recipe.backbone} and --model.backbone_kwargs to match."
        )


def load_init(
    model: SegmentationBackbone,
    init: str,
    transfer: str,
    channels: Sequence[str],
    backbone: str,
    backbone_kwargs: Mapping[str, Any],
) -> tuple[TransferReport, dict[str, Any]]:
    """Read ``init``, check it fits, copy its ``transfer`` groups into ``model``.

    Returns:
        The transfer's report, and what ``checkpoint["sap_transfer"]`` keeps: ``source`` (as given), ``base_model`` (zoo
        name, ``hf://...`` or ``"<file> sha256:<hex>"``), ``transfer``, ``loaded`` (tensor
        count), ``skipped`` and ``unexpected`` key lists.

    Raises:
        ConfigError: channels, channel order or architecture differ (see
            :func:`check_compatible`).
        TransferError: a tensor of the transferred groups is missing or has another shape.
    """
    from sap.zoo.load import read_pretrained_weights

    groups = check_transfer_mode(transfer)
    weights = read_pretrained_weights(init)
    check_compatible(weights.recipe, init, channels, backbone, backbone_kwargs)
    report = transfer_encoder_decoder(model, weights.state_dict, source=init, groups=groups)
    log.warning(report.summary())
    return report, {
        "source": init,
        "base_model": weights.base_model,
        "transfer": transfer,
        "loaded": len(report.loaded),
        "skipped": list(report.skipped),
        "unexpected": list(report.unexpected),
    }


__all__ = [
    "SCRATCH",
    "TRANSFER_GROUPS",
    "TransferMode",
    "check_compatible",
    "check_init",
    "check_transfer_mode",
    "is_scratch",
    "load_init",
    "restoring_weights",
]
