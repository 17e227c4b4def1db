"""UnlabelledDataModule: patches of scans with or without labels, centred inside the body."""

from __future__ import annotations

from pathlib import Path

import torch

from sap.data import UnlabelledDataModule
from tests.helpers.data import write_small_case


def test_cases_without_labels_give_image_only_batches(tmp_path: Path) -> None:
    write_small_case(tmp_path / "case_a", seed=0, lesion=False)
    write_small_case(tmp_path / "case_b", seed=1, lesion=False)
    (tmp_path / "case_b" / "skeleton.nii.gz").unlink()  # unlabelled
    data = UnlabelledDataModule(str(tmp_path), patch_size=4, batch_size=3, samples_per_volume=3)
    data.setup("fit")
    assert [c.case_id for c in data.train_cases] == ["case_a", "case_b"]
    batches = list(data.train_dataloader())
    assert sum(b["image"].shape[0] for b in batches) == 6
    assert all(set(b) == {"image", "case_id"} for b in batches)
    assert batches[0]["image"].shape[1:] == (2, 4, 4, 4)
    assert data.val_dataloader() == []


def test_patch_centres_lie_inside_the_body(tmp_path: Path) -> None:
    import nibabel as nib
    import numpy as np

    from tests.helpers.data import T1_SHAPE, T1_SPACING_MM, affine_for, write_nifti

    write_small_case(tmp_path / "case_a", seed=0, lesion=False)
    body = np.zeros(T1_SHAPE, np.float32)
    body[6:, :, :] = 1.0 + np.random.default_rng(0).random((6, *T1_SHAPE[1:]), np.float32)
    for channel in ("T1", "b1000"):
        path = tmp_path / "case_a" / f"{channel}.nii.gz"
        write_nifti(path, body, affine_for(T1_SPACING_MM))
    assert nib.load(tmp_path / "case_a" / "T1.nii.gz").shape == T1_SHAPE
    torch.manual_seed(0)
    data = UnlabelledDataModule(
        str(tmp_path), patch_size=(2, 2, 2), batch_size=20, samples_per_volume=20, augment=False
    )
    batch = next(iter(data.train_dataloader()))
    assert batch["image"].shape[0] == 20
    assert bool((batch["image"].mean(dim=(1, 2, 3, 4)) > 0.05).all())
