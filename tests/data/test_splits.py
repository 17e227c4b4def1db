"""Specification of the training/validation split (`sap.data.splits`)."""

from __future__ import annotations

import pytest

from sap.data.splits import split_cases


def test_split_does_not_depend_on_case_order() -> None:
    ids = [f"c{i}" for i in range(10)]
    assert split_cases(ids, 0.3, seed=4) == split_cases(ids[::-1], 0.3, seed=4)


def test_unknown_validation_case_is_named_with_close_matches() -> None:
    with pytest.raises(ValueError, match=r"\['p7'\].*p07"):
        split_cases(["p06", "p07"], val_cases=["p7"])


def test_validation_never_takes_every_case() -> None:
    assert split_cases(["a"], 0.5) == (["a"], [])
    train, val = split_cases(["a", "b"], 0.9)
    assert len(train) == len(val) == 1
