"""The two LightningDataModules of SAP: skeleton pretraining and lesion fine-tuning.

Both are :class:`~sap.data.base.SegmentationDataModule` subclasses that choose a label map
and a patch sampler, and count the patches each training case yields per epoch.
"""

from __future__ import annotations

from collections.abc import Sequence

from sap.data.base import SegmentationDataModule
from sap.data.cases import Case
from sap.data.datasets import count_subject_lesions
from sap.data.samplers import InstanceBalancedSampler, skeleton_sampler
from sap.labels import CHANNELS, LESION_LABELS, SKELETON_LABELS


class SkeletonDataModule(SegmentationDataModule):
    """Patches of healthy whole-body scans for skeleton (anatomy) pretraining.

    Cases need a ``skeleton`` label map (10 classes, :data:`sap.labels.SKELETON_LABELS`).
    Each epoch draws ``samples_per_volume`` patches from every training case with
    :func:`sap.data.samplers.skeleton_sampler` (class-balanced patch centres). The other
    arguments are those of :class:`SegmentationDataModule`.

    Args:
        samples_per_volume: patches per training case per epoch.
        background_probability: share of patches centred on background (rest: bone,
            classes equally likely).
    """

    label_name = "skeleton"
    label_names = list(SKELETON_LABELS)

    def __init__(
        self,
        data_dir: str,
        channels: Sequence[str] = CHANNELS,
        patch_size: int | Sequence[int] = 96,
        batch_size: int = 2,
        samples_per_volume: int = 8,
        background_probability: float = 0.5,
        val_fraction: float = 0.125,
        val_cases: Sequence[str] | None = None,
        test_dir: str | None = None,
        seed: int = 0,
        spacing_mm: float | Sequence[float] | None = None,
        num_workers: int = 0,
        queue_length: int = 64,
        augment: bool = True,
        skip_cases_without_label: bool = False,
        flip_p: float = 0.5,
        rot90_p: float = 0.2,
        intensity_p: float = 0.1,
        intensity_range: float = 0.1,
        bias_field_p: float = 0.0,
        noise_p: float = 0.0,
        validate_inputs: bool = True,
        cache_subjects: bool = False,
        patch_store: bool = True,
        cache_dir: str | None = None,
    ) -> None:
        super().__init__(
            data_dir=data_dir,
            channels=channels,
            patch_size=patch_size,
            batch_size=batch_size,
            val_fraction=val_fraction,
            val_cases=val_cases,
            test_dir=test_dir,
            seed=seed,
            spacing_mm=spacing_mm,
            num_workers=num_workers,
            queue_length=queue_length,
            augment=augment,
            skip_cases_without_label=skip_cases_without_label,
            flip_p=flip_p,
            rot90_p=rot90_p,
            intensity_p=intensity_p,
            intensity_range=intensity_range,
            bias_field_p=bias_field_p,
            noise_p=noise_p,
            validate_inputs=validate_inputs,
            cache_subjects=cache_subjects,
            patch_store=patch_store,
            cache_dir=cache_dir,
        )
        if samples_per_volume < 1:
            raise ValueError(f"samples_per_volume must be >= 1, got {samples_per_volume}.")
        self.samples_per_volume = int(samples_per_volume)
        self.background_probability = float(background_probability)
        self.sampler = skeleton_sampler(
            self.patch_size, self.label_name, len(self.label_names), self.background_probability
        )
        self.save_hyperparameters()

    def _count_patches(self, cases: list[Case]) -> list[int]:
        return [self.samples_per_volume] * len(cases)


class LesionDataModule(SegmentationDataModule):
    """Instance-balanced patches of metastatic scans for lesion fine-tuning.

    Cases need a ``lesion`` label map (0 background, 1 lesion). Each epoch draws, per
    training case with ``k`` lesions, exactly ``k`` lesion patches and
    ``floor(negative_ratio * k + 0.5)`` lesion-free patches
    (:class:`sap.data.samplers.InstanceBalancedSampler`); the epoch length is their sum
    over the training cases (``patch_counts``, counted in :meth:`setup` from the patch
    store's lesion tables), exactly, on one device. Under DDP every rank draws the largest rank total; ranks below it add
    extra lesion-free patches
    (:class:`~sap.data.distributed.BalancedDistributedSampler`).

    Lesion-free cases yield ``negatives_per_lesion_free_case`` patches (0, as in the paper,
    by default): a cohort of lesion-free cases only has nothing to train on, and
    :meth:`setup` says so. Lesions are counted on the preprocessed label map; the
    augmentation's flips and rotations keep the count. The other arguments are those of
    :class:`SegmentationDataModule`.

    Args:
        negative_ratio: lesion-free patches per lesion (paper: 1).
        connectivity: 26, 18 or 6: voxel neighbourhood that makes one lesion.
        margin: voxels kept between a lesion and its patch border when the patch allows.
        negatives_per_lesion_free_case: patches drawn from a case without lesions.
    """

    label_name = "lesion"
    label_names = list(LESION_LABELS)

    def __init__(
        self,
        data_dir: str,
        channels: Sequence[str] = CHANNELS,
        patch_size: int | Sequence[int] = 96,
        batch_size: int = 2,
        negative_ratio: float = 1.0,
        connectivity: int = 26,
        margin: int = 0,
        negatives_per_lesion_free_case: int = 0,
        val_fraction: float = 0.125,
        val_cases: Sequence[str] | None = None,
        test_dir: str | None = None,
        seed: int = 0,
        spacing_mm: float | Sequence[float] | None = None,
        num_workers: int = 0,
        queue_length: int = 64,
        augment: bool = True,
        skip_cases_without_label: bool = False,
        flip_p: float = 0.5,
        rot90_p: float = 0.2,
        intensity_p: float = 0.1,
        intensity_range: float = 0.1,
        bias_field_p: float = 0.0,
        noise_p: float = 0.0,
        validate_inputs: bool = True,
        cache_subjects: bool = False,
        patch_store: bool = True,
        cache_dir: str | None = None,
    ) -> None:
        super().__init__(
            data_dir=data_dir,
            channels=channels,
            patch_size=patch_size,
            batch_size=batch_size,
            val_fraction=val_fraction,
            val_cases=val_cases,
            test_dir=test_dir,
            seed=seed,
            spacing_mm=spacing_mm,
            num_workers=num_workers,
            queue_length=queue_length,
            augment=augment,
            skip_cases_without_label=skip_cases_without_label,
            flip_p=flip_p,
            rot90_p=rot90_p,
            intensity_p=intensity_p,
            intensity_range=intensity_range,
            bias_field_p=bias_field_p,
            noise_p=noise_p,
            validate_inputs=validate_inputs,
            cache_subjects=cache_subjects,
            patch_store=patch_store,
            cache_dir=cache_dir,
        )
        self.sampler = InstanceBalancedSampler(
            self.patch_size,
            label_name=self.label_name,
            negative_ratio=negative_ratio,
            connectivity=connectivity,
            margin=margin,
            negatives_per_lesion_free_case=negatives_per_lesion_free_case,
        )
        self.lesion_counts: dict[str, int] | None = None
        self.save_hyperparameters()

    def _count_patches(self, cases: list[Case]) -> list[int]:
        if self.patch_store:
            entries = self._store_entries(cases, self.data_dir)
            counts = [len(entry.lesions(self.label_name)) for entry in entries]
        else:
            # Reorientation and nearest-neighbour resampling onto the T1 grid (on which the
            # label already lies) cannot change connected components: then read the file only.
            transform = None if self.spacing_mm is None else self._preprocessing()
            counts = count_subject_lesions(
                self._subjects(cases),
                transform,
                self.sampler.connectivity,
                self.num_workers,
                self.label_name,
            )
        self.lesion_counts = {case.case_id: n for case, n in zip(cases, counts)}
        return [self.sampler.num_patches(n) for n in counts]

    def _no_patches_message(self) -> str:
        n = len(self.train_cases or [])
        return (
            f"none of the {n} training cases in {self.data_dir} has a lesion, and lesion-free "
            f"cases yield negatives_per_lesion_free_case={self.sampler.negatives_per_lesion_free_case} "
            f"patches: there is nothing to train on. Add cases with lesions, or set "
            f"negatives_per_lesion_free_case > 0."
        )


__all__ = ["LesionDataModule", "SegmentationDataModule", "SkeletonDataModule"]
