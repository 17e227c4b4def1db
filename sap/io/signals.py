"""SIGTERM, SIGHUP and Ctrl-C as an exception, so that temporary output is cleaned up on the way out."""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator


class Terminated(KeyboardInterrupt):
    """SIGTERM, SIGHUP or Ctrl-C arrived while output was being written; raised so that cleanup runs."""

    def __init__(self, signum: int) -> None:
        self.signum = signum
        super().__init__(f"stopped by {signal.Signals(signum).name}")


#: Signal numbers received inside :func:`cleanup_on_signals` blocks of this process.
_received: list[int] = []


@contextlib.contextmanager
def cleanup_on_signals() -> Iterator[None]:
    """Turn SIGTERM, SIGHUP (and Ctrl-C) into :class:`Terminated` while the block runs.

    Python stops at once on SIGTERM/SIGHUP by default, leaving temporary files behind; an
    exception lets every ``finally`` and cleanup run. Only in the main thread, and only where
    nobody installed a handler of their own (Lightning, a user's program).

    An exception raised by a signal handler is lost when the signal lands while Python runs
    a ``__del__`` or a weakref callback ("Exception ignored in ..."), so the signal is also
    recorded: :func:`raise_if_stopped` raises it again at the next safe point.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: object) -> None:
        _received.append(signum)
        raise Terminated(signum)

    previous = {}
    for name in ("SIGTERM", "SIGHUP", "SIGINT"):
        number = getattr(signal, name, None)
        default = signal.default_int_handler if name == "SIGINT" else signal.SIG_DFL
        if number is not None and signal.getsignal(number) is default:
            previous[number] = signal.signal(number, handler)
    try:
        yield
    finally:
        for number, old in previous.items():
            signal.signal(number, old)
        if previous:
            _received.clear()


def raise_if_stopped() -> None:
    """Raise :class:`Terminated` if a signal arrived whose exception was swallowed.

    Called before output is made final (a unit renamed into place), so that a stop request
    is never lost and a run never reports success after it.
    """
    if _received:
        raise Terminated(_received[-1])


def stop_status(stop: KeyboardInterrupt) -> tuple[str, int]:
    """``(signal name, exit status)`` of a run stopped by Ctrl-C or :class:`Terminated`.

    >>> stop_status(KeyboardInterrupt())
    ('SIGINT', 130)
    """
    signum = getattr(stop, "signum", signal.SIGINT)
    return signal.Signals(signum).name, 128 + int(signum)


__all__ = ["Terminated", "cleanup_on_signals", "raise_if_stopped", "stop_status"]
