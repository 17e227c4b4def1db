"""SegmentationDataModule: what the skeleton and lesion data modules share.

Data flow (ARCHITECTURE.md): case folders / CSV -> :mod:`sap.data.cases` (discover) and
:mod:`sap.data.validation` -> the patch store (:mod:`sap.data.store`: each case preprocessed
once, on disk) -> patches planned by the subclass's sampler, ordered, balanced over ranks and
shuffled by a :class:`~sap.data.patch_queue.PatchQueue`, read and augmented in loader
workers -> batches ``{"image", "label", "case_id"}``. Without the store
(``patch_store=False``) every epoch loads and preprocesses whole volumes with the
:mod:`sap.data.preprocess` transforms instead. Validation and test serve whole preprocessed
volumes (batch size 1, plus ``"affine"``) for sliding-window inference.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import lightning as L
import torchio as tio
from torch.utils.data import DataLoader, Dataset

from sap.data.cases import Case, CaseLayout, case_to_subject, discover_cases, missing_label_problems
from sap.data.collate import SubjectCollate
from sap.data.datasets import CachedSubjectsDataset
from sap.data.patch_queue import PatchQueue
from sap.data.preprocess import augmentation, preprocessing
from sap.data.problems import CaseProblem, CaseValidationError
from sap.data.splits import split_cases
from sap.data.store import (
    CaseView,
    StoreCases,
    StoreEntry,
    StorePatches,
    StorePatchQueue,
    StoreRecipe,
    StoreVolumes,
    open_store,
    planner_for,
    resolve_cache_dir,
)
from sap.data.transforms import PadToMinimumShape, per_axis
from sap.data.validation import validate_cases
from sap.volume import DEFAULT_CONNECTIVITY


class SegmentationDataModule(L.LightningDataModule):
    """What the skeleton and lesion data modules share: cases, split, transforms, loaders.

    Finds and checks the cases of ``data_dir`` that have the label map ``label_name``,
    splits them by case, serves training patches through a
    :class:`~sap.data.patch_queue.PatchQueue` and whole preprocessed volumes for validation
    and test. A subclass sets ``label_name``, ``label_names`` and ``sampler`` and says how
    many patches each training case yields per epoch (:meth:`_count_patches`).

    Args:
        data_dir: folder of case folders, one case folder, or a CSV manifest.
        channels: input channels, stacked in this order into ``batch["image"]``.
        patch_size: patch size in voxels (one number or three; paper: 96).
        batch_size: patches per training batch (paper: 2).
        val_fraction: share of cases held out for validation (split by case).
        val_cases: explicit validation case ids (overrides ``val_fraction``).
        test_dir: cases for ``test``; without it, ``test`` uses the validation cases.
        seed: seed of the split and of the per-epoch subject order.
        spacing_mm: resample to this voxel spacing in mm (``None``: keep T1's).
        num_workers: processes loading and augmenting whole volumes.
        queue_length: patches buffered and shuffled together (memory bound).
        augment: apply the paper's augmentation to training cases.
        skip_cases_without_label: leave out cases that lack the label map (e.g. the
            healthy cases of a phantom cohort) instead of refusing the data set.
        flip_p: see :func:`sap.data.preprocess.augmentation`.
        rot90_p: see :func:`sap.data.preprocess.augmentation`.
        intensity_p: see :func:`sap.data.preprocess.augmentation`.
        intensity_range: see :func:`sap.data.preprocess.augmentation`.
        bias_field_p: see :func:`sap.data.preprocess.augmentation`.
        noise_p: see :func:`sap.data.preprocess.augmentation`.
        validate_inputs: check every file (readable, finite, label values, grids) first.
        cache_subjects: keep each preprocessed training volume in memory after its first
            epoch, so later epochs only augment and sample (like MONAI's CacheDataset),
            instead of using the patch store. Worth it when the cohort fits in RAM; needs
            ``num_workers=0`` (each worker would hold its own copy for one epoch only).
        patch_store: train and validate from the on-disk patch store (:mod:`sap.data.store`):
            every case is preprocessed once, and a patch reads only its own bytes;
            augmentation is applied to each patch. ``False`` preprocesses whole volumes
            every epoch and augments them before sampling.
        cache_dir: folder of the patch store; default ``$SAP_CACHE_DIR``, else
            ``.sap-cache/<data folder name>`` beside the data folder
            (:func:`sap.data.store.resolve_cache_dir`).
    """

    #: name of the label map the subclass trains on, and its class names.
    label_name: str
    label_names: list[str]
    #: draws the training patches of one subject.
    sampler: tio.data.PatchSampler

    def __init__(
        self,
        data_dir: str,
        channels: Sequence[str],
        patch_size: int | Sequence[int],
        batch_size: int,
        val_fraction: float,
        val_cases: Sequence[str] | None,
        test_dir: str | None,
        seed: int,
        spacing_mm: float | Sequence[float] | None,
        num_workers: int,
        queue_length: int,
        augment: bool,
        skip_cases_without_label: bool,
        flip_p: float,
        rot90_p: float,
        intensity_p: float,
        intensity_range: float,
        bias_field_p: float,
        noise_p: float,
        validate_inputs: bool,
        cache_subjects: bool = False,
        patch_store: bool = True,
        cache_dir: str | None = None,
    ) -> None:
        super().__init__()
        self.data_dir = str(data_dir)
        self.channels = list(channels)
        self.patch_size = tuple(int(n) for n in per_axis(patch_size, "patch_size"))
        if min(self.patch_size) < 1:
            raise ValueError(f"patch_size must be positive voxel counts, got {patch_size}.")
        for name, value, minimum in (
            ("batch_size", batch_size, 1),
            ("num_workers", num_workers, 0),
            ("queue_length", queue_length, 1),
        ):
            if int(value) < minimum:
                raise ValueError(f"{name} must be >= {minimum}, got {value}.")
        self.batch_size = int(batch_size)
        self.val_fraction = float(val_fraction)
        self.val_cases = None if val_cases is None else [str(c) for c in val_cases]
        self.test_dir = None if test_dir is None else str(test_dir)
        self.seed = int(seed)
        self.spacing_mm = (
            spacing_mm
            if spacing_mm is None or isinstance(spacing_mm, int | float)
            else list(spacing_mm)
        )
        self.num_workers = int(num_workers)
        self.queue_length = int(queue_length)
        self.augment = augment
        self.skip_cases_without_label = bool(skip_cases_without_label)
        self.augmentation_kwargs = {
            "flip_p": flip_p,
            "rot90_p": rot90_p,
            "intensity_p": intensity_p,
            "intensity_range": intensity_range,
            "bias_field_p": bias_field_p,
            "noise_p": noise_p,
        }
        self.validate_inputs = validate_inputs
        self.cache_subjects = bool(cache_subjects)
        if self.cache_subjects and self.num_workers > 0:
            raise ValueError(
                "cache_subjects=True needs num_workers=0: each loader worker would keep its "
                "own cache for one epoch only. Use one or the other."
            )
        self.patch_store = bool(patch_store) and not self.cache_subjects
        self.cache_dir = None if cache_dir is None else str(cache_dir)
        if (
            self.patch_store
            and augment
            and rot90_p > 0
            and self.patch_size[0] != self.patch_size[1]
        ):
            raise ValueError(
                f"patch_size {self.patch_size} is not square in the axial plane and rot90_p="
                f"{rot90_p}: the patch store augments patches, and a quarter turn would change "
                f"their shape. Use equal first two sizes, rot90_p=0, or patch_store=False."
            )
        self.layout = CaseLayout(channels=tuple(self.channels))
        self._discovered: dict[str, list[Case]] = {}
        self._entries: dict[Case, StoreEntry] = {}
        self.train_cases: list[Case] | None = None
        self.validation_cases: list[Case] | None = None
        self.test_cases: list[Case] | None = None
        self.patch_counts: list[int] | None = None

    # ---- cases ------------------------------------------------------------------------

    def _discover(self, source: str) -> list[Case]:
        if source not in self._discovered:
            self._discovered[source] = self._find_cases(source)
        return self._discovered[source]

    def _find_cases(self, source: str) -> list[Case]:
        cases = discover_cases(source, self.layout)
        if not self.skip_cases_without_label:
            problems = missing_label_problems(
                cases,
                self.label_name,
                Path(source),
                self.layout,
                "add it, or set skip_cases_without_label=True to train on the cases that "
                "have one (e.g. leave out the healthy cases of a mixed cohort)",
            )
            if problems:
                raise CaseValidationError(problems, context=f"in {source}")
        cases = [c for c in cases if c.labels.get(self.label_name) is not None]
        if not cases:
            raise CaseValidationError(
                [CaseProblem(None, Path(source), f"no case has a {self.label_name} label map")],
                context=f"in {source}",
            )
        if self.validate_inputs:
            validate_cases(cases, {self.label_name: self.label_names})
        return cases

    def prepare_data(self) -> None:
        """Build the patch store of the training and validation cases (Lightning calls this
        once per node before :meth:`setup`, so DDP ranks do not build it twice)."""
        if self.patch_store:
            self._store_entries(self._discover(self.data_dir), self.data_dir)
        if self.patch_store and self.test_dir:
            self._store_entries(self._discover(self.test_dir), self.test_dir)

    def setup(self, stage: str | None = None) -> None:
        """Find, validate and split the cases (once); count training patches for ``fit``."""
        if self.train_cases is None:
            cases = self._discover(self.data_dir)
            train_ids, val_ids = split_cases(
                [c.case_id for c in cases], self.val_fraction, self.val_cases, self.seed
            )
            by_id = {c.case_id: c for c in cases}
            self.train_cases = [by_id[i] for i in train_ids]
            self.validation_cases = [by_id[i] for i in val_ids]
        if stage in (None, "test") and self.test_cases is None:
            self.test_cases = (
                self._discover(self.test_dir) if self.test_dir else self.validation_cases
            )
        if stage in (None, "fit") and self.patch_counts is None:
            self.patch_counts = self._count_patches(self.train_cases)
            if sum(self.patch_counts) == 0:
                raise ValueError(self._no_patches_message())

    def _subjects(self, cases: Sequence[Case]) -> list[tio.Subject]:
        subjects = []
        for case in cases:
            subject = case_to_subject(case)
            for name in list(case.labels):
                if name != self.label_name:
                    subject.remove_image(name)  # not needed: do not load it
            subjects.append(subject)
        return subjects

    def _count_patches(self, cases: list[Case]) -> list[int]:
        """Patches each training case yields per epoch (what a subclass decides)."""
        raise NotImplementedError

    # ---- patch store ------------------------------------------------------------------

    def store_recipe(self) -> StoreRecipe:
        """What the store keeps for this data module: channels, its label map, spacing."""
        connectivity = getattr(self.sampler, "connectivity", DEFAULT_CONNECTIVITY)
        return StoreRecipe(
            tuple(self.channels), (self.label_name,), self.spacing_mm, connectivity=connectivity
        )

    def _store_entries(self, cases: Sequence[Case], source: str) -> list[StoreEntry]:
        """The store entries of ``cases`` (of data set ``source``), built where missing."""
        missing = [case for case in cases if case not in self._entries]
        if missing:
            folder = resolve_cache_dir(self.cache_dir, source)
            entries = open_store(missing, self.store_recipe(), folder, self.num_workers)
            self._entries.update(zip(missing, entries))
        return [self._entries[case] for case in cases]

    def _store_views(self, cases: Sequence[Case], source: str) -> list[CaseView]:
        entries = self._store_entries(cases, source)
        return [CaseView(e, self.label_name, self.patch_size, i) for i, e in enumerate(entries)]

    def _no_patches_message(self) -> str:
        return f"the training cases in {self.data_dir} yield no patches."

    # ---- transforms -------------------------------------------------------------------

    def _preprocessing(self) -> tio.Transform:
        return preprocessing(self.channels, spacing_mm=self.spacing_mm)

    def train_transform(self) -> tio.Transform:
        """Preprocessing, augmentation (if ``augment``), then padding to the patch size."""
        return tio.Compose([self._preprocessing(), self._train_tail_transform()])

    def _train_tail_transform(self) -> tio.Transform:
        """What follows preprocessing in training: the random part, redone every epoch."""
        parts: list[tio.Transform] = []
        if self.augment:
            parts.append(augmentation(**self.augmentation_kwargs))
        # After augmentation: a rotation can swap axes, and a patch must fit either way.
        parts.append(PadToMinimumShape(self.patch_size))
        return tio.Compose(parts)

    def eval_transform(self) -> tio.Transform:
        """Preprocessing, then padding so at least one sliding window fits."""
        return tio.Compose([self._preprocessing(), PadToMinimumShape(self.patch_size)])

    # ---- loaders ----------------------------------------------------------------------

    def _trainer_epoch(self) -> int | None:
        return None if self.trainer is None else int(self.trainer.current_epoch)

    def make_train_queue(
        self, num_replicas: int | None = None, rank: int | None = None
    ) -> PatchQueue | StorePatchQueue:
        """The training patch queue; ``num_replicas``/``rank`` default to torch.distributed's.

        Iterating it yields this rank's patches of one epoch (TorchIO subjects). Passing
        ``num_replicas``/``rank`` explicitly shows what one rank of a DDP run would draw.
        """
        if self.train_cases is None or self.patch_counts is None:
            self.setup("fit")
        assert self.train_cases is not None and self.patch_counts is not None
        if self.patch_store:
            return self._store_queue(num_replicas, rank)
        subjects = self._subjects(self.train_cases)
        if self.cache_subjects:
            dataset: Dataset = CachedSubjectsDataset(
                subjects, self._preprocessing(), self._train_tail_transform()
            )
        else:
            dataset = tio.SubjectsDataset(subjects, transform=self.train_transform())
        return PatchQueue(
            dataset,
            self.sampler,
            self.patch_counts,
            max_length=self.queue_length,
            num_workers=self.num_workers,
            num_replicas=num_replicas,
            rank=rank,
            seed=self.seed,
            epoch_fn=self._trainer_epoch,
        )

    def _store_queue(self, num_replicas: int | None, rank: int | None) -> StorePatchQueue:
        assert self.train_cases is not None and self.patch_counts is not None
        views = self._store_views(self.train_cases, self.data_dir)
        plans = PatchQueue(
            StoreCases(views),
            planner_for(self.sampler),
            self.patch_counts,
            max_length=self.queue_length,
            num_workers=0,  # plans are cheap: loader workers read the patches instead
            num_replicas=num_replicas,
            rank=rank,
            seed=self.seed,
            epoch_fn=self._trainer_epoch,
        )
        # Patches are fresh objects: augment them in place (no copy per transform).
        transform = augmentation(**self.augmentation_kwargs, copy=False) if self.augment else None
        return StorePatchQueue(plans, StorePatches(views, self.patch_size, len(plans), transform))

    def train_dataloader(self) -> DataLoader:
        """Patch batches; ``len()`` = ceil(patches per epoch on this rank / batch_size)."""
        queue = self.make_train_queue()
        collate = SubjectCollate(self.channels, self.label_name)
        if isinstance(queue, StorePatchQueue):
            return DataLoader(
                queue.patches,
                batch_size=self.batch_size,
                sampler=queue.sampler(),
                num_workers=self.num_workers,
                collate_fn=collate,
                persistent_workers=self.num_workers > 0,  # no worker start-up per epoch
            )
        return DataLoader(
            queue,
            batch_size=self.batch_size,
            num_workers=0,  # the queue's own workers load subjects
            collate_fn=collate,
        )

    def _volume_loader(self, cases: Sequence[Case] | None, source: str) -> DataLoader:
        # TorchIO refuses an empty dataset; an empty list gives Lightning an empty loader
        # (no validation without validation cases).
        dataset: Dataset | list = []
        if cases and self.patch_store:
            dataset = StoreVolumes(self._store_views(cases, source))
        elif cases:
            dataset = tio.SubjectsDataset(self._subjects(cases), transform=self.eval_transform())
        return DataLoader(
            dataset,
            batch_size=1,
            shuffle=False,
            num_workers=self.num_workers,
            collate_fn=SubjectCollate(self.channels, self.label_name, with_affine=True),
        )

    def val_dataloader(self) -> DataLoader:
        """Whole preprocessed validation volumes, batch size 1, with ``"affine"``."""
        if self.validation_cases is None:
            self.setup("validate")
        return self._volume_loader(self.validation_cases, self.data_dir)

    def test_dataloader(self) -> DataLoader:
        """Whole volumes of ``test_dir`` (or, without it, of the validation cases)."""
        if self.test_cases is None:
            self.setup("test")
        return self._volume_loader(self.test_cases, self.test_dir or self.data_dir)


__all__ = ["SegmentationDataModule"]
