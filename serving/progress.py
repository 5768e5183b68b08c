"""A one-line progress bar on stderr: records done, rate, share and ETA.

tqdm is not a runtime dependency; this is all the command line needs. It draws nothing when
the stream is not a terminal (logs, pipes, CI) or when disabled with ``--quiet``.
"""

from __future__ import annotations

import sys
import time
from typing import TextIO


def _duration(seconds: float) -> str:
    seconds = round(seconds)
    hours, rest = divmod(seconds, 3600)
    minutes, seconds = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{seconds:02d}" if hours else f"{minutes:02d}:{seconds:02d}"


class Progress:
    """Report ``done`` records and, when ``total`` is known, the share done and the ETA.

    ``position`` and ``total`` are in the reader's own unit (bytes of a text file, rows of a
    Parquet file), so the ETA works without counting a file's records first.
    """

    def __init__(
        self,
        total: float | None = None,
        unit: str = "records",
        stream: TextIO | None = None,
        enabled: bool = True,
        interval: float = 0.2,
        clock=time.monotonic,
    ) -> None:
        self.stream = stream if stream is not None else sys.stderr
        isatty = getattr(self.stream, "isatty", None)
        self.enabled = enabled and bool(isatty and isatty())
        self.total = total
        self.unit = unit
        self.interval = interval
        self.clock = clock
        self.started = clock()
        self.done = 0
        self.position = 0.0
        self._last_draw = float("-inf")
        self._width = 0

    def update(self, done: int = 1, position: float | None = None) -> None:
        """Add ``done`` records; ``position`` is how far the reader has got in the input."""
        self.done += done
        if position is not None:
            self.position = position
        now = self.clock()
        if self.enabled and now - self._last_draw >= self.interval:
            self._last_draw = now
            self._draw(now)

    def line(self, now: float | None = None) -> str:
        elapsed = max((self.clock() if now is None else now) - self.started, 1e-9)
        rate = self.done / elapsed
        parts = [f"{self.done:,} {self.unit}", f"{rate:,.1f} {self.unit}/s"]
        if self.total:
            share = min(1.0, self.position / self.total)
            parts.append(f"{share:4.0%}")
            if 0 < share < 1:
                parts.append(f"ETA {_duration(elapsed * (1 - share) / share)}")
        parts.append(f"elapsed {_duration(elapsed)}")
        return "  ".join(parts)

    def _draw(self, now: float) -> None:
        text = self.line(now)
        padding = " " * max(0, self._width - len(text))
        self._width = len(text)
        self.stream.write(f"\r{text}{padding}")
        self.stream.flush()

    def close(self) -> None:
        """Draw the final state and end the line."""
        if self.enabled:
            self._draw(self.clock())
            self.stream.write("\n")
            self.stream.flush()
