"""Checks of a task's settings at construction: a wrong number fails at once, naming the option.

>>> check_range("lr", 1e-4, low=0.0, low_open=True)
0.0001
>>> check_range("lr", -1, low=0.0, low_open=True)
Traceback (most recent call last):
...
sap.errors.ConfigError: model.lr must be > 0, got -1.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from sap.errors import ConfigError


def check_range(
    name: str,
    value: float,
    low: float | None = None,
    high: float | None = None,
    *,
    low_open: bool = False,
    high_open: bool = False,
    hint: str = "",
) -> float:
    """``value`` as a float, or :class:`~sap.errors.ConfigError` naming ``model.<name>``.

    Args:
        name: the option's name (as in ``--model.<name>``).
        value: the value given.
        low, high: bounds (``None``: unbounded).
        low_open, high_open: exclude the bound itself.
        hint: a sentence appended to the message (what to use instead).
    """
    number = float(value)
    bounds = []
    if low is not None:
        bounds.append(f"{'>' if low_open else '>='} {low:g}")
    if high is not None:
        bounds.append(f"{'<' if high_open else '<='} {high:g}")
    ok = math.isfinite(number)
    if ok and low is not None:
        ok = number > low if low_open else number >= low
    if ok and high is not None:
        ok = number < high if high_open else number <= high
    if not ok:
        expected = " and ".join(bounds) if bounds else "finite"
        message = f"model.{name} must be {expected}, got {value}."
        raise ConfigError(f"{message} {hint}".strip())
    return number


def check_patch_size(patch_size: Sequence[int], multiple: int, backbone: str) -> tuple[int, ...]:
    """Three positive voxel counts divisible by the backbone's ``multiple``; the fix if not.

    >>> check_patch_size([32, 32, 48], 16, "tiny_unet")
    (32, 32, 48)
    >>> check_patch_size([32, 32, 48], 32, "unet_resnet18")
    Traceback (most recent call last):
    ...
    sap.errors.ConfigError: model.patch_size [32, 32, 48] must be divisible by 32 for backbone 'unet_resnet18': use --model.patch_size [32,32,64] (or [32,32,32]); the data module takes the model's patch size.
    """
    sizes = [int(s) for s in patch_size]
    if len(sizes) != 3 or min(sizes) <= 0:
        raise ConfigError(
            f"model.patch_size must be 3 positive voxel counts, got {list(patch_size)}."
        )
    if any(s % multiple for s in sizes):
        up = [-(-s // multiple) * multiple for s in sizes]
        down = [max(multiple, s // multiple * multiple) for s in sizes]
        alternatives = f" (or [{','.join(map(str, down))}])" if down != up else ""
        raise ConfigError(
            f"model.patch_size {sizes} must be divisible by {multiple} for backbone {backbone!r}: "
            f"use --model.patch_size [{','.join(map(str, up))}]{alternatives}; the data module "
            "takes the model's patch size."
        )
    return tuple(sizes)


def plain(value: Any) -> Any:
    """Tuples as lists, recursively, so that values that went through JSON or YAML compare equal.

    >>> plain({"size": (1, 2)}) == {"size": [1, 2]}
    True
    """
    if isinstance(value, tuple | list):
        return [plain(item) for item in value]
    if isinstance(value, dict):
        return {key: plain(item) for key, item in value.items()}
    return value


def check_data_matches(model: Any, datamodule: Any, source: str = "") -> None:
    """Refuse a data module whose labels or channels are not the model's.

    A resumed run takes its model from the checkpoint: a skeleton checkpoint given to a lesion
    run would otherwise train a 10-class model on lesion maps without a word.

    Args:
        model: a :class:`~sap.tasks.SegmentationTask` (``labels``, ``channels``).
        datamodule: a data module; checked where it has ``label_names`` / ``channels``.
        source: where the model came from (a checkpoint path), for the message.
    """
    origin = f" (from {source})" if source else ""
    model_name, data_name = type(model).__name__, type(datamodule).__name__
    for what, ours, theirs in (
        ("labels", getattr(model, "labels", None), getattr(datamodule, "label_names", None)),
        ("channels", getattr(model, "channels", None), getattr(datamodule, "channels", None)),
    ):
        if ours is not None and theirs is not None and list(ours) != list(theirs):
            raise ConfigError(
                f"The model {model_name}{origin} has {what} {list(ours)}, but the data module "
                f"{data_name} gives {list(theirs)}. Use a checkpoint and a config of the same "
                "task (skeleton or lesion)."
            )


__all__ = ["check_data_matches", "check_patch_size", "check_range", "plain"]
