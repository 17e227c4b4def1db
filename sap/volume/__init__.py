"""The bottom layer: one home for every basic operation on a 3D volume.

Geometry from an affine (:mod:`~sap.volume.geometry`), connected components with one
connectivity convention (:mod:`~sap.volume.components`) and reading an image file with its
checks (:mod:`~sap.volume.files`). Every stage of `sap` (data, phantom, metrics, inference,
evaluation) uses these and none of them imports a stage.

>>> import numpy as np
>>> from sap.volume import label_components, spacing_from_affine, voxel_volume_ml
>>> spacing = spacing_from_affine(np.diag([2.0, 2.0, 5.0, 1.0]))
>>> spacing.tolist(), voxel_volume_ml(spacing)
([2.0, 2.0, 5.0], 0.02)
>>> mask = np.zeros((4, 4, 4), bool); mask[0, 0, 0] = mask[1, 1, 1] = True
>>> label_components(mask)[1], label_components(mask, connectivity=6)[1]
(1, 2)
"""

from __future__ import annotations

from sap.volume.components import (
    CONNECTIVITIES,
    DEFAULT_CONNECTIVITY,
    Components,
    as_mask,
    check_connectivity,
    find_components,
    label_components,
    neighbour_offsets,
)
from sap.volume.files import IMAGE_SUFFIXES, VolumeFile, VolumeReadError, open_volume, read_volume
from sap.volume.geometry import (
    check_spacing,
    corners_mm,
    grid_offset_mm,
    min_voxels_for_volume,
    overlap_in_space,
    spacing_from_affine,
    voxel_volume_ml,
)

__all__ = [
    "CONNECTIVITIES",
    "DEFAULT_CONNECTIVITY",
    "IMAGE_SUFFIXES",
    "Components",
    "VolumeFile",
    "VolumeReadError",
    "as_mask",
    "check_connectivity",
    "check_spacing",
    "corners_mm",
    "find_components",
    "grid_offset_mm",
    "label_components",
    "min_voxels_for_volume",
    "neighbour_offsets",
    "open_volume",
    "overlap_in_space",
    "read_volume",
    "spacing_from_affine",
    "voxel_volume_ml",
]
