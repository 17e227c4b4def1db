"""SAP transfer: carry encoder and decoder weights from one model into another.

The heart of Supervised Anatomical Pretraining: a lesion model starts from the skeleton
model's encoder *and* decoder; only the head (10 bone classes -> 2 lesion classes) is new.
Checkpoints come in many dresses — Lightning (``model.`` prefix under ``state_dict``), the
reference MONAI scripts (``module.`` / ``backbone.`` prefixes, ``swin_vit`` for ``swinViT``),
our own zoo exports (safetensors) — so keys are matched after normalising those prefixes.
Files are read by :func:`sap.zoo.read_state_dict`.

A transfer that silently loads nothing is the worst failure a pretraining study can have (the
"pretrained" arm quietly trains from scratch). Hence :func:`transfer_encoder_decoder` refuses
to continue unless every encoder and decoder tensor was found with the right shape, and its
:class:`TransferReport` lists every missing and unexpected key.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import torch

from sap.backbones import SegmentationBackbone
from sap.errors import UserError

log = logging.getLogger(__name__)

#: Prefixes that wrappers put in front of backbone keys: Lightning modules (``model.``),
#: DataParallel / DDP (``module.``), and the reference code's wrapper (``backbone.``).
WRAPPER_PREFIXES: tuple[str, ...] = ("model.", "module.", "backbone.")

#: Spelling differences between MONAI versions / the reference code and ours.
KEY_RENAMES: tuple[tuple[str, str], ...] = (("swin_vit.", "swinViT."),)


class TransferError(UserError, RuntimeError):
    """Raised when pretrained weights cannot be carried into a model as SAP requires."""


@dataclass
class TransferReport:
    """What a transfer did, key by key (target model key names).

    ``skipped`` are tensors of groups not transferred (the head, and the decoder when only
    the encoder is transferred): they keep their fresh initialisation.
    """

    source: str
    loaded: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    shape_mismatch: list[str] = field(default_factory=list)

    def summary(self) -> str:
        lines = [
            f"Transfer of pretrained weights from {self.source}: {len(self.loaded)} tensors loaded, "
            f"{len(self.skipped)} tensors of groups not transferred left freshly initialised, "
            f"{len(self.missing)} missing, {len(self.unexpected)} unexpected, "
            f"{len(self.shape_mismatch)} with a different shape."
        ]
        for title, keys in (
            ("missing (kept their initial values)", self.missing),
            ("unexpected (in the checkpoint, not in the model)", self.unexpected),
            ("shape mismatch", self.shape_mismatch),
        ):
            if keys:
                lines.append(f"  {title}:")
                lines.extend(f"    {key}" for key in keys)
        return "\n".join(lines)


def _candidates(key: str) -> Iterable[str]:
    """Spellings of ``key`` to try against the target model, most specific first."""
    for old, new in KEY_RENAMES:
        key = key.replace(old, new)
    seen = [key]
    stripped = key
    changed = True
    while changed:
        changed = False
        for prefix in WRAPPER_PREFIXES:
            if stripped.startswith(prefix):
                stripped = stripped[len(prefix) :]
                seen.append(stripped)
                changed = True
    for variant in list(seen):
        seen.append(f"net.{variant}")
    return seen


def transfer_encoder_decoder(
    model: SegmentationBackbone,
    source_state: Mapping[str, torch.Tensor],
    *,
    source: str = "<state dict>",
    groups: tuple[str, ...] = ("encoder", "decoder"),
) -> TransferReport:
    """Copy the ``groups`` of ``source_state`` into ``model``; leave the other groups as they are.

    Raises:
        TransferError: when any tensor of ``groups`` is missing from the source or has a
            different shape — the transfer would otherwise silently be partial.
    """
    target = model.state_dict()
    report = TransferReport(source=source)
    matched: dict[str, torch.Tensor] = {}
    used_sources: set[str] = set()
    for key, value in source_state.items():
        for candidate in _candidates(key):
            if candidate in target:
                group = model.group_of(candidate)
                used_sources.add(key)
                if group not in groups:
                    report.skipped.append(candidate)
                elif tuple(target[candidate].shape) != tuple(value.shape):
                    report.shape_mismatch.append(
                        f"{candidate}: checkpoint {tuple(value.shape)} vs model {tuple(target[candidate].shape)}"
                    )
                else:
                    matched[candidate] = value
                break
    report.unexpected = sorted(set(source_state) - used_sources)
    for key in target:
        if model.group_of(key) in groups and key not in matched:
            report.missing.append(key)
    report.loaded = sorted(matched)
    if report.missing or report.shape_mismatch:
        raise TransferError(
            f"Pretrained {'/'.join(groups)} did not load completely, so this would not be SAP "
            "initialisation. Check that the backbone name and kwargs (and the number of input "
            "channels) match the pretrained model.\n" + report.summary()
        )
    with torch.no_grad():
        for key, value in matched.items():
            target[key].copy_(value.to(dtype=target[key].dtype))
    log.info(report.summary())
    return report


__all__ = ["TransferError", "TransferReport", "transfer_encoder_decoder"]
