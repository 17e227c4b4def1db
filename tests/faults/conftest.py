"""Fixtures of the fault catalogue: a tiny lesion model and a tiny cohort, built once."""

from __future__ import annotations

import pytest

from tests.helpers.faults import export_lesion_model, write_cohort


@pytest.fixture(scope="session")
def lesion_model(tmp_path_factory):
    return export_lesion_model(tmp_path_factory.mktemp("models") / "lesion")


@pytest.fixture
def cohort(tmp_path):
    return write_cohort(tmp_path / "cohort")
