"""The one updating line on stderr while something long runs (``status --wait``,
``--execute`` steps, ``experiment``).

Only on a terminal, and never under ``--json``: otherwise nothing at all is written,
not even a newline, so that piped and logged stderr stays exactly what it was. On a
terminal each update rewrites the line (carriage return, clear line), cut to the
terminal's width (in columns) so that it never wraps; the text goes through ``termsafe.one_line``
(a step can name a worker, a worker name can come from a bundle). Leaving the ``with``
block, by success, error or Ctrl-C, clears the line (or, with ``close(keep=True)``,
ends it with a newline so that it stays).
"""

from __future__ import annotations

import sys
from types import TracebackType
from typing import TextIO

from kodelyth_ecc.live import terminal_size
from kodelyth_ecc.termsafe import fit_cells, is_terminal, one_line

CLEAR_LINE = "\r\x1b[2K"


class ProgressLine:
    """A single line rewritten in place on ``stream`` (stderr) when it is a terminal."""

    def __init__(self, *, quiet: bool = False, stream: TextIO | None = None) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.active = not quiet and is_terminal(self.stream)
        self.shown: str | None = None

    def __enter__(self) -> ProgressLine:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def update(self, text: str) -> None:
        """Show ``text`` in place of the line before (nothing when it is unchanged)."""
        if not self.active:
            return
        columns, _ = terminal_size(self.stream)
        # Cut in columns, not characters: a wide character takes two, and a line that
        # wraps leaves its first half on screen at the next carriage return.
        line = fit_cells(one_line(text), max(1, columns - 1))
        if line == self.shown:
            return
        self._write(CLEAR_LINE + line)
        self.shown = line

    def clear(self) -> None:
        """Take the line away (before other output, or at the end)."""
        if self.shown is not None:
            self.shown = None
            self._write(CLEAR_LINE)

    def close(self, *, keep: bool = False) -> None:
        """End the line: cleared, or kept on screen with a newline."""
        if keep and self.shown is not None:
            self.shown = None
            self._write("\n")
        else:
            self.clear()

    def _write(self, text: str) -> None:
        try:
            self.stream.write(text)
            self.stream.flush()
        except (OSError, ValueError):  # the terminal went away: nothing to show it on
            self.active = False
