"""Specification of the patch samplers: what one epoch of patches from one subject holds."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch
import torchio as tio
from scipy import ndimage

from sap.data.lesions import count_lesions
from sap.data.samplers import LESION_COMPONENT, InstanceBalancedSampler, skeleton_sampler
from tests.helpers.data import lesion_subject, separated_lesions


def patch_window(patch: tio.Subject) -> tuple[slice, slice, slice]:
    location = patch[tio.LOCATION].tolist()
    return tuple(slice(location[a], location[a + 3]) for a in range(3))  # type: ignore[return-value]


def components(lesion: np.ndarray, connectivity: int = 26) -> np.ndarray:
    rank = {6: 1, 18: 2, 26: 3}[connectivity]
    return ndimage.label(lesion > 0, ndimage.generate_binary_structure(3, rank))[0]


@pytest.mark.parametrize("num_lesions", [1, 3, 5])
@pytest.mark.parametrize("ratio", [0.0, 0.5, 1.0, 2.0])
def test_one_patch_per_lesion_plus_ratio_negatives(num_lesions: int, ratio: float) -> None:
    torch.manual_seed(0)
    subject = lesion_subject(separated_lesions(num_lesions))
    sampler = InstanceBalancedSampler(12, negative_ratio=ratio)

    patches = list(sampler(subject))
    targets = sorted(int(p[LESION_COMPONENT]) for p in patches)

    expected_negatives = math.floor(ratio * num_lesions + 0.5)
    assert targets == [0] * expected_negatives + list(range(1, num_lesions + 1))
    assert sampler.num_patches_for(subject) == len(patches) == num_lesions + expected_negatives


def test_negatives_are_rounded_half_up() -> None:
    sampler = InstanceBalancedSampler(8, negative_ratio=0.5)
    assert [sampler.num_negatives(k) for k in (1, 2, 3, 5)] == [1, 1, 2, 3]


def test_positive_patch_contains_its_whole_lesion_when_it_fits() -> None:
    torch.manual_seed(1)
    lesion = separated_lesions(6)
    labels = components(lesion)
    subject = lesion_subject(lesion)
    for _ in range(5):
        for patch in InstanceBalancedSampler(10, negative_ratio=0)(subject):
            target = int(patch[LESION_COMPONENT])
            inside = (labels[patch_window(patch)] == target).sum()
            assert inside == (labels == target).sum()


def test_negative_patches_contain_no_lesion_voxel() -> None:
    torch.manual_seed(2)
    lesion = separated_lesions(8)
    subject = lesion_subject(lesion)
    negatives = [
        p
        for p in InstanceBalancedSampler(14, negative_ratio=3)(subject)
        if int(p[LESION_COMPONENT]) == 0
    ]
    assert len(negatives) == 24
    for patch in negatives:
        assert not lesion[patch_window(patch)].any()
        assert int(patch["lesion"].data.sum()) == 0


def test_lesion_larger_than_patch_gets_a_patch_inside_its_extent() -> None:
    torch.manual_seed(3)
    lesion = np.zeros((40, 40, 60), np.uint8)
    lesion[18:21, 18:21, 5:55] = 1  # 50 voxels long, patch is 16
    subject = lesion_subject(lesion)
    for _ in range(10):
        (patch,) = InstanceBalancedSampler(16, negative_ratio=0)(subject)
        window = patch_window(patch)
        # Fitting axes: the whole cross-section; long axis: inside the lesion, full of it.
        assert window[0].start <= 18 and window[0].stop >= 21
        assert window[1].start <= 18 and window[1].stop >= 21
        assert window[2].start >= 5 and window[2].stop <= 55
        assert lesion[window].sum() == 3 * 3 * 16


def test_margin_keeps_context_around_the_lesion() -> None:
    torch.manual_seed(4)
    lesion = np.zeros((48, 48, 48), np.uint8)
    lesion[20:24, 20:24, 20:24] = 1
    subject = lesion_subject(lesion)
    sampler = InstanceBalancedSampler(16, negative_ratio=0, margin=4)
    for _ in range(20):
        (patch,) = sampler(subject)
        for axis_window in patch_window(patch):
            assert axis_window.start <= 20 - 4 and axis_window.stop >= 24 + 4


@pytest.mark.parametrize(("connectivity", "expected"), [(26, 1), (18, 2), (6, 3)])
def test_touching_lesions_are_one_or_several_by_connectivity(
    connectivity: int, expected: int
) -> None:
    lesion = np.zeros((32, 32, 32), np.uint8)
    lesion[10, 10, 10] = 1
    lesion[11, 11, 11] = 1  # touches the first by a corner only
    lesion[12, 12, 11] = 1  # touches the second by an edge only
    subject = lesion_subject(lesion)
    sampler = InstanceBalancedSampler(8, negative_ratio=0, connectivity=connectivity)

    patches = list(sampler(subject))

    assert count_lesions(lesion, connectivity) == expected
    assert len(patches) == expected
    assert sorted(int(p[LESION_COMPONENT]) for p in patches) == list(range(1, expected + 1))


def test_lesion_free_subject_yields_no_patch_unless_asked() -> None:
    subject = lesion_subject(np.zeros((24, 24, 24), np.uint8))
    assert list(InstanceBalancedSampler(8)(subject)) == []
    sampler = InstanceBalancedSampler(8, negatives_per_lesion_free_case=3)
    patches = list(sampler(subject))
    assert sampler.num_patches_for(subject) == 3
    assert [int(p[LESION_COMPONENT]) for p in patches] == [0, 0, 0]


def test_sampling_is_reproducible_under_a_seed() -> None:
    subject = lesion_subject(separated_lesions(4))
    sampler = InstanceBalancedSampler(12, negative_ratio=1)

    def draw(seed: int) -> list[list[int]]:
        torch.manual_seed(seed)
        return [p[tio.LOCATION].tolist() + [int(p[LESION_COMPONENT])] for p in sampler(subject)]

    assert draw(7) == draw(7)
    assert draw(7) != draw(8)


def test_a_seed_draws_the_same_patches_as_ever() -> None:
    """Golden values: refactoring the sampler must not change what a seed draws."""
    subject = lesion_subject(separated_lesions(4))
    sampler = InstanceBalancedSampler(12, negative_ratio=1, margin=2)
    torch.manual_seed(4)
    drawn = [p[tio.LOCATION].tolist()[:3] + [int(p[LESION_COMPONENT])] for p in sampler(subject)]
    assert drawn == [
        [1, 22, 1, 3],
        [3, 8, 9, 0],
        [2, 23, 18, 4],
        [15, 27, 5, 0],
        [16, 34, 22, 0],
        [2, 4, 20, 2],
        [35, 23, 23, 0],
        [4, 1, 2, 1],
    ]


def test_num_patches_gives_a_subset_or_extra_negatives() -> None:
    torch.manual_seed(5)
    subject = lesion_subject(separated_lesions(3))
    sampler = InstanceBalancedSampler(10, negative_ratio=1)
    more = [int(p[LESION_COMPONENT]) for p in sampler(subject, num_patches=9)]
    assert sorted(more) == [0, 0, 0, 0, 0, 0, 1, 2, 3]
    assert len(list(sampler(subject, num_patches=2))) == 2


def test_crowded_volume_still_finds_the_only_lesion_free_patches() -> None:
    torch.manual_seed(6)
    lesion = np.ones((20, 20, 20), np.uint8)
    lesion[:8, :8, :8] = 0  # the only lesion-free 8^3 patch
    subject = lesion_subject(lesion)
    sampler = InstanceBalancedSampler(8, negative_ratio=2, max_tries=1)
    negatives = [p for p in sampler(subject) if int(p[LESION_COMPONENT]) == 0]
    assert len(negatives) == 2
    assert all(p[tio.LOCATION].tolist()[:3] == [0, 0, 0] for p in negatives)


def test_volume_without_lesion_free_patch_warns_and_uses_the_least_lesion() -> None:
    lesion = np.ones((12, 12, 12), np.uint8)
    lesion[0, 0, 0] = 0
    subject = lesion_subject(lesion)
    with pytest.warns(RuntimeWarning, match="no lesion-free"):
        patches = [
            p
            for p in InstanceBalancedSampler(8, max_tries=2)(subject)
            if int(p[LESION_COMPONENT]) == 0
        ]
    assert patches[0][tio.LOCATION].tolist()[:3] == [0, 0, 0]


def test_component_analysis_is_cached_per_distinct_mask() -> None:
    subject = lesion_subject(separated_lesions(2))
    sampler = InstanceBalancedSampler(8)
    first = sampler.lesions(subject)
    assert sampler.lesions(subject) is first
    flipped = tio.Flip(axes=(0,))(subject)
    assert sampler.lesions(flipped) is not first
    assert len(sampler.lesions(flipped)) == 2


@pytest.mark.parametrize(
    "kwargs",
    [
        {"connectivity": 4},
        {"negative_ratio": -1.0},
        {"negative_ratio": float("nan")},
        {"margin": -1},
        {"max_tries": 0},
    ],
)
def test_bad_arguments_are_refused(kwargs: dict) -> None:
    with pytest.raises(ValueError):
        InstanceBalancedSampler(8, **kwargs)


def test_missing_lesion_map_names_the_case() -> None:
    subject = tio.Subject(T1=tio.ScalarImage(tensor=torch.rand(1, 8, 8, 8)), case_id="p07")
    with pytest.raises(KeyError, match="p07"):
        list(InstanceBalancedSampler(4)(subject))


def test_skeleton_sampler_centres_on_bone_classes_equally() -> None:
    torch.manual_seed(0)
    skeleton = np.zeros((40, 40, 40), np.uint8)
    skeleton[10:30, 10:30, 10:30] = 1  # a large bone
    skeleton[20, 20, 20] = 2  # a one-voxel bone
    subject = tio.Subject(skeleton=tio.LabelMap(tensor=torch.as_tensor(skeleton[None])))
    sampler = skeleton_sampler(9, num_classes=3, background_probability=0.0)
    centres = [
        skeleton[tuple((p[tio.LOCATION][:3] + 4).tolist())]
        for p in sampler(subject, num_patches=200)
    ]
    share_small = np.mean(np.asarray(centres) == 2)
    assert 0 not in centres
    assert 0.35 < share_small < 0.65  # voxel-weighted sampling would give 1/8000


def test_skeleton_sampler_refuses_bad_probability() -> None:
    with pytest.raises(ValueError, match="background_probability"):
        skeleton_sampler(8, background_probability=1.5)


def test_no_warning_in_normal_sampling() -> None:
    subject = lesion_subject(separated_lesions(3))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        list(InstanceBalancedSampler(12, negative_ratio=2)(subject))
