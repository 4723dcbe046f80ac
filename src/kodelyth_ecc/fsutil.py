"""Atomic file writes: readers see the old file or the new one, never half of one.

Imported by the worker runner in every pane, so it stays small (no tempfile or
pathlib). The temporary file is created next to the target with O_EXCL and the
usual permissions (0o666 less the umask), then renamed over it.
"""

from __future__ import annotations

import os


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    target = os.fspath(path)
    tmp = temp_sibling(target)
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


def temp_sibling(path: str, kind: str = "tmp") -> str:
    """A fresh hidden name next to ``path`` that records its creator's pid, so that a
    later run can tell a dead run's leftover from a live run's work in progress."""
    head, name = os.path.split(path)
    return os.path.join(head, f".{name}.{os.getpid()}.{os.urandom(4).hex()}.{kind}")


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, ValueError):
        return True  # someone else's process, or not a pid at all: leave it
    return True


def stale_siblings(path: str, kinds: tuple[str, ...] = ("tmp",)) -> list[str]:
    """Leftovers of ``temp_sibling(path, kind)`` whose creating process is gone (killed
    mid-write): the next write of ``path`` removes them."""
    head, name = os.path.split(path)
    prefix = f".{name}."
    found: list[str] = []
    try:
        entries = os.listdir(head or ".")
    except OSError:
        return found
    for entry in entries:
        if not entry.startswith(prefix):
            continue
        parts = entry[len(prefix) :].split(".")
        if len(parts) != 3 or parts[2] not in kinds or not parts[0].isdigit():
            continue
        if not _pid_alive(int(parts[0])):
            found.append(os.path.join(head, entry))
    return found


def remove_stale_temps(path: str) -> None:
    """Remove the temporary files dead runs left next to ``path`` (never a directory,
    never through a symlink)."""
    import stat

    for leftover in stale_siblings(path):
        try:
            if stat.S_ISREG(os.lstat(leftover).st_mode):
                os.unlink(leftover)
        except OSError:
            pass
