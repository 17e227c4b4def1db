"""The three pretext tasks of the SSL baseline: views, heads and losses.

Self-supervised pretraining after Tang et al. (CVPR 2022), as the SAP paper's baseline:

- **masked-volume inpainting**: random sub-volumes of the input are replaced by noise and a
  light head reconstructs the original from the bottleneck (L1);
- **rotation prediction**: the patch is turned by 0, 90, 180 or 270 degrees about one axis
  and a linear head on the pooled bottleneck names the angle (4-way cross-entropy);
- **contrastive coding**: two independently augmented views of the same patch are pulled
  together and pushed from the other patches of the batch (NT-Xent).

Every random choice draws from torch's global generator, so ``seed_everything`` makes a run
repeatable.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

#: Angles of the rotation pretext task, in quarter turns (class ``k`` = ``k * 90`` degrees).
ROTATION_CLASSES = 4


def rotation_plane(rotation_axis: int) -> tuple[int, int]:
    """Tensor dims ``[B, C, X, Y, Z]`` turned by a rotation about array axis 0, 1 or 2.

    >>> rotation_plane(2)
    (2, 3)
    """
    if rotation_axis not in (0, 1, 2):
        raise ValueError(f"rotation_axis must be 0, 1 or 2 (an array axis), got {rotation_axis!r}")
    first, second = (axis for axis in (0, 1, 2) if axis != rotation_axis)
    return 2 + first, 2 + second


def rotate_quarters(
    x: torch.Tensor, quarters: torch.Tensor, plane: tuple[int, int]
) -> torch.Tensor:
    """Turn sample ``i`` of ``x`` by ``quarters[i]`` quarter turns in ``plane``."""
    return torch.stack(
        [
            torch.rot90(sample, int(k), dims=(plane[0] - 1, plane[1] - 1))
            for sample, k in zip(x, quarters)
        ]
    )


def mask_cutouts(x: torch.Tensor, count: int, size_fraction: float) -> torch.Tensor:
    """``x`` with ``count`` random boxes per sample replaced by uniform noise in [0, 1).

    Each box spans ``size_fraction`` of the patch along every axis (at least one voxel), at
    a uniformly random position inside the patch; boxes may overlap.
    """
    if count < 0 or not 0.0 < size_fraction <= 1.0:
        raise ValueError(
            f"mask_count must be >= 0 and mask_size_fraction in (0, 1], got {count}, {size_fraction}"
        )
    masked = x.clone()
    spatial = x.shape[2:]
    box = [max(1, round(size_fraction * n)) for n in spatial]
    for sample in masked:
        for _ in range(count):
            starts = [int(torch.randint(0, n - b + 1, ())) for n, b in zip(spatial, box)]
            region = (slice(None), *(slice(s, s + b) for s, b in zip(starts, box)))
            sample[region] = torch.rand_like(sample[region])
    return masked


def nt_xent(a: torch.Tensor, b: torch.Tensor, temperature: float) -> torch.Tensor:
    """Normalised-temperature cross-entropy of paired embeddings ``a[i]`` <-> ``b[i]``.

    Each of the ``2B`` embeddings must pick its partner among the other ``2B - 1``
    (SimCLR's loss). With ``B = 1`` there are no negatives and the loss is 0.

    >>> x = torch.eye(4)
    >>> bool(nt_xent(x, x, 0.5) < nt_xent(x, x.roll(1, 0), 0.5))
    True
    """
    z = F.normalize(torch.cat([a, b]), dim=1)
    similarity = z @ z.t() / temperature
    n = a.shape[0]
    similarity = similarity.masked_fill(
        torch.eye(2 * n, dtype=torch.bool, device=z.device), float("-inf")
    )
    partners = torch.cat([torch.arange(n, 2 * n), torch.arange(0, n)]).to(z.device)
    return F.cross_entropy(similarity, partners)


class ReconstructionHead(nn.Module):
    """A light decoder from the bottleneck back to the input: 1x1 conv, upsample, 3x3 conv.

    Deliberately small, so that the encoder (what transfers) has to hold the information.

    Args:
        bottleneck_channels: features of the backbone's bottleneck.
        out_channels: image channels to reconstruct.
        hidden_channels: features between the two convolutions.
    """

    def __init__(self, bottleneck_channels: int, out_channels: int, hidden_channels: int) -> None:
        super().__init__()
        self.reduce = nn.Sequential(
            nn.Conv3d(bottleneck_channels, hidden_channels, 1),
            nn.InstanceNorm3d(hidden_channels, affine=True),
            nn.LeakyReLU(0.01),
        )
        self.out = nn.Conv3d(hidden_channels, out_channels, 3, padding=1)

    def forward(self, features: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
        hidden = F.interpolate(
            self.reduce(features), size=tuple(size), mode="trilinear", align_corners=False
        )
        return self.out(hidden)


class PooledHead(nn.Module):
    """A 1x1x1 convolution with ReLU, global average pooling, then a linear layer.

    The non-linearity comes before the pooling on purpose: the last encoder block normalises
    each channel per sample (instance norm), so the plain channel means of the bottleneck
    carry almost no information; rectified features keep where and how strongly each
    feature fires.

    Args:
        in_channels: bottleneck features.
        out_features: outputs (4 rotation classes, or the contrastive embedding size).
        hidden: features of the convolution.
    """

    def __init__(self, in_channels: int, out_features: int, hidden: int) -> None:
        super().__init__()
        self.conv = nn.Conv3d(in_channels, hidden, 1)
        self.linear = nn.Linear(hidden, out_features)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.linear(F.relu(self.conv(features)).mean(dim=(2, 3, 4)))


__all__ = [
    "ROTATION_CLASSES",
    "PooledHead",
    "ReconstructionHead",
    "mask_cutouts",
    "nt_xent",
    "rotate_quarters",
    "rotation_plane",
]
