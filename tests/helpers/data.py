"""Tiny NIfTI cases and lesion masks for the data tests."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import torch
import torchio as tio

#: Grid of the T1 image of :func:`write_small_case`.
T1_SHAPE = (12, 12, 10)
T1_SPACING_MM = (2.0, 2.0, 3.0)


def affine_for(spacing_mm, origin_mm=(0.0, 0.0, 0.0)) -> np.ndarray:
    """A RAS affine with the given voxel spacing and origin (mm)."""
    affine = np.diag([*spacing_mm, 1.0])
    affine[:3, 3] = origin_mm
    return affine


def write_nifti(path: Path, array: np.ndarray, affine: np.ndarray) -> Path:
    """Write ``array`` as NIfTI (plainly, not atomically: tests damage these files on purpose)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(array, affine), str(path))
    return path


def write_small_case(folder: Path, seed: int, lesion: bool = True) -> Path:
    """A tiny valid case: T1, a DWI on a coarser grid over the same field of view, labels."""
    rng = np.random.default_rng(seed)
    t1_affine = affine_for(T1_SPACING_MM)
    write_nifti(folder / "T1.nii.gz", rng.random(T1_SHAPE, dtype=np.float32), t1_affine)
    # Half the voxels per axis, twice the spacing; origin shifted so both cover the same box.
    dwi_affine = affine_for((4.0, 4.0, 6.0), origin_mm=(1.0, 1.0, 1.5))
    write_nifti(folder / "b1000.nii.gz", rng.random((6, 6, 5), dtype=np.float32), dwi_affine)
    skeleton = rng.integers(0, 10, T1_SHAPE).astype(np.uint8)
    write_nifti(folder / "skeleton.nii.gz", skeleton, t1_affine)
    if lesion:
        write_nifti(folder / "lesion.nii.gz", (skeleton == 3).astype(np.uint8), t1_affine)
    return folder


def write_two_cases(root: Path) -> Path:
    """``root/case_a`` (skeleton and lesion) and ``root/case_b`` (skeleton only)."""
    write_small_case(root / "case_b", seed=1, lesion=False)
    write_small_case(root / "case_a", seed=0)
    return root


def separated_lesions(num_lesions: int, shape=(48, 48, 48)) -> np.ndarray:
    """``num_lesions`` (at most 8) cubes of 2-4 voxels, far from each other."""
    lesion = np.zeros(shape, np.uint8)
    corners = [(x, y, z) for x in (6, 26) for y in (6, 26) for z in (6, 26)]
    for n in range(num_lesions):
        x, y, z = corners[n]
        size = 2 + n % 3
        lesion[x : x + size, y : y + size, z : z + size] = 1
    return lesion


def lesion_subject(lesion: np.ndarray, case_id: str = "case") -> tio.Subject:
    """A subject with a random T1 and the lesion map ``lesion``."""
    return tio.Subject(
        T1=tio.ScalarImage(tensor=torch.rand(1, *lesion.shape)),
        lesion=tio.LabelMap(tensor=torch.as_tensor(lesion[None].astype(np.uint8))),
        case_id=case_id,
    )


def write_small_cohort(root: Path, count: int = 3, shape=(24, 20, 30)) -> Path:
    """``root/case_0 .. case_{count-1}``: T1, a coarser DWI, skeleton and lesion maps.

    Case ``i`` has ``i + 2`` lesions (cubes of 2-3 voxels, apart) and every skeleton class
    1-9 in slabs along the last axis.
    """
    for index in range(count):
        rng = np.random.default_rng(index)
        folder = root / f"case_{index}"
        affine = affine_for((2.0, 2.0, 3.0))
        write_nifti(folder / "T1.nii.gz", rng.random(shape, dtype=np.float32), affine)
        coarse = tuple(n // 2 for n in shape)
        dwi = rng.random(coarse, dtype=np.float32)
        write_nifti(folder / "b1000.nii.gz", dwi, affine_for((4.0, 4.0, 6.0), (1.0, 1.0, 1.5)))
        skeleton = np.zeros(shape, np.uint8)
        for value in range(1, 10):
            z = 3 * value - 2
            skeleton[6:14, 6:12, z : z + 2] = value
        write_nifti(folder / "skeleton.nii.gz", skeleton, affine)
        lesion = np.zeros(shape, np.uint8)
        for n in range(index + 2):
            x, z = 2 + 10 * (n % 2), 3 + 7 * n
            size = 2 + n % 2
            lesion[x : x + size, 3 : 3 + size, z : z + size] = 1
        write_nifti(folder / "lesion.nii.gz", lesion, affine)
    return root
