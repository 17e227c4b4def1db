r"""Patch samplers: which patches of a whole-body volume a model trains on.

Two samplers, one per task, both TorchIO patch samplers (``sampler(subject)`` yields
:class:`torchio.Subject` crops carrying ``torchio.LOCATION``):

* lesion fine-tuning, :class:`InstanceBalancedSampler`: every epoch one patch per lesion
  plus ``negative_ratio`` times as many lesion-free patches. Lesion burden is heavy-tailed
  and lesion volumes span two orders of magnitude (PAPER.md): sampling by voxel would let a
  few large lesions, or one patient with thirty lesions, dominate an epoch; sampling by
  instance gives every lesion the same weight;
* skeleton pretraining, :func:`skeleton_sampler`: TorchIO's :class:`~torchio.LabelSampler`
  with class-balanced patch centres.
"""

from __future__ import annotations

import math
from collections.abc import Generator, Sequence

import numpy as np
import torch
import torchio as tio
from torchio.data.sampler import RandomSampler

from sap.data.lesions import Lesion, LesionCache
from sap.data.placement import lesion_free_patch_offset, lesion_patch_offset
from sap.volume import DEFAULT_CONNECTIVITY, as_mask, check_connectivity

#: Key added to every patch by :class:`InstanceBalancedSampler`: the component number of
#: the lesion the patch was drawn for (see :class:`~sap.data.lesions.Lesion`), 0 for a
#: lesion-free patch.
LESION_COMPONENT = "lesion_component"


class InstanceBalancedSampler(RandomSampler):
    r"""One patch per lesion, plus lesion-free patches, from a whole volume.

    Each call ``sampler(subject)`` yields, in random order, exactly one *positive* patch
    per lesion (a connected component of the label map ``label_name``) and
    $\lfloor r k + 1/2 \rfloor$ *negative* patches for $k$ lesions and ``negative_ratio``
    $r$ (rounded half up), each free of lesion voxels. A subject without lesions yields
    ``negatives_per_lesion_free_case`` negatives (0, as in the paper, by default).
    :meth:`num_patches_for` gives the count in advance. Each patch carries
    ``patch["lesion_component"]``: its lesion's number, or 0 for a negative.

    A positive patch holds its whole lesion where it fits, with ``margin`` voxels of
    context where the patch allows (the paper cropped from a region 4/3 the patch size
    around each lesion; ``margin = patch_size // 8`` is similar); see
    :func:`~sap.data.placement.lesion_patch_offset`. A negative patch is drawn uniformly
    among lesion-free positions; see :func:`~sap.data.placement.lesion_free_patch_offset`.
    Lesions are found once per distinct lesion map (:class:`~sap.data.lesions.LesionCache`).

    Args:
        patch_size: patch size in voxels, $(w, h, d)$ or one number for a cube.
        label_name: name of the lesion :class:`~torchio.LabelMap` in the subject; any
            non-zero voxel is lesion.
        negative_ratio: lesion-free patches per lesion, $r \ge 0$.
        connectivity: 26, 18 or 6; voxels that touch by a face (6), also an edge (18), also
            a corner (26) belong to the same lesion.
        margin: voxels of context to keep between a lesion and the patch border.
        negatives_per_lesion_free_case: negative patches from a subject with no lesion.
        max_tries: random offsets tried for a negative patch before searching exactly.
        cache_size: number of lesion maps whose lesions are kept; 0 disables the cache.

    Examples:
        >>> lesion = torch.zeros(1, 32, 32, 32, dtype=torch.uint8)
        >>> lesion[0, 4:6, 4:6, 4:6] = 1
        >>> lesion[0, 20:23, 20:23, 20:23] = 1
        >>> subject = tio.Subject(lesion=tio.LabelMap(tensor=lesion))
        >>> sampler = InstanceBalancedSampler(8, negative_ratio=1.0)
        >>> sampler.num_patches_for(subject)
        4
        >>> sorted(int(p["lesion_component"]) for p in sampler(subject))
        [0, 0, 1, 2]
    """

    def __init__(
        self,
        patch_size: int | Sequence[int],
        label_name: str = "lesion",
        negative_ratio: float = 1.0,
        connectivity: int = DEFAULT_CONNECTIVITY,
        margin: int = 0,
        negatives_per_lesion_free_case: int = 0,
        max_tries: int = 100,
        cache_size: int = 256,
    ) -> None:
        super().__init__(patch_size)
        if not (isinstance(negative_ratio, int | float) and math.isfinite(negative_ratio)):
            raise ValueError(f"negative_ratio must be a finite number, got {negative_ratio!r}.")
        if negative_ratio < 0:
            raise ValueError(
                f"negative_ratio must be >= 0 (lesion-free patches per lesion), got {negative_ratio}."
            )
        for name, value, minimum in (
            ("margin", margin, 0),
            ("negatives_per_lesion_free_case", negatives_per_lesion_free_case, 0),
            ("max_tries", max_tries, 1),
            ("cache_size", cache_size, 0),
        ):
            if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
                raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}.")
        self.label_name = label_name
        self.negative_ratio = float(negative_ratio)
        self.connectivity = check_connectivity(connectivity)
        self.margin = margin
        self.negatives_per_lesion_free_case = negatives_per_lesion_free_case
        self.max_tries = max_tries
        self._find_lesions = LesionCache(self.connectivity, self.patch_size.tolist(), cache_size)

    def num_negatives(self, num_lesions: int) -> int:
        """Lesion-free patches drawn for a subject with ``num_lesions`` lesions."""
        if num_lesions == 0:
            return self.negatives_per_lesion_free_case
        return math.floor(self.negative_ratio * num_lesions + 0.5)

    def num_patches(self, num_lesions: int) -> int:
        """Patches per epoch for a subject with ``num_lesions`` lesions."""
        return num_lesions + self.num_negatives(num_lesions)

    def num_patches_for(self, subject: tio.Subject) -> int:
        """Patches one call ``sampler(subject)`` yields."""
        return self.num_patches(len(self.lesions(subject)))

    def lesions(self, subject: tio.Subject) -> list[Lesion]:
        """The lesions of ``subject`` (cached per distinct lesion map)."""
        return self._find_lesions(self._mask(subject))

    def _mask(self, subject: tio.Subject) -> np.ndarray:
        if self.label_name not in subject:
            raise KeyError(
                f"InstanceBalancedSampler needs the lesion label map '{self.label_name}', but "
                f"case '{subject.get('case_id', '?')}' has only {sorted(subject.keys())}; set "
                f"label_name to the name of its lesion map."
            )
        return as_mask(subject[self.label_name].data, self.label_name)

    def _generate_patches(
        self, subject: tio.Subject, num_patches: int | None = None
    ) -> Generator[tio.Subject]:
        """Yield the epoch's patches of ``subject`` in random order (see :meth:`plan`)."""
        mask = self._mask(subject)
        for target, offset in self.plan(mask, self._find_lesions(mask), num_patches):
            patch = self.extract_patch(subject, offset)
            patch[LESION_COMPONENT] = target
            patch.update_attributes()
            yield patch

    def plan(
        self, mask: np.ndarray, lesions: Sequence[Lesion], num_patches: int | None = None
    ) -> Generator[tuple[int, tuple[int, int, int]]]:
        """``(lesion number or 0, patch offset)`` of each of the epoch's patches, in random order.

        ``num_patches=None`` gives the instance-balanced set. A number asks for exactly
        that many: fewer gives a random subset of the set, more adds extra negative patches
        (a distributed queue uses this to give every rank the same count).

        Args:
            mask: the lesion map (non-zero = lesion): an array, or anything with ``shape``
                that slices like one (the patch store's memory-mapped label map).
            lesions: its lesions (:func:`~sap.data.lesions.find_lesions`), with voxels for
                those larger than the patch.
            num_patches: see above.
        """
        lesions_by_index = {lesion.index: lesion for lesion in lesions}
        targets = [*lesions_by_index] + [0] * self.num_negatives(len(lesions_by_index))
        targets = [targets[i] for i in torch.randperm(len(targets)).tolist()]
        if num_patches is not None:
            targets = targets[:num_patches] + [0] * max(0, num_patches - len(targets))
        for target in targets:
            if target:
                offset = lesion_patch_offset(
                    lesions_by_index[target], self.patch_size, mask.shape, self.margin
                )
            else:
                offset = lesion_free_patch_offset(
                    mask, self.patch_size, self.max_tries, has_lesion=bool(lesions_by_index)
                )
            yield target, offset


def skeleton_sampler(
    patch_size: int | Sequence[int],
    label_name: str = "skeleton",
    num_classes: int = 10,
    background_probability: float = 0.5,
) -> tio.LabelSampler:
    """The patch sampler for skeleton (anatomy) pretraining: class-balanced patch centres.

    A :class:`torchio.LabelSampler` whose patch centre is background with probability
    ``background_probability`` and otherwise a voxel of one bone class, every class equally
    likely (a class absent from a scan is skipped and the rest renormalised).

    Why: bone is a few percent of a whole-body volume and the classes differ ~50-fold in
    size (pelvis vs sternum or clavicles). Uniform patches would mostly show air and soft
    tissue; weighting by bone voxels would mostly show pelvis and femurs. Class-balanced
    centres show the small bones as often as the large ones, which is what per-region Dice
    rewards, and the background share (0.5 by default, like MONAI's usual 1:1 crops) keeps
    the model honest about soft tissue and the DWI-bright organs next to bone. TorchIO's
    convention: patch centres stay half a patch away from the volume border.

    Args:
        patch_size: patch size in voxels, $(w, h, d)$ or one number for a cube.
        label_name: name of the skeleton :class:`~torchio.LabelMap` in the subject.
        num_classes: classes in the label map, background (0) included.
        background_probability: probability that a patch is centred on background, in [0, 1].

    Example:
        >>> sampler = skeleton_sampler(16, num_classes=3, background_probability=0.5)
        >>> sampler.label_probabilities_dict
        {0: 0.5, 1: 0.25, 2: 0.25}
    """
    if not 0.0 <= background_probability <= 1.0:
        raise ValueError(
            f"background_probability must lie in [0, 1], got {background_probability}."
        )
    if num_classes < 2:
        raise ValueError(
            f"num_classes must count background plus at least one class, got {num_classes}."
        )
    foreground = (1.0 - background_probability) / (num_classes - 1)
    probabilities = {0: background_probability}
    probabilities.update({label: foreground for label in range(1, num_classes)})
    return tio.LabelSampler(patch_size, label_name=label_name, label_probabilities=probabilities)


__all__ = ["LESION_COMPONENT", "InstanceBalancedSampler", "skeleton_sampler"]
