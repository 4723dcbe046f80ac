"""Atomic file writes: readers see the old file or the new one, never half of one.

Imported by the worker runner in every pane, so it stays small (no tempfile or
pathlib). The temporary file is created next to the target with O_EXCL and the
usual permissions (0o666 less the umask), then renamed over it.
"""

from __future__ import annotations

import os


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    target = os.fspath(path)
    head, name = os.path.split(target)
    tmp = os.path.join(head, f".{name}.{os.getpid()}.{os.urandom(4).hex()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), 0o666)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, target)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def atomic_write_text(path: str | os.PathLike[str], text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def missing_dirs(path: str) -> list[str]:
    """``path`` and those of its ancestors that do not exist yet, deepest first: what
    ``os.makedirs(path)`` (or ``git worktree add`` under it) would create."""
    missing: list[str] = []
    current = os.path.abspath(path)
    while not os.path.lexists(current):
        missing.append(current)
        parent = os.path.dirname(current)
        if parent == current:
            break
        current = parent
    return missing


def remove_empty_dirs(paths: list[str]) -> None:
    """Remove each of ``paths`` (deepest first) that exists and is empty; keep the rest."""
    for path in paths:
        try:  # noqa: SIM105 - contextlib is one more import for every pane's runner
            os.rmdir(path)
        except OSError:  # not empty (someone else's files), or already gone
            pass
