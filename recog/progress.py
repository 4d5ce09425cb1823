"""Progress of a long loop on stderr, fit for where stderr goes: on a terminal a tqdm bar
(redrawn in place); in a file or a pipe (``run.sh > log 2>&1``, nohup, a batch system) plain
lines (at each tenth of the work but at least 5 s apart, at least once a minute, and at the
end), so that a log never collects carriage returns. Both show done/total, elapsed, time
left and the rate (tqdm's ``s/it`` when an item takes longer than a second)."""

from __future__ import annotations

import sys
import time
from typing import TextIO

from tqdm import tqdm

LOG_EVERY_S = 60.0  # in a file: a line at least once a minute, at each tenth of the work
LOG_STEPS = 10  # (unless the last line is younger than LOG_GAP_S) and at the end
LOG_GAP_S = 5.0


class Progress:
    """``update(done, note)`` after each item; the display closes at ``done == total``."""

    def __init__(self, total: int, label: str, enabled: bool = True,
                 stream: TextIO | None = None):
        self.total, self.label, self.enabled = total, label, enabled and total > 0
        self.stream = stream or sys.stderr
        self.start = self.last_line = time.monotonic()
        self.first: int | None = None  # done at the first update (a resumed loop)
        self.next_step = 0
        self.bar: tqdm | None = None
        if self.enabled and self.stream.isatty():
            self.bar = tqdm(total=total, desc=label, file=self.stream, dynamic_ncols=True,
                            leave=True)

    def update(self, done: int, note: str = "") -> None:
        if not self.enabled:
            return
        if self.first is None:
            self.first = done - 1
        if self.bar is not None:
            if note:
                self.bar.set_postfix_str(note, refresh=False)
            self.bar.update(done - self.bar.n)
            if done >= self.total:
                self.bar.close()
            return
        now = time.monotonic()
        step = done * LOG_STEPS // self.total
        since = now - self.last_line
        if done < self.total and since < LOG_EVERY_S and (step < self.next_step
                                                          or since < LOG_GAP_S):
            return
        self.next_step, self.last_line = step + 1, now
        self.stream.write(self.line(done, now - self.start, note) + "\n")
        self.stream.flush()

    def line(self, done: int, elapsed: float, note: str = "") -> str:
        """One log line: label, done/total, elapsed<left and rate, from tqdm's formatter
        (the rate counts only the items done since this display started)."""
        fresh = done - (self.first or 0)
        rate = fresh / elapsed if elapsed > 0 and fresh > 0 else None
        return tqdm.format_meter(done, self.total, elapsed, prefix=self.label, rate=rate,
                                 postfix=note or None, bar_format="{desc} {n_fmt}/{total_fmt} "
                                 "[{elapsed}<{remaining}, {rate_fmt}{postfix}]")
