"""Small cases on awkward grids and tiny models with recipes, for the inference tests."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import torch
from torch import nn

from sap.backbones import build_backbone
from sap.recipe import ModelRecipe


def oblique_lps_affine(spacing_mm=(1.5, 2.0, 2.5), angle_rad: float = 0.3) -> np.ndarray:
    """Axes permuted (i runs head-feet), LPS-like signs and a rotation: nothing canonical."""
    rotation = np.array(
        [
            [np.cos(angle_rad), -np.sin(angle_rad), 0.0],
            [np.sin(angle_rad), np.cos(angle_rad), 0.0],
            [0.0, 0.0, 1.0],
        ]
    )
    # i -> -z (feet), j -> -x (left... right to left), k -> -y (posterior)
    axes = np.array([[0.0, -1.0, 0.0], [0.0, 0.0, -1.0], [-1.0, 0.0, 0.0]])
    affine = np.eye(4)
    affine[:3, :3] = rotation @ axes @ np.diag(spacing_mm)
    affine[:3, 3] = [40.0, -25.0, 60.0]
    return affine


def dwi_affine(spacing_mm=(3.0, 3.0, 4.0), origin=(-10.0, -90.0, 10.0)) -> np.ndarray:
    """A plain RAS grid with coarser voxels covering the oblique T1, like a DWI acquisition."""
    affine = np.diag([*spacing_mm, 1.0])
    affine[:3, 3] = origin
    return affine


def write_case(
    folder: Path,
    t1: np.ndarray,
    t1_affine: np.ndarray,
    b1000: np.ndarray | None = None,
    b1000_affine: np.ndarray | None = None,
) -> Path:
    """Write ``folder/T1.nii.gz`` and ``folder/b1000.nii.gz`` (default: b1000 = T1's grid)."""
    folder.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(t1, t1_affine), folder / "T1.nii.gz")
    if b1000 is None:
        b1000, b1000_affine = t1[::-1].copy(), t1_affine
    nib.save(nib.Nifti1Image(b1000, b1000_affine), folder / "b1000.nii.gz")
    return folder


def blob_volume(shape, seed: int = 0) -> np.ndarray:
    """Smooth random intensities with a few bright blobs (float32)."""
    rng = np.random.default_rng(seed)
    from scipy import ndimage

    noise = ndimage.gaussian_filter(rng.random(shape), 2.0)
    return ((noise - noise.min()) / (np.ptp(noise) + 1e-9) * 1000).astype(np.float32)


def tiny_model(
    task: str = "lesion", spacing_mm=None, patch=(16, 16, 16), seed: int = 0
) -> nn.Module:
    """A tiny_unet with its recipe, as load_pretrained returns it."""
    torch.manual_seed(seed)
    labels = (
        ["background", "lesion"] if task == "lesion" else ModelRecipe.default_labels("skeleton")
    )
    kwargs = {"base_channels": 4, "depth": 2}
    net = build_backbone("tiny_unet", in_channels=2, out_channels=len(labels), **kwargs)
    net.recipe = ModelRecipe(
        backbone="tiny_unet",
        backbone_kwargs=kwargs,
        labels=list(labels),
        task=task,
        patch_size=tuple(patch),
        spacing_mm=spacing_mm,
    )
    return net


class PointwiseLesionModel(nn.Module):
    """Lesion wherever normalised T1 exceeds 0.5: a voxel-wise, shift-invariant 'network'.

    Its output at a voxel depends on that voxel only, so sliding windows, blending and
    reorientation must reproduce it exactly: a sharp test of the geometry.
    """

    def __init__(self, patch=(16, 16, 16), spacing_mm=None, gain: float = 20.0) -> None:
        super().__init__()
        self.gain = gain
        self.in_channels, self.out_channels = 2, 2
        self.recipe = ModelRecipe(
            backbone="tiny_unet",
            labels=["background", "lesion"],
            task="lesion",
            patch_size=tuple(patch),
            spacing_mm=spacing_mm,
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        lesion = self.gain * (x[:, :1] - 0.5)
        return torch.cat([torch.zeros_like(lesion), lesion], dim=1)


def normalised(t1: np.ndarray, lower: float = 1.0, upper: float = 99.0) -> np.ndarray:
    """The recipe's percentile normalisation, computed independently with numpy."""
    low, high = np.percentile(t1, (lower, upper))
    return np.clip((t1 - low) / (high - low), 0.0, 1.0)
