"""Map-style datasets over TorchIO subjects: preprocessed once and cached, or lesion counts."""

from __future__ import annotations

import copy
from collections.abc import Sequence

import torchio as tio
from torch.utils.data import DataLoader, Dataset

from sap.data.lesions import count_lesions


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


class LesionCounts(Dataset):
    """Lesions per subject, counted on what training sees before augmentation.

    A dataset so that data-loader workers can count in parallel; see
    :func:`count_subject_lesions`.

    Args:
        subjects: lazily loaded subjects with a lesion label map.
        transform: the deterministic preprocessing, or ``None`` when it cannot change the
            lesions (then only the label file is read).
        connectivity: 26, 18 or 6; see :func:`sap.data.lesions.find_lesions`.
        label_name: the lesion label map's key in each subject.
    """

    def __init__(
        self,
        subjects: Sequence[tio.Subject],
        transform: tio.Transform | None,
        connectivity: int,
        label_name: str = "lesion",
    ) -> None:
        self.subjects = list(subjects)
        self.transform = transform
        self.connectivity = connectivity
        self.label_name = label_name

    def __len__(self) -> int:
        return len(self.subjects)

    def __getitem__(self, index: int) -> int:
        subject = self.subjects[index]
        if self.transform is None:
            label = tio.LabelMap(subject[self.label_name].path)
        else:
            label = self.transform(subject)[self.label_name]
        return count_lesions(label.data, self.connectivity)


def count_subject_lesions(
    subjects: Sequence[tio.Subject],
    transform: tio.Transform | None,
    connectivity: int,
    num_workers: int = 0,
    label_name: str = "lesion",
) -> list[int]:
    """Lesions of each subject, counted by ``num_workers`` processes; see :class:`LesionCounts`."""
    dataset = LesionCounts(subjects, transform, connectivity, label_name)
    loader = DataLoader(dataset, batch_size=None, num_workers=num_workers)
    return [int(n) for n in loader]


__all__ = ["CachedSubjectsDataset", "LesionCounts", "count_subject_lesions"]
