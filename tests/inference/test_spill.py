"""Whole-volume arrays kept in temporary files: same results, less resident memory.

A whole-body case predicts with its network input and probability maps spilled to disk
(:mod:`sap.inference.spill`); small cases stay in RAM. Both must give the same voxels.
"""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest
import torch

from sap.inference import Predictor
from sap.inference.inputs import CaseSource
from sap.inference.pipeline import predict_case
from sap.inference.spill import is_spilled, release_pages, slabs, spilled_empty
from tests.helpers.inference import (
    PointwiseLesionModel,
    blob_volume,
    dwi_affine,
    oblique_lps_affine,
    tiny_model,
    write_case,
)


def _resident_mb() -> float:
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * 4096 / 2**20


@pytest.fixture(scope="module")
def case(tmp_path_factory):
    """T1 on an oblique LPS grid (4 x 3 longest along its first axis), b1000 on its own grid."""
    folder = tmp_path_factory.mktemp("cases") / "spill"
    return write_case(
        folder,
        blob_volume((40, 26, 22), seed=3),
        oblique_lps_affine(),
        blob_volume((30, 30, 24), seed=4),
        dwi_affine(),
    )


@pytest.mark.parametrize("model", ["pointwise", "lesion", "skeleton"])
def test_spilled_prediction_equals_prediction_in_memory(case, model):
    network = PointwiseLesionModel() if model == "pointwise" else tiny_model(model)
    settings = {"memory_limit_bytes": None, "min_volume_ml": 0.0}
    in_memory = Predictor(network, spill=False, **settings)
    spilled = Predictor(network, spill=True, **settings)
    prepared = spilled.prepare(case)
    assert is_spilled(prepared.storage) and prepared.row_axis is not None
    assert in_memory.prepare(case).storage is None
    assert torch.equal(prepared.image, in_memory.prepare(case).image)
    expected, ours = in_memory.predict(case), spilled.predict(prepared)
    np.testing.assert_array_equal(ours.labels, expected.labels)
    assert ours.probabilities.keys() == expected.probabilities.keys()
    for name, probability in expected.probabilities.items():
        assert is_spilled(ours.probabilities[name])
        np.testing.assert_array_equal(ours.probabilities[name], probability)


def test_spilled_case_writes_the_same_files_and_report(case, tmp_path):
    outputs = {}
    for spill in (False, True):
        predictor = Predictor(tiny_model("lesion"), spill=spill, memory_limit_bytes=None)
        folder = tmp_path / str(spill)
        folder.mkdir()
        report, written = predict_case(
            CaseSource("spill", case), folder, predictor, save_probabilities=True
        )
        images = {p.name: np.asarray(nib.load(p).dataobj) for p in written if p.suffix == ".gz"}
        outputs[spill] = (report.to_dict(), images)
    assert outputs[True][0]["lesions"] == outputs[False][0]["lesions"]
    assert outputs[False][1].keys() == outputs[True][1].keys() >= {"lesion_probability.nii.gz"}
    for name, voxels in outputs[False][1].items():
        np.testing.assert_array_equal(outputs[True][1][name], voxels, err_msg=name)


def test_released_pages_leave_resident_memory_and_keep_their_values():
    array = spilled_empty((64, 1024, 1024), np.uint8)  # 64 MB
    before = _resident_mb()
    array[...] = 7
    assert _resident_mb() - before > 48
    release_pages(array[3:])  # a view releases its whole mapping
    assert _resident_mb() - before < 16
    assert int(array[::8, ::512, ::512].sum()) == 7 * 8 * 2 * 2
    release_pages(np.zeros(3))  # arrays in RAM are left alone


def test_slabs_cover_the_volume_once():
    parts = slabs((10, 4, 4), voxels=48)
    covered = np.zeros(10, int)
    for (part,) in parts:
        covered[part] += 1
    assert covered.tolist() == [1] * 10 and len(parts) == 4
    volume = np.zeros((3, 7, 2), int)
    for part in slabs(volume.shape, axis=1, voxels=12):
        volume[part] += 1
    assert (volume == 1).all()


def test_sap_predict_spill_disk_writes_what_spill_memory_writes(case, tmp_path, capsys):
    from sap.cli import main
    from tests.helpers.faults import export_lesion_model

    model = export_lesion_model(tmp_path / "model")
    written = {}
    for where in ("disk", "memory"):
        out = tmp_path / where
        args = ["predict", case, out, "--lesion-model", model, "--spill", where, "--no-progress"]
        assert main([str(a) for a in args]) == 0, capsys.readouterr().err
        folder = out / case.name
        written[where] = {p.name: p.read_text() for p in folder.glob("*.csv")}
        for image in folder.glob("*.nii.gz"):  # gzip headers hold the time: compare voxels
            loaded = nib.load(image)
            written[where][image.name] = (
                np.asarray(loaded.dataobj).tobytes(),
                loaded.affine.tobytes(),
            )
    assert "lesion.nii.gz" in written["disk"] and "lesions.csv" in written["disk"]
    assert written["disk"] == written["memory"]


def test_memory_check_counts_what_a_spilled_whole_body_case_holds():
    from sap.inference.memory import estimate_memory

    shape = (400, 300, 1100)
    voxels = 400 * 300 * 1100
    common = dict(kept_probabilities=1, batch_size=2)
    in_ram = estimate_memory(shape, [voxels] * 2, shape, 2, (96,) * 3, **common)
    spilled = estimate_memory(shape, [voxels] * 2, shape, 2, (96,) * 3, spilled=True, **common)
    gib = 1024**3
    # One float32 channel read and one on the model grid: 2 x 0.49 GiB, plus a row of input.
    assert 0.98 * gib < spilled.preprocessing < 1.1 * gib
    assert spilled.peak < 0.65 * in_ram.peak
