"""Specification of the `sap.data` package: its lazy exports and its cheap import."""

from __future__ import annotations

import importlib
import subprocess
import sys

import pytest

import sap.data


@pytest.mark.parametrize("name", sap.data.__all__)
def test_every_export_is_defined_where_the_package_says(name: str) -> None:
    module = importlib.import_module(f"sap.data.{sap.data._EXPORTS[name]}")
    value = getattr(sap.data, name)
    assert value is getattr(module, name)
    if hasattr(value, "__module__"):
        assert value.__module__ == module.__name__, f"{name} is only re-exported there"


def test_unknown_name_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match="sap.data.*no_such_name"):
        sap.data.no_such_name  # noqa: B018


def test_importing_the_package_does_not_import_torch() -> None:
    code = "import sys, sap.data; print('torch' in sys.modules, 'torchio' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.stdout.split() == ["False", "False"], result.stderr
