"""Volumes as pictures in radiological convention: coronal projections, slices, point positions.

Arrays are turned to the closest RAS orientation of their affine (flips and transposes only,
no resampling) and shown as a radiologist reads them: the patient's right on the left of the
picture, head (coronal) or anterior (axial) at the top. :class:`RadiologicalView` does that
for every picture of ``sap`` (the overview of ``sap predict``, the per-case pictures of
``sap evaluate`` and :func:`sap.metrics.plots.plot_case`), so they all agree on which side is
which.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from sap.volume import Components, spacing_from_affine


@dataclass(frozen=True)
class RadiologicalView:
    """How one voxel grid is shown.

    Attributes:
        shape: the grid's array shape.
        ornt: nibabel orientation (input axis -> RAS axis and flip) of its affine.
        ras_spacing_mm: voxel size along x (left -> right), y (posterior -> anterior),
            z (inferior -> superior).

    Example:
        >>> affine = np.diag([-2.0, 2.0, 3.0, 1.0])     # axis 0 runs towards the patient's left
        >>> view = RadiologicalView.of(affine, (10, 4, 6))
        >>> view.coronal_point((0, 0, 5))                # right-most voxel, top slice
        (0.0, 0.0)
        >>> view.coronal_point((9, 0, 0))                # left-most voxel, bottom slice
        (9.0, 5.0)
    """

    shape: tuple[int, int, int]
    ornt: np.ndarray
    ras_spacing_mm: tuple[float, float, float]

    @classmethod
    def of(cls, affine: np.ndarray, shape: Sequence[int]) -> RadiologicalView:
        """The view of a grid with this voxel-to-scanner (RAS+ mm) ``affine`` and ``shape``."""
        import nibabel as nib

        affine = np.asarray(affine, dtype=np.float64)
        ornt = nib.orientations.io_orientation(affine)
        spacing = spacing_from_affine(affine)[np.argsort(ornt[:, 0])]
        return cls(
            tuple(int(n) for n in shape),  # type: ignore[arg-type]
            ornt,
            tuple(float(s) for s in spacing),  # type: ignore[arg-type]
        )

    def ras(self, volume: np.ndarray) -> np.ndarray:
        """``volume`` reordered so that its axes run left->right, post->ant, inf->sup."""
        import nibabel as nib

        volume = np.asarray(volume)
        if volume.shape != self.shape:
            raise ValueError(f"Expected a volume of shape {self.shape}, got {volume.shape}.")
        return nib.orientations.apply_orientation(volume, self.ornt)

    def ras_index(self, voxel: Sequence[float]) -> np.ndarray:
        """Position of array index ``voxel`` in the :meth:`ras` array (fractions allowed)."""
        out = np.zeros(3)
        for axis, (target, flip) in enumerate(self.ornt):
            value = float(voxel[axis])
            out[int(target)] = self.shape[axis] - 1 - value if flip < 0 else value
        return out

    @property
    def ras_shape(self) -> tuple[int, int, int]:
        shape = [0, 0, 0]
        for axis, (target, _) in enumerate(self.ornt):
            shape[int(target)] = self.shape[axis]
        return tuple(shape)  # type: ignore[return-value]

    # Coronal pictures: rows head -> feet, columns patient right -> left.
    def coronal_mip(self, volume: np.ndarray) -> np.ndarray:
        """Maximum along anterior-posterior, as a picture (rows = z down, cols = x reversed)."""
        return _coronal_picture(self.ras(volume).max(axis=1))

    def coronal_slice(self, volume: np.ndarray, y: int) -> np.ndarray:
        """The coronal slice at RAS index ``y`` (posterior = 0), as a picture."""
        return _coronal_picture(self.ras(volume)[:, int(y), :])

    def coronal_point(self, voxel: Sequence[float]) -> tuple[float, float]:
        """``(column, row)`` of array index ``voxel`` in coronal pictures."""
        x, _, z = self.ras_index(voxel)
        nx, _, nz = self.ras_shape
        return float(nx - 1 - x), float(nz - 1 - z)

    @property
    def coronal_aspect(self) -> float:
        """Pixel height / width of coronal pictures (for ``imshow(aspect=...)``)."""
        return self.ras_spacing_mm[2] / self.ras_spacing_mm[0]

    # Axial pictures: rows anterior -> posterior, columns patient right -> left.
    def axial_slice(self, volume: np.ndarray, z: int) -> np.ndarray:
        """The axial slice at RAS index ``z`` (inferior = 0), seen from the feet."""
        return self.ras(volume)[:, :, int(z)][::-1, ::-1].T

    def axial_point(self, voxel: Sequence[float]) -> tuple[float, float]:
        """``(column, row)`` of array index ``voxel`` in axial pictures."""
        x, y, _ = self.ras_index(voxel)
        nx, ny, _ = self.ras_shape
        return float(nx - 1 - x), float(ny - 1 - y)

    @property
    def axial_aspect(self) -> float:
        return self.ras_spacing_mm[1] / self.ras_spacing_mm[0]


def largest_first(parts: Components) -> np.ndarray:
    """Component labels by decreasing voxel count; ties: the one met first in C order.

    The numbering of ``lesions.csv`` (``sap predict``): lesion 1 is the largest.
    """
    labels, first = np.unique(parts.flat_label, return_index=True)
    order = np.lexsort((parts.flat_index[first], -parts.voxel_counts[labels]))
    return labels[order]


def _coronal_picture(plane: np.ndarray) -> np.ndarray:
    """An (x, z) plane as rows head -> feet and columns patient right -> left."""
    return plane[::-1, ::-1].T


__all__ = ["RadiologicalView", "largest_first"]
