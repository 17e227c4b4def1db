"""PatchQueue: TorchIO's patch queue as an iterable dataset, one iteration per epoch.

Why not :class:`torchio.Queue`:

1. when the Queue fills up in the middle of a subject, it calls the sampler *again* for the
   rest of that subject's patches. For an i.i.d. sampler that is harmless; the
   instance-balanced sampler, which enumerates lesions, would start over, drawing the first
   lesions twice and the last ones never. :class:`PatchQueue` keeps one sampler generator
   per subject until it is exhausted;
2. the Queue is a map-style dataset, so under DDP Lightning wraps the patch loader in its
   own ``DistributedSampler`` and every rank pops only part of its queue per "epoch".
   :class:`PatchQueue` is an ``IterableDataset``: Lightning leaves it alone;
3. patch counts vary per case, so ranks must be balanced
   (:class:`~sap.data.distributed.BalancedDistributedSampler`).

Memory stays bounded as in the Queue: at most ``max_length`` patches plus the subjects
being loaded (``num_workers`` processes load and augment whole volumes in the background).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator, Sequence

import torch
import torchio as tio
from torch.utils.data import DataLoader, IterableDataset

from sap.data.distributed import BalancedDistributedSampler, distributed_context


def _first_item(batch: list):
    return batch[0]


class PatchQueue(IterableDataset):
    """TorchIO's patch queue as an iterable dataset: one iteration is one epoch.

    Per epoch: this rank's subjects (from
    :class:`~sap.data.distributed.BalancedDistributedSampler`, shuffled) are
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


__all__ = ["PatchQueue"]
