"""``kodelyth-ecc logs``: a worker's transcript, as a reader of its pane saw it.

A transcript is written by whatever ran in the pane, or restored from a stranger's
bundle: escape sequences are removed and other controls shown as escapes, never sent
raw to the terminal."""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Iterator

from kodelyth_ecc.commands._common import coordination_root, worker_of
from kodelyth_ecc.errors import EXIT_OK
from kodelyth_ecc.sessiondir import TRANSCRIPT_FILE, SessionDir, WorkerDir

# How often --follow looks for more, and how much of a transcript one read takes.
FOLLOW_INTERVAL_S = 0.2
PANE_LOOK_S = 2.0
CHUNK_BYTES = 1 << 20
# What -n N reads from the end at most: N lines of a transcript are rarely this long.
TAIL_BYTES = 8 << 20


# The control bytes strip_terminal_controls drops, dropped first at memory speed (a
# transcript of NULs, a sparse file, went through its regular expressions at 30 MB/s):
# all of C0 but tab, newline, ESC and BEL (which start and end sequences), and DEL.
_DROPPED = bytes([*range(0x00, 0x07), 0x08, *range(0x0B, 0x1B), *range(0x1C, 0x20), 0x7F])


def _clean(data: bytes) -> str:
    from kodelyth_ecc.termsafe import visible_controls

    data = data.translate(None, _DROPPED)
    if b"\x1b" in data or b"\xc2\x9b" in data:  # ESC, or CSI as a C1 character
        from kodelyth_ecc.export import strip_terminal_controls

        text = strip_terminal_controls(data.decode("utf-8", errors="replace"))
    else:
        text = data.replace(b"\x07", b"").decode("utf-8", errors="replace")
    return visible_controls(text)


class Transcript:
    """A worker's transcript read as it grows, whole lines at a time (an escape
    sequence or a UTF-8 character is never cut in two). A new file in its place (a
    retried worker's next attempt) is read from its start."""

    def __init__(self, worker: WorkerDir) -> None:
        self.worker = worker
        self.fd: int | None = None
        self.inode: tuple[int, int] | None = None
        self.pending = b""

    def close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None

    def _reopen_if_replaced(self) -> None:
        try:
            info = os.lstat(self.worker.file(TRANSCRIPT_FILE))
        except OSError:
            return
        if self.fd is not None and (info.st_dev, info.st_ino) == self.inode:
            return
        self.close()
        self.pending = b""
        self.fd = self.worker.open(TRANSCRIPT_FILE)
        if self.fd is not None:
            opened = os.fstat(self.fd)
            self.inode = (opened.st_dev, opened.st_ino)

    def read(self, *, final: bool = False) -> str:
        """What was written since the last read, up to its last newline (all of it
        when ``final``, or when a line runs past a chunk)."""
        return "".join(self.pieces(final=final))

    def pieces(self, *, final: bool = False) -> Iterator[str]:
        """``read`` a chunk at a time, for a printer: a transcript of gigabytes is
        never held whole, and a closed pipe (``| head``) ends the reading."""
        self._reopen_if_replaced()
        if self.fd is None:
            return
        while True:
            chunk = os.read(self.fd, CHUNK_BYTES)
            if not chunk:
                break
            data = self.pending + chunk
            cut = data.rfind(b"\n") + 1
            if cut == 0 and len(data) >= CHUNK_BYTES:
                cut = len(data)
            self.pending = data[cut:]
            if cut:
                yield _clean(data[:cut])
        if final and self.pending:
            pending, self.pending = self.pending, b""
            yield _clean(pending) + "\n"

    def skip_to_last_lines(self, count: int) -> str:
        """The last ``count`` lines, read from at most TAIL_BYTES before the end; the
        next ``read`` continues after them."""
        self._reopen_if_replaced()
        if self.fd is None:
            return ""
        size = os.fstat(self.fd).st_size
        os.lseek(self.fd, max(0, size - TAIL_BYTES), os.SEEK_SET)
        data = b""
        while len(data) < TAIL_BYTES:
            chunk = os.read(self.fd, TAIL_BYTES - len(data))
            if not chunk:
                break
            data += chunk
        cut = data.rfind(b"\n") + 1
        self.pending = data[cut:]
        # Lines end at a newline only (bytes.splitlines would cut at each \r too, and a
        # line of progress-bar redraws is one line once cleaned).
        start = cut - 1
        for _ in range(count):
            start = data.rfind(b"\n", 0, start)
            if start < 0:
                break
        return _clean(data[start + 1 : cut])


def run(args: argparse.Namespace) -> int:
    from kodelyth_ecc.status import collect_status, never_ran_here

    root = coordination_root(args.coordination_root)
    status = collect_status(args.session, root)
    worker = worker_of(status, args.worker)
    transcript = Transcript(SessionDir.at(root, args.session).worker(worker.slug))
    out = sys.stdout
    follow = args.follow
    unchanging = never_ran_here(status) if follow else None
    if unchanging is not None:
        # An imported bundle of a running swarm says "running" for ever: nothing is
        # coming, so print what there is and end.
        from kodelyth_ecc.termsafe import one_line

        sys.stderr.write(f"kodelyth-ecc: not following: {one_line(unchanging)}\n")
        follow = False
    try:
        if args.lines is not None:
            out.write(transcript.skip_to_last_lines(args.lines))
        if not follow:
            for piece in transcript.pieces(final=True):
                out.write(piece)
            return EXIT_OK
        # Until the worker is done: then what it wrote last, and out. Its status file is
        # read each time (its alone: a session may have thousands); tmux (is its pane
        # gone?) is asked every PANE_LOOK_S.
        next_look = time.monotonic() + PANE_LOOK_S
        while True:
            look = time.monotonic() >= next_look
            if look:
                next_look = time.monotonic() + PANE_LOOK_S
            now = collect_status(args.session, root, look_at_panes=look, only=(worker.slug,))
            finished = all(w.done for w in now.workers)
            for piece in transcript.pieces(final=finished):
                out.write(piece)
            out.flush()
            if finished:
                return EXIT_OK
            time.sleep(FOLLOW_INTERVAL_S)
    finally:
        transcript.close()
