"""Which patches of a store entry an epoch reads: plans, made before any voxel is read.

A plan (:class:`PatchSpec`) is a case, an offset and, for lesion patches, the lesion it was
drawn for. Plans come from the tables of the store, so deciding where an epoch's patches
lie reads no image: :class:`InstanceBalancedPlanner` asks the data module's
:class:`~sap.data.samplers.InstanceBalancedSampler` (:meth:`~sap.data.samplers.InstanceBalancedSampler.plan`,
the same code and the same random draws as the on-the-fly path) with the stored lesion
table; :class:`ClassBalancedPlanner` draws the class-balanced patch centres of TorchIO's
:class:`~torchio.LabelSampler` from the stored per-class voxel lists. Both are called like
a TorchIO sampler, ``planner(view, num_patches=n)``, so a
:class:`~sap.data.patch_queue.PatchQueue` orders, balances and shuffles plans exactly as it
does patches.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import NamedTuple

import numpy as np
import torch

from sap.data.samplers import InstanceBalancedSampler
from sap.data.store.views import CaseView


class PatchSpec(NamedTuple):
    """One planned patch: view index, first voxel, and lesion number (``None``: not a lesion patch)."""

    case: int
    offset: tuple[int, int, int]
    target: int | None = None


class InstanceBalancedPlanner:
    """One plan per lesion plus lesion-free plans, from the stored lesion table.

    Args:
        sampler: the data module's sampler; its :meth:`~InstanceBalancedSampler.plan` decides.
    """

    def __init__(self, sampler: InstanceBalancedSampler) -> None:
        self.sampler = sampler

    def __call__(self, view: CaseView, num_patches: int | None = None) -> Iterator[PatchSpec]:
        for target, offset in self.sampler.plan(view.mask, view.lesions, num_patches):
            yield PatchSpec(view.index, offset, target)


class ClassBalancedPlanner:
    """Class-balanced patch centres, as :class:`torchio.LabelSampler` draws them.

    The centre's class is drawn with ``label_probabilities`` (renormalised over the classes
    present where a centre may lie), then the centre uniformly among that class's voxels;
    centres keep TorchIO's border (``patch // 2`` before, ``(patch - 1) // 2`` after). Same
    distribution as the on-the-fly path, drawn from the stored voxel lists instead of a
    whole-volume probability map (so a seed draws different centres).

    Args:
        patch_size: patch size in voxels per axis.
        label_probabilities: ``{class value: probability}``, e.g. a LabelSampler's
            ``label_probabilities_dict``.
        max_tries: random background centres tried before listing background voxels.
    """

    def __init__(
        self,
        patch_size: Sequence[int],
        label_probabilities: Mapping[int, float],
        max_tries: int = 1000,
    ) -> None:
        self.patch_size = np.asarray([int(n) for n in patch_size])
        self.label_probabilities = {int(k): float(v) for k, v in label_probabilities.items()}
        self.max_tries = int(max_tries)
        self._centres: dict[tuple[str, str], _Centres] = {}

    def __call__(self, view: CaseView, num_patches: int | None = None) -> Iterator[PatchSpec]:
        key = (view.entry.key, view.case_id)
        if key not in self._centres:
            self._centres[key] = _Centres(view, self.patch_size)
        centres = self._centres[key]
        classes = [c for c, p in self.label_probabilities.items() if p > 0 and centres.count(c)]
        if not classes:
            raise RuntimeError(
                f"case '{view.case_id}': no voxel of the classes "
                f"{sorted(self.label_probabilities)} lies where a {tuple(self.patch_size)} "
                f"patch can be centred."
            )
        weights = torch.tensor([self.label_probabilities[c] for c in classes], dtype=torch.float64)
        for _ in range(1 if num_patches is None else num_patches):
            chosen = classes[int(torch.multinomial(weights, 1).item())]
            centre = centres.draw(chosen, self.max_tries)
            offset = tuple(int(n) for n in centre - self.patch_size // 2)
            yield PatchSpec(view.index, offset)  # type: ignore[arg-type]


class _Centres:
    """The voxels of each class where a patch centre may lie, in one view."""

    def __init__(self, view: CaseView, patch_size: np.ndarray) -> None:
        self.view = view
        self.low = patch_size // 2
        self.high = np.asarray(view.shape) - (patch_size - 1) // 2  # exclusive
        values, counts, flat = view.entry.class_voxels(view.label_name)
        coords = np.stack(np.unravel_index(flat.astype(np.int64), view.entry.shape), axis=1)
        coords += view.pad_before
        inside = np.all((coords >= self.low) & (coords < self.high), axis=1)
        bounds = np.concatenate([[0], np.cumsum(counts)])
        self.voxels = {
            int(value): coords[bounds[i] : bounds[i + 1]][inside[bounds[i] : bounds[i + 1]]]
            for i, value in enumerate(values)
        }
        box = int(np.prod(np.maximum(self.high - self.low, 0)))
        self.background = box - sum(len(v) for v in self.voxels.values())

    def count(self, value: int) -> int:
        return self.background if value == 0 else len(self.voxels.get(value, ()))

    def draw(self, value: int, max_tries: int) -> np.ndarray:
        if value:
            voxels = self.voxels[value]
            return voxels[int(torch.randint(len(voxels), (1,)).item())]
        mask = self.view.mask
        for _ in range(max_tries):
            centre = np.array(
                [int(torch.randint(a, b, (1,)).item()) for a, b in zip(self.low, self.high)]
            )
            i, j, k = centre
            if not mask[i : i + 1, j : j + 1, k : k + 1].any():
                return centre
        box = tuple(slice(int(a), int(b)) for a, b in zip(self.low, self.high))
        free = np.argwhere(np.asarray(mask[box]) == 0)
        return free[int(torch.randint(len(free), (1,)).item())] + self.low


def planner_for(sampler: object) -> InstanceBalancedPlanner | ClassBalancedPlanner:
    """The planner that draws, from the store, what ``sampler`` draws from whole volumes."""
    import torchio as tio

    if isinstance(sampler, InstanceBalancedSampler):
        return InstanceBalancedPlanner(sampler)
    if isinstance(sampler, tio.LabelSampler) and sampler.label_probabilities_dict:
        return ClassBalancedPlanner(sampler.patch_size, sampler.label_probabilities_dict)
    raise TypeError(
        f"the patch store has no planner for {type(sampler).__name__}; use an "
        f"InstanceBalancedSampler or a LabelSampler with label_probabilities, or "
        f"patch_store=False."
    )


__all__ = [
    "ClassBalancedPlanner",
    "InstanceBalancedPlanner",
    "PatchSpec",
    "planner_for",
]
