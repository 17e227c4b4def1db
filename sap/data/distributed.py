"""Split training cases over DDP ranks so that every rank draws the same number of patches.

With patch counts that vary per case (one patch per lesion), ranks holding different cases
would run different numbers of steps and DDP would hang at the end of the epoch.
:class:`BalancedDistributedSampler` splits cases so the ranks' totals are as equal as
possible and tops the others up with extra patches.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import torch
import torch.distributed as dist
from torch.utils.data import Dataset
from torch.utils.data.distributed import DistributedSampler


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


__all__ = ["BalancedDistributedSampler", "balanced_partition", "distributed_context"]
