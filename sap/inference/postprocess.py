"""Clean raw predictions the way the paper does: lesion components, skeleton majority vote.

* Lesions are counted as 3D connected components (default 26-connectivity, as in the
  evaluation; see :mod:`sap.volume.components`). Components smaller than ``min_volume_ml``
  are noise for a reader (a 0.1 mL lesion is a 6 mm sphere) and are removed.
* A bone predicted as two regions (half a femur labelled pelvis) is cleaned by a majority
  vote: every connected piece of predicted bone takes its most frequent bone label.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from sap.inference.spill import slabs
from sap.volume import DEFAULT_CONNECTIVITY, label_components, min_voxels_for_volume


def remove_small_components(
    mask: np.ndarray,
    spacing_mm: Sequence[float] | np.ndarray,
    min_volume_ml: float,
    connectivity: int = DEFAULT_CONNECTIVITY,
    out: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, int]:
    """Drop connected components smaller than ``min_volume_ml``.

    Works slab by slab besides the label volume itself, so a whole-body mask costs its
    components (4 bytes per voxel) and nothing else of its size.

    Args:
        mask: 3D binary mask.
        spacing_mm: voxel spacing in mm, one per array axis.
        min_volume_ml: components below this volume are removed (0 keeps all).
        connectivity: 6, 18 or 26 (see :data:`sap.volume.CONNECTIVITIES`).
        out: a bool or uint8 array of the mask's shape for the cleaned mask (may be ``mask``
            itself, which is no longer needed once labelled); default: a new one.

    Returns:
        ``(cleaned_mask, components, count)``: the ``uint8`` mask (a view of ``out`` when
        given), the components that remain relabelled ``1..count`` in order of decreasing
        volume (ties: the component met first in C order), and their count.

    >>> mask = np.zeros((6, 6, 6), np.uint8); mask[:2, :2, :2] = 1; mask[5, 5, 5] = 1
    >>> remove_small_components(mask, (5.0, 5.0, 5.0), min_volume_ml=0.5)[2]
    1
    """
    components, count = label_components(mask, connectivity)
    cleaned = np.empty(components.shape, np.uint8) if out is None else out.view(np.uint8)
    parts = slabs(components.shape)
    sizes = np.zeros(count + 1, np.int64)
    for part in parts:  # np.bincount of the whole volume would copy it as int64
        sizes += np.bincount(components[part].reshape(-1), minlength=count + 1)
    sizes[0] = 0
    kept = np.flatnonzero((sizes > 0) & (sizes >= min_voxels_for_volume(min_volume_ml, spacing_mm)))
    order = kept[np.argsort(-sizes[kept], kind="stable")]
    relabel = np.zeros(count + 1, dtype=components.dtype)
    relabel[order] = np.arange(1, len(order) + 1, dtype=components.dtype)
    for part in parts:
        components[part] = relabel[components[part]]
        np.greater(components[part], 0, out=cleaned[part].view(bool))
    return cleaned, components, len(order)


def skeleton_majority_vote(
    labels: np.ndarray, num_labels: int, connectivity: int = DEFAULT_CONNECTIVITY
) -> np.ndarray:
    """Give every connected piece of predicted bone its most frequent bone label.

    Args:
        labels: 3D ``uint8`` skeleton labels (0 = background).
        num_labels: number of classes, background included (10 for the SAP skeleton).
        connectivity: 6, 18 or 26 (see :data:`sap.volume.CONNECTIVITIES`).

    Returns:
        New ``uint8`` label map; background stays background. Ties go to the lower label.

    >>> labels = np.zeros((4, 4, 4), np.uint8); labels[0, :3, 0] = (2, 2, 3)
    >>> skeleton_majority_vote(labels, 4)[0, :3, 0].tolist()
    [2, 2, 2]
    """
    components, count = label_components(labels > 0, connectivity)
    if count == 0:
        return labels.astype(np.uint8, copy=True)
    bone = components > 0
    pairs = components[bone].astype(np.int64) * num_labels + labels[bone]
    votes = np.bincount(pairs, minlength=(count + 1) * num_labels).reshape(count + 1, num_labels)
    votes[:, 0] = -1  # background never wins inside bone
    winner = votes.argmax(axis=1).astype(np.uint8)
    winner[0] = 0
    return winner[components]


__all__ = ["remove_small_components", "skeleton_majority_vote"]
