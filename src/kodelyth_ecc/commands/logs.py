"""``kodelyth-ecc logs``: a worker's transcript, as a reader of its pane saw it.

A transcript is written by whatever ran in the pane, or restored from a stranger's
bundle: escape sequences are removed and other controls shown as escapes, never sent
raw to the terminal."""

from __future__ import annotations

import argparse
import os
import sys
import time

from kodelyth_ecc.commands._common import coordination_root, worker_of
from kodelyth_ecc.errors import EXIT_OK
from kodelyth_ecc.sessiondir import TRANSCRIPT_FILE, SessionDir, WorkerDir

# How often --follow looks for more, and how much of a transcript one read takes.
FOLLOW_INTERVAL_S = 0.2
PANE_LOOK_S = 2.0
CHUNK_BYTES = 1 << 20
# What -n N reads from the end at most: N lines of a transcript are rarely this long.
TAIL_BYTES = 8 << 20


def _clean(data: bytes) -> str:
    from kodelyth_ecc.export import strip_terminal_controls
    from kodelyth_ecc.termsafe import visible_controls

    return visible_controls(strip_terminal_controls(data.decode("utf-8", errors="replace")))


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
        self._reopen_if_replaced()
        if self.fd is None:
            return ""
        out: list[str] = []
        while True:
            chunk = os.read(self.fd, CHUNK_BYTES)
            if not chunk:
                break
            data = self.pending + chunk
            cut = data.rfind(b"\n") + 1
            if cut == 0 and len(data) >= CHUNK_BYTES:
                cut = len(data)
            out.append(_clean(data[:cut]))
            self.pending = data[cut:]
        if final and self.pending:
            out.append(_clean(self.pending) + "\n")
            self.pending = b""
        return "".join(out)

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
        lines = data[:cut].splitlines(keepends=True)
        return _clean(b"".join(lines[-count:]))


def run(args: argparse.Namespace) -> int:
    from kodelyth_ecc.status import collect_status

    root = coordination_root(args.coordination_root)
    status = collect_status(args.session, root)
    worker = worker_of(status, args.worker)
    transcript = Transcript(SessionDir.at(root, args.session).worker(worker.slug))
    out = sys.stdout
    try:
        if args.lines is not None:
            out.write(transcript.skip_to_last_lines(args.lines))
        if not args.follow:
            out.write(transcript.read(final=True))
            return EXIT_OK
        # Until the worker is done: then what it wrote last, and out. Its status file is
        # read each time; tmux (is its pane gone?) is asked every PANE_LOOK_S.
        next_look = time.monotonic() + PANE_LOOK_S
        while True:
            look = time.monotonic() >= next_look
            if look:
                next_look = time.monotonic() + PANE_LOOK_S
            now = collect_status(args.session, root, look_at_panes=look).workers
            finished = all(w.done for w in now if w.slug == worker.slug)
            out.write(transcript.read(final=finished))
            out.flush()
            if finished:
                return EXIT_OK
            time.sleep(FOLLOW_INTERVAL_S)
    finally:
        transcript.close()
