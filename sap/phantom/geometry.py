"""Geometry for the phantom: a voxel grid, rigid/scaled frames and solid primitives.

Why a tiny solid-modelling kit instead of drawing into arrays directly: anatomy is written
once in millimetres for a reference adult, then posed (tilt, limb rotations) and scaled per
subject through a :class:`Frame`. Each primitive answers one question, "how deep inside am I?"
(millimetres, positive inside), which gives masks (depth > 0), layered tissues (fat is the
outer few millimetres of the body) and partial volume at bone surfaces (cortex is the outer
millimetres of a bone) from the same numbers. Primitives are evaluated only in the voxel box
their bounds cover, so a small bone costs a few hundred voxels, not the whole volume.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np

from sap.volume import voxel_volume_ml

Vec = Sequence[float] | np.ndarray


def rotation(x_deg: float = 0.0, y_deg: float = 0.0, z_deg: float = 0.0) -> np.ndarray:
    """3x3 rotation: about x, then y, then z (degrees, right-handed, RAS+ axes)."""
    ax, ay, az = np.deg2rad([x_deg, y_deg, z_deg])
    rx = np.array([[1, 0, 0], [0, np.cos(ax), -np.sin(ax)], [0, np.sin(ax), np.cos(ax)]])
    ry = np.array([[np.cos(ay), 0, np.sin(ay)], [0, 1, 0], [-np.sin(ay), 0, np.cos(ay)]])
    rz = np.array([[np.cos(az), -np.sin(az), 0], [np.sin(az), np.cos(az), 0], [0, 0, 1]])
    return rz @ ry @ rx


@dataclass(frozen=True)
class Grid:
    """An axis-aligned voxel grid in RAS+ millimetres.

    Args:
        shape: voxels along (L->R, P->A, I->S).
        spacing_mm: voxel size along the same axes.
        origin_mm: world position of the centre of voxel (0, 0, 0).
    """

    shape: tuple[int, int, int]
    spacing_mm: tuple[float, float, float]
    origin_mm: tuple[float, float, float]

    @property
    def affine(self) -> np.ndarray:
        affine = np.eye(4)
        affine[:3, :3] = np.diag(self.spacing_mm)
        affine[:3, 3] = self.origin_mm
        return affine

    @property
    def voxel_ml(self) -> float:
        return voxel_volume_ml(self.spacing_mm)

    def index_box(self, low_mm: np.ndarray, high_mm: np.ndarray) -> tuple[slice, ...] | None:
        """Voxel slices covering the world box [low_mm, high_mm]; None if outside the grid."""
        origin, spacing = np.asarray(self.origin_mm), np.asarray(self.spacing_mm)
        lo = np.floor((low_mm - origin) / spacing).astype(int)
        hi = np.ceil((high_mm - origin) / spacing).astype(int) + 1
        lo = np.maximum(lo, 0)
        hi = np.minimum(hi, self.shape)
        if np.any(hi <= lo):
            return None
        return tuple(slice(int(a), int(b)) for a, b in zip(lo, hi))

    def world(self, box: tuple[slice, ...]) -> list[np.ndarray]:
        """World coordinates (mm, float32) of the voxel centres in ``box`` as an open grid."""
        axes = []
        for axis, part in enumerate(box):
            values = self.origin_mm[axis] + self.spacing_mm[axis] * np.arange(
                part.start, part.stop, dtype=np.float64
            )
            view = [1, 1, 1]
            view[axis] = -1
            axes.append(values.astype(np.float32).reshape(view))
        return axes


@dataclass(frozen=True)
class Frame:
    """A coordinate frame: ``world = rotation @ (scale * local) + translation``.

    ``local`` is the reference anatomy in millimetres; ``scale`` makes the subject bigger or
    smaller, ``rotation`` and ``translation`` pose it.
    """

    rotation: np.ndarray = field(default_factory=lambda: np.eye(3))
    translation: np.ndarray = field(default_factory=lambda: np.zeros(3))
    scale: np.ndarray = field(default_factory=lambda: np.ones(3))

    @cached_property
    def matrix(self) -> np.ndarray:
        """4x4 world-from-local matrix."""
        matrix = np.eye(4)
        matrix[:3, :3] = self.rotation @ np.diag(self.scale)
        matrix[:3, 3] = self.translation
        return matrix

    @property
    def mm_per_unit(self) -> float:
        """Factor turning a local depth into world millimetres (mean scale)."""
        return float(np.mean(self.scale))

    def rotated_about(self, pivot_local: Vec, rotation_local: np.ndarray) -> Frame:
        """This frame with a local rotation about ``pivot_local`` (e.g. an arm at the shoulder)."""
        pivot = np.asarray(pivot_local, dtype=np.float64)
        inner = np.eye(4)
        inner[:3, :3] = rotation_local
        inner[:3, 3] = pivot - rotation_local @ pivot
        return Frame.from_matrix(self.matrix @ inner, self.scale)

    @staticmethod
    def from_matrix(matrix: np.ndarray, scale: np.ndarray) -> Frame:
        linear = matrix[:3, :3] @ np.diag(1.0 / np.asarray(scale))
        return Frame(rotation=linear, translation=matrix[:3, 3].copy(), scale=np.asarray(scale))

    @cached_property
    def _inverse(self) -> np.ndarray:
        return np.linalg.inv(self.matrix).astype(np.float32)

    def to_local(self, world: list[np.ndarray]) -> list[np.ndarray]:
        """Local coordinates of world points (broadcast arrays, float32)."""
        inverse = self._inverse
        x, y, z = world
        return [
            inverse[row, 0] * x + inverse[row, 1] * y + inverse[row, 2] * z + inverse[row, 3]
            for row in range(3)
        ]

    def world_bounds(self, low: np.ndarray, high: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """World bounding box of the local box [low, high]."""
        corners = np.array(list(itertools.product(*zip(low, high))), dtype=np.float64)
        matrix = self.matrix
        world = corners @ matrix[:3, :3].T + matrix[:3, 3]
        return world.min(axis=0), world.max(axis=0)


class Shape:
    """A solid. ``depth`` is how far inside a point is (local units; negative outside)."""

    def bounds(self) -> tuple[np.ndarray, np.ndarray]:  # pragma: no cover - interface
        raise NotImplementedError

    def depth(self, x: np.ndarray, y: np.ndarray, z: np.ndarray) -> np.ndarray:
        raise NotImplementedError  # pragma: no cover - interface


class Superquadric(Shape):
    """Ellipsoid-like solid; ``power_xy``/``power_z`` > 2 make it boxier (vertebral bodies).

    Depth is approximated as ``(1 - rho) * min(radii)``: exact on the shortest axis and a
    safe underestimate elsewhere, which is all that partial-volume shading needs.
    """

    def __init__(
        self,
        center: Vec,
        radii: Vec,
        rotation_matrix: np.ndarray | None = None,
        power_xy: float = 2.0,
        power_z: float = 2.0,
    ) -> None:
        self.center = np.asarray(center, dtype=np.float64)
        self.radii = np.asarray(radii, dtype=np.float64)
        self.rotation = None if rotation_matrix is None else np.asarray(rotation_matrix)
        self.power_xy, self.power_z = power_xy, power_z

    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        reach = self.radii.max() if self.rotation is not None else self.radii
        return self.center - reach, self.center + reach

    def depth(self, x: np.ndarray, y: np.ndarray, z: np.ndarray) -> np.ndarray:
        dx, dy, dz = x - self.center[0], y - self.center[1], z - self.center[2]
        if self.rotation is not None:
            r = self.rotation.T  # local = R^T (p - c)
            dx, dy, dz = (
                r[0, 0] * dx + r[0, 1] * dy + r[0, 2] * dz,
                r[1, 0] * dx + r[1, 1] * dy + r[1, 2] * dz,
                r[2, 0] * dx + r[2, 1] * dy + r[2, 2] * dz,
            )
        qx = np.abs(dx / self.radii[0])
        qy = np.abs(dy / self.radii[1])
        qz = np.abs(dz / self.radii[2])
        if self.power_xy == 2.0 and self.power_z == 2.0:
            rho = np.sqrt(qx * qx + qy * qy + qz * qz)
        else:
            pxy, pz = self.power_xy, self.power_z
            rho = ((qx**pxy + qy**pxy) ** (pz / pxy) + qz**pz) ** (1.0 / pz)
        return ((1.0 - rho) * self.radii.min()).astype(np.float32, copy=False)


class Ellipsoid(Superquadric):
    """An ellipsoid: a :class:`Superquadric` with both powers 2."""

    def __init__(self, center: Vec, radii: Vec, rotation_matrix: np.ndarray | None = None) -> None:
        super().__init__(center, radii, rotation_matrix)


class Capsule(Shape):
    """A tapered tube with round ends between ``a`` and ``b`` (long bones, limbs, ribs)."""

    def __init__(self, a: Vec, b: Vec, radius_a: float, radius_b: float | None = None) -> None:
        self.a = np.asarray(a, dtype=np.float64)
        self.b = np.asarray(b, dtype=np.float64)
        self.radius_a = float(radius_a)
        self.radius_b = float(radius_a if radius_b is None else radius_b)

    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        reach = max(self.radius_a, self.radius_b)
        return np.minimum(self.a, self.b) - reach, np.maximum(self.a, self.b) + reach

    def depth(self, x: np.ndarray, y: np.ndarray, z: np.ndarray) -> np.ndarray:
        axis = self.b - self.a
        length2 = max(float(axis @ axis), 1e-9)
        px, py, pz = x - self.a[0], y - self.a[1], z - self.a[2]
        t = np.clip((px * axis[0] + py * axis[1] + pz * axis[2]) / length2, 0.0, 1.0)
        dist = np.sqrt((px - t * axis[0]) ** 2 + (py - t * axis[1]) ** 2 + (pz - t * axis[2]) ** 2)
        radius = self.radius_a + t * (self.radius_b - self.radius_a)
        return (radius - dist).astype(np.float32, copy=False)


class Loft(Shape):
    """Elliptic cross-sections stacked along z (the trunk): radii and centre vary with z.

    Args:
        z: increasing section heights (local mm).
        half_width, half_depth: section semi-axes along x and y at each height.
        center_y: section centre along y at each height.
    """

    def __init__(self, z: Vec, half_width: Vec, half_depth: Vec, center_y: Vec) -> None:
        order = np.argsort(z)
        self.z = np.asarray(z, dtype=np.float64)[order]
        self.half_width = np.asarray(half_width, dtype=np.float64)[order]
        self.half_depth = np.asarray(half_depth, dtype=np.float64)[order]
        self.center_y = np.asarray(center_y, dtype=np.float64)[order]

    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        reach_y = self.half_depth + np.abs(self.center_y)
        return (
            np.array([-self.half_width.max(), -reach_y.max(), self.z[0]]),
            np.array([self.half_width.max(), reach_y.max(), self.z[-1]]),
        )

    def section(self, z: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(half_width, half_depth, center_y) at heights ``z``."""
        return (
            np.interp(z, self.z, self.half_width),
            np.interp(z, self.z, self.half_depth),
            np.interp(z, self.z, self.center_y),
        )

    def depth(self, x: np.ndarray, y: np.ndarray, z: np.ndarray) -> np.ndarray:
        zz = np.broadcast_to(z, np.broadcast_shapes(x.shape, y.shape, z.shape))
        a, b, c = self.section(zz)
        rho = np.sqrt((x / a) ** 2 + ((y - c) / b) ** 2)
        radial = (1.0 - rho) * np.minimum(a, b)
        ends = np.minimum(zz - self.z[0], self.z[-1] - zz)
        return np.minimum(radial, ends).astype(np.float32, copy=False)


class HalfSpace(Shape):
    """Points with ``normal . p <= offset`` (used to cut other solids)."""

    def __init__(self, normal: Vec, offset: float) -> None:
        n = np.asarray(normal, dtype=np.float64)
        self.normal = n / np.linalg.norm(n)
        self.offset = float(offset)

    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        return np.full(3, -np.inf), np.full(3, np.inf)

    def depth(self, x: np.ndarray, y: np.ndarray, z: np.ndarray) -> np.ndarray:
        n = self.normal
        return (self.offset - (n[0] * x + n[1] * y + n[2] * z)).astype(np.float32, copy=False)


class Intersection(Shape):
    """Points inside every part; bounds are those of the first part."""

    def __init__(self, *parts: Shape) -> None:
        self.parts = parts

    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        return self.parts[0].bounds()

    def depth(self, x: np.ndarray, y: np.ndarray, z: np.ndarray) -> np.ndarray:
        result = self.parts[0].depth(x, y, z)
        for part in self.parts[1:]:
            result = np.minimum(result, part.depth(x, y, z))
        return result


class Union(Shape):
    """Points inside any part (a rib or the spinal canal as a chain of capsules)."""

    def __init__(self, *parts: Shape) -> None:
        self.parts = parts

    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        lows, highs = zip(*(part.bounds() for part in self.parts))
        return np.min(lows, axis=0), np.max(highs, axis=0)

    def depth(self, x: np.ndarray, y: np.ndarray, z: np.ndarray) -> np.ndarray:
        result = self.parts[0].depth(x, y, z)
        for part in self.parts[1:]:
            result = np.maximum(result, part.depth(x, y, z))
        return result


class Difference(Shape):
    """Points inside ``keep`` and outside ``cut`` (a shell: ellipsoid minus smaller ellipsoid)."""

    def __init__(self, keep: Shape, cut: Shape) -> None:
        self.keep, self.cut = keep, cut

    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        return self.keep.bounds()

    def depth(self, x: np.ndarray, y: np.ndarray, z: np.ndarray) -> np.ndarray:
        return np.minimum(self.keep.depth(x, y, z), -self.cut.depth(x, y, z))


def evaluate(
    grid: Grid, frame: Frame, shape: Shape, pad_mm: float = 0.0
) -> tuple[tuple[slice, ...], np.ndarray] | None:
    """Depth (world mm) of ``shape`` posed by ``frame`` on the voxels its bounds reach.

    Args:
        pad_mm: widen the evaluated box, for callers that use depth > -pad_mm.

    Returns:
        (voxel box, depth array over the box), or None when the shape misses the grid.
    """
    low, high = shape.bounds()
    low_w, high_w = frame.world_bounds(low, high)
    box = grid.index_box(low_w - pad_mm, high_w + pad_mm)
    if box is None:
        return None
    local = frame.to_local(grid.world(box))
    depth = shape.depth(*local) * np.float32(frame.mm_per_unit)
    depth = np.broadcast_to(depth, tuple(s.stop - s.start for s in box))
    return box, depth


__all__ = [
    "Capsule",
    "Difference",
    "Ellipsoid",
    "Frame",
    "Grid",
    "HalfSpace",
    "Intersection",
    "Loft",
    "Shape",
    "Superquadric",
    "Union",
    "evaluate",
    "rotation",
]
