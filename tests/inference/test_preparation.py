"""prepare_case: the training preprocessing, one channel at a time, in bounded memory."""

from __future__ import annotations

import tracemalloc
from functools import partial

import numpy as np
import pytest
import torch
import torchio as tio

from sap.data.preprocess import preprocessing
from sap.data.transforms import PercentileRescale, rescale_percentiles_
from sap.inference.inputs import CaseChannels, open_case
from sap.inference.preparation import prepare_case
from sap.recipe import ModelRecipe
from sap.volume import files as volume_files
from sap.volume import percentiles as volume_percentiles
from tests.helpers.inference import blob_volume, dwi_affine, oblique_lps_affine, write_case


def recipe(spacing_mm=None, orientation: str = "RAS") -> ModelRecipe:
    return ModelRecipe(
        backbone="tiny_unet",
        labels=["background", "lesion"],
        task="lesion",
        patch_size=(16, 16, 16),
        spacing_mm=spacing_mm,
        orientation=orientation,
    )


@pytest.fixture(scope="module")
def cases(tmp_path_factory):
    """An oblique LPS T1 with a DWI on its own coarser grid, and one with DWI on T1's grid."""
    root = tmp_path_factory.mktemp("cases")
    t1, other = blob_volume((36, 28, 20), seed=1), blob_volume((30, 30, 24), seed=2)
    return {
        "own grid": write_case(root / "a", t1, oblique_lps_affine(), other, dwi_affine()),
        "same grid": write_case(root / "b", t1, oblique_lps_affine()),
    }


@pytest.mark.parametrize("which", ["own grid", "same grid"])
@pytest.mark.parametrize(
    ("spacing_mm", "orientation"), [(None, "RAS"), ((2.5, 3.0, 4.0), "RAS"), (None, "LPS")]
)
@pytest.mark.parametrize("dtype", [torch.float16, torch.float32, torch.bfloat16])
def test_prepared_input_equals_the_training_preprocessing(
    cases, which, spacing_mm, orientation, dtype
) -> None:
    case = open_case(cases[which], ["T1", "b1000"])
    prepared = prepare_case(case, recipe(spacing_mm, orientation), dtype)

    images = {}
    for channel in ("T1", "b1000"):  # the same voxels, through the whole TorchIO pipeline
        data, affine = case.read(channel)
        images[channel] = tio.ScalarImage(tensor=torch.from_numpy(data)[None], affine=affine)
    subject = tio.Subject(images)
    transform = preprocessing(("T1", "b1000"), spacing_mm=spacing_mm)
    if orientation != "RAS":
        transform = tio.Compose([transform, tio.ToOrientation(orientation)])
    expected = transform(subject)
    stacked = torch.cat([expected["T1"].data, expected["b1000"].data]).to(dtype)

    assert torch.equal(prepared.image, stacked), "bitwise what training sees"
    assert np.allclose(prepared.model_affine, expected["T1"].affine, atol=1e-9)


def test_arrays_held_by_the_case_are_not_changed(cases) -> None:
    """DICOM channels are held in memory by the case; preparing twice gives the same input."""
    arrays = {c: open_case(cases["own grid"], ["T1", "b1000"]).read(c) for c in ("T1", "b1000")}
    held = CaseChannels("dicom", {c: (data, affine) for c, (data, affine) in arrays.items()})
    before = {c: data.copy() for c, (data, _) in arrays.items()}

    first = prepare_case(held, recipe())
    second = prepare_case(held, recipe())

    assert torch.equal(first.image, second.image)
    assert all(np.array_equal(arrays[c][0], before[c]) for c in before)


def test_percentile_rescale_is_bitwise_torchio_rescale_intensity() -> None:
    generator = torch.Generator().manual_seed(0)
    for dtype in (torch.float32, torch.int16, torch.float64):
        tensor = (torch.randn(1, 37, 41, 29, generator=generator) * 300).to(dtype)
        subject = tio.Subject(t1=tio.ScalarImage(tensor=tensor))
        theirs = tio.RescaleIntensity(out_min_max=(0, 1), percentiles=(1, 99))(subject)
        ours = PercentileRescale((1, 99))(subject)
        assert torch.equal(ours["t1"].data, theirs["t1"].data), dtype
        assert torch.equal(subject["t1"].data, tensor), "the input subject is left alone"


def test_a_constant_image_is_left_as_it_is_with_a_warning() -> None:
    array = np.full((4, 4, 4), 7.0, np.float32)
    with pytest.warns(RuntimeWarning, match="same"):
        assert np.array_equal(rescale_percentiles_(array, (1, 99)), np.full((4, 4, 4), 7.0))


def test_preparation_holds_one_float32_copy_of_one_channel(tmp_path, monkeypatch) -> None:
    """numpy memory at the peak: the channel read, and no whole-volume temporary besides.

    (TorchIO's RescaleIntensity alone adds a clone, a masked copy and a mask per channel, and
    np.percentile a partitioned copy.) The gzip reader and the percentile histograms work
    in fixed chunks (16 MiB and 1 MiB of voxels, more than this tiny case's channels); they are made
    small here so that only memory that grows with the volume counts.
    """
    monkeypatch.setattr(
        volume_files,
        "_read_gzip_voxels",
        partial(volume_files._read_gzip_voxels, chunk_bytes=1 << 16),
    )
    monkeypatch.setattr(volume_percentiles, "_CHUNK", 1 << 14)
    shape = (96, 80, 120)
    rng = np.random.default_rng(0)
    folder = write_case(
        tmp_path / "case",
        rng.random(shape, dtype=np.float32),
        np.diag([-2.0, -2.0, 3.0, 1.0]),  # LPS: reoriented as a view
        rng.random(shape, dtype=np.float32),
        np.diag([-2.0, -2.0, 3.0, 1.0]),
    )
    case = open_case(folder, ["T1", "b1000"])
    channel_bytes = 4 * int(np.prod(shape))
    tracemalloc.start()
    try:
        prepare_case(case, recipe())
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    histograms = 4 * 2**20  # the percentiles' bucket counts: fixed, whatever the volume
    assert peak < 1.1 * channel_bytes + histograms, f"peak {peak / channel_bytes:.2f} channels"
