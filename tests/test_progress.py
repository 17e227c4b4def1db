"""sap.progress: a Jupyter widget only where ipywidgets exists, never the IProgress warning."""

from __future__ import annotations

import importlib.util
import warnings

import pytest
import tqdm.std

from sap.progress import progress_bar


def test_outside_jupyter_the_plain_bar_is_used() -> None:
    bar = progress_bar(range(2), disable=True)
    assert type(bar) is tqdm.std.tqdm


def test_without_ipywidgets_the_plain_bar_is_used_silently(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr("sap.progress.in_jupyter_kernel", lambda: True)
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name == "ipywidgets" else real_find_spec(name, *a),
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        bar = progress_bar(range(4), disable=True)
    assert type(bar) is tqdm.std.tqdm
    assert list(bar) == [0, 1, 2, 3]


def test_a_bar_hidden_where_output_is_not_a_terminal(capsys: pytest.CaptureFixture[str]) -> None:
    for _ in progress_bar(range(50), total=50, disable=None):
        pass
    assert capsys.readouterr().err == ""
