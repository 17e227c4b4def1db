"""One generated subject in memory: images, labels, geometry and what was drawn.

:class:`PhantomCase` is what :func:`sap.phantom.generate_case` returns, what
:func:`sap.phantom.write_case` writes and what :func:`sap.phantom.render_case_png` draws.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from sap.volume import spacing_from_affine


@dataclass
class PhantomCase:
    """One generated subject, in memory.

    Attributes:
        case_id: folder name, e.g. ``"metastatic_003"``.
        seed: the case's own seed (``generate_case(seed)`` rebuilds it).
        t1, b1000: images, float32; ``b1000`` may be on a coarser grid (``b1000_affine``).
        skeleton: uint8 bone labels 0..9 on the T1 grid.
        lesion: uint8 0/1 lesion mask on the T1 grid, or None for a healthy case.
        affine, b1000_affine: 4x4 RAS+ voxel-to-world matrices (mm).
        tissue: uint8 tissue classes (:data:`sap.phantom.TISSUES`), for tests and inspection;
            not written.
        body: boolean body outline, likewise.
        lesions: one dict per lesion: region, bone, volume_ml, voxels, centre_mm, ...
        subject: sampled anatomy, pose and signal parameters.
    """

    case_id: str
    seed: int
    t1: np.ndarray
    b1000: np.ndarray
    skeleton: np.ndarray
    lesion: np.ndarray | None
    affine: np.ndarray
    b1000_affine: np.ndarray
    tissue: np.ndarray
    body: np.ndarray
    lesions: list[dict[str, Any]] = field(default_factory=list)
    subject: dict[str, Any] = field(default_factory=dict)

    @property
    def metastatic(self) -> bool:
        """Whether the case has a lesion map (a patient rather than a healthy volunteer)."""
        return self.lesion is not None

    @property
    def spacing_mm(self) -> tuple[float, float, float]:
        """Voxel size (mm) of the T1 grid along the array axes."""
        return tuple(float(s) for s in spacing_from_affine(self.affine))

    def summary(self) -> dict[str, Any]:
        """The case's entry in ``cohort.json``."""
        volumes = sorted((lesion["volume_ml"] for lesion in self.lesions), reverse=True)
        return {
            "case_id": self.case_id,
            "kind": "metastatic" if self.metastatic else "healthy",
            "seed": self.seed,
            "lesion_count": len(self.lesions),
            "lesion_volumes_ml": volumes,
            "total_lesion_volume_ml": round(float(sum(volumes)), 4),
            "lesions": self.lesions,
            "body_scale": [round(s, 4) for s in self.subject["anatomy"]["body_scale"]],
            "fit_to_fov": round(self.subject["anatomy"]["fit_to_fov"], 4),
        }


__all__ = ["PhantomCase"]
