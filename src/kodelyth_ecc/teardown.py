"""Safe teardown of a session: tmux session, worktrees, branches, and optionally
its coordination dir.

Work is never destroyed silently: a worktree with uncommitted changes or
commits beyond its base is refused unless ``force``, and even then its changes
are first saved as a patch under ``<coordination-root>/<session>.teardown/``
(outside the session dir, so ``purge`` keeps it).
"""

from __future__ import annotations

import datetime as _dt
import filecmp
import os
import shutil
from collections.abc import Iterable
from dataclasses import dataclass, field

from kodelyth_ecc import gitrepo, naming, tmux
from kodelyth_ecc.coordination import read_session_record
from kodelyth_ecc.errors import KodelythError
from kodelyth_ecc.fsutil import atomic_write_text
from kodelyth_ecc.statusfile import parse_status


class UnsavedWork(KodelythError):
    """Teardown refused: some worktree or branch holds work that is not saved elsewhere."""

    def __init__(self, message: str, session: str, detail: str) -> None:
        super().__init__(message)
        self.session = session
        self.detail = detail


@dataclass(frozen=True)
class TeardownTarget:
    slug: str
    branch: str
    worktree: str
    seed_paths: tuple[str, ...] = ()


@dataclass
class TeardownResult:
    session: str
    killed_tmux: bool = False
    removed_worktrees: list[str] = field(default_factory=list)
    deleted_branches: list[str] = field(default_factory=list)
    saved_patches: list[str] = field(default_factory=list)
    purged: str | None = None


@dataclass(frozen=True)
class _Work:
    target: TeardownTarget
    changes: int
    ahead: int
    has_worktree: bool
    edited_seeds: tuple[str, ...] = ()


def _targets_from_dir(coordination_dir: str, session: str, repo_root: str) -> list[TeardownTarget]:
    """Workers of a session without session.json (e.g. written by the JS tool)."""
    targets: list[TeardownTarget] = []
    if not os.path.isdir(coordination_dir):
        return targets
    for entry in sorted(os.scandir(coordination_dir), key=lambda e: e.name):
        if not entry.is_dir(follow_symlinks=False):
            continue
        slug = entry.name
        branch = naming.branch_name(session, slug)
        worktree = naming.worktree_path(os.path.dirname(repo_root), repo_root, session, slug)
        try:
            with open(os.path.join(entry.path, "status.md"), encoding="utf-8") as fh:
                status = parse_status(fh.read(), slug)
            branch = status.branch or branch
            worktree = status.worktree or worktree
        except OSError:
            pass
        targets.append(TeardownTarget(slug, branch, worktree))
    return targets


def _same_content(a: str, b: str) -> bool:
    if os.path.islink(a) or os.path.islink(b):
        return os.path.islink(a) and os.path.islink(b) and os.readlink(a) == os.readlink(b)
    if not os.path.isfile(a) or not os.path.isfile(b):
        return False
    return filecmp.cmp(a, b, shallow=False)


def seed_changes(repo: str, worktree: str, seeds: Iterable[str]) -> list[str]:
    """Seeded paths (repo-relative) whose worktree copy no longer matches the repo's.

    Seeds are exempt from the unsaved-work check only while they are what was
    seeded: a worker's edit to a seeded file, or a file it added inside a seeded
    directory, is work like any other.
    """
    changed: list[str] = []
    for rel in seeds:
        top = os.path.join(worktree, rel)
        if os.path.isdir(top) and not os.path.islink(top):
            for dirpath, dirnames, filenames in os.walk(top):
                links = [d for d in dirnames if os.path.islink(os.path.join(dirpath, d))]
                for name in sorted(filenames + links):
                    path = os.path.join(dirpath, name)
                    inner = os.path.relpath(path, worktree)
                    if not _same_content(os.path.join(repo, inner), path):
                        changed.append(inner)
        elif os.path.lexists(top) and not _same_content(os.path.join(repo, rel), top):
            changed.append(rel)
    return changed


def _resolve(repo: str, ref: str) -> str:
    result = gitrepo.git(
        "rev-parse", "--verify", "--quiet", "--end-of-options", f"{ref}^{{commit}}",
        cwd=repo, check=False,
    )  # fmt: skip
    return result.strip() or ref


def _unreferenced_head_commits(worktree: str, base: str) -> int:
    """Commits on the worktree's HEAD beyond ``base`` that no branch, tag or remote
    keeps: made on a detached HEAD, they would be lost with the worktree."""
    out = gitrepo.git(
        "rev-list", "--count", "HEAD", "--not", base, "--branches", "--tags", "--remotes",
        cwd=worktree, check=False,
    )  # fmt: skip
    return int(out.strip()) if out.strip().isdigit() else 0


def _stamp() -> str:
    return _dt.datetime.now(_dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")


def teardown(
    session: str,
    coordination_root: str,
    *,
    repo_root: str | None = None,
    force: bool = False,
    purge: bool = False,
    extra_targets: Iterable[TeardownTarget] = (),
) -> TeardownResult:
    naming.validate_session_name(session)
    coordination_dir = os.path.join(coordination_root, session)
    record = read_session_record(coordination_dir)
    repo = (record.repo_root if record and record.repo_root else None) or repo_root
    if repo is None:
        raise KodelythError(
            f"cannot tell which repository session {session!r} belongs to: run this inside it"
        )
    if record is not None:
        targets = [
            TeardownTarget(w.slug, w.branch, w.worktree, tuple(w.seed_paths))
            for w in record.workers
        ]
        base = record.base_commit
    else:
        targets = _targets_from_dir(coordination_dir, session, repo)
        base = None
    known = {t.slug for t in targets}
    targets += [t for t in extra_targets if t.slug not in known]
    # A commit, not a name: "HEAD" would mean each worktree's own HEAD inside it.
    base = _resolve(repo, base or "HEAD")
    if not targets and not os.path.isdir(coordination_dir):
        # Nothing shows that a tmux session of this name is ours: it may be the user's
        # own (or the session's files live under another --coordination-root).
        mine = (
            f" (the tmux session {session!r} has no coordination dir here; if it is a "
            f"leftover of ours, `tmux kill-session -t ={session}` ends it)"
            if tmux.has_session(session)
            else ""
        )
        raise KodelythError(
            f"no session {session!r} under {coordination_root}: "
            f"run `kodelyth-ecc status` to list sessions, or pass --coordination-root{mine}"
        )

    registered = gitrepo.worktrees(repo)
    # git refuses to delete a branch checked out elsewhere (the user reviewing it in
    # the main checkout, say): find out before anything is torn down, not halfway.
    for target in targets:
        own = os.path.realpath(target.worktree)
        for path, branch in registered.items():
            if branch == target.branch and path != own:
                raise KodelythError(
                    f"branch {target.branch} is checked out in {path}: switch that worktree "
                    f"to another branch (e.g. `git -C {path} switch -`), then tear down "
                    f"{session!r} again"
                )
    present: list[TeardownTarget] = []
    work: list[_Work] = []
    for target in targets:
        changes = 0
        unreferenced = 0
        edited_seeds: list[str] = []
        if os.path.realpath(target.worktree) in registered and os.path.isdir(target.worktree):
            present.append(target)
            edited_seeds = seed_changes(repo, target.worktree, target.seed_paths)
            changes = len(gitrepo.uncommitted_changes(target.worktree, target.seed_paths))
            changes += len(edited_seeds)
            unreferenced = _unreferenced_head_commits(target.worktree, base)
        elif os.path.lexists(target.worktree):
            raise KodelythError(
                f"{target.worktree} exists but is not a worktree of {repo}: "
                "move it away yourself; teardown only removes worktrees it can account for"
            )
        # (A registered worktree whose directory was deleted by hand is forgotten by the
        # `git worktree prune` below; its branch is still checked for commits.)
        ahead = unreferenced + (
            gitrepo.commits_ahead(repo, target.branch, base)
            if gitrepo.branch_exists(repo, target.branch)
            else 0
        )
        if changes or ahead:
            work.append(_Work(target, changes, ahead, target in present, tuple(edited_seeds)))

    if work and not force:
        first = work[0]
        detail = ", ".join(
            f"{w.target.slug} ({w.changes} uncommitted, {w.ahead} commits ahead)" for w in work
        )
        raise UnsavedWork(
            f"refusing to tear down {session!r}: unsaved work in {detail}; commit or push it, "
            f"or pass --force to save it as a patch first (e.g. {first.target.worktree})",
            session,
            detail,
        )

    result = TeardownResult(session)
    result.killed_tmux = tmux.kill_session(session)
    if work:
        salvage_dir = os.path.join(coordination_root, f"{session}.teardown")
        os.makedirs(salvage_dir, exist_ok=True)
        stamp = _stamp()
        for item in work:
            if item.has_worktree:
                patch = gitrepo.diff_against(
                    item.target.worktree, base, include_ignored=item.edited_seeds
                )
            else:
                patch = gitrepo.git(
                    "diff", "--binary", base, f"refs/heads/{item.target.branch}", cwd=repo
                )
            path = os.path.join(salvage_dir, f"{item.target.slug}-{stamp}.patch")
            atomic_write_text(path, patch)
            result.saved_patches.append(path)
    for target in present:
        gitrepo.worktree_remove(repo, target.worktree)
        result.removed_worktrees.append(target.worktree)
    gitrepo.worktree_prune(repo)
    for target in targets:
        if gitrepo.branch_exists(repo, target.branch):
            gitrepo.branch_delete(repo, target.branch)
            result.deleted_branches.append(target.branch)
    if purge and os.path.isdir(coordination_dir):
        shutil.rmtree(coordination_dir)
        result.purged = coordination_dir
    return result
