"""Flip test-time augmentation that never mirrors left and right.

Mirroring a window along the left-right axis turns a left femur into a right one. For a
model with lateralised outputs (left/right labels, or any learned asymmetry such as the
heart and aorta on the left, liver on the right, which the network uses as context) the
flipped prediction is then averaged into the wrong side: a well-known failure of mirroring
TTA. We therefore flip only along the anterior-posterior and the head-feet axes, which no
label distinguishes, and find those axes from the model's canonical orientation (``RAS``:
array axis 0 runs left to right, so axes 1 and 2 are flipped).
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import torch

from sap.inference.sliding import PredictFn

_LATERAL_CODES = ("L", "R")


def lateral_axis(orientation: str) -> int:
    """Array axis running between left and right for an orientation code like ``"RAS"``.

    >>> lateral_axis("RAS"), lateral_axis("PIL")
    (0, 2)
    """
    codes = orientation.upper()
    pairs = [set(pair) & set(codes) for pair in ("LR", "AP", "SI")]
    if len(codes) != 3 or any(len(found) != 1 for found in pairs):
        raise ValueError(
            f"Orientation {orientation!r} must be three axis codes, one of each pair L/R, A/P, "
            "S/I (e.g. 'RAS')."
        )
    return next(axis for axis, code in enumerate(codes) if code in _LATERAL_CODES)


def tta_flip_axes(orientation: str = "RAS") -> tuple[int, ...]:
    """Spatial axes that may be flipped at test time: all except the left-right one.

    >>> tta_flip_axes("RAS")
    (1, 2)
    >>> tta_flip_axes("LPS")
    (1, 2)
    """
    lateral = lateral_axis(orientation)
    return tuple(a for a in range(3) if a != lateral)


def flip_tta(predict_fn: PredictFn, axes: Sequence[int]) -> PredictFn:
    """Average ``predict_fn`` over every combination of flips along ``axes``.

    Args:
        predict_fn: maps ``[B, C, X, Y, Z]`` to probabilities ``[B, K, X, Y, Z]``.
        axes: spatial axes (0, 1, 2) to flip; with two axes the model runs 4 times
            (none, each alone, both), like nnU-Net's mirroring.

    Returns:
        A function with the same signature returning the mean of the un-flipped outputs.
    """
    spatial = sorted({int(a) for a in axes})
    if any(a not in (0, 1, 2) for a in spatial):
        raise ValueError(f"Flip axes must be spatial axes 0, 1 or 2, got {list(axes)}.")
    combos = [
        tuple(2 + a for a in combo)
        for r in range(len(spatial) + 1)
        for combo in itertools.combinations(spatial, r)
    ]

    def predict(batch: torch.Tensor) -> torch.Tensor:
        total = None
        for dims in combos:
            x = torch.flip(batch, dims) if dims else batch
            y = predict_fn(x).to(torch.float32)
            y = torch.flip(y, dims) if dims else y
            total = y if total is None else total.add_(y)
        return total / len(combos)

    return predict


__all__ = ["flip_tta", "lateral_axis", "tta_flip_axes"]
