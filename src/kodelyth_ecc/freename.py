"""Picking a session name nobody uses yet, and claiming it.

A name is free when nothing it would be used for exists: the coordination dir, the
tmux session, any branch ``orchestrator-<name>-*`` and the workers' worktree paths.

Numbering: candidates are ``base``, ``base-2``, ``base-3`` ... (``bare_first``, what a
swarm's default ``swarm-<date>-<N>a`` uses), or ``base-1``, ``base-2`` ... (what a
replay's ``<origin>-replay-N`` uses: pass ``<origin>-replay`` as the base). The claim is
the atomic ``mkdir`` of the coordination dir (``coordination.materialize_plan`` raises
``SessionTaken`` when another run made it first); ``claim_free_name`` then tries the
next free name. Only for a name it picked itself: a name the user gave is never
swapped for another.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterator, Sequence
from typing import TypeVar

from kodelyth_ecc import gitrepo, naming, tmux
from kodelyth_ecc.errors import KodelythError, SessionTaken

T = TypeVar("T")
_SIBLING = re.compile(r"[0-9]+-")
MAX_NAME_NUMBER = 10_000
MAX_NAME_RACES = 20


def name_is_free(
    name: str,
    coordination_root: str,
    repo_root: str,
    worktree_root: str,
    slugs: Sequence[str],
    *,
    numbered_siblings: bool = False,
) -> bool:
    """Free everywhere it would be used: coordination dir, tmux, branches, worktrees.

    Any branch ``orchestrator-<name>-*`` takes the name (a session's other workers
    count too), except, with ``numbered_siblings``, those of the sessions
    ``<name>-2``, ``<name>-3`` ... (``orchestrator-<name>-<digits>-*``) unless they
    are exactly one of this session's own branches."""
    if os.path.lexists(os.path.join(coordination_root, name)) or tmux.has_session(name):
        return False
    prefix = f"orchestrator-{name}-"
    found = gitrepo.branches(repo_root, prefix=prefix)
    if numbered_siblings:
        own = {naming.branch_name(name, slug) for slug in slugs}
        found = {b for b in found if b in own or not _SIBLING.match(b.removeprefix(prefix))}
    if found:
        return False
    return not any(
        os.path.lexists(naming.worktree_path(worktree_root, repo_root, name, slug))
        for slug in slugs
    )


def numbered(base: str, number: int, *, bare_first: bool = True) -> str:
    """The ``number``-th candidate: ``base`` itself for 1 when ``bare_first``, else
    ``base-<number>``."""
    return base if number == 1 and bare_first else f"{base}-{number}"


def free_names(
    base: str,
    *,
    coordination_root: str,
    repo_root: str,
    worktree_root: str | None = None,
    slugs: Sequence[str] = (),
    start: int = 1,
    bare_first: bool = True,
) -> Iterator[str]:
    """The free candidates in order, each checked when it is asked for (so a name taken
    between two ``next()`` calls is skipped)."""
    root = worktree_root or os.path.dirname(os.path.normpath(repo_root))
    for number in range(max(1, start), MAX_NAME_NUMBER):
        name = numbered(base, number, bare_first=bare_first)
        # The bare base is not taken by the branches of its own numbered successors.
        siblings = bare_first and number == 1
        if name_is_free(
            name, coordination_root, repo_root, root, slugs, numbered_siblings=siblings
        ):
            yield naming.validate_session_name(name)
    raise KodelythError(
        f"no free session name for {base!r} below {numbered(base, MAX_NAME_NUMBER)}: "
        "tear down old sessions (`kodelyth-ecc teardown NAME --purge`) or pass --session"
    )


def first_free_name(
    base: str,
    *,
    coordination_root: str,
    repo_root: str,
    worktree_root: str | None = None,
    slugs: Sequence[str] = (),
    start: int = 1,
    bare_first: bool = True,
) -> str:
    """The first free name of ``base``, ``base-2``, ... (see the module's numbering)."""
    return next(
        free_names(
            base,
            coordination_root=coordination_root,
            repo_root=repo_root,
            worktree_root=worktree_root,
            slugs=slugs,
            start=start,
            bare_first=bare_first,
        )
    )


def claim_free_name(
    base: str,
    attempt: Callable[[str], T],
    *,
    coordination_root: str,
    repo_root: str,
    worktree_root: str | None = None,
    slugs: Sequence[str] = (),
    bare_first: bool = True,
    max_races: int = MAX_NAME_RACES,
) -> T:
    """``attempt(name)`` (write or execute a plan under ``name``) with the first free
    name; when another run claims it first (``SessionTaken``), with the next free one."""
    names = free_names(
        base,
        coordination_root=coordination_root,
        repo_root=repo_root,
        worktree_root=worktree_root,
        slugs=slugs,
        bare_first=bare_first,
    )
    for race in range(max_races):
        name = next(names)
        try:
            return attempt(name)
        except SessionTaken:
            if race == max_races - 1:
                raise
    raise AssertionError("unreachable")  # pragma: no cover
