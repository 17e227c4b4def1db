"""Cross-validation of a metastatic cohort as in the paper: stratified by lesion count.

The paper splits its patients into 7 folds, stratified by lesion count; one fold is kept
fixed for tuning the binarisation threshold and the other 6 are test folds. For test fold
``k`` a model trains on every fold except ``k`` and the tuning fold, picks its threshold on
the tuning fold and is scored on fold ``k``. Every test patient is therefore scored exactly
once per arm and seed, by a model that never saw it, with a threshold chosen without it.

Stratification: cases are ordered by lesion count (ties in a seeded random order) and dealt
out in blocks of ``folds``, each block to the folds in a fresh seeded random order, so every
fold gets a similar share of light and heavy lesion burdens.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class CrossValidation:
    """Folds of case ids, the tuning fold and the test folds.

    Attributes:
        folds: case ids of each fold, sorted.
        tuning_fold: index of the fold that tunes thresholds (never tested, never trained on).
        test_folds: indices of the folds that are scored.
        lesion_counts: lesions of each case (the stratification variable).
    """

    folds: tuple[tuple[str, ...], ...]
    tuning_fold: int
    test_folds: tuple[int, ...]
    lesion_counts: Mapping[str, int]

    def tuning_cases(self) -> list[str]:
        """Cases of the tuning fold."""
        return list(self.folds[self.tuning_fold])

    def test_cases(self, fold: int) -> list[str]:
        """Cases scored for test fold ``fold``."""
        self._check_test_fold(fold)
        return list(self.folds[fold])

    def training_cases(self, fold: int) -> list[str]:
        """Cases a model for test fold ``fold`` trains on: all but that fold and the tuning fold."""
        self._check_test_fold(fold)
        excluded = {fold, self.tuning_fold}
        return sorted(c for i, cases in enumerate(self.folds) if i not in excluded for c in cases)

    def to_dict(self) -> dict[str, object]:
        """JSON-ready description (folds, their lesion counts, tuning and test folds)."""
        return {
            "tuning_fold": self.tuning_fold,
            "test_folds": list(self.test_folds),
            "folds": [list(cases) for cases in self.folds],
            "lesions_per_fold": [sum(self.lesion_counts[c] for c in cases) for cases in self.folds],
            "lesion_counts": dict(sorted(self.lesion_counts.items())),
        }

    def _check_test_fold(self, fold: int) -> None:
        if fold not in self.test_folds:
            raise ValueError(
                f"fold {fold} is not a test fold; test folds are {list(self.test_folds)} "
                f"(fold {self.tuning_fold} tunes thresholds)."
            )


def stratified_folds(
    lesion_counts: Mapping[str, int],
    folds: int = 7,
    *,
    tuning_fold: int = 0,
    test_folds: Sequence[int] | None = None,
    seed: int = 0,
) -> CrossValidation:
    """Split cases into ``folds`` folds stratified by lesion count, reproducibly.

    Args:
        lesion_counts: lesions of each case id.
        folds: number of folds (paper: 7); at least 3 (tuning, test, training).
        tuning_fold: the fold that tunes thresholds.
        test_folds: the folds to score (default: every fold but the tuning fold).
        seed: seed of the tie order and of the dealing order; the same seed and counts
            give the same folds whatever order the cases come in.

    Example:
        >>> cv = stratified_folds({f"p{i}": i % 4 for i in range(9)}, folds=3, seed=1)
        >>> [len(f) for f in cv.folds], cv.tuning_fold, cv.test_folds
        ([3, 3, 3], 0, (1, 2))
    """
    ids = sorted(str(c) for c in lesion_counts)
    if folds < 3:
        raise ValueError(f"folds must be >= 3 (one tunes, one tests, one trains), got {folds}")
    if len(ids) < folds:
        raise ValueError(f"{len(ids)} cases cannot fill {folds} folds; use fewer folds.")
    if not 0 <= tuning_fold < folds:
        raise ValueError(f"tuning_fold must lie in 0..{folds - 1}, got {tuning_fold}")
    tests = (
        tuple(i for i in range(folds) if i != tuning_fold)
        if test_folds is None
        else tuple(int(i) for i in test_folds)
    )
    bad = [i for i in tests if not 0 <= i < folds or i == tuning_fold]
    if bad or not tests or len(set(tests)) != len(tests):
        raise ValueError(
            f"test_folds must be distinct folds in 0..{folds - 1} other than the tuning fold "
            f"{tuning_fold}, got {list(tests)}"
        )
    rng = np.random.default_rng(seed)
    tie_order = rng.permutation(len(ids))
    order = sorted(range(len(ids)), key=lambda i: (-int(lesion_counts[ids[i]]), tie_order[i]))
    members: list[list[str]] = [[] for _ in range(folds)]
    for start in range(0, len(order), folds):
        block = order[start : start + folds]
        # A short last block goes to the folds that are smallest so far, in random order.
        targets = sorted(range(folds), key=lambda f: (len(members[f]), rng.random()))
        for case, fold in zip(block, targets[: len(block)]):
            members[fold].append(ids[case])
    return CrossValidation(
        folds=tuple(tuple(sorted(m)) for m in members),
        tuning_fold=tuning_fold,
        test_folds=tests,
        lesion_counts={c: int(lesion_counts[c]) for c in ids},
    )


def count_case_lesions(
    lesion_files: Mapping[str, object], connectivity: int = 26
) -> dict[str, int]:
    """Lesions (connected components) of each case's reference lesion file."""
    from sap.volume import label_components, read_volume

    counts = {}
    for case_id, path in lesion_files.items():
        voxels, _ = read_volume(path, what=f"lesion label map of case {case_id!r}")
        counts[str(case_id)] = label_components(voxels > 0, connectivity)[1]
    return counts


__all__ = ["CrossValidation", "count_case_lesions", "stratified_folds"]
