"""Patches of scans without labels, for self-supervised pretraining.

The same cases, preprocessing, augmentation, patch queue and loaders as the labelled data
modules (:class:`~sap.data.base.SegmentationDataModule`); label maps are ignored even when a
case has them. Patch centres are drawn uniformly inside the body (voxels whose mean
normalised intensity exceeds ``body_threshold``), so no patch is mostly air.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import torch
import torchio as tio
from torch.utils.data import DataLoader

from sap.data.base import SegmentationDataModule
from sap.data.cases import Case, case_to_subject, discover_cases
from sap.data.preprocess import stack_channels
from sap.data.validation import validate_cases
from sap.labels import CHANNELS

#: Name of the sampling map added to every training subject.
BODY_MAP = "body"


class BodyMap(tio.Transform):
    """Add a label map ``body``: voxels whose channel mean exceeds ``threshold`` (else all).

    Args:
        channels: the image channels to average.
        threshold: normalised intensity above which a voxel is body.
    """

    def __init__(self, channels: Sequence[str], threshold: float, **kwargs) -> None:
        super().__init__(**kwargs)
        self.channels = list(channels)
        self.threshold = float(threshold)
        self.args_names = ["channels", "threshold"]

    def apply_transform(self, subject: tio.Subject) -> tio.Subject:
        image = stack_channels(subject, self.channels)
        body = image.mean(dim=0, keepdim=True) > self.threshold
        if not body.any():
            body = torch.ones_like(body)
        first = subject[self.channels[0]]
        subject.add_image(tio.LabelMap(tensor=body.to(torch.uint8), affine=first.affine), BODY_MAP)
        return subject


class ImageCollate:
    """Batches ``{"image": float32 [B, C, X, Y, Z], "case_id": list[str]}`` (no label)."""

    def __init__(self, channels: Sequence[str]) -> None:
        self.channels = list(channels)

    def __call__(self, subjects: Sequence[tio.Subject]) -> dict:
        return {
            "image": torch.stack([stack_channels(s, self.channels) for s in subjects]),
            "case_id": [str(s["case_id"]) for s in subjects],
        }


class UnlabelledDataModule(SegmentationDataModule):
    """Unlabelled patches of whole-body scans, ``samples_per_volume`` per case and epoch.

    Any case with the input channels takes part; label maps are neither needed nor read.
    There is no validation loop (``val_fraction`` defaults to 0). Flips and quarter
    rotations are off by default: the rotation pretext task names how far a patch was turned
    from its scanner orientation, which random flips and turns would make ambiguous (the
    intensity augmentation stays). The other arguments are those of
    :class:`SegmentationDataModule`.

    Args:
        samples_per_volume: patches per training case per epoch.
        body_threshold: mean normalised intensity above which a voxel may be a patch centre.
    """

    label_name = BODY_MAP
    label_names: list[str] = []

    def __init__(
        self,
        data_dir: str,
        channels: Sequence[str] = CHANNELS,
        patch_size: int | Sequence[int] = 96,
        batch_size: int = 2,
        samples_per_volume: int = 8,
        body_threshold: float = 0.1,
        val_fraction: float = 0.0,
        seed: int = 0,
        spacing_mm: float | Sequence[float] | None = None,
        num_workers: int = 0,
        queue_length: int = 64,
        augment: bool = True,
        flip_p: float = 0.0,
        rot90_p: float = 0.0,
        intensity_p: float = 0.1,
        intensity_range: float = 0.1,
        bias_field_p: float = 0.0,
        noise_p: float = 0.0,
        validate_inputs: bool = True,
        cache_subjects: bool = False,
    ) -> None:
        super().__init__(
            data_dir=data_dir,
            channels=channels,
            patch_size=patch_size,
            batch_size=batch_size,
            val_fraction=val_fraction,
            val_cases=None,
            test_dir=None,
            seed=seed,
            spacing_mm=spacing_mm,
            num_workers=num_workers,
            queue_length=queue_length,
            augment=augment,
            skip_cases_without_label=True,
            flip_p=flip_p,
            rot90_p=rot90_p,
            intensity_p=intensity_p,
            intensity_range=intensity_range,
            bias_field_p=bias_field_p,
            noise_p=noise_p,
            validate_inputs=validate_inputs,
            cache_subjects=cache_subjects,
            # The patch store keeps label-guided patches; SSL samples the body map it builds.
            patch_store=False,
        )
        if samples_per_volume < 1:
            raise ValueError(f"samples_per_volume must be >= 1, got {samples_per_volume}.")
        self.samples_per_volume = int(samples_per_volume)
        self.body_threshold = float(body_threshold)
        self.sampler = tio.WeightedSampler(self.patch_size, probability_map=BODY_MAP)
        self.save_hyperparameters()

    def _discover(self, source: str) -> list[Case]:
        cases = discover_cases(source, self.layout)
        if self.validate_inputs:
            validate_cases([_without_labels(case) for case in cases], {})
        return cases

    def _subjects(self, cases: Sequence[Case]) -> list[tio.Subject]:
        return [case_to_subject(_without_labels(case)) for case in cases]

    def _count_patches(self, subjects: list[tio.Subject]) -> list[int]:
        return [self.samples_per_volume] * len(subjects)

    def _train_tail_transform(self) -> tio.Transform:
        return tio.Compose(
            [super()._train_tail_transform(), BodyMap(self.channels, self.body_threshold)]
        )

    def train_dataloader(self) -> DataLoader:
        """Patch batches without labels; ``len()`` as in the labelled data modules."""
        return DataLoader(
            self.make_train_queue(),
            batch_size=self.batch_size,
            num_workers=0,
            collate_fn=ImageCollate(self.channels),
        )

    def val_dataloader(self) -> list:
        """No validation: self-supervised pretraining has no labels to score."""
        return []


def _without_labels(case: Case) -> Case:
    return dataclasses.replace(case, skeleton=None, lesion=None)


__all__ = ["BODY_MAP", "BodyMap", "ImageCollate", "UnlabelledDataModule"]
