"""Bounded-memory sliding window: same windows and result as MONAI, and as a full forward."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from monai.data.utils import dense_patch_slices
from monai.inferers import sliding_window_inference
from monai.inferers.utils import compute_importance_map
from torch import nn

from sap.inference.sliding import (
    blending_weights,
    sliding_window_predict,
    softmax_predict_fn,
    window_starts,
)
from tests.helpers.inference import tiny_model


def small_net(classes: int = 3, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv3d(2, 6, 3, padding=1), nn.ReLU(), nn.Conv3d(6, classes, 3, padding=1)
    ).eval()


def softmax_of(net: nn.Module):
    return lambda x: torch.softmax(net(x), dim=1)


@pytest.mark.parametrize(
    ("size", "patch", "overlap"),
    [(40, 16, 0.5), (33, 16, 0.5), (16, 16, 0.5), (70, 16, 0.25), (50, 12, 0.0), (37, 8, 0.75)],
)
def test_window_starts_are_monais_grid(size, patch, overlap):
    interval = patch if size == patch else max(int(patch * (1 - overlap)), 1)
    slices = dense_patch_slices((size,), (patch,), (interval,))
    assert window_starts(size, patch, overlap) == [s[0].start for s in slices]


def test_windows_cover_the_axis_and_stay_inside():
    for size in range(16, 80):
        starts = window_starts(size, 16, 0.5)
        assert starts[0] == 0 and starts[-1] == size - 16
        assert all(0 < b - a <= 16 for a, b in zip(starts, starts[1:]))


@pytest.mark.parametrize("mode", ["gaussian", "constant"])
def test_gaussian_and_constant_weights_equal_monais_importance_map(mode):
    patch = (16, 12, 20)
    expected = compute_importance_map(patch, mode=mode, sigma_scale=0.125)
    torch.testing.assert_close(blending_weights(patch, mode), expected, rtol=0, atol=1e-6)


def test_hann_weights_are_positive_and_peak_in_the_centre():
    weights = blending_weights((9, 8, 10), "hann")
    assert float(weights.min()) > 0
    assert weights[4, 3:5, 4:6].max() == weights.max()


@pytest.mark.parametrize(
    ("shape", "patch"),
    [((40, 33, 52), (16, 16, 16)), ((12, 30, 44), (16, 16, 16)), ((24, 24, 24), (16, 8, 12))],
)
@pytest.mark.parametrize("mode", ["gaussian", "constant"])
def test_result_equals_monai_sliding_window_inference(shape, patch, mode):
    net = small_net()
    torch.manual_seed(1)
    image = torch.rand(2, *shape)
    with torch.inference_mode():
        expected = sliding_window_inference(
            image[None], patch, 3, softmax_of(net), overlap=0.5, mode=mode
        )[0]
        ours = sliding_window_predict(
            image,
            softmax_of(net),
            patch,
            3,
            blending=mode,
            batch_size=3,
            keep_probabilities=(0, 1, 2),
        )
    torch.testing.assert_close(
        torch.from_numpy(ours.probabilities).float(), expected, rtol=0, atol=1e-3
    )
    # Labels come from float32 sums, so they match MONAI's arg-max except at exact ties.
    agree = (torch.from_numpy(ours.labels).long() == expected.argmax(0)).float().mean()
    assert float(agree) > 0.999


def test_result_equals_a_full_volume_forward_for_a_voxelwise_model():
    torch.manual_seed(2)
    net = nn.Sequential(nn.Conv3d(2, 5, 1), nn.Tanh(), nn.Conv3d(5, 4, 1)).eval()
    image = torch.rand(2, 30, 21, 45)
    with torch.inference_mode():
        full = torch.softmax(net(image[None]), dim=1)[0]
        ours = sliding_window_predict(
            image,
            softmax_of(net),
            (16, 16, 16),
            4,
            keep_probabilities=(0, 1, 2, 3),
            blending="hann",
        )
    torch.testing.assert_close(
        torch.from_numpy(ours.probabilities).float(), full, rtol=0, atol=1e-3
    )
    np.testing.assert_array_equal(ours.labels, full.argmax(0).numpy())


def test_slab_axis_does_not_change_the_result():
    net = small_net(classes=2, seed=4)
    image = torch.rand(2, 26, 34, 40)
    results = []
    with torch.inference_mode():
        for axis in (0, 1, 2):
            result = sliding_window_predict(
                image, softmax_of(net), (16, 16, 16), 2, keep_probabilities=(1,), slab_axis=axis
            )
            results.append(result.probabilities[0].astype(np.float32))
    np.testing.assert_allclose(results[0], results[1], atol=1e-3)
    np.testing.assert_allclose(results[0], results[2], atol=1e-3)


def test_outputs_are_compact():
    net = small_net(classes=2)
    with torch.inference_mode():
        result = sliding_window_predict(
            torch.rand(2, 20, 20, 20), softmax_of(net), (16, 16, 16), 2, keep_probabilities=(1,)
        )
    assert result.labels.dtype == np.uint8
    assert result.probabilities.dtype == np.float16
    assert result.probabilities.shape == (1, 20, 20, 20)


def test_model_with_wrong_output_shape_is_reported():
    net = small_net(classes=3)
    with pytest.raises(ValueError, match=r"returned shape \(4, 3, 16, 16, 16\).*expected"):
        sliding_window_predict(torch.rand(2, 20, 20, 20), softmax_of(net), (16, 16, 16), 2)


def test_validation_call_works_for_a_model_in_train_mode_outside_no_grad():
    # What a task's validation does: float32 volume on the CPU, the network as it is during
    # fitting, every class kept plus the arg-max labels; no autograd graph may build up.
    model = tiny_model("skeleton", patch=(16, 16, 16)).train()
    image = torch.rand(2, 20, 18, 24)
    result = sliding_window_predict(
        image,
        softmax_predict_fn(model),
        (16, 16, 16),
        10,
        keep_probabilities=range(10),
        return_labels=True,
    )
    assert result.labels.shape == (20, 18, 24) and result.labels.dtype == np.uint8
    assert result.probabilities.shape == (10, 20, 18, 24)
    assert result.probabilities.dtype == np.float16
    np.testing.assert_allclose(result.probabilities.astype(np.float32).sum(0), 1.0, atol=5e-3)
    agree = (result.labels == result.probabilities.argmax(0)).mean()
    assert agree > 0.99  # float16 rounding may flip near-ties
    assert all(p.grad is None for p in model.parameters())
    assert model.training  # the caller's mode is left alone


def test_softmax_predict_fn_is_the_softmax_of_the_logits():
    net = small_net(classes=3)
    x = torch.rand(2, 2, 8, 8, 8)
    with torch.no_grad():
        expected = torch.softmax(net(x), dim=1)
        torch.testing.assert_close(softmax_predict_fn(net)(x), expected)
        mixed = softmax_predict_fn(net, amp=True)(x)  # bfloat16 autocast on the CPU
    assert mixed.dtype == torch.float32
    torch.testing.assert_close(mixed, expected, rtol=0, atol=2e-2)


def test_progress_counts_every_window():
    seen = []
    with torch.inference_mode():
        result = sliding_window_predict(
            torch.rand(2, 20, 24, 40),
            softmax_of(small_net()),
            (16, 16, 16),
            3,
            batch_size=4,
            progress=seen.append,
        )
    expected = 2 * 2 * 4  # windows per axis: 20 -> 2, 24 -> 2, 40 -> 4
    assert result.num_windows == expected and sum(seen) == expected
