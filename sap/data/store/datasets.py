"""Training patches and validation volumes read from the patch store.

Training runs in two steps. The main process plans the epoch: a
:class:`~sap.data.patch_queue.PatchQueue` over :class:`StoreCases` with a planner
(:mod:`~sap.data.store.planning`) yields :class:`~sap.data.store.planning.PatchSpec`\\ s in
the order the on-the-fly queue yields patches (same subject order, rank split and buffer
shuffling). Then data-loader workers read each planned window from the memory-mapped
entry and augment it (:class:`StorePatches`): a patch reads only its own bytes, and
augmentation (TorchIO) runs on the patch, so each patch gets its own draw.
:class:`PlannedPatches` hands the plans to the ``DataLoader`` as its sampler; it is a
``DistributedSampler``, so Lightning leaves it in place under DDP.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
import torch
import torchio as tio
from torch.utils.data import Dataset, IterableDataset
from torch.utils.data.distributed import DistributedSampler

from sap.data.patch_queue import PatchQueue
from sap.data.samplers import LESION_COMPONENT
from sap.data.store.planning import PatchSpec
from sap.data.store.views import CaseView


class StoreCases(Dataset):
    """The views of a data set, one item per case: what the planning queue "loads"."""

    def __init__(self, views: Sequence[CaseView]) -> None:
        self.views = list(views)

    def __len__(self) -> int:
        return len(self.views)

    def __getitem__(self, index: int) -> CaseView:
        return self.views[index]

    @property
    def case_ids(self) -> list[str]:
        return [view.case_id for view in self.views]


def _subject(
    view: CaseView,
    channels: Sequence[str],
    image: np.ndarray,
    label: np.ndarray,
    affine: np.ndarray,
) -> tio.Subject:
    entries: dict = {
        name: tio.ScalarImage(tensor=torch.from_numpy(image[i : i + 1]), affine=affine)
        for i, name in enumerate(channels)
    }
    entries[view.label_name] = tio.LabelMap(tensor=torch.from_numpy(label[None]), affine=affine)
    entries["case_id"] = view.case_id
    return tio.Subject(entries)


class StorePatches(Dataset):
    """Map-style dataset: a :class:`PatchSpec` in, the augmented patch (a TorchIO subject) out.

    Args:
        views: the cases, indexed by ``PatchSpec.case``.
        patch_size: patch size in voxels per axis.
        num_patches: patches per epoch on this rank (the dataset's ``len()``).
        transform: applied to every patch (the augmentation), or ``None``.
    """

    def __init__(
        self,
        views: Sequence[CaseView],
        patch_size: Sequence[int],
        num_patches: int,
        transform: tio.Transform | None = None,
    ) -> None:
        self.views = list(views)
        self.patch_size = tuple(int(n) for n in patch_size)
        self.num_patches = int(num_patches)
        self.transform = transform

    def __len__(self) -> int:
        return self.num_patches

    def __getitem__(self, spec: PatchSpec) -> tio.Subject:
        view = self.views[spec.case]
        image, label = view.window(spec.offset, self.patch_size)
        affine = view.affine
        affine[:3, 3] = affine[:3, :3] @ np.asarray(spec.offset) + affine[:3, 3]
        patch = _subject(view, view.entry.channels, image, label, affine)
        patch[tio.LOCATION] = torch.as_tensor([*spec.offset, *np.add(spec.offset, self.patch_size)])
        if spec.target is not None:
            patch[LESION_COMPONENT] = spec.target
        patch.update_attributes()
        return self.transform(patch) if self.transform is not None else patch


class PlannedPatches(DistributedSampler):
    """The ``DataLoader`` sampler of store training: iterating it plans one epoch.

    A ``DistributedSampler`` only so that Lightning keeps it under DDP (the planning queue
    already holds this rank's share); ``set_epoch`` reaches the queue.
    """

    def __init__(self, plans: PatchQueue) -> None:
        sampler = plans.subject_sampler
        super().__init__(
            range(len(plans)), num_replicas=sampler.num_replicas, rank=sampler.rank, shuffle=False
        )
        self.plans = plans

    def __iter__(self) -> Iterator[PatchSpec]:  # type: ignore[override]
        return iter(self.plans)

    def __len__(self) -> int:
        return len(self.plans)

    def set_epoch(self, epoch: int) -> None:
        super().set_epoch(epoch)
        self.plans.set_epoch(epoch)


class StorePatchQueue(IterableDataset):
    """The training patches of one rank from the store: planned, then read and augmented.

    Iterating it reads the patches in this process (what tests and inspection want);
    training loads them in workers through :meth:`sampler` and :attr:`patches`.

    Args:
        plans: the planning queue (yields :class:`PatchSpec`).
        patches: reads a planned patch.
    """

    def __init__(self, plans: PatchQueue, patches: StorePatches) -> None:
        self.plans = plans
        self.patches = patches

    @property
    def subject_sampler(self):
        """This rank's case order and top-up (the planning queue's)."""
        return self.plans.subject_sampler

    @property
    def subjects_dataset(self) -> StoreCases:
        return self.plans.subjects_dataset  # type: ignore[return-value]

    def set_epoch(self, epoch: int) -> None:
        self.plans.set_epoch(epoch)

    def sampler(self) -> PlannedPatches:
        """The sampler that plans each epoch for a ``DataLoader`` over :attr:`patches`."""
        return PlannedPatches(self.plans)

    def __len__(self) -> int:
        return len(self.plans)

    def __iter__(self) -> Iterator[tio.Subject]:
        for spec in self.plans:
            yield self.patches[spec]


class StoreVolumes(Dataset):
    """Whole preprocessed volumes (padded to the patch size) for validation and test."""

    def __init__(self, views: Sequence[CaseView]) -> None:
        self.views = list(views)

    def __len__(self) -> int:
        return len(self.views)

    def __getitem__(self, index: int) -> tio.Subject:
        view = self.views[index]
        image, label = view.volume()
        return _subject(view, view.entry.channels, image, label, view.affine)


__all__ = [
    "PlannedPatches",
    "StoreCases",
    "StorePatchQueue",
    "StorePatches",
    "StoreVolumes",
]
