"""Safe teardown of a session: tmux session, worktrees, branches, and optionally
its coordination dir.

Work is never destroyed silently. A worker still running, a worktree with
uncommitted changes, with git-ignored files (``.env``, build outputs), or with
commits that no other branch, tag or remote keeps, is refused unless ``force``;
even then the work is first saved under ``<coordination-root>/<session>.teardown/``
(outside the session dir, so ``purge`` keeps it): a byte-exact patch for
``git apply`` on the base commit, and copies of the ignored files. A worker whose
work ``apply`` brought into a branch is saved while git confirms it (its worktree still
holds exactly what was applied; ``kodelyth_ecc.apply.saved_by_apply``); its ignored files
are still refused, since apply does not carry them.

Teardown only ever acts on the session's own names: branches
``orchestrator-<session>-<slug>`` and worktrees ``<repo>-<session>-<slug>``
registered with git. A ``status.md`` or ``session.json`` naming anything else (a
user's own branch or worktree) is left alone, whoever wrote it. Without ``purge`` the
coordination dir stays, and its session.json says when the session was torn down.
"""

from __future__ import annotations

import datetime as _dt
import filecmp
import os
import shutil
import stat
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from kodelyth_ecc import gitrepo, naming, tmux
from kodelyth_ecc.coordination import read_session_record, session_lock
from kodelyth_ecc.errors import KodelythError
from kodelyth_ecc.fsutil import atomic_write_bytes
from kodelyth_ecc.sessiondir import (
    MAX_STATUS_BYTES,
    SANDBOX_DIR,
    STATUS_FILE,
    SessionDir,
    UnsafeFile,
    WorkerDir,
    is_slug,
)
from kodelyth_ecc.statusfile import parse_status

TYPE_CHECKING = False
if TYPE_CHECKING:
    from kodelyth_ecc.apply import Applied


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
    # Directories holding copies of git-ignored files, one per worktree that had any.
    saved_ignored: list[str] = field(default_factory=list)
    # Branches and worktrees the session's files named that are not the session's own.
    left_alone: list[str] = field(default_factory=list)
    purged: str | None = None
    # Workers whose work apply brought into a branch, so it is saved: worker, target, result.
    applied: list[dict[str, str]] = field(default_factory=list)
    # The refs that kept applied snapshots (refs/kodelyth/applied/<session>/<slug>).
    deleted_refs: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class _Work:
    target: TeardownTarget
    changes: int
    ahead: int
    has_worktree: bool
    edited_seeds: tuple[str, ...] = ()
    ignored: tuple[str, ...] = ()
    running: bool = False


# States in which a worker whose pane is alive is still at work.
_ACTIVE_STATES = frozenset({"pending", "running"})


def _targets_from_dir(session_dir: SessionDir, repo_root: str) -> list[TeardownTarget]:
    """Workers of a session without session.json (e.g. written by the JS tool)."""
    targets: list[TeardownTarget] = []
    for slug in session_dir.worker_slugs():
        branch = naming.branch_name(session_dir.name, slug)
        worktree = naming.worktree_path(
            os.path.dirname(repo_root), repo_root, session_dir.name, slug
        )
        try:
            text = session_dir.worker(slug).read_text(STATUS_FILE, MAX_STATUS_BYTES)
        except UnsafeFile:
            text = None  # not a file to trust: the default names stand
        if text is not None:
            status = parse_status(text, slug)
            branch = status.branch or branch
            worktree = status.worktree or worktree
        targets.append(TeardownTarget(slug, branch, worktree))
    return targets


def _safe_seed(rel: str) -> bool:
    """A seed path as a swarm records it: relative, normalised, inside the worktree.
    (A hand-edited ``"."`` would otherwise exempt every change from the check.)"""
    if not isinstance(rel, str) or not rel or os.path.isabs(rel):
        return False
    parts = rel.split("/")
    return os.path.normpath(rel) == rel and not {"", ".", ".."} & set(parts)


def own_targets(
    session: str, repo: str, worktree_root: str, claimed: Iterable[TeardownTarget]
) -> tuple[list[TeardownTarget], list[str]]:
    """The claimed targets reduced to the session's own names; and what was left alone.

    A branch is the worker's only if it is ``orchestrator-<session>-<slug>``, a
    worktree only if its directory is named ``<repo>-<session>-<slug>`` (and, to be
    removed, git has it registered). Anything else is replaced by the worker's own
    default name; an empty name means the worker has none.
    """
    targets: list[TeardownTarget] = []
    left: list[str] = []
    real_repo = os.path.realpath(repo)
    for claim in claimed:
        if not is_slug(claim.slug):
            left.append(f"worker {claim.slug!r} (not a valid worker name)")
            continue
        own_branch = naming.branch_name(session, claim.slug)
        default_tree = naming.worktree_path(worktree_root, repo, session, claim.slug)
        branch = claim.branch
        if branch and branch != own_branch:
            left.append(f"branch {branch}")
            branch = own_branch
        worktree = claim.worktree
        if worktree and (
            not os.path.isabs(worktree)
            or os.path.basename(os.path.normpath(worktree)) != os.path.basename(default_tree)
            or os.path.realpath(worktree) == real_repo
        ):
            left.append(f"worktree {worktree}")
            worktree = default_tree
        seeds = tuple(s for s in claim.seed_paths if _safe_seed(s))
        targets.append(TeardownTarget(claim.slug, branch, worktree, seeds))
    return targets, left


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


def _under(rel: str, roots: Sequence[str]) -> bool:
    return any(rel == root or rel.startswith(root + "/") for root in roots)


def _resolve(repo: str, ref: str) -> str | None:
    return gitrepo.rev_parse(repo, f"{ref}^{{commit}}")


def ignored_work(worktree: str, seeds: Sequence[str]) -> list[str]:
    """The worktree's git-ignored files that are work: not the seeds the swarm copied in
    (edited seeds are counted as changes instead)."""
    return [p for p in gitrepo.ignored_files(worktree) if not _under(p, seeds)]


def _unknown_base(session_dir: SessionDir, ref: str, repo: str, recorded: bool) -> KodelythError:
    # Without the base nothing tells which commits are the worker's own.
    fix = (
        f"fix base_commit in {session_dir.record_file}"
        if recorded
        else "commit something in it first"
    )
    return KodelythError(
        f"the base {ref!r} of session {session_dir.name!r} is not a commit in {repo}: "
        f"teardown cannot tell which of its commits are unsaved; {fix}, then tear down again"
    )


def _stamp() -> str:
    return _dt.datetime.now(_dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")


def running_workers(session_dir: SessionDir) -> set[str]:
    """Slugs of workers still at work: status.md says pending or running and the
    pane is alive (as ``status`` computes it). Unknown panes (no session.json, no
    tmux) count as not running."""
    if not session_dir.exists():
        return set()
    from kodelyth_ecc.status import collect_status

    status = collect_status(session_dir.name, session_dir.coordination_root)
    return {w.slug for w in status.workers if w.pane_alive and w.recorded_state in _ACTIVE_STATES}


SANDBOX_WAIT_S = 30.0


def _wait_for_sandboxes(session_dir: SessionDir, slugs: Iterable[str]) -> None:
    """A sandboxed worker's runner, its pane closed, still brings the worker's commits
    back to its branch (``sandbox.bring_back``) before it writes its status: wait for
    that (bounded), so the work is on the branch when it is looked for."""
    import time

    deadline = time.monotonic() + SANDBOX_WAIT_S
    pending = [session_dir.worker(s) for s in slugs]
    while pending and time.monotonic() < deadline:
        pending = [w for w in pending if os.path.isdir(w.file(SANDBOX_DIR)) and _busy(w)]
        if pending:
            time.sleep(0.05)


def _busy(worker: WorkerDir) -> bool:
    from kodelyth_ecc.sessiondir import read_file

    try:
        data = read_file(worker.status_file, MAX_STATUS_BYTES)
    except (OSError, KodelythError):
        return False
    return data is not None and parse_status(data.decode(errors="replace")).state in _ACTIVE_STATES


def _keep_sandbox_state(session_dir: SessionDir, salvage_dir: str) -> None:
    """A worker whose commits could not be brought back keeps them in its private git
    state: moved beside the salvaged patches before the session dir goes."""
    if not session_dir.exists():
        return
    for slug in session_dir.worker_slugs():
        state = session_dir.worker(slug).file(SANDBOX_DIR)
        if os.path.isdir(state) and not os.path.islink(state):
            os.makedirs(salvage_dir, exist_ok=True)
            target = os.path.join(salvage_dir, f"{slug}-{SANDBOX_DIR}-{_stamp()}")
            shutil.move(state, target)


def _places(paths: Sequence[str]) -> str:
    """Where ignored files are, for a one-line message: ``node_modules/ (1,204), .env``."""
    counts: dict[str, int] = {}
    for rel in paths:
        head, sep, _ = rel.partition("/")
        key = head + "/" if sep else head
        counts[key] = counts.get(key, 0) + 1
    ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    shown = [f"{k} ({n:,})" if k.endswith("/") else k for k, n in ranked[:3]]
    more = f" and {len(ranked) - 3:,} more places" if len(ranked) > 3 else ""
    return ", ".join(shown) + more


def _describe(item: _Work) -> str:
    parts: list[str] = []
    if item.changes or item.ahead:
        parts += [f"{item.changes} uncommitted", f"{item.ahead} commits ahead"]
    if item.ignored:
        count = len(item.ignored)
        noun = "ignored file" if count == 1 else "ignored files"
        parts.append(f"{count:,} {noun} in {_places(item.ignored)}")
    if item.running:
        parts.append("still running")
    return f"{item.target.slug} ({', '.join(parts)})"


def _salvage_name(salvage_dir: str, slug: str, stamp: str) -> str:
    """``<slug>-<stamp>``, with a counter if an earlier teardown this second took it."""
    name = f"{slug}-{stamp}"
    count = 1
    while any(
        os.path.lexists(os.path.join(salvage_dir, name + suffix))
        for suffix in (".patch", ".ignored", ".ignored.partial")
    ):
        count += 1
        name = f"{slug}-{stamp}-{count}"
    return name


_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
_NONBLOCK = getattr(os, "O_NONBLOCK", 0)


def _copy_one(worktree: str, real_worktree: str, rel: str, dest_root: str) -> bool:
    """Copy one file of the worktree, never following a link: a symlink is copied
    as the link itself; a regular file with its bytes, mode and times. FIFOs,
    sockets and devices hold no content and are skipped (False)."""
    src = os.path.join(worktree, rel)
    dst = os.path.join(dest_root, rel)
    parent = os.path.dirname(rel)
    # git lists no path through a symlinked directory; one swapped in since is not followed.
    if os.path.realpath(os.path.join(worktree, parent)) != os.path.normpath(
        os.path.join(real_worktree, parent)
    ):
        return False
    try:
        info = os.lstat(src)
    except FileNotFoundError:
        return False
    if not (stat.S_ISLNK(info.st_mode) or stat.S_ISREG(info.st_mode)):
        return False
    os.makedirs(os.path.dirname(dst), exist_ok=True)
    if stat.S_ISLNK(info.st_mode):
        os.symlink(os.readlink(src), dst)
        return True
    fd = os.open(src, os.O_RDONLY | _NOFOLLOW | _CLOEXEC | _NONBLOCK)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return False
        out = os.open(dst, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW | _CLOEXEC, 0o600)
        try:
            while chunk := os.read(fd, 1 << 20):
                view = memoryview(chunk)
                while view:
                    view = view[os.write(out, view) :]
            os.fchmod(out, stat.S_IMODE(info.st_mode))
        finally:
            os.close(out)
    finally:
        os.close(fd)
    os.utime(dst, ns=(info.st_atime_ns, info.st_mtime_ns))
    return True


def copy_ignored(worktree: str, paths: Iterable[str], dest: str) -> int:
    """Copy ``paths`` (worktree-relative) to ``dest``, keeping their relative paths,
    bytes, modes and symlinks; returns how many were copied. Written to a
    ``.partial`` sibling and renamed at the end: ``dest`` is complete or absent."""
    partial = dest + ".partial"
    os.makedirs(partial)
    real_worktree = os.path.realpath(worktree)
    copied = sum(_copy_one(worktree, real_worktree, rel, partial) for rel in paths)
    os.rename(partial, dest)
    return copied


def teardown(
    session: str,
    coordination_root: str,
    *,
    repo_root: str | None = None,
    force: bool = False,
    purge: bool = False,
    extra_targets: Iterable[TeardownTarget] = (),
) -> TeardownResult:
    """Stop ``session`` and remove its own worktrees and branches, refusing unsaved work
    unless ``force`` (which saves it first). Not while a retry or resume of it runs: it
    takes the same session lock, so it never removes a worktree an agent is starting in."""
    session_dir = SessionDir.at(coordination_root, session)
    busy = (
        f"a retry or resume of session {session!r} is under way: wait for it to finish, "
        "then tear down again"
    )
    with session_lock(session_dir.path, busy):
        return _teardown(
            session_dir,
            repo_root=repo_root,
            force=force,
            purge=purge,
            extra_targets=extra_targets,
        )


def _teardown(
    session_dir: SessionDir,
    *,
    repo_root: str | None,
    force: bool,
    purge: bool,
    extra_targets: Iterable[TeardownTarget],
) -> TeardownResult:
    session, coordination_root = session_dir.name, session_dir.coordination_root
    coordination_dir = session_dir.path
    record = read_session_record(coordination_dir)
    repo = (record.repo_root if record and record.repo_root else None) or repo_root
    if repo is None:
        raise KodelythError(
            f"cannot tell which repository session {session!r} belongs to: run this inside it"
        )
    if record is not None:
        claimed = [
            TeardownTarget(w.slug, w.branch, w.worktree, tuple(w.seed_paths))
            for w in record.workers
        ]
        base = record.base_commit
        worktree_root = record.worktree_root or os.path.dirname(os.path.normpath(repo))
    else:
        claimed = _targets_from_dir(session_dir, repo)
        base = None
        worktree_root = os.path.dirname(os.path.normpath(repo))
    known = {t.slug for t in claimed}
    claimed += [t for t in extra_targets if t.slug not in known]
    targets, left_alone = own_targets(session, repo, worktree_root, claimed)
    # A commit, not a name: "HEAD" would mean each worktree's own HEAD inside it.
    base_ref = base or "HEAD"
    base = _resolve(repo, base_ref)
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
    present: list[TeardownTarget] = []
    for target in targets:
        own = os.path.realpath(target.worktree) if target.worktree else None
        for path, branch in registered.items():
            if target.branch and branch == target.branch and path != own:
                raise KodelythError(
                    f"branch {target.branch} is checked out in {path}: switch that worktree "
                    f"to another branch (e.g. `git -C {path} switch -`), then tear down "
                    f"{session!r} again"
                )
        if not target.worktree:
            continue
        if own in registered and os.path.isdir(target.worktree):
            present.append(target)
        elif os.path.lexists(target.worktree):
            raise KodelythError(
                f"{target.worktree} exists but is not a worktree of {repo}: "
                "move it away yourself; teardown only removes worktrees it can account for"
            )
        # (A registered worktree whose directory was deleted by hand is forgotten by the
        # `git worktree prune` below; its branch is still checked for commits.)

    running = running_workers(session_dir)
    killed = False
    if force and running:
        # Stop the writers before their work is read and saved.
        killed = tmux.kill_session(session)
        _wait_for_sandboxes(session_dir, running)
    doomed = [t.branch for t in targets if t.branch]
    work: list[_Work] = []
    result_applied: list[dict[str, str]] = []
    for target in targets:
        changes = 0
        edited_seeds: list[str] = []
        ignored: list[str] = []
        tips: list[str] = []
        if target in present:
            edited_seeds = seed_changes(repo, target.worktree, target.seed_paths)
            changes = len(gitrepo.uncommitted_changes(target.worktree, target.seed_paths))
            changes += len(edited_seeds)
            # Seeds the swarm copied in are not work; edited ones go into the patch.
            ignored = ignored_work(target.worktree, target.seed_paths)
            head = gitrepo.head_commit(target.worktree)
            tips += [head] if head else []
        has_branch = bool(target.branch) and gitrepo.branch_exists(repo, target.branch)
        if has_branch:
            tips.append(f"refs/heads/{target.branch}")
        if tips and base is None:
            raise _unknown_base(session_dir, base_ref, repo, record is not None)
        ahead = gitrepo.unsaved_commits(repo, tips, base or "HEAD", doomed)
        is_running = target.slug in running
        if (changes or ahead) and not is_running:
            applied = _saved_by_apply(session_dir, repo, target, target in present)
            if applied is not None:
                # What apply brought into a branch is saved; an edited seed is not (apply
                # leaves seeds out), nor are ignored files (apply does not carry them).
                changes, ahead = len(edited_seeds), 0
                result_applied.append(
                    {"worker": target.slug, "target": applied.target, "result": applied.result}
                )
        if changes or ahead or ignored or is_running:
            work.append(
                _Work(
                    target,
                    changes,
                    ahead,
                    target in present,
                    tuple(edited_seeds),
                    tuple(ignored),
                    is_running,
                )
            )
    target_slugs = {t.slug for t in targets}
    stray = sorted(running - target_slugs)

    salvage_dir = session_dir.teardown_dir
    if (work or stray) and not force:
        details = [_describe(w) for w in work] + [f"{slug} (still running)" for slug in stray]
        detail = ", ".join(details)
        where = next((w.target.worktree for w in work if w.has_worktree), None)
        busy = bool(stray) or any(w.running for w in work)
        copies = ", plus copies of ignored files" if any(w.ignored for w in work) else ""
        raise UnsavedWork(
            f"refusing to tear down {session!r}: unsaved work in {detail}; commit or push it"
            f"{f' (in {where})' if where else ''}"
            f"{', or let the running workers finish' if busy else ''}, or pass --force to "
            f"{'stop them and ' if busy else ''}save it first under {salvage_dir} (a patch "
            f"for `git apply` on the base commit{copies})",
            session,
            detail,
        )

    result = TeardownResult(session, left_alone=left_alone, applied=result_applied)
    result.killed_tmux = tmux.kill_session(session) or killed
    saving = [w for w in work if w.changes or w.ahead or w.ignored]
    if saving:
        stamp = _stamp()
        if base is None:
            raise _unknown_base(session_dir, base_ref, repo, record is not None)
        for item in saving:
            try:
                os.makedirs(salvage_dir, exist_ok=True)
                name = _salvage_name(salvage_dir, item.target.slug, stamp)
                if item.changes or item.ahead:
                    if item.has_worktree:
                        patch = gitrepo.diff_against(
                            item.target.worktree, base, include_ignored=item.edited_seeds
                        )
                    else:
                        patch = gitrepo.diff_commits(repo, base, item.target.branch)
                    # Empty when the commits changed nothing in sum: nothing to restore
                    # (and `git apply` refuses an empty patch).
                    if patch:
                        path = os.path.join(salvage_dir, f"{name}.patch")
                        atomic_write_bytes(path, patch)
                        result.saved_patches.append(path)
                if item.ignored:
                    dest = os.path.join(salvage_dir, f"{name}.ignored")
                    copy_ignored(item.target.worktree, item.ignored, dest)
                    result.saved_ignored.append(dest)
            except OSError as exc:
                raise KodelythError(
                    f"could not save the work of {item.target.slug} under {salvage_dir}: "
                    f"{exc.strerror or exc}; no worktree or branch was removed (free some "
                    "space, then run teardown again)"
                ) from exc
    from kodelyth_ecc import repolock
    from kodelyth_ecc.apply import applied_refs_prefix

    # Concurrent swarms, replays and teardowns on this repo take turns: git fails on a
    # worktree admin dir another process is half way through creating or removing.
    with repolock.worktree_lock(repo):
        for target in present:
            gitrepo.worktree_remove(repo, target.worktree)
            result.removed_worktrees.append(target.worktree)
        gitrepo.worktree_prune(repo)
        for target in targets:
            if target.branch and gitrepo.branch_exists(repo, target.branch):
                gitrepo.branch_delete(repo, target.branch)
                result.deleted_branches.append(target.branch)
        # The refs apply made to keep its snapshots: in the session's own namespace.
        for ref in gitrepo.refs_under(repo, applied_refs_prefix(session)):
            gitrepo.ref_delete(repo, ref)
            result.deleted_refs.append(ref)
    if purge and os.path.isdir(coordination_dir):
        _keep_sandbox_state(session_dir, session_dir.teardown_dir)
        shutil.rmtree(coordination_dir)
        result.purged = coordination_dir
    elif record is not None:
        _mark_torn_down(session_dir)
    return result


def _saved_by_apply(
    session_dir: SessionDir, repo: str, target: TeardownTarget, present: bool
) -> Applied | None:
    from kodelyth_ecc.apply import saved_by_apply

    worktree = target.worktree if present else None
    return saved_by_apply(repo, session_dir.worker(target.slug), target, worktree)


def _mark_torn_down(session_dir: SessionDir) -> None:
    """Say in session.json that the session is torn down (its dir stays), so ``status``
    stops listing it; the first teardown's time is kept."""
    from kodelyth_ecc.coordination import TORN_DOWN_KEY, utc_now, write_session_record

    record = read_session_record(session_dir.path)
    if record is None or record.torn_down_at is not None:
        return
    record.extra[TORN_DOWN_KEY] = utc_now()
    try:
        write_session_record(session_dir.path, record)
    except OSError as exc:
        raise KodelythError(
            f"session {session_dir.name!r} was torn down, but {session_dir.record_file} could "
            f"not be rewritten ({exc.strerror or exc}): `status` still lists it; run teardown "
            "again to retry"
        ) from exc
