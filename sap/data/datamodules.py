"""LightningDataModules for skeleton pretraining and lesion fine-tuning.

Data flow (ARCHITECTURE.md): case folders / CSV -> :mod:`sap.data.cases` (discover, validate)
-> :class:`torchio.SubjectsDataset` with :mod:`sap.data.preprocess` transforms -> patches
from a :mod:`sap.data.samplers` sampler, buffered and shuffled by :class:`PatchQueue` ->
batches ``{"image", "label", "case_id"}``. Validation and test serve whole preprocessed
volumes (batch size 1, plus ``"affine"``) for sliding-window inference.

Why :class:`PatchQueue` and not :class:`torchio.Queue` (TorchIO 1.2). The Queue reads a
per-subject ``num_samples`` attribute, so a varying count per subject is possible, but

1. when the queue fills up in the middle of a subject, it calls the sampler *again* for the
   rest of that subject's patches. For an i.i.d. sampler (uniform, label) that is harmless;
   for the instance-balanced sampler, which enumerates lesions, the second call starts over:
   the first lesions are drawn twice and the last ones never, so "one patch per lesion" is
   lost. :class:`PatchQueue` keeps one sampler generator per subject until it is exhausted.
2. the Queue is a map-style dataset; under DDP Lightning wraps the patch loader in its own
   ``DistributedSampler`` (unless the Trainer gets ``use_distributed_sampler=False``), so
   every rank pops only half of its queue per "epoch". :class:`PatchQueue` is an
   ``IterableDataset``: Lightning leaves it alone, one iteration is one epoch.
3. with patch counts that vary per case, ranks holding different cases would run different
   numbers of steps and DDP would hang at the end of the epoch.
   :class:`BalancedDistributedSampler` splits cases across ranks so their patch counts are
   as equal as possible and tops the others up with extra patches (lesion-free ones, for
   the instance-balanced sampler).

Memory stays bounded as in the Queue: at most ``queue_length`` patches plus the subjects
being loaded (``num_workers`` processes load and augment whole volumes in the background).
"""

from __future__ import annotations

import copy
import difflib
import warnings
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import lightning as L
import numpy as np
import torch
import torch.distributed as dist
import torchio as tio
from torch.utils.data import DataLoader, Dataset, IterableDataset
from torch.utils.data.distributed import DistributedSampler
from torchio.transforms import SpatialTransform

from sap.data.cases import (
    Case,
    CaseLayout,
    CaseProblem,
    CaseValidationError,
    case_to_subject,
    discover_cases,
    validate_cases,
)
from sap.data.preprocess import augmentation, preprocessing, stack_channels
from sap.data.samplers import InstanceBalancedSampler, count_lesions, skeleton_sampler
from sap.labels import CHANNELS, LESION_LABELS, SKELETON_LABELS

# --------------------------------------------------------------------------------------
# Building blocks
# --------------------------------------------------------------------------------------


class PadToMinimumShape(SpatialTransform):
    """Pad (never crop) so every spatial size is at least ``min_shape`` voxels.

    Patches must fit in the volume, and a sliding window needs a volume at least one
    window large. Padding is split evenly between both sides, with zeros (background
    after normalisation, and label 0).

    Args:
        min_shape: minimum size in voxels along each axis, or one number for all.
        **kwargs: see :class:`torchio.transforms.Transform`.
    """

    def __init__(self, min_shape: int | Sequence[int], **kwargs) -> None:
        super().__init__(**kwargs)
        self.min_shape = tuple(int(n) for n in _triple(min_shape, "min_shape"))
        self.args_names = ["min_shape"]

    def apply_transform(self, subject: tio.Subject) -> tio.Subject:
        shape = np.asarray(subject.spatial_shape)
        target = np.maximum(shape, self.min_shape)
        if np.array_equal(target, shape):
            return subject
        pad = tio.CropOrPad(tuple(int(n) for n in target), padding_mode=0, **self._get_base_args())
        return pad(subject)


def _triple(value: int | float | Sequence, name: str) -> tuple:
    values = (value,) * 3 if isinstance(value, int | float) else tuple(value)
    if len(values) == 1:
        values = values * 3
    if len(values) != 3:
        raise ValueError(f"{name} must be one number or three (one per axis), got {value!r}.")
    return values


class SubjectCollate:
    """Collate TorchIO subjects (patches or whole volumes) into the batches tasks expect.

    Returns ``{"image": float32 [B, C, X, Y, Z], "label": int64 [B, X, Y, Z],
    "case_id": list[str]}``, plus ``"affine": float64 [B, 4, 4]`` (voxel to RAS+ mm of the
    first channel) with ``with_affine``. A class, not a closure, so it pickles into
    data-loader workers.

    Args:
        channels: channel names, stacked in this order.
        label_name: the label map that becomes ``"label"``.
        with_affine: also return each subject's affine.
    """

    def __init__(self, channels: Sequence[str], label_name: str, with_affine: bool = False) -> None:
        self.channels = list(channels)
        self.label_name = label_name
        self.with_affine = with_affine

    def __call__(self, subjects: Sequence[tio.Subject]) -> dict:
        batch = {
            "image": torch.stack([stack_channels(s, self.channels) for s in subjects]),
            "label": torch.stack([s[self.label_name].data[0].long() for s in subjects]),
            "case_id": [str(s["case_id"]) for s in subjects],
        }
        if self.with_affine:
            affines = [np.asarray(s[self.channels[0]].affine, dtype=np.float64) for s in subjects]
            batch["affine"] = torch.from_numpy(np.stack(affines))
        return batch


def balanced_partition(patch_counts: Sequence[int], num_replicas: int) -> list[list[int]]:
    """Split subject indices over ranks so that the ranks' patch totals are nearly equal.

    Greedy longest-processing-time: subjects by decreasing count go to the rank with the
    smallest total so far (ties: fewer subjects, then lower rank). Deterministic, so every
    rank computes the same split. Subjects with no patches are left out.

    Examples:
        >>> balanced_partition([8, 2, 2, 4, 0], 2)
        [[0], [1, 2, 3]]
    """
    order = sorted(
        (i for i, c in enumerate(patch_counts) if c > 0), key=lambda i: (-patch_counts[i], i)
    )
    totals = [0] * num_replicas
    parts: list[list[int]] = [[] for _ in range(num_replicas)]
    for index in order:
        rank = min(range(num_replicas), key=lambda r: (totals[r], len(parts[r]), r))
        parts[rank].append(index)
        totals[rank] += patch_counts[index]
    return [sorted(part) for part in parts]


class BalancedDistributedSampler(DistributedSampler):
    """The subjects of one rank, with every rank drawing the same number of patches per epoch.

    A :class:`~torch.utils.data.distributed.DistributedSampler` (``set_epoch`` reshuffles)
    that differs in one way: the split of subjects over ranks is fixed by
    :func:`balanced_partition` on per-subject patch counts instead of being re-dealt every
    epoch. Re-dealing would change each rank's patch total, hence the epoch length, from
    epoch to epoch; fixed balanced parts keep ``len(loader)`` constant (Lightning computes
    it once) and the top-up small. Ranks see disjoint subjects that together cover all
    subjects with a non-zero count; only the order within a rank changes per epoch.

    Args:
        dataset: the subjects dataset (only its length is used).
        patch_counts: patches each subject yields per epoch.
        num_replicas: number of ranks.
        rank: this rank, ``0 <= rank < num_replicas``.
        shuffle: shuffle this rank's subjects every epoch (seeded by ``seed + epoch``).
        seed: shuffling seed, the same on every rank.

    Attributes:
        patches_per_rank: patches every rank yields per epoch (the largest rank total).
        extra_patches: ``{subject index: extra patches}`` that bring this rank up to
            ``patches_per_rank`` (spread over its subjects).
    """

    def __init__(
        self,
        dataset: Dataset,
        patch_counts: Sequence[int],
        num_replicas: int,
        rank: int,
        shuffle: bool = True,
        seed: int = 0,
    ) -> None:
        super().__init__(
            dataset,
            num_replicas=num_replicas,
            rank=rank,
            shuffle=shuffle,
            seed=seed,
            drop_last=False,
        )
        counts = [int(c) for c in patch_counts]
        if len(counts) != len(dataset):  # type: ignore[arg-type]
            raise ValueError(
                f"patch_counts has {len(counts)} entries for {len(dataset)} subjects."  # type: ignore[arg-type]
            )
        if any(c < 0 for c in counts):
            raise ValueError(f"patch counts must be >= 0, got {counts}.")
        self.patch_counts = counts
        self.partition = balanced_partition(counts, num_replicas)
        empty = [r for r, part in enumerate(self.partition) if not part]
        if empty:
            with_patches = sum(c > 0 for c in counts)
            raise ValueError(
                f"{with_patches} training case(s) yield patches but training runs on "
                f"{num_replicas} ranks: rank(s) {empty} would get no case. Use fewer devices "
                f"or more training cases."
            )
        totals = [sum(counts[i] for i in part) for part in self.partition]
        self.patches_per_rank = max(totals)
        own = self.partition[rank]
        deficit = self.patches_per_rank - totals[rank]
        share, rest = divmod(deficit, len(own))
        self.extra_patches = {index: share + (j < rest) for j, index in enumerate(own)}

    def __iter__(self) -> Iterator[int]:
        own = self.partition[self.rank]
        if not self.shuffle:
            return iter(own)
        generator = torch.Generator()
        generator.manual_seed(self.seed + self.epoch)
        return iter([own[i] for i in torch.randperm(len(own), generator=generator).tolist()])

    def __len__(self) -> int:
        return len(self.partition[self.rank])


def _first_item(batch: list):
    return batch[0]


def distributed_context(
    num_replicas: int | None = None, rank: int | None = None
) -> tuple[int, int]:
    """``(num_replicas, rank)``: given values, else torch.distributed's, else ``(1, 0)``."""
    if num_replicas is None or rank is None:
        initialised = dist.is_available() and dist.is_initialized()
        if num_replicas is None:
            num_replicas = dist.get_world_size() if initialised else 1
        if rank is None:
            rank = dist.get_rank() if initialised else 0
    if num_replicas < 1 or not 0 <= rank < num_replicas:
        raise ValueError(
            f"need num_replicas >= 1 and 0 <= rank < num_replicas, got {num_replicas=}, {rank=}."
        )
    return int(num_replicas), int(rank)


class CachedSubjectsDataset(Dataset):
    """Subjects preprocessed once, kept in memory, then randomly transformed on every access.

    Preprocessing (reorientation, resampling, percentile normalisation) is deterministic and
    the costly part of loading a volume; augmentation is random and cheap. Caching the
    first halves the work of every epoch after the first when the cohort fits in memory.

    Args:
        subjects: lazily loaded subjects (e.g. from :func:`sap.data.cases.case_to_subject`).
        preprocess: deterministic transform applied once per subject.
        transform: random transform applied to a copy at every access.
    """

    def __init__(
        self, subjects: Sequence[tio.Subject], preprocess: tio.Transform, transform: tio.Transform
    ) -> None:
        self._subjects = list(subjects)
        self._preprocess = preprocess
        self._transform = transform
        self._cache: dict[int, tio.Subject] = {}

    def __len__(self) -> int:
        return len(self._subjects)

    def __getitem__(self, index: int) -> tio.Subject:
        if index not in self._cache:
            subject = self._preprocess(copy.deepcopy(self._subjects[index]))
            subject.load()
            self._cache[index] = subject
        return self._transform(copy.deepcopy(self._cache[index]))


class PatchQueue(IterableDataset):
    """TorchIO's patch queue as an iterable dataset: one iteration is one epoch.

    Per epoch: this rank's subjects (from :class:`BalancedDistributedSampler`, shuffled) are
    loaded and transformed by ``num_workers`` background processes, as in
    :class:`torchio.Queue`; subject ``i`` yields exactly ``patch_counts[i]`` patches (plus
    this rank's top-up share under DDP), each drawn from one sampler generator that is
    never restarted; patches wait in a buffer of ``max_length`` that is shuffled when full,
    so batches mix subjects. ``len()`` is the number of patches per epoch, the same on every
    rank.

    Iterate it with a ``DataLoader(num_workers=0)``: the workers live inside the queue.

    Args:
        subjects_dataset: whole subjects with their (training) transform.
        sampler: a TorchIO patch sampler; called as ``sampler(subject, num_patches=n)``.
        patch_counts: patches per subject per epoch, in dataset order.
        max_length: patches buffered before shuffling (memory bound, like the Queue's).
        num_workers: processes that load and transform subjects.
        shuffle_patches: shuffle the buffer before emptying it.
        num_replicas: ranks; default from ``torch.distributed`` when initialised, else 1.
        rank: this rank; default from ``torch.distributed`` when initialised, else 0.
        seed: seed of the subject order (``seed + epoch``), shared by all ranks.
        epoch_fn: returns the current epoch (e.g. the Trainer's) or ``None``. Without it,
            or when it returns ``None``, the queue counts its own iterations; use
            :meth:`set_epoch` to set the next epoch explicitly.
    """

    def __init__(
        self,
        subjects_dataset: tio.SubjectsDataset,
        sampler: tio.data.PatchSampler,
        patch_counts: Sequence[int],
        max_length: int = 64,
        num_workers: int = 0,
        shuffle_patches: bool = True,
        num_replicas: int | None = None,
        rank: int | None = None,
        seed: int = 0,
        epoch_fn: Callable[[], int | None] | None = None,
    ) -> None:
        if max_length < 1:
            raise ValueError(f"max_length (queue length) must be >= 1, got {max_length}.")
        num_replicas, rank = distributed_context(num_replicas, rank)
        self.subjects_dataset = subjects_dataset
        self.sampler = sampler
        self.patch_counts = [int(c) for c in patch_counts]
        self.max_length = int(max_length)
        self.num_workers = int(num_workers)
        self.shuffle_patches = shuffle_patches
        self.subject_sampler = BalancedDistributedSampler(
            subjects_dataset, self.patch_counts, num_replicas, rank, shuffle=True, seed=seed
        )
        self.epoch_fn = epoch_fn
        self._next_epoch = 0
        self._warned: set[str] = set()

    def set_epoch(self, epoch: int) -> None:
        """Use ``epoch`` for the next iteration (subject order depends on it)."""
        self._next_epoch = int(epoch)

    def __len__(self) -> int:
        return self.subject_sampler.patches_per_rank

    def _current_epoch(self) -> int:
        epoch = self.epoch_fn() if self.epoch_fn is not None else None
        epoch = self._next_epoch if epoch is None else int(epoch)
        self._next_epoch = epoch + 1
        return epoch

    def __iter__(self) -> Iterator[tio.Subject]:
        self.subject_sampler.set_epoch(self._current_epoch())
        indices = list(self.subject_sampler)
        loader = DataLoader(
            self.subjects_dataset,
            batch_size=1,
            sampler=indices,
            num_workers=self.num_workers,
            collate_fn=_first_item,
        )
        buffer: list[tio.Subject] = []
        for index, subject in zip(indices, loader):
            expected = self.patch_counts[index]
            self._check_count(subject, expected)
            total = expected + self.subject_sampler.extra_patches.get(index, 0)
            for patch in self.sampler(subject, num_patches=total):
                buffer.append(patch)
                if len(buffer) >= self.max_length:
                    yield from self._drain(buffer)
        yield from self._drain(buffer)

    def _drain(self, buffer: list[tio.Subject]) -> Iterator[tio.Subject]:
        if self.shuffle_patches:
            buffer[:] = [buffer[i] for i in torch.randperm(len(buffer)).tolist()]
        buffer.reverse()
        while buffer:
            yield buffer.pop()

    def _check_count(self, subject: tio.Subject, expected: int) -> None:
        """Warn (once per case) if the transformed subject does not give the counted patches."""
        count_for = getattr(self.sampler, "num_patches_for", None)
        if count_for is None:
            return
        actual = count_for(subject)
        case_id = str(subject.get("case_id", "?"))
        if actual != expected and case_id not in self._warned:
            self._warned.add(case_id)
            warnings.warn(
                f"case '{case_id}': its lesion map gives {actual} patches after the training "
                f"transforms, but {expected} were counted on the preprocessed map; drawing "
                f"{expected} (a transform that merges or splits lesions causes this).",
                RuntimeWarning,
                stacklevel=2,
            )


def split_cases(
    case_ids: Sequence[str],
    val_fraction: float = 0.125,
    val_cases: Sequence[str] | None = None,
    seed: int = 0,
) -> tuple[list[str], list[str]]:
    """Split case ids into training and validation, by case, reproducibly.

    Args:
        case_ids: all case ids (order does not matter: they are sorted first).
        val_fraction: share of cases for validation when ``val_cases`` is not given,
            rounded to the nearest count; at least one case when > 0, never all.
        val_cases: explicit validation case ids (then ``val_fraction`` is ignored).
        seed: seed of the random split.

    Returns:
        ``(train_ids, val_ids)``, each sorted.

    Examples:
        >>> split_cases(["a", "b", "c", "d"], val_cases=["c"])
        (['a', 'b', 'd'], ['c'])
    """
    ids = sorted(str(c) for c in case_ids)
    if len(set(ids)) != len(ids):
        raise ValueError("case ids must be unique.")
    if val_cases is not None:
        wanted = [str(c) for c in val_cases]
        unknown = [c for c in wanted if c not in ids]
        if unknown:
            hints = {c: difflib.get_close_matches(c, ids, n=3) for c in unknown}
            raise ValueError(
                f"val_cases {unknown} are not among the {len(ids)} cases found "
                f"(closest ids: {hints}); give ids of existing case folders / manifest rows."
            )
        val = sorted(set(wanted))
    else:
        if not 0.0 <= val_fraction < 1.0:
            raise ValueError(f"val_fraction must lie in [0, 1), got {val_fraction}.")
        num_val = int(round(val_fraction * len(ids)))
        if val_fraction > 0:
            num_val = max(num_val, 1)
        num_val = min(num_val, len(ids) - 1)
        order = np.random.default_rng(seed).permutation(len(ids))
        val = sorted(ids[i] for i in order[:num_val])
    train = [c for c in ids if c not in set(val)]
    if not train:
        raise ValueError(
            f"no training case left: all {len(ids)} cases are validation cases; lower "
            f"val_fraction or shorten val_cases."
        )
    return train, val


class _LesionCount(Dataset):
    """Lesions per case, counted on what training sees before augmentation (for workers)."""

    def __init__(
        self, subjects: Sequence[tio.Subject], transform: tio.Transform | None, connectivity: int
    ) -> None:
        self.subjects = list(subjects)
        self.transform = transform
        self.connectivity = connectivity

    def __len__(self) -> int:
        return len(self.subjects)

    def __getitem__(self, index: int) -> int:
        subject = self.subjects[index]
        if self.transform is None:
            # Reorientation and nearest-neighbour resampling onto the T1 grid (on which the
            # label already lies) cannot change connected components: read the file only.
            return count_lesions(tio.LabelMap(subject["lesion"].path).data, self.connectivity)
        return count_lesions(self.transform(subject)["lesion"].data, self.connectivity)


# --------------------------------------------------------------------------------------
# DataModules
# --------------------------------------------------------------------------------------


class _SegmentationDataModule(L.LightningDataModule):
    """Shared machinery; subclasses choose the label map and the patch sampler."""

    #: name of the label map the subclass trains on, and its class names.
    label_name: str
    label_names: list[str]

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
    ) -> None:
        super().__init__()
        self.data_dir = str(data_dir)
        self.channels = list(channels)
        self.patch_size = tuple(int(n) for n in _triple(patch_size, "patch_size"))
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
        self.layout = CaseLayout(channels=tuple(self.channels))
        self.train_cases: list[Case] | None = None
        self.validation_cases: list[Case] | None = None
        self.test_cases: list[Case] | None = None
        self.patch_counts: list[int] | None = None

    # ---- cases ------------------------------------------------------------------------

    def _discover(self, source: str) -> list[Case]:
        cases = discover_cases(source, self.layout)
        unlabelled = [c for c in cases if c.labels.get(self.label_name) is None]
        if unlabelled and not self.skip_cases_without_label:
            manifest = Path(source).is_file()
            raise CaseValidationError(
                [
                    CaseProblem(
                        case.case_id,
                        Path(source)
                        if manifest
                        else next(iter(case.images.values())).parent
                        / self.layout.label_file(self.label_name),
                        f"required {self.label_name} label map is missing",
                        "add it, or set skip_cases_without_label=True to train on the cases "
                        "that have one (e.g. leave out the healthy cases of a mixed cohort)",
                    )
                    for case in unlabelled
                ],
                context=f"in {source}",
            )
        cases = [c for c in cases if c.labels.get(self.label_name) is not None]
        if not cases:
            raise CaseValidationError(
                [CaseProblem(None, Path(source), f"no case has a {self.label_name} label map")],
                context=f"in {source}",
            )
        if self.validate_inputs:
            validate_cases(cases, {self.label_name: self.label_names})
        return cases

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
            self.patch_counts = self._count_patches(self._subjects(self.train_cases))
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

    def _count_patches(self, subjects: list[tio.Subject]) -> list[int]:
        raise NotImplementedError

    def _no_patches_message(self) -> str:
        return f"the training cases in {self.data_dir} yield no patches."

    def _patch_sampler(self) -> tio.data.PatchSampler:
        raise NotImplementedError

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
    ) -> PatchQueue:
        """The training :class:`PatchQueue`; ``num_replicas``/``rank`` default to torch.distributed's.

        Passing them explicitly shows what one rank of a DDP run would draw.
        """
        if self.train_cases is None or self.patch_counts is None:
            self.setup("fit")
        assert self.train_cases is not None and self.patch_counts is not None
        subjects = self._subjects(self.train_cases)
        if self.cache_subjects:
            dataset: Dataset = CachedSubjectsDataset(
                subjects, self._preprocessing(), self._train_tail_transform()
            )
        else:
            dataset = tio.SubjectsDataset(subjects, transform=self.train_transform())
        return PatchQueue(
            dataset,
            self._patch_sampler(),
            self.patch_counts,
            max_length=self.queue_length,
            num_workers=self.num_workers,
            num_replicas=num_replicas,
            rank=rank,
            seed=self.seed,
            epoch_fn=self._trainer_epoch,
        )

    def train_dataloader(self) -> DataLoader:
        """Patch batches; ``len()`` = ceil(patches per epoch on this rank / batch_size)."""
        return DataLoader(
            self.make_train_queue(),
            batch_size=self.batch_size,
            num_workers=0,  # the queue's own workers load subjects
            collate_fn=SubjectCollate(self.channels, self.label_name),
        )

    def _volume_loader(self, cases: Sequence[Case] | None) -> DataLoader:
        # TorchIO refuses an empty dataset; an empty list gives Lightning an empty loader
        # (no validation without validation cases).
        dataset = (
            tio.SubjectsDataset(self._subjects(cases), transform=self.eval_transform())
            if cases
            else []
        )
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
        return self._volume_loader(self.validation_cases)

    def test_dataloader(self) -> DataLoader:
        """Whole volumes of ``test_dir`` (or, without it, of the validation cases)."""
        if self.test_cases is None:
            self.setup("test")
        return self._volume_loader(self.test_cases)


class SkeletonDataModule(_SegmentationDataModule):
    """Patches of healthy whole-body scans for skeleton (anatomy) pretraining.

    Cases need a ``skeleton`` label map (10 classes, :data:`sap.labels.SKELETON_LABELS`).
    Each epoch draws ``samples_per_volume`` patches from every training case with
    :func:`sap.data.samplers.skeleton_sampler` (class-balanced patch centres).

    Args:
        data_dir: folder of case folders, one case folder, or a CSV manifest.
        channels: input channels, stacked in this order into ``batch["image"]``.
        patch_size: patch size in voxels (one number or three; paper: 96).
        batch_size: patches per training batch (paper: 2).
        samples_per_volume: patches per training case per epoch.
        background_probability: share of patches centred on background (rest: bone,
            classes equally likely).
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
        flip_p, rot90_p, intensity_p, intensity_range, bias_field_p, noise_p: see
            :func:`sap.data.preprocess.augmentation`.
        validate_inputs: check every file (readable, finite, label values, grids) first.
        cache_subjects: keep each preprocessed training volume in memory after its first
            epoch, so later epochs only augment and sample (like MONAI's CacheDataset).
            Worth it when the cohort fits in RAM and ``num_workers`` is 0; with workers
            each process would hold its own copy for one epoch only, so it is refused.
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
        )
        if samples_per_volume < 1:
            raise ValueError(f"samples_per_volume must be >= 1, got {samples_per_volume}.")
        self.samples_per_volume = int(samples_per_volume)
        self.background_probability = float(background_probability)
        self.sampler = skeleton_sampler(
            self.patch_size, self.label_name, len(self.label_names), self.background_probability
        )
        self.save_hyperparameters()

    def _count_patches(self, subjects: list[tio.Subject]) -> list[int]:
        return [self.samples_per_volume] * len(subjects)

    def _patch_sampler(self) -> tio.data.PatchSampler:
        return self.sampler


class LesionDataModule(_SegmentationDataModule):
    """Instance-balanced patches of metastatic scans for lesion fine-tuning.

    Cases need a ``lesion`` label map (0 background, 1 lesion). Each epoch draws, per
    training case with ``k`` lesions, exactly ``k`` lesion patches and
    ``floor(negative_ratio * k + 0.5)`` lesion-free patches
    (:class:`sap.data.samplers.InstanceBalancedSampler`); the epoch length is their sum
    over the training cases (``patch_counts``, counted in :meth:`setup`), exactly, on
    one device. Under DDP every rank draws the largest rank total; ranks below it add
    extra lesion-free patches (see :class:`BalancedDistributedSampler`).

    Lesion-free cases yield ``negatives_per_lesion_free_case`` patches (0, as in the paper,
    by default): a cohort of lesion-free cases only has nothing to train on, and
    :meth:`setup` says so. Lesions are counted on the preprocessed label map; the
    augmentation's flips and rotations keep the count.

    Args:
        data_dir: folder of case folders, one case folder, or a CSV manifest.
        channels: input channels, stacked in this order into ``batch["image"]``.
        patch_size: patch size in voxels (one number or three; paper: 96).
        batch_size: patches per training batch (paper: 2).
        negative_ratio: lesion-free patches per lesion (paper: 1).
        connectivity: 26, 18 or 6: voxel neighbourhood that makes one lesion.
        margin: voxels kept between a lesion and its patch border when the patch allows.
        negatives_per_lesion_free_case: patches drawn from a case without lesions.
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
        flip_p, rot90_p, intensity_p, intensity_range, bias_field_p, noise_p: see
            :func:`sap.data.preprocess.augmentation`.
        validate_inputs: check every file (readable, finite, label values, grids) first.
        cache_subjects: keep each preprocessed training volume in memory after its first
            epoch, so later epochs only augment and sample (like MONAI's CacheDataset).
            Worth it when the cohort fits in RAM and ``num_workers`` is 0; with workers
            each process would hold its own copy for one epoch only, so it is refused.
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

    def _count_patches(self, subjects: list[tio.Subject]) -> list[int]:
        transform = None if self.spacing_mm is None else self._preprocessing()
        counter = _LesionCount(subjects, transform, self.sampler.connectivity)
        loader = DataLoader(counter, batch_size=None, num_workers=self.num_workers)
        counts = [int(n) for n in loader]
        self.lesion_counts = {str(s["case_id"]): n for s, n in zip(subjects, counts)}
        return [self.sampler.num_patches(n) for n in counts]

    def _no_patches_message(self) -> str:
        n = len(self.train_cases or [])
        return (
            f"none of the {n} training cases in {self.data_dir} has a lesion, and lesion-free "
            f"cases yield negatives_per_lesion_free_case={self.sampler.negatives_per_lesion_free_case} "
            f"patches: there is nothing to train on. Add cases with lesions, or set "
            f"negatives_per_lesion_free_case > 0."
        )

    def _patch_sampler(self) -> tio.data.PatchSampler:
        return self.sampler


__all__ = [
    "BalancedDistributedSampler",
    "LesionDataModule",
    "PadToMinimumShape",
    "PatchQueue",
    "SkeletonDataModule",
    "SubjectCollate",
    "balanced_partition",
    "distributed_context",
    "split_cases",
]
