"""Clean raw predictions the way the paper does: lesion components, skeleton majority vote.

* Lesions are counted as 3D connected components (26-connectivity: voxels touching by a face,
  an edge or a corner belong together, as in the evaluation). Components smaller than
  ``min_volume_ml`` are noise for a reader (a 0.1 mL lesion is a 6 mm sphere) and are removed.
* A bone predicted as two regions (half a femur labelled pelvis) is cleaned by a majority
  vote: every connected piece of predicted bone takes its most frequent bone label.

Component maps are ``uint16`` when that holds the count (``int32`` otherwise), so a
whole-body map costs 2 bytes a voxel instead of scipy's default 4.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

_FULL_CONNECTIVITY = np.ones((3, 3, 3), dtype=bool)
_FACE_CONNECTIVITY = ndimage.generate_binary_structure(3, 1)


def connected_components(mask: np.ndarray, connectivity: int = 26) -> tuple[np.ndarray, int]:
    """Label the connected components of a boolean 3D mask.

    Args:
        mask: 3D array; non-zero voxels are foreground.
        connectivity: 26 (faces, edges, corners) or 6 (faces only).

    Returns:
        ``(components, count)``: component ids ``1..count`` (0 = background) as ``uint16``
        when the count fits, else ``int32``.
    """
    if connectivity not in (6, 26):
        raise ValueError(f"connectivity must be 6 or 26, got {connectivity}.")
    structure = _FULL_CONNECTIVITY if connectivity == 26 else _FACE_CONNECTIVITY
    mask = np.asarray(mask) != 0
    try:
        components = np.empty(mask.shape, dtype=np.uint16)
        count = ndimage.label(mask, structure=structure, output=components)
    except RuntimeError:  # more than 65535 components
        components, count = ndimage.label(mask, structure=structure, output=np.int32)
    return components, int(count)


def remove_small_components(
    mask: np.ndarray,
    voxel_volume_ml: float,
    min_volume_ml: float,
    connectivity: int = 26,
) -> tuple[np.ndarray, np.ndarray, int]:
    """Drop connected components smaller than ``min_volume_ml``.

    Args:
        mask: 3D binary mask.
        voxel_volume_ml: volume of one voxel in mL (mm³ / 1000).
        min_volume_ml: components below this volume are removed (0 keeps all).

    Returns:
        ``(cleaned_mask, components, count)``: the ``uint8`` mask, the components that
        remain relabelled ``1..count`` in order of decreasing volume (ties: lower index
        first), and their count.
    """
    components, count = connected_components(mask, connectivity)
    if count == 0:
        return np.zeros(mask.shape, np.uint8), components, 0
    sizes = np.bincount(components.ravel(), minlength=count + 1)
    sizes[0] = 0
    # A relative tolerance so that a lesion of exactly min_volume_ml is kept despite rounding.
    volumes_ml = sizes * float(voxel_volume_ml)
    kept = np.flatnonzero((sizes > 0) & (volumes_ml >= min_volume_ml * (1 - 1e-9)))
    order = kept[np.argsort(-sizes[kept], kind="stable")]
    relabel = np.zeros(count + 1, dtype=components.dtype)
    relabel[order] = np.arange(1, len(order) + 1, dtype=components.dtype)
    components = relabel[components]
    return (components > 0).astype(np.uint8), components, len(order)


def skeleton_majority_vote(
    labels: np.ndarray, num_labels: int, connectivity: int = 26
) -> np.ndarray:
    """Give every connected piece of predicted bone its most frequent bone label.

    Args:
        labels: 3D ``uint8`` skeleton labels (0 = background).
        num_labels: number of classes, background included (10 for the SAP skeleton).

    Returns:
        New ``uint8`` label map; background stays background. Ties go to the lower label.
    """
    components, count = connected_components(labels > 0, connectivity)
    if count == 0:
        return labels.astype(np.uint8, copy=True)
    bone = components > 0
    pairs = components[bone].astype(np.int64) * num_labels + labels[bone]
    votes = np.bincount(pairs, minlength=(count + 1) * num_labels).reshape(count + 1, num_labels)
    votes[:, 0] = -1  # background never wins inside bone
    winner = votes.argmax(axis=1).astype(np.uint8)
    winner[0] = 0
    return winner[components]


__all__ = ["connected_components", "remove_small_components", "skeleton_majority_vote"]
