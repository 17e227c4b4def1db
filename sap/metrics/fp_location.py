"""Where false positives lie: inside an anatomical region (bone) or outside it.

Bone metastases lie in bone, so a false positive outside the skeleton is one an anatomy
prior should rule out, while one inside bone needs the lesion's appearance to be told from
marrow. Counting the two apart shows which kind of knowledge a model lacks; it is how the
benchmark checks SAP's mechanism (anatomy-first pretraining should remove the first kind).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sap.metrics.detection import DetectionSettings
from sap.volume.components import as_mask, find_components


@dataclass(frozen=True)
class FalsePositiveLocation:
    """False-positive components of one exam, split by whether they touch the region.

    Attributes:
        inside: false positives with at least one voxel in the region.
        outside: false positives with no voxel in it.
    """

    inside: int
    outside: int

    @property
    def total(self) -> int:
        return self.inside + self.outside


def false_positives_by_region(
    pred_mask: object,
    ref_mask: object,
    region_mask: object,
    settings: DetectionSettings | None = None,
) -> FalsePositiveLocation:
    """Split one exam's false positives by a region (e.g. the skeleton, label map > 0).

    A false positive is what :func:`sap.metrics.detection.evaluate_exam` counts as one: a
    predicted connected component (``settings.connectivity``) that touches no reference
    lesion. It is *inside* when any of its voxels lies in ``region_mask``, so a false
    positive on the bone surface counts as inside.

    >>> pred = np.zeros((4, 4, 4), bool); pred[0, 0, 0] = pred[3, 3, 3] = pred[1, 2, 2] = True
    >>> ref = np.zeros_like(pred); ref[1, 2, 2] = True
    >>> bone = np.zeros_like(pred); bone[0] = True
    >>> false_positives_by_region(pred, ref, bone)
    FalsePositiveLocation(inside=1, outside=1)
    """
    settings = settings or DetectionSettings()
    pred = as_mask(pred_mask, "pred_mask")
    ref = as_mask(ref_mask, "ref_mask")
    region = as_mask(region_mask, "region_mask")
    if not pred.shape == ref.shape == region.shape:
        raise ValueError(
            f"Prediction, reference and region must be on the same voxel grid; got shapes "
            f"{pred.shape}, {ref.shape} and {region.shape}."
        )
    components = find_components(pred, settings.connectivity)
    flat = components.flat_index
    labels = components.flat_label
    matched = np.zeros(components.count + 1, dtype=bool)
    matched[labels[ref.reshape(-1)[flat]]] = True
    touches = np.zeros(components.count + 1, dtype=bool)
    touches[labels[region.reshape(-1)[flat]]] = True
    false = ~matched[1:]
    inside = int(np.count_nonzero(false & touches[1:]))
    return FalsePositiveLocation(inside=inside, outside=int(np.count_nonzero(false)) - inside)


__all__ = ["FalsePositiveLocation", "false_positives_by_region"]
