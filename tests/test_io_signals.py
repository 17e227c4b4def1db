"""A stop request is never lost while output is written, even when Python swallows it."""

from __future__ import annotations

import os
import signal

import pytest

from sap.io import MARKER_FILE, OutputFolder, Terminated


class _SignalsItselfWhenCollected:
    """Sends SIGTERM to this process from ``__del__``: the handler's exception is then
    "ignored" by Python, as when a real signal lands during garbage collection."""

    def __del__(self) -> None:
        os.kill(os.getpid(), signal.SIGTERM)
        for _ in range(1000):  # bytecodes, so that the handler runs inside __del__
            pass


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_a_sigterm_swallowed_by_a_destructor_still_stops_before_the_unit_is_final(tmp_path):
    out = tmp_path / "out"

    def writer(tmp):
        (tmp / "lesion.nii.gz").write_bytes(b"not final")
        doomed = _SignalsItselfWhenCollected()
        del doomed  # the Terminated raised in __del__ is swallowed here

    with (
        pytest.raises(Terminated) as stop,
        OutputFolder.open(out, "sap test", overwrite=False) as folder,
    ):
        folder.write_unit("case_0", writer)
    assert stop.value.signum == signal.SIGTERM
    assert sorted(p.name for p in out.iterdir()) == [MARKER_FILE]  # no case, no staged folder
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # handler given back


def test_after_a_clean_run_nothing_is_left_pending(tmp_path):
    with OutputFolder.open(tmp_path / "a", "sap test", overwrite=False) as folder:
        folder.write_unit("case_0", lambda tmp: (tmp / "x").write_text("x"))
        folder.finish()
    with OutputFolder.open(tmp_path / "b", "sap test", overwrite=False) as folder:
        folder.write_unit("case_0", lambda tmp: (tmp / "x").write_text("x"))
        folder.finish()
    assert (tmp_path / "b" / "case_0" / "x").read_text() == "x"
