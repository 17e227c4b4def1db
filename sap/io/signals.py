"""SIGTERM and SIGHUP as an exception, so that temporary output is cleaned up on the way out."""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator


class Terminated(KeyboardInterrupt):
    """SIGTERM/SIGHUP arrived while output was being written; raised so that cleanup runs."""

    def __init__(self, signum: int) -> None:
        self.signum = signum
        super().__init__(f"stopped by {signal.Signals(signum).name}")


@contextlib.contextmanager
def cleanup_on_signals() -> Iterator[None]:
    """Turn SIGTERM and SIGHUP into :class:`Terminated` while the block runs.

    Python stops at once on these signals by default, leaving temporary files behind; an
    exception lets every ``finally`` and cleanup run. Only in the main thread, and only where
    nobody installed a handler of their own (Lightning, a user's program).
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: object) -> None:
        raise Terminated(signum)

    previous = {}
    for name in ("SIGTERM", "SIGHUP"):
        number = getattr(signal, name, None)
        if number is not None and signal.getsignal(number) is signal.SIG_DFL:
            previous[number] = signal.signal(number, handler)
    try:
        yield
    finally:
        for number, old in previous.items():
            signal.signal(number, old)


def stop_status(stop: KeyboardInterrupt) -> tuple[str, int]:
    """``(signal name, exit status)`` of a run stopped by Ctrl-C or :class:`Terminated`.

    >>> stop_status(KeyboardInterrupt())
    ('SIGINT', 130)
    """
    signum = getattr(stop, "signum", signal.SIGINT)
    return signal.Signals(signum).name, 128 + int(signum)


__all__ = ["Terminated", "cleanup_on_signals", "stop_status"]
