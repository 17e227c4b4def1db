"""Paint solids onto a voxel grid: the body outline, bones (with marrow fraction) and tissues.

One :class:`Painter` accumulates a whole subject. Bones widen the body outline so skin
always covers bone; a later bone overwrites the label of an earlier one where they meet, which
is how joints get the label of the bone the paper counts.
"""

from __future__ import annotations

import numpy as np

from sap.phantom.geometry import Frame, Grid, Shape, evaluate


class Painter:
    """Accumulates bones, the body outline and tissues on one grid."""

    def __init__(self, grid: Grid, cover_mm: float) -> None:
        self.grid = grid
        self.cover_mm = cover_mm
        self.voxel_mm = float(np.mean(grid.spacing_mm))
        shape = grid.shape
        self.body_depth = np.full(shape, -1e4, dtype=np.float32)
        self.tissue = np.zeros(shape, dtype=np.uint8)
        self.skeleton = np.zeros(shape, dtype=np.uint8)
        self.instance = np.zeros(shape, dtype=np.int16)
        self.marrow = np.zeros(shape, dtype=np.float32)
        self.is_bone = np.zeros(shape, dtype=bool)
        self.instances: dict[int, tuple[str, int]] = {}

    def new_instance(self, name: str, label: int) -> int:
        index = len(self.instances) + 1
        self.instances[index] = (name, label)
        return index

    def soft(self, frame: Frame, shape: Shape) -> None:
        """Add a part of the body outline (union = maximum depth)."""
        result = evaluate(self.grid, frame, shape)
        if result is not None:
            box, depth = result
            np.maximum(self.body_depth[box], depth, out=self.body_depth[box])

    def bone(self, frame: Frame, shape: Shape, label: int, instance: int, cortex_mm: float) -> None:
        """Paint a bone: label, instance, marrow fraction; widen the body to cover it."""
        result = evaluate(self.grid, frame, shape, pad_mm=self.cover_mm)
        if result is None:
            return
        box, depth = result
        np.maximum(self.body_depth[box], depth + self.cover_mm, out=self.body_depth[box])
        inside = depth > 0
        if not inside.any():
            return
        # Marrow fraction of a voxel whose centre is `depth` mm deep under a cortex of
        # `cortex_mm`: a linear partial-volume ramp one voxel wide.
        fraction = np.clip(0.5 + (depth[inside] - cortex_mm) / self.voxel_mm, 0.0, 1.0)
        marrow, was_bone = self.marrow[box], self.is_bone[box]
        marrow[inside] = np.where(was_bone[inside], np.maximum(marrow[inside], fraction), fraction)
        was_bone[inside] = True
        self.skeleton[box][inside] = label
        self.instance[box][inside] = instance

    def organ(self, frame: Frame, shape: Shape, tissue: int, min_depth_mm: float = 0.0) -> None:
        """Paint a tissue where the shape is deeper than ``min_depth_mm`` and inside the body."""
        result = evaluate(self.grid, frame, shape)
        if result is None:
            return
        box, depth = result
        mask = (depth > min_depth_mm) & (self.body_depth[box] > 0)
        self.tissue[box][mask] = tissue

    def carve(self, frame: Frame, shape: Shape, tissue: int) -> None:
        """Replace everything (bone included) inside the shape: spinal canal and cord."""
        result = evaluate(self.grid, frame, shape)
        if result is None:
            return
        box, depth = result
        mask = depth > 0
        self.tissue[box][mask] = tissue
        self.skeleton[box][mask] = 0
        self.instance[box][mask] = 0
        self.marrow[box][mask] = 0.0
        self.is_bone[box][mask] = False


__all__ = ["Painter"]
