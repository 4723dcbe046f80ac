"""One lock per repository around the git calls that change its worktree list.

Git keeps an admin dir per linked worktree under the repository's common git dir
(``.git/worktrees/<id>``). A `git worktree add`, `remove`, `prune` or `branch -D` reads
every one of them, and fails ("failed to read .git/worktrees/<id>/commondir") when it
meets one another process is half way through creating or removing. Runs on one repo
(concurrent swarms and replays) therefore take an ``flock`` on a file in the common
git dir around those calls. The kernel drops the lock when its holder exits, so a
crashed run never leaves it held.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import time
from collections.abc import Iterator

from kodelyth_ecc import gitrepo
from kodelyth_ecc.errors import KodelythError

LOCK_NAME = "kodelyth-worktrees.lock"
DEFAULT_TIMEOUT_S = 120.0
_POLL_S = 0.05


class RepoLockTimeout(KodelythError):
    """Another process held the repository's worktree lock for the whole wait."""


def lock_path(repo: str) -> str:
    """The lock file, in the common git dir (the same from every worktree of the repo)."""
    common = gitrepo.git("rev-parse", "--git-common-dir", cwd=repo).strip()
    return os.path.normpath(os.path.join(repo, common, LOCK_NAME))


@contextlib.contextmanager
def worktree_lock(repo: str, *, timeout: float = DEFAULT_TIMEOUT_S) -> Iterator[None]:
    """Hold the repository's worktree lock for the ``with`` block, waiting at most
    ``timeout`` seconds for it. Not re-entrant: never nest two blocks."""
    path = lock_path(repo)
    flags = os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NOFOLLOW", 0)
    try:
        fd = os.open(path, flags, 0o644)
    except OSError as exc:
        raise KodelythError(
            f"cannot open the worktree lock {path}: {exc.strerror}; "
            "make sure the repository's .git directory is writable"
        ) from None
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise RepoLockTimeout(
                        f"could not lock {path} within {timeout:g} s: another kodelyth-ecc run "
                        "is still creating or removing worktrees of this repository; wait for "
                        "it to finish and try again"
                    ) from None
                time.sleep(_POLL_S)
        try:
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)
