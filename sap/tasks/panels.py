"""Validation image panels: coronal maximum-intensity projections of image, reference, prediction.

One RGB picture per validated case lets a run be judged at a glance in W&B or TensorBoard:
left the first input channel (T1), middle the reference labels over it, right the predicted
labels over it. Volumes are in canonical RAS orientation (as the data modules prepare
them); panels use the radiological convention: superior at the top, the patient's right on
the viewer's left. Labels are projected by their maximum along the anterior-posterior axis,
so every labelled voxel shows.
"""

from __future__ import annotations

import numpy as np

#: RGB colours of label values 1, 2, ... (cycled); background stays grey.
LABEL_COLOURS = np.array(
    [
        [230, 25, 75],
        [60, 180, 75],
        [255, 225, 25],
        [0, 130, 200],
        [245, 130, 48],
        [145, 30, 180],
        [70, 240, 240],
        [240, 50, 230],
        [210, 245, 60],
    ],
    dtype=np.float32,
)


def coronal(volume: np.ndarray, reduce: str = "max") -> np.ndarray:
    """Project a RAS volume ``[X, Y, Z]`` along Y into an image: rows S->I, columns R->L.

    >>> coronal(np.arange(8).reshape(2, 2, 2)).tolist()
    [[7, 3], [6, 2]]
    """
    projected = volume.max(axis=1) if reduce == "max" else volume.mean(axis=1)
    return projected.T[::-1, ::-1]


def overlay(grey: np.ndarray, labels: np.ndarray, alpha: float = 0.6) -> np.ndarray:
    """``uint8`` RGB of a grey image in [0, 1] with non-zero labels painted over it."""
    rgb = np.repeat(np.clip(grey, 0.0, 1.0)[..., None] * 255.0, 3, axis=-1)
    mask = labels > 0
    if mask.any():
        colours = LABEL_COLOURS[(labels[mask].astype(np.int64) - 1) % len(LABEL_COLOURS)]
        rgb[mask] = (1.0 - alpha) * rgb[mask] + alpha * colours
    return rgb.astype(np.uint8)


def validation_panel(
    image: np.ndarray, reference: np.ndarray, prediction: np.ndarray, min_height: int = 256
) -> np.ndarray:
    """``uint8`` RGB ``[k * Z, 3 * k * X, 3]``: image MIP | reference over it | prediction over it.

    Args:
        image: ``[C, X, Y, Z]`` network input (the first channel is shown).
        reference: ``[X, Y, Z]`` reference label map.
        prediction: ``[X, Y, Z]`` predicted label map.
        min_height: small volumes are enlarged by a whole factor ``k`` to at least this many
            rows (pixels repeated, so labels stay sharp).

    >>> panel = validation_panel(np.zeros((2, 4, 3, 5)), np.ones((4, 3, 5)), np.zeros((4, 3, 5)))
    >>> panel.shape, panel.dtype.name
    ((260, 624, 3), 'uint8')
    """
    grey = coronal(np.asarray(image[0], dtype=np.float32))
    span = float(grey.max() - grey.min())
    grey = (grey - grey.min()) / span if span > 0 else np.zeros_like(grey)
    tiles = [
        overlay(grey, np.zeros_like(grey, dtype=np.int64)),
        overlay(grey, coronal(np.asarray(reference))),
        overlay(grey, coronal(np.asarray(prediction))),
    ]
    panel = np.concatenate(tiles, axis=1)
    factor = max(1, -(-min_height // panel.shape[0]))
    return panel.repeat(factor, axis=0).repeat(factor, axis=1)


__all__ = ["LABEL_COLOURS", "coronal", "overlay", "validation_panel"]
