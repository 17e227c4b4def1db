"""Specification of the DDP split of cases over ranks (`sap.data.distributed`)."""

from __future__ import annotations

import pytest
import torch
import torchio as tio

from sap.data.distributed import BalancedDistributedSampler, balanced_partition, distributed_context


def test_balanced_partition_equalises_heavy_tailed_counts() -> None:
    parts = balanced_partition([30, 2, 2, 4, 6, 10, 2, 0], 2)
    totals = [sum([30, 2, 2, 4, 6, 10, 2, 0][i] for i in part) for part in parts]
    assert sorted(i for part in parts for i in part) == [0, 1, 2, 3, 4, 5, 6]
    assert totals == [30, 26]


def test_too_few_cases_for_the_ranks_is_an_error() -> None:
    dataset = tio.SubjectsDataset([tio.Subject(a=tio.ScalarImage(tensor=torch.zeros(1, 2, 2, 2)))])
    with pytest.raises(ValueError, match="rank"):
        BalancedDistributedSampler(dataset, [3], num_replicas=2, rank=0)


def test_top_up_gives_every_rank_the_largest_rank_total() -> None:
    dataset = tio.SubjectsDataset(
        [tio.Subject(a=tio.ScalarImage(tensor=torch.zeros(1, 2, 2, 2))) for _ in range(4)]
    )
    samplers = [BalancedDistributedSampler(dataset, [5, 1, 1, 0], 2, rank) for rank in (0, 1)]
    assert [s.partition[s.rank] for s in samplers] == [[0], [1, 2]]
    assert [s.patches_per_rank for s in samplers] == [5, 5]
    assert samplers[0].extra_patches == {0: 0}
    assert samplers[1].extra_patches == {1: 2, 2: 1}


def test_distributed_context_without_torch_distributed_is_one_rank() -> None:
    assert distributed_context() == (1, 0)
    assert distributed_context(4, 3) == (4, 3)
    with pytest.raises(ValueError, match="rank"):
        distributed_context(2, 2)
