"""Progress of a long step (over ~2 s) on stderr, for a terminal and for a log alike.

On a terminal it is one tqdm bar, drawn only once the step has run for ``delay`` seconds (a
quick step shows nothing). Where stderr is not a terminal (CI logs, notebooks, ``2> file``)
there is no ``\\r``: a plain line once the step has run ``delay`` seconds, then at most one line
per 10% of the work or per 30 s, and one closing line. The rate is one figure (``images/s``).

Example:
    >>> with Progress(100, "probe", unit="image", stream=io.StringIO()) as bar:  # doctest: +SKIP
    ...     for batch in batches: bar.update(len(batch))
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable, Iterator
from typing import TextIO

DELAY_S = 2.0  # steps shorter than this show nothing
LINE_FRACTION = 0.1  # plain lines: at most one per 10% of the work ...
LINE_SECONDS = 30.0  # ... or per 30 s


class Progress:
    """``total`` units of work (0 or None: unknown) named ``desc``; ``update(n)`` as it goes."""

    def __init__(self, total: int | None, desc: str, *, unit: str = "item",
                 stream: TextIO | None = None, delay: float | None = None, clock=time.monotonic,
                 enabled: bool = True, initial: int = 0) -> None:
        self.total, self.desc, self.unit, self.clock = total or None, desc, unit, clock
        self.stream = stream if stream is not None else sys.stderr
        self.delay = DELAY_S if delay is None else delay
        self.enabled, self.done, self.bar = enabled, initial, None
        self.started = self.last_time = clock()
        self.initial, self.last_done, self.shown = initial, initial, False
        self.terminal = enabled and _isatty(self.stream)
        if self.terminal:
            from tqdm import tqdm  # only when drawing a bar

            self.bar = tqdm(total=self.total, initial=initial, desc=desc, unit=unit,
                            delay=self.delay, leave=False, file=self.stream, dynamic_ncols=True)

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def update(self, n: int = 1) -> None:
        self.done += n
        if self.bar is not None:
            self.bar.update(n)
        elif self.enabled and self._line_due():
            self._line()

    def _line_due(self) -> bool:
        now = self.clock()
        if now - self.started < self.delay:
            return False
        if not self.shown:
            return True
        step = self.total and (self.done - self.last_done) >= LINE_FRACTION * self.total
        return bool(step) or now - self.last_time >= LINE_SECONDS

    def _line(self) -> None:
        of = f"/{self.total}" if self.total else ""
        percent = f" ({100 * self.done / self.total:.0f}%)" if self.total else ""
        print(f"{self.desc}: {self.done}{of} {self.unit}s{percent}, {_number(self.rate())} "
              f"{self.unit}s/s", file=self.stream, flush=True)
        self.shown, self.last_done, self.last_time = True, self.done, self.clock()

    def rate(self) -> float:
        """Units per second since this progress started (a resumed epoch: since the resume)."""
        return (self.done - self.initial) / max(self.clock() - self.started, 1e-9)

    def note(self, **values: str) -> None:
        """Extra figures on the terminal bar (e.g. ``loss="0.1234"``); logs get the lines only."""
        if self.bar is not None:
            self.bar.set_postfix(values, refresh=False)

    def close(self) -> None:
        """Remove the bar; where lines were written, one closing line with the time taken."""
        if self.bar is not None:
            self.bar.close()
            self.bar = None
        elif self.shown:
            seconds = self.clock() - self.started
            print(f"{self.desc}: done, {self.done - self.initial} {self.unit}s in {seconds:.1f} s "
                  f"({_number(self.rate())} {self.unit}s/s)", file=self.stream, flush=True)
            self.shown = False


def track(items: Iterable, desc: str, *, total: int | None = None, unit: str = "item",
          enabled: bool = True) -> Iterator:
    """``items`` one by one, with a :class:`Progress` of one unit each."""
    if total is None and hasattr(items, "__len__"):
        total = len(items)
    with Progress(total, desc, unit=unit, enabled=enabled) as progress:
        for item in items:
            yield item
            progress.update()


def _isatty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def _number(rate: float) -> str:
    """``1234``, ``12``, ``0.14``: whole numbers from 10 up, two digits below."""
    return f"{rate:.0f}" if rate >= 10 else f"{rate:.2g}"
