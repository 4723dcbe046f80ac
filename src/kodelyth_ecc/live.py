"""A block of lines redrawn in place on a terminal (``status --watch``).

Each frame overwrites the last one line by line (cursor up, rewrite, clear to the end
of the line, then clear below for lines a longer frame left), written in one piece:
no blank screen between frames, so no flicker. Lines are cut to the terminal's width
(in columns: a wide character takes two) and the frame to its height, so that the
cursor always gets back to the frame's top; after a resize the frame starts again at
the top of a cleared screen.
The cursor is hidden while the frame is live and shown again when it ends, also on
Ctrl-C, SIGTERM and SIGHUP (turned into ``KeyboardInterrupt`` while live).
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from typing import TextIO

from kodelyth_ecc.termsafe import fit_width

HIDE_CURSOR = "\x1b[?25l"
SHOW_CURSOR = "\x1b[?25h"
CLEAR_TO_END_OF_LINE = "\x1b[K"
CLEAR_BELOW = "\x1b[J"
HOME = "\x1b[H"

Segments = list[tuple[str, str | None]]


def terminal_size(stream: TextIO) -> tuple[int, int]:
    """Columns and rows of the terminal behind ``stream`` (80x24 when it does not say:
    a new pseudo-terminal reports 0x0)."""
    try:
        size = os.get_terminal_size(stream.fileno())
    except (OSError, ValueError, AttributeError):
        return 80, 24
    return size.columns or 80, size.lines or 24


class LiveScreen:
    """Frames of lines on ``stream`` (a terminal), each replacing the one before."""

    def __init__(self, stream: TextIO | None = None, *, colour: bool = True) -> None:
        self.stream = stream if stream is not None else sys.stdout
        self.colour = colour
        self.height = 0
        self.live = False
        self._last: str | None = None
        self._size: tuple[int, int] | None = None
        self._signals: dict[int, object] = {}

    def _start(self) -> None:
        self.live = True
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGTERM, signal.SIGHUP):
                if signal.getsignal(sig) is signal.SIG_DFL:
                    self._signals[sig] = signal.signal(sig, _interrupt)
        self.stream.write(HIDE_CURSOR)

    def draw(self, lines: list[Segments]) -> None:
        """Replace the frame on screen with ``lines`` (safe text with styles); a frame
        like the one shown is not drawn again."""
        if not self.live:
            self._start()
        size = terminal_size(self.stream)
        columns, rows = size
        if len(lines) > rows - 1:
            shown = max(0, rows - 2)
            lines = [*lines[:shown], [(f"… {len(lines) - shown} more lines", "dim")]]
        # One column short of the edge: a full line would wrap on some terminals.
        frame = "".join(
            fit_width(line, columns - 1, self.colour) + CLEAR_TO_END_OF_LINE + "\n"
            for line in lines
        )
        resized = self.height > 0 and size != self._size
        if frame == self._last and not resized:
            return
        # A resized terminal rewraps what it shows (or pulls lines back from its
        # scrollback): where the last frame starts is no longer known, and going up its
        # height left parts of it on screen. Then start at the top of a cleared screen.
        up = f"\x1b[{self.height}A\r" if self.height else ""
        up = HOME + CLEAR_BELOW if resized else up
        self.stream.write(up + frame + CLEAR_BELOW)
        self.stream.flush()
        self.height, self._last, self._size = len(lines), frame, size

    def close(self) -> None:
        """The cursor back, below the last frame (which stays on screen)."""
        if not self.live:
            return
        self.live = False
        try:
            self.stream.write(SHOW_CURSOR)
            self.stream.flush()
        except (OSError, ValueError):
            pass  # the terminal is gone (SIGHUP, a closed pty): nothing to restore
        finally:
            for sig, handler in self._signals.items():
                signal.signal(sig, handler)  # type: ignore[arg-type]
            self._signals.clear()


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt
