"""SIGINT/SIGTERM as a flag the training loop checks after each step, so a stop finishes the
step and writes last.pt instead of dying mid-update."""

from __future__ import annotations

import logging
import signal
import threading

log = logging.getLogger(__name__)


class StopSignals:
    """Turns SIGINT/SIGTERM into a flag checked after each step (a second SIGINT aborts).
    The handler only sets the flag: it runs wherever the interpreter happens to be, inside
    the step's native calls included, so it does no I/O (the loop logs the stop). A signal
    the process inherited as ignored (a job started with ``&`` by a script, or ``nohup``:
    POSIX shells start those with SIGINT ignored) stays ignored, as Python leaves it for the
    whole run, instead of counting only once training has begun."""

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
                if signal.getsignal(sig) == signal.SIG_IGN:
                    log.warning("%s was ignored when this process started (a background job "
                                "of a script, or nohup) and stays ignored: it will not stop "
                                "training", sig.name)
                    continue
                self.previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)
