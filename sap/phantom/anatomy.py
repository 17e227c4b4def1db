"""What the phantom knows about one body: tissue classes, bone labels and bone instances.

:class:`Anatomy` is the hand-over between drawing a subject (:mod:`sap.phantom.body`) and the
steps that use it (lesion placement, MR signal). Tissue classes are the phantom's own; bone
labels are the SAP skeleton labels of :data:`sap.labels.SKELETON_LABELS`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from sap.labels import SKELETON_LABELS

#: Tissue classes of the phantom, in the order of the values of :attr:`Anatomy.tissue`.
TISSUES: tuple[str, ...] = (
    "air",
    "fat",
    "muscle",
    "viscera",
    "lung",
    "heart",
    "liver",
    "spleen",
    "kidney",
    "bladder",
    "brain",
    "csf",
    "spinal_cord",
    "lymph_node",
    "bone",
    "lesion",
)
#: Tissue name -> value in :attr:`Anatomy.tissue`.
TISSUE = {name: index for index, name in enumerate(TISSUES)}
#: Skeleton region name -> value in :attr:`Anatomy.skeleton`.
LABEL = {name: index for index, name in enumerate(SKELETON_LABELS)}


@dataclass
class Anatomy:
    """Everything the signal and lesion steps need about one subject's body.

    Attributes:
        tissue: tissue class per voxel (index into :data:`TISSUES`).
        skeleton: SAP bone label per voxel (index into ``sap.labels.SKELETON_LABELS``).
        instance: bone instance per voxel (0 = no bone); one id per vertebra, per paired bone
            side, per hemipelvis, ... Lesions stay inside one instance.
        marrow: for bone voxels, the fraction of the voxel that is marrow (the rest cortex).
        body: voxels inside the body outline (skin and everything under it).
        instances: id -> (name, skeleton label) for every bone instance.
        info: the subject's sampled parameters (sizes, pose), for cohort.json.
    """

    tissue: np.ndarray
    skeleton: np.ndarray
    instance: np.ndarray
    marrow: np.ndarray
    body: np.ndarray
    instances: dict[int, tuple[str, int]]
    info: dict[str, Any] = field(default_factory=dict)


__all__ = ["LABEL", "TISSUE", "TISSUES", "Anatomy"]
