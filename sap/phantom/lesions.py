"""Bone metastases for the phantom: how many, how big, where, and what shape.

The numbers follow what PAPER.md reports for the lesion set: lesion burden is heavy-tailed
(most patients have a few lesions, a few have very many), the median lesion is ~0.5 mL and only
about a quarter are >= 1 mL; lesions sit in the axial skeleton first (spine, pelvis), then the
proximal long bones and the shoulder girdle.

Every lesion lives inside ONE bone instance (a vertebra, a hemipelvis, a femur, ...): its mask is
an irregular blob intersected with that bone, so lesion voxels are always bone voxels. Lesions
never touch each other (not even diagonally), so the connected components of the lesion mask
are exactly the lesions placed, and a detection metric counts what the generator intended.

Voxel-size clamp: at the demo's 5 x 5 x 6 mm voxels (0.15 mL) a 0.1 mL lesion would be less than
one voxel; a lesion is therefore never smaller than ``min_voxels`` voxels (default 4, i.e.
0.6 mL at the default spacing). Sampled volumes below that are raised to it, which shifts the
small end of the distribution up at coarse spacing; at 2 mm voxels the clamp is 0.03 mL and
the sampled distribution is kept as is.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import ndimage

from sap.labels import SKELETON_LABELS
from sap.phantom.anatomy import Anatomy
from sap.phantom.geometry import Grid, rotation
from sap.volume import label_components

#: Where metastases are placed: share of lesions per skeleton region (axial skeleton first).
REGION_WEIGHTS: dict[str, float] = {
    "cervical_spine": 0.05,
    "thoracic_spine": 0.25,
    "lumbar_spine": 0.20,
    "pelvis": 0.25,
    "femurs": 0.10,
    "humeri": 0.04,
    "scapulae": 0.03,
    "clavicles": 0.03,
    "sternum": 0.05,
}

#: Lesion count per metastatic patient: 1 + NegativeBinomial(shape, mean), capped.
COUNT_SHAPE = 0.7
COUNT_EXTRA_MEAN = 5.0
#: Lesion volume: lognormal with this median (mL) and log-sd, truncated to the range below.
#: sigma = ln(1 / 0.5) / z(0.75) = 1.03 puts 25 % of lesions at >= 1 mL.
VOLUME_MEDIAN_ML = 0.5
VOLUME_LOG_SD = 1.03
VOLUME_RANGE_ML = (0.1, 20.0)
#: A lesion takes at most this share of its bone's voxels (so surrounding marrow remains).
MAX_BONE_SHARE = 0.6
#: Structuring element of the 26-neighbourhood (``sap.volume.DEFAULT_CONNECTIVITY``).
_NEIGHBOURHOOD = np.ones((3, 3, 3), dtype=bool)


@dataclass(frozen=True)
class Lesion:
    """One placed lesion.

    Attributes:
        index: its value in the lesion-index map (1-based).
        region: skeleton region name (``sap.labels.SKELETON_LABELS``).
        bone: bone instance name (``"L3"``, ``"hemipelvis_left"``, ``"femur_right"``, ...).
        target_volume_ml: sampled volume (after the voxel clamp).
        volume_ml: volume actually drawn (voxels x voxel volume).
        voxels: number of voxels.
        centre_mm: world position (RAS+, mm) of its centroid.
        t1_level, dwi_level: its signal relative to the tissue scale (T1-dark, DWI-bright).
    """

    index: int
    region: str
    bone: str
    target_volume_ml: float
    volume_ml: float
    voxels: int
    centre_mm: tuple[float, float, float]
    t1_level: float
    dwi_level: float

    def record(self) -> dict[str, Any]:
        """What ``cohort.json`` and :attr:`sap.phantom.PhantomCase.lesions` keep of it."""
        return {
            "region": self.region,
            "bone": self.bone,
            "volume_ml": self.volume_ml,
            "target_volume_ml": self.target_volume_ml,
            "voxels": self.voxels,
            "centre_mm": list(self.centre_mm),
        }


def draw_lesions(
    rng: np.random.Generator,
    anatomy: Anatomy,
    grid: Grid,
    max_lesions: int = 30,
    min_voxels: int = 4,
) -> tuple[np.ndarray, list[Lesion]]:
    """One metastatic patient's lesions: count, volumes, voxel-size clamp, placement.

    Returns:
        As :func:`place_lesions`.
    """
    count = sample_lesion_count(rng, int(max_lesions))
    volumes = sample_lesion_volumes_ml(rng, count)
    volumes = np.maximum(volumes, min_voxels * grid.voxel_ml)
    return place_lesions(rng, anatomy, grid, volumes, int(min_voxels))


def sample_lesion_count(rng: np.random.Generator, max_lesions: int = 30) -> int:
    """Lesions of one metastatic patient: at least 1, heavy-tailed, at most ``max_lesions``."""
    p = COUNT_SHAPE / (COUNT_SHAPE + COUNT_EXTRA_MEAN)
    return int(min(max_lesions, 1 + rng.negative_binomial(COUNT_SHAPE, p)))


def sample_lesion_volumes_ml(rng: np.random.Generator, count: int) -> np.ndarray:
    """``count`` lesion volumes (mL): truncated lognormal, before any voxel-size clamp."""
    low, high = VOLUME_RANGE_ML
    volumes = np.empty(count)
    filled = 0
    while filled < count:
        draws = VOLUME_MEDIAN_ML * np.exp(VOLUME_LOG_SD * rng.standard_normal(count))
        keep = draws[(draws >= low) & (draws <= high)][: count - filled]
        volumes[filled : filled + keep.size] = keep
        filled += keep.size
    return volumes


def place_lesions(
    rng: np.random.Generator,
    anatomy: Anatomy,
    grid: Grid,
    volumes_ml: np.ndarray,
    min_voxels: int = 4,
) -> tuple[np.ndarray, list[Lesion]]:
    """Draw lesions of the requested volumes inside labelled bone.

    Returns:
        (lesion-index map int16 — 0 background, k for the k-th lesion —, placed lesions).
        A lesion that finds no room (tiny fields of view) is skipped, so fewer may come back.
    """
    index_map = np.zeros(grid.shape, dtype=np.int16)
    forbidden = np.zeros(grid.shape, dtype=bool)
    boxes = ndimage.find_objects(anatomy.instance)
    sizes = np.bincount(anatomy.instance.ravel(), minlength=len(anatomy.instances) + 1)
    candidates = [
        (iid, name, label)
        for iid, (name, label) in anatomy.instances.items()
        if label > 0 and iid - 1 < len(boxes) and boxes[iid - 1] is not None
    ]
    lesions: list[Lesion] = []
    for volume_ml in volumes_ml:
        target = max(min_voxels, round(float(volume_ml) / grid.voxel_ml))
        for _attempt in range(8):
            instance = _choose_instance(rng, candidates, sizes, target)
            if instance is None:
                break
            iid, name, label = instance
            capacity = int(MAX_BONE_SHARE * sizes[iid])
            goal = min(target, capacity)
            mask, box = _grow(rng, anatomy, grid, iid, boxes[iid - 1], forbidden, goal)
            if mask is None or mask.sum() < min_voxels:
                continue
            index = len(lesions) + 1
            index_map[box][mask] = index
            _forbid_neighbourhood(forbidden, box, mask)
            centre_idx = np.array(ndimage.center_of_mass(mask)) + [s.start for s in box]
            centre_mm = np.asarray(grid.origin_mm) + centre_idx * np.asarray(grid.spacing_mm)
            voxels = int(mask.sum())
            lesions.append(
                Lesion(
                    index=index,
                    region=SKELETON_LABELS[label],
                    bone=name,
                    target_volume_ml=round(goal * grid.voxel_ml, 4),
                    volume_ml=round(voxels * grid.voxel_ml, 4),
                    voxels=voxels,
                    centre_mm=tuple(round(float(c), 1) for c in centre_mm),
                    t1_level=float(rng.uniform(0.15, 0.4)),
                    dwi_level=float(rng.uniform(0.65, 1.15)),
                )
            )
            break
    return index_map, lesions


def _choose_instance(
    rng: np.random.Generator,
    candidates: list[tuple[int, str, int]],
    sizes: np.ndarray,
    target_voxels: int,
) -> tuple[int, str, int] | None:
    """A bone instance big enough for the lesion: region by :data:`REGION_WEIGHTS`, then
    instance by size within the region (a big vertebra catches more lesions)."""
    fitting = [c for c in candidates if MAX_BONE_SHARE * sizes[c[0]] >= target_voxels]
    if not fitting:
        # Bigger than any bone allows (coarse grid or tiny body): use the biggest bones.
        biggest = max((sizes[c[0]] for c in candidates), default=0)
        fitting = [c for c in candidates if sizes[c[0]] >= 0.8 * biggest and biggest > 0]
        if not fitting:
            return None
    region_total: dict[int, float] = {}
    for iid, _, label in fitting:
        region_total[label] = region_total.get(label, 0.0) + float(sizes[iid])
    weights = np.array(
        [
            REGION_WEIGHTS[SKELETON_LABELS[label]] * sizes[iid] / region_total[label]
            for iid, _, label in fitting
        ]
    )
    choice = rng.choice(len(fitting), p=weights / weights.sum())
    return fitting[int(choice)]


def _grow(
    rng: np.random.Generator,
    anatomy: Anatomy,
    grid: Grid,
    iid: int,
    bone_box: tuple[slice, ...],
    forbidden: np.ndarray,
    goal_voxels: int,
) -> tuple[np.ndarray | None, tuple[slice, ...]]:
    """An irregular blob of about ``goal_voxels`` voxels inside bone ``iid``.

    The blob (:func:`_random_blob`) grows from a random marrow voxel; its size is found by
    bisection on a common scale so that the part inside the bone has the requested number of
    voxels. Only the connected part around the seed is kept.

    Returns:
        (blob mask over the returned box or None when the bone has no free voxel, voxel box).
    """
    available = (anatomy.instance[bone_box] == iid) & ~forbidden[bone_box]
    seeds = np.argwhere(available & (anatomy.marrow[bone_box] >= 0.5))
    if len(seeds) == 0:
        seeds = np.argwhere(available)
    if len(seeds) == 0:
        return None, bone_box
    seed = seeds[int(rng.integers(len(seeds)))]
    spacing = np.asarray(grid.spacing_mm, dtype=np.float32)
    equivalent_mm = (3.0 * goal_voxels * float(np.prod(spacing)) / (4.0 * np.pi)) ** (1 / 3)
    low, high = 0.1 * equivalent_mm, 6.0 * equivalent_mm
    # Work in the part of the bone the largest blob can reach (parts reach 1.9 x scale).
    reach = np.ceil(1.9 * high / spacing).astype(int) + 1
    local = tuple(
        slice(max(0, seed[a] - reach[a]), min(s.stop - s.start, seed[a] + reach[a] + 1))
        for a, s in enumerate(bone_box)
    )
    available = available[local]
    seed = seed - [s.start for s in local]
    box = tuple(slice(b.start + s.start, b.start + s.stop) for b, s in zip(bone_box, local))
    coords = [
        (np.arange(s.stop - s.start, dtype=np.float32) - seed[axis]).reshape(
            [-1 if a == axis else 1 for a in range(3)]
        )
        * spacing[axis]
        for axis, s in enumerate(local)
    ]
    level = _random_blob(rng, coords, available.shape)
    mask = None
    for _ in range(16):
        middle = 0.5 * (low + high)
        candidate = (level(middle) <= 1.0) & available
        if candidate.sum() < goal_voxels:
            low = middle
        else:
            high, mask = middle, candidate
    if mask is None:
        mask = (level(high) <= 1.0) & available
    return _component_at(mask, seed), box


def _random_blob(
    rng: np.random.Generator, coords: list[np.ndarray], shape: tuple[int, ...]
) -> Callable[[float], np.ndarray]:
    """A random blob around the origin of ``coords`` (mm offsets along each axis, broadcast).

    The blob is a union of 1-4 jittered, rotated ellipsoids whose level set is perturbed by
    smooth noise. Returns ``level(scale_mm)``: <= 1 inside the blob grown to that scale.
    """
    n_parts = int(rng.integers(1, 5))
    centres = [np.zeros(3)]
    for _ in range(n_parts - 1):
        direction = rng.standard_normal(3)
        centres.append(direction / np.linalg.norm(direction) * rng.uniform(0.4, 0.9))
    # Part k at scale s: q = R_k^T (p / s - c_k) / r_k = a_k / s - b_k, with a_k, b_k fixed.
    parts = []
    for centre in centres:
        radii = rng.uniform(0.45, 1.0, 3)
        rot = rotation(*rng.uniform(0.0, 360.0, 3))
        a = [
            (rot[0, i] * coords[0] + rot[1, i] * coords[1] + rot[2, i] * coords[2]) / radii[i]
            for i in range(3)
        ]
        b = (rot.T @ centre) / radii
        parts.append((a, b.astype(np.float32)))
    noise = ndimage.gaussian_filter(rng.standard_normal(shape), 1.0)
    roughness = (1.0 + 0.3 * noise / (noise.std() + 1e-6)).astype(np.float32)

    def level(scale_mm: float) -> np.ndarray:
        best = None
        inverse = np.float32(1.0 / scale_mm)
        for a, b in parts:
            value = (a[0] * inverse - b[0]) ** 2
            value = value + (a[1] * inverse - b[1]) ** 2 + (a[2] * inverse - b[2]) ** 2
            best = value if best is None else np.minimum(best, value)
        return best * roughness

    return level


def _component_at(mask: np.ndarray, seed: np.ndarray) -> np.ndarray | None:
    """The connected part of ``mask`` holding ``seed`` (the largest part if the seed is out)."""
    components, count = label_components(mask)
    if count == 0:
        return None
    keep = components[tuple(seed)]
    if keep == 0:
        keep = int(np.argmax(np.bincount(components.ravel())[1:])) + 1
    return components == keep


def _forbid_neighbourhood(forbidden: np.ndarray, box: tuple[slice, ...], mask: np.ndarray) -> None:
    """Mark the lesion and its 26-neighbours, so later lesions never touch it."""
    padded = tuple(
        slice(max(s.start - 1, 0), min(s.stop + 1, n)) for s, n in zip(box, forbidden.shape)
    )
    local = np.zeros(tuple(s.stop - s.start for s in padded), dtype=bool)
    offset = tuple(s.start - p.start for s, p in zip(box, padded))
    local[tuple(slice(o, o + m) for o, m in zip(offset, mask.shape))] = mask
    forbidden[padded] |= ndimage.binary_dilation(local, structure=_NEIGHBOURHOOD)


__all__ = [
    "REGION_WEIGHTS",
    "Lesion",
    "draw_lesions",
    "place_lesions",
    "sample_lesion_count",
    "sample_lesion_volumes_ml",
]
