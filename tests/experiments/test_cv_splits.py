"""Cross-validation folds: stratified by lesion count, reproducible, the tuning fold kept apart."""

from __future__ import annotations

import pytest

from sap.experiments.cv_splits import stratified_folds

#: 21 patients with a heavy-tailed lesion burden, like the phantom's.
COUNTS = {
    f"patient_{i:02d}": n
    for i, n in enumerate([1, 1, 1, 2, 1, 3, 1, 2, 8, 1, 4, 1, 2, 1, 15, 2, 1, 6, 1, 3, 25])
}


def test_folds_are_stratified_by_lesion_count() -> None:
    cv = stratified_folds(COUNTS, folds=7, seed=0)
    assert [len(f) for f in cv.folds] == [3] * 7
    ranked = sorted(COUNTS, key=lambda c: -COUNTS[c])
    fold_of = {case: i for i, cases in enumerate(cv.folds) for case in cases}
    # The 7 heaviest burdens land in 7 different folds, and so do the four with 2 lesions.
    assert len({fold_of[c] for c in ranked[:7]}) == 7
    twos = [c for c in COUNTS if COUNTS[c] == 2]
    assert len({fold_of[c] for c in twos}) == len(twos) == 4
    assert sorted(c for f in cv.folds for c in f) == sorted(COUNTS)


def test_same_seed_same_folds_whatever_the_input_order() -> None:
    shuffled = dict(reversed(list(COUNTS.items())))
    first = stratified_folds(COUNTS, folds=7, seed=3)
    assert stratified_folds(shuffled, folds=7, seed=3).folds == first.folds
    assert stratified_folds(COUNTS, folds=7, seed=4).folds != first.folds


def test_tuning_fold_is_never_trained_on_or_tested() -> None:
    cv = stratified_folds(COUNTS, folds=7, tuning_fold=2, seed=0)
    assert cv.test_folds == (0, 1, 3, 4, 5, 6)
    tuning = set(cv.tuning_cases())
    tested = []
    for fold in cv.test_folds:
        train, test = set(cv.training_cases(fold)), set(cv.test_cases(fold))
        assert not tuning & train and not tuning & test and not train & test
        assert train | test | tuning == set(COUNTS)
        tested += test
    assert sorted(tested) == sorted(set(COUNTS) - tuning), "every other patient tested once"
    with pytest.raises(ValueError, match="fold 2 is not a test fold"):
        cv.training_cases(2)


def test_impossible_splits_are_refused() -> None:
    with pytest.raises(ValueError, match="folds must be >= 3"):
        stratified_folds(COUNTS, folds=2)
    with pytest.raises(ValueError, match="cannot fill 7 folds"):
        stratified_folds({"a": 1, "b": 2}, folds=7)
    with pytest.raises(ValueError, match="other than the tuning fold 0"):
        stratified_folds(COUNTS, folds=3, test_folds=[0, 1])
