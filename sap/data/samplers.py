"""Patch samplers: which patches of a whole-body volume a model trains on.

Two samplers, one per task:

* Lesion fine-tuning, :class:`InstanceBalancedSampler`: every epoch, exactly one patch per
  lesion (a 3D connected component of the lesion map) plus ``negative_ratio`` times as many
  lesion-free patches, drawn on the fly from the whole volume. Why: lesion burden is
  heavy-tailed and lesion volumes span two orders of magnitude (PAPER.md). Sampling by
  voxel would let a few large lesions, or one patient with thirty lesions, dominate an
  epoch; sampling by instance gives every lesion the same weight. Nothing is written to
  disk first, so every epoch sees new offsets and new augmentations.
* Skeleton pretraining, :func:`skeleton_sampler`: TorchIO's :class:`~torchio.LabelSampler`
  with class-balanced patch centres (see its docstring for why).

Both are TorchIO patch samplers: ``sampler(subject)`` returns a generator of patches
(:class:`torchio.Subject` crops carrying ``torchio.LOCATION``), so they plug into TorchIO's
machinery, and into :class:`sap.data.datamodules.PatchQueue`.
"""

from __future__ import annotations

import hashlib
import math
import warnings
from collections import OrderedDict
from collections.abc import Generator, Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torchio as tio
from scipy import ndimage
from torchio.data.sampler import RandomSampler

#: scipy structuring element rank for each supported voxel connectivity.
_CONNECTIVITY_RANK = {6: 1, 18: 2, 26: 3}

#: Key added to every patch by :class:`InstanceBalancedSampler`: the connected-component
#: number (1-based) of the lesion the patch was drawn for, or 0 for a lesion-free patch.
LESION_COMPONENT = "lesion_component"


@dataclass(frozen=True)
class Lesion:
    """One lesion: a connected component of a lesion map, in voxel indices.

    Args:
        index: 1-based component number (scan order of :func:`scipy.ndimage.label`).
        lower: first voxel of the bounding box along each axis (inclusive).
        upper: one past the last voxel along each axis (exclusive).
        num_voxels: size of the component in voxels.
        voxels: ``(N, 3)`` voxel indices of the component. Kept only for lesions larger
            than the patch along some axis (the only ones whose patch needs a voxel);
            ``None`` otherwise, which keeps the per-subject cache small.
    """

    index: int
    lower: tuple[int, int, int]
    upper: tuple[int, int, int]
    num_voxels: int
    voxels: np.ndarray | None = None

    @property
    def extent(self) -> tuple[int, int, int]:
        """Bounding-box size in voxels along each axis."""
        return tuple(int(u - lo) for lo, u in zip(self.lower, self.upper))  # type: ignore[return-value]


def _check_connectivity(connectivity: int) -> int:
    if connectivity not in _CONNECTIVITY_RANK:
        raise ValueError(
            f"connectivity must be 6 (faces), 18 (faces + edges) or 26 (faces + edges + "
            f"corners), got {connectivity!r}."
        )
    return int(connectivity)


def _as_mask(label: np.ndarray | torch.Tensor) -> np.ndarray:
    """A 3D boolean lesion mask from a label array or a ``(1, X, Y, Z)`` TorchIO tensor."""
    array = label.numpy() if isinstance(label, torch.Tensor) else np.asarray(label)
    if array.ndim == 4 and array.shape[0] == 1:
        array = array[0]
    if array.ndim != 3:
        raise ValueError(
            f"expected a 3D label map (or one with a single leading channel), got shape {array.shape}."
        )
    return array > 0


def find_lesions(
    label: np.ndarray | torch.Tensor,
    connectivity: int = 26,
    keep_voxels_larger_than: Sequence[int] | None = None,
) -> list[Lesion]:
    """The lesions of a label map: its connected components of non-zero voxels.

    Args:
        label: 3D label array (any non-zero voxel is lesion), or a TorchIO ``(1, X, Y, Z)``
            tensor.
        connectivity: 26 (voxels touching by a face, an edge or a corner are one lesion; the
            default, as in the lesion-detection metrics), 18 or 6 (faces only).
        keep_voxels_larger_than: a patch size; the voxel list is kept for lesions whose
            bounding box exceeds it along some axis. ``None`` keeps it for every lesion.

    Returns:
        One :class:`Lesion` per component, ordered by component number.

    Examples:
        >>> mask = np.zeros((8, 8, 8), bool)
        >>> mask[1, 1, 1] = mask[2, 2, 2] = True  # touching by a corner only
        >>> len(find_lesions(mask, 26)), len(find_lesions(mask, 6))
        (1, 2)
    """
    rank = _CONNECTIVITY_RANK[_check_connectivity(connectivity)]
    mask = _as_mask(label)
    if not mask.any():
        return []
    structure = ndimage.generate_binary_structure(3, rank)
    components, count = ndimage.label(mask, structure=structure)
    limit = None if keep_voxels_larger_than is None else np.asarray(keep_voxels_larger_than)
    lesions = []
    for index, box in enumerate(ndimage.find_objects(components), start=1):
        if box is None:  # cannot happen for labels 1..count, kept for safety
            continue
        lower = tuple(int(s.start) for s in box)
        upper = tuple(int(s.stop) for s in box)
        inside = components[box] == index
        voxels = None
        if limit is None or np.any(np.subtract(upper, lower) > limit):
            voxels = np.argwhere(inside).astype(np.int64) + np.asarray(lower)
        lesions.append(Lesion(index, lower, upper, int(inside.sum()), voxels))  # type: ignore[arg-type]
    return lesions


def count_lesions(label: np.ndarray | torch.Tensor, connectivity: int = 26) -> int:
    """Number of lesions (connected components) in a label map; see :func:`find_lesions`."""
    rank = _CONNECTIVITY_RANK[_check_connectivity(connectivity)]
    mask = _as_mask(label)
    if not mask.any():
        return 0
    return int(ndimage.label(mask, structure=ndimage.generate_binary_structure(3, rank))[1])


def _randint(low: int, high: int) -> int:
    """Uniform integer in ``[low, high]`` (inclusive) from torch's global RNG.

    The global RNG, like TorchIO's samplers, so ``torch.manual_seed`` /
    ``lightning.seed_everything`` make sampling reproducible.
    """
    return int(torch.randint(low, high + 1, (1,)).item())


class InstanceBalancedSampler(RandomSampler):
    r"""One patch per lesion, plus lesion-free patches, from a whole volume.

    Each call ``sampler(subject)`` yields, in random order, exactly

    * one *positive* patch per lesion: a connected component (``connectivity``) of the
      label map ``label_name``; and
    * $\lfloor r k + 1/2 \rfloor$ *negative* patches for $k$ lesions and
      ``negative_ratio`` $r$ (rounded half up: ratio 0.5 and one lesion give one
      negative), each containing no lesion voxel at all.

    Use :meth:`num_patches_for` to know the count in advance (a queue needs it to size an
    epoch). Each patch carries ``patch["lesion_component"]``: the lesion's component number,
    or 0 for a negative.

    Positive patches. Along each axis where the lesion's bounding box fits in the patch,
    the patch offset is uniform among those that keep the whole box inside the patch
    (and, with ``margin``, at least ``margin`` voxels from the patch border where the
    patch is large enough and the volume allows). Along an axis where the lesion is larger
    than the patch, the patch is centred on one random voxel of the lesion, then shifted
    as little as needed to stay within the lesion's extent: it contains that voxel and
    covers as much of the lesion as a patch can along that axis. Near the volume border
    the patch is clamped into the volume (the box stays inside it, as it is inside the
    volume). The paper cropped a random model patch from a region 4/3 the patch size
    around each lesion; ``margin = patch_size // 8`` gives lesions a similar context.

    Negative patches. The offset is drawn uniformly among all offsets, rejecting those that
    touch a lesion, up to ``max_tries`` times. If all fail (a crowded volume), the
    lesion-free offsets are found exactly (one summed-area table of the lesion map) and one
    is drawn uniformly; if there are none (lesions everywhere), the offset with the fewest
    lesion voxels is used and a warning is issued.

    Subjects without lesions yield ``negatives_per_lesion_free_case`` negative patches,
    0 by default: the paper draws "as many" lesion-free patches as lesions. A cohort whose
    cases are all lesion-free then yields no patches at all (the datamodule says so);
    raise the value to also learn from lesion-free exams.

    Components are found once per distinct lesion map: the analysis is cached, keyed by a
    hash of the mask (hashing a whole-body mask costs ~2 % of labelling it). Flips and
    rotations change the mask, so each augmented variant is a separate entry.

    Args:
        patch_size: patch size in voxels, $(w, h, d)$ or one number for a cube.
        label_name: name of the lesion :class:`~torchio.LabelMap` in the subject; any
            non-zero voxel is lesion.
        negative_ratio: lesion-free patches per lesion, $r \ge 0$.
        connectivity: 26, 18 or 6; voxels that touch by a face (6), also an edge (18), also
            a corner (26) belong to the same lesion.
        margin: voxels of context to keep between a lesion and the patch border, when the
            patch is large enough (see above). 0 lets a lesion touch the border.
        negatives_per_lesion_free_case: negative patches from a subject with no lesion.
        max_tries: random offsets tried for a negative patch before searching exactly.
        cache_size: number of lesion maps whose analysis is kept (least recently used
            entries are dropped); 0 disables the cache.

    Examples:
        >>> import torchio as tio
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
        connectivity: int = 26,
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
        self.connectivity = _check_connectivity(connectivity)
        self.margin = margin
        self.negatives_per_lesion_free_case = negatives_per_lesion_free_case
        self.max_tries = max_tries
        self.cache_size = cache_size
        self._cache: OrderedDict[tuple, list[Lesion]] = OrderedDict()

    # ---- counts -----------------------------------------------------------------------

    def num_negatives(self, num_lesions: int) -> int:
        """Lesion-free patches drawn for a subject with ``num_lesions`` lesions."""
        if num_lesions == 0:
            return self.negatives_per_lesion_free_case
        return math.floor(self.negative_ratio * num_lesions + 0.5)

    def num_patches(self, num_lesions: int) -> int:
        """Patches per epoch for a subject with ``num_lesions`` lesions."""
        return num_lesions + self.num_negatives(num_lesions)

    def num_patches_for(self, subject: tio.Subject) -> int:
        """Patches one call ``sampler(subject)`` yields (uses the cached lesion analysis)."""
        return self.num_patches(len(self.lesions(subject)))

    # ---- lesion analysis --------------------------------------------------------------

    def _mask(self, subject: tio.Subject) -> np.ndarray:
        if self.label_name not in subject:
            raise KeyError(
                f"InstanceBalancedSampler needs the lesion label map '{self.label_name}', but "
                f"case '{subject.get('case_id', '?')}' has only {sorted(subject.keys())}; set "
                f"label_name to the name of its lesion map."
            )
        return _as_mask(subject[self.label_name].data)

    def lesions(self, subject: tio.Subject) -> list[Lesion]:
        """The lesions of ``subject`` (cached per distinct lesion mask)."""
        return self._lesions_of_mask(self._mask(subject))

    def _lesions_of_mask(self, mask: np.ndarray) -> list[Lesion]:
        if self.cache_size == 0:
            return find_lesions(mask, self.connectivity, self.patch_size.tolist())
        digest = hashlib.blake2b(np.packbits(mask).tobytes(), digest_size=16).digest()
        key = (mask.shape, digest)
        if key in self._cache:
            self._cache.move_to_end(key)
            return self._cache[key]
        lesions = find_lesions(mask, self.connectivity, self.patch_size.tolist())
        self._cache[key] = lesions
        while len(self._cache) > self.cache_size:
            self._cache.popitem(last=False)
        return lesions

    # ---- patch placement --------------------------------------------------------------

    def _positive_index_ini(self, lesion: Lesion, shape: Sequence[int]) -> tuple[int, int, int]:
        index_ini = []
        voxel = None
        for axis in range(3):
            size, length = int(self.patch_size[axis]), int(shape[axis])
            lower, upper = lesion.lower[axis], lesion.upper[axis]
            if upper - lower <= size:
                margin = min(self.margin, (size - (upper - lower)) // 2)
                low = int(np.clip(upper + margin - size, 0, length - size))
                high = int(np.clip(lower - margin, 0, length - size))
                index_ini.append(_randint(low, high))
            else:
                if voxel is None:
                    assert lesion.voxels is not None  # kept by find_lesions for such lesions
                    voxel = lesion.voxels[_randint(0, len(lesion.voxels) - 1)]
                centre = int(voxel[axis])
                low, high = max(lower, centre - size + 1), min(upper - size, centre)
                index_ini.append(int(np.clip(centre - size // 2, low, high)))
        return index_ini[0], index_ini[1], index_ini[2]

    def _negative_index_ini(self, mask: np.ndarray, has_lesion: bool) -> tuple[int, int, int]:
        size = [int(n) for n in self.patch_size]
        valid = [int(length) - s for length, s in zip(mask.shape, size)]
        for _ in range(self.max_tries if has_lesion else 1):
            i, j, k = (_randint(0, v) for v in valid)
            if not has_lesion or not mask[i : i + size[0], j : j + size[1], k : k + size[2]].any():
                return i, j, k
        counts = _window_sums(mask, size)
        free = np.argwhere(counts == 0)
        if len(free):
            i, j, k = free[_randint(0, len(free) - 1)]
            return int(i), int(j), int(k)
        warnings.warn(
            f"InstanceBalancedSampler: no lesion-free {tuple(size)} patch exists in a volume of "
            f"shape {mask.shape}; using the patch with the fewest lesion voxels as negative.",
            RuntimeWarning,
            stacklevel=3,
        )
        i, j, k = np.unravel_index(int(np.argmin(counts)), counts.shape)
        return int(i), int(j), int(k)

    def _generate_patches(
        self,
        subject: tio.Subject,
        num_patches: int | None = None,
    ) -> Generator[tio.Subject]:
        """Yield the epoch's patches of ``subject`` in random order.

        ``num_patches=None`` yields the instance-balanced set. A number asks for exactly
        that many: fewer gives a random subset of the set, more adds extra negative patches
        (a distributed queue uses this to give every rank the same count).
        """
        mask = self._mask(subject)
        lesions = self._lesions_of_mask(mask)
        targets = [lesion.index for lesion in lesions] + [0] * self.num_negatives(len(lesions))
        targets = [targets[i] for i in torch.randperm(len(targets)).tolist()]
        if num_patches is not None:
            targets = targets[:num_patches] + [0] * max(0, num_patches - len(targets))
        by_index = {lesion.index: lesion for lesion in lesions}
        shape = mask.shape
        has_lesion = bool(lesions)
        for target in targets:
            if target:
                index_ini = self._positive_index_ini(by_index[target], shape)
            else:
                index_ini = self._negative_index_ini(mask, has_lesion)
            patch = self.extract_patch(subject, index_ini)
            patch[LESION_COMPONENT] = target
            patch.update_attributes()
            yield patch


def _window_sums(mask: np.ndarray, size: Sequence[int]) -> np.ndarray:
    """Lesion voxels inside every patch position: ``out[i, j, k] = mask[i:i+p, j:j+q, k:k+r].sum()``.

    A summed-area table (8 lookups per position); only used when random tries fail.
    """
    p, q, r = size
    table = np.zeros(tuple(n + 1 for n in mask.shape), dtype=np.int32)
    table[1:, 1:, 1:] = mask.cumsum(0, dtype=np.int32).cumsum(1).cumsum(2)
    return (
        table[p:, q:, r:]
        - table[:-p, q:, r:]
        - table[p:, :-q, r:]
        - table[p:, q:, :-r]
        + table[:-p, :-q, r:]
        + table[:-p, q:, :-r]
        + table[p:, :-q, :-r]
        - table[:-p, :-q, :-r]
    )


def skeleton_sampler(
    patch_size: int | Sequence[int],
    label_name: str = "skeleton",
    num_classes: int = 10,
    background_probability: float = 0.5,
) -> tio.LabelSampler:
    """The patch sampler for skeleton (anatomy) pretraining.

    A :class:`torchio.LabelSampler` whose patch centre is background with probability
    ``background_probability`` and otherwise a voxel of one bone class, every class equally
    likely (a class absent from a scan is skipped and the rest renormalised).

    Why this and not uniform or voxel-weighted sampling: bone is a few percent of a
    whole-body volume and the classes differ ~50-fold in size (pelvis vs sternum or
    clavicles). Uniform patches would mostly show air and soft tissue; weighting by bone
    voxels would mostly show pelvis and femurs. Class-balanced centres show the small bones
    as often as the large ones, which is what per-region Dice rewards, and the background
    share (0.5 by default, like MONAI's usual 1:1 positive/negative crops) keeps the model
    honest about soft tissue and the DWI-bright organs next to bone. A
    :class:`torchio.WeightedSampler` would need a probability map computed and stored per
    case; ``LabelSampler`` derives it from the label map on the fly.

    Note TorchIO's convention: patch centres stay half a patch away from the volume border
    (voxels there still appear inside patches).

    Args:
        patch_size: patch size in voxels, $(w, h, d)$ or one number for a cube.
        label_name: name of the skeleton :class:`~torchio.LabelMap` in the subject.
        num_classes: classes in the label map, background (0) included.
        background_probability: probability that a patch is centred on background, in [0, 1].
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


__all__ = [
    "LESION_COMPONENT",
    "InstanceBalancedSampler",
    "Lesion",
    "count_lesions",
    "find_lesions",
    "skeleton_sampler",
]
