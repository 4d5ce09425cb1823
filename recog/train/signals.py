"""SIGINT/SIGTERM as a flag the training loop checks after each step, so a stop finishes the
step and writes last.pt instead of dying mid-update.

While a step or a validation runs, the two signals are held back (``held``: blocked with
``pthread_sigmask``, delivered when it ends): a signal that interrupted the native code of
a backward pass corrupted the heap in about one single SIGINT in ten (glibc's "corrupted
size vs. prev_size" / SIGSEGV inside ``loss.backward()``), which a held signal cannot do."""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator

_SIGNALS = {signal.SIGINT, signal.SIGTERM}


class StopSignals:
    """Turns SIGINT/SIGTERM into a flag checked after each step (a second SIGINT aborts,
    once the step it arrived in has ended). The handler only sets the flag and does no I/O
    (the loop logs the stop)."""

    def __init__(self) -> None:
        self.signum = 0
        self.previous: dict[int, object] = {}

    def _handle(self, signum: int, frame: object) -> None:
        if self.signum and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.signum = signum

    def __enter__(self) -> StopSignals:
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self.previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)

    @contextlib.contextmanager
    def held(self) -> Iterator[None]:
        """SIGINT and SIGTERM blocked for the block's duration (in the main thread, where
        the handlers run); one that arrives meanwhile is delivered as the block ends."""
        if not self.previous or not hasattr(signal, "pthread_sigmask"):
            yield
            return
        before = signal.pthread_sigmask(signal.SIG_BLOCK, _SIGNALS)
        try:
            yield
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, before)
