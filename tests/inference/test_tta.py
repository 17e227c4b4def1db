"""Flip TTA never mirrors left and right."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from sap.inference.tta import flip_tta, lateral_axis, tta_flip_axes


@pytest.mark.parametrize(
    ("orientation", "lateral"), [("RAS", 0), ("LPS", 0), ("PIL", 2), ("ASR", 2), ("SRA", 1)]
)
def test_left_right_axis_is_never_flipped(orientation, lateral):
    assert lateral_axis(orientation) == lateral
    assert lateral not in tta_flip_axes(orientation)
    assert len(tta_flip_axes(orientation)) == 2


@pytest.mark.parametrize("orientation", ["RAX", "RRS", "RA", "RLS"])
def test_bad_orientation_codes_are_rejected(orientation):
    with pytest.raises(ValueError, match="axis codes"):
        lateral_axis(orientation)


def lateral_model() -> nn.Module:
    """Class 1 where intensity grows towards +axis 0 (the patient's right in RAS)."""
    conv = nn.Conv3d(1, 1, kernel_size=(3, 1, 1), padding=(1, 0, 0), bias=False)
    with torch.no_grad():
        conv.weight.copy_(torch.tensor([-1.0, 0.0, 1.0]).view(1, 1, 3, 1, 1))

    def predict(x: torch.Tensor) -> torch.Tensor:
        evidence = 5 * conv(x)
        return torch.softmax(torch.cat([-evidence, evidence], dim=1), dim=1)

    return predict


def test_tta_keeps_a_lateralised_prediction():
    ramp = torch.linspace(0, 1, 12).view(1, 1, 12, 1, 1).expand(1, 1, 12, 10, 8).contiguous()
    predict = lateral_model()
    with torch.no_grad():
        plain = predict(ramp)
        augmented = flip_tta(predict, tta_flip_axes("RAS"))(ramp)
        mirrored = flip_tta(predict, (0,))(ramp)
    torch.testing.assert_close(augmented, plain)
    inner = (slice(None), 1, slice(1, -1))
    assert float(plain[inner].min()) > 0.55  # the model does see "right"
    # A left-right flip would average "right" with "left" and destroy the answer.
    assert float((mirrored[inner] - 0.5).abs().max()) < 1e-6


def test_flip_tta_is_the_mean_over_all_flip_combinations():
    torch.manual_seed(0)
    net = nn.Conv3d(2, 3, kernel_size=3, padding=1).eval()

    def predict(x):
        return torch.softmax(net(x), dim=1)

    x = torch.rand(2, 2, 8, 8, 8)
    with torch.no_grad():
        expected = (
            sum(
                torch.flip(predict(torch.flip(x, dims)), dims) if dims else predict(x)
                for dims in [(), (3,), (4,), (3, 4)]
            )
            / 4
        )
        torch.testing.assert_close(flip_tta(predict, (1, 2))(x), expected)
