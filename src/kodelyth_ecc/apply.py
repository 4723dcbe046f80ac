"""A worker's work: shown (``worker_diffs``) and brought into a branch (``apply_worker``).

The work is the worker branch's commits since the session's base commit plus what its
worktree holds uncommitted (edits, and new files that are not git-ignored). Apply
captures the uncommitted part as a snapshot commit through a throwaway index, so the
worker's worktree, index and branch are never touched, and then lets git itself merge
or cherry-pick it: conflicts stop exactly where git stops, and git's own ``--abort``
gives the user's branch back as it was.

What was applied is recorded in ``<worker dir>/applied.json`` and the snapshot is kept
reachable by ``refs/kodelyth/applied/<session>/<slug>`` (teardown deletes both with the
session's branches). Teardown counts a worker's work as saved only while git confirms
the record (``saved_by_apply``): the worker's worktree still holds exactly the snapshot,
and the target branch holds a commit with the snapshot's changes merged in. The record
itself is never trusted: an agent can write to its worker dir, and a session dir can
come from a stranger.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

from kodelyth_ecc import gitrepo, naming
from kodelyth_ecc.coordination import SessionRecord, read_session_record, utc_now
from kodelyth_ecc.errors import KodelythError
from kodelyth_ecc.process import CmdResult, cmd_output, scrubbed_env
from kodelyth_ecc.sessiondir import (
    DIFF_FILE,
    DIFFSTAT_FILE,
    SessionDir,
    WorkerDir,
    is_slug,
    open_dir,
    unknown_worker,
)
from kodelyth_ecc.teardown import (
    TeardownTarget,
    ignored_work,
    own_targets,
    running_workers,
    seed_changes,
)
from kodelyth_ecc.termsafe import one_line

# In the worker's dir: what apply brought where (a file, so it is never taken for a worker).
APPLIED_FILE = "applied.json"
APPLIED_SCHEMA = "kodelyth.applied/v1"
# Keeps each applied snapshot commit reachable while its session exists.
APPLIED_REFS = "refs/kodelyth/applied"
MODES = ("squash", "merge", "cherry-pick")
# What is read of an applied.json (a few hundred bytes when apply writes it).
_MAX_APPLIED_BYTES = 64 * 1024
# What is read of a restored diff.patch or diffstat.txt (import wrote at most 1 MiB).
MAX_RESTORED_DIFF_BYTES = 8 * 1024 * 1024
_SHA = re.compile(r"[0-9a-f]{40}(?:[0-9a-f]{24})?")


def applied_ref(session: str, slug: str) -> str:
    return f"{APPLIED_REFS}/{session}/{slug}"


def applied_refs_prefix(session: str) -> str:
    return f"{APPLIED_REFS}/{session}/"


# --- the session and its workers ----------------------------------------------------------


def _session_dir(session: str, coordination_root: str) -> SessionDir:
    sdir = SessionDir.at(coordination_root, session)
    if not sdir.exists():
        raise KodelythError(
            f"no session {session!r} under {coordination_root}: "
            "run `kodelyth-ecc status` to list sessions, or pass --coordination-root"
        )
    return sdir


def _slugs(sdir: SessionDir, record: SessionRecord | None) -> list[str]:
    """The session's workers: session.json's (valid slugs only), then other worker dirs."""
    slugs = [w.slug for w in record.workers if is_slug(w.slug)] if record else []
    return slugs + [s for s in sdir.worker_slugs() if s not in slugs]


@dataclass(frozen=True)
class _Worker:
    slug: str
    # The worker's own branch and worktree (as teardown names them), the worktree only
    # while git has it registered and it is there.
    branch: str
    worktree_path: str
    worktree: str | None
    seeds: tuple[str, ...]


def _workers(
    record: SessionRecord, repo: str, slugs: Sequence[str]
) -> tuple[dict[str, _Worker], dict[str, str | None]]:
    """The named workers' own branch and worktree (never a path session.json points
    elsewhere), and git's registered worktrees."""
    claimed = [
        TeardownTarget(w.slug, w.branch, w.worktree, tuple(w.seed_paths))
        for w in record.workers
        if w.slug in slugs
    ]
    worktree_root = record.worktree_root or os.path.dirname(os.path.normpath(repo))
    targets, _ = own_targets(record.session, repo, worktree_root, claimed)
    registered = gitrepo.worktrees(repo)
    found: dict[str, _Worker] = {}
    for target in targets:
        real = os.path.realpath(target.worktree) if target.worktree else None
        present = bool(real) and real in registered and os.path.isdir(target.worktree)
        found[target.slug] = _Worker(
            target.slug,
            target.branch,
            target.worktree,
            target.worktree if present else None,
            target.seed_paths,
        )
    return found, registered


def _live_repo(record: SessionRecord | None) -> str | None:
    """The repository a session ran in (None: imported, or no session.json)."""
    if record is None or record.mode == "imported" or not record.repo_root:
        return None
    return record.repo_root


# --- diff ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class WorkerDiff:
    """One worker's changes: ``text`` is the patch (or diffstat) exactly as git wrote it,
    or as session-import restored it (``recorded``); empty when there are none."""

    slug: str
    branch: str | None
    text: bytes
    recorded: bool = False
    # Why there is nothing to show, when there is not ("no changes", "no diff recorded").
    note: str | None = None


def worker_diffs(
    session: str, coordination_root: str, worker: str | None = None, *, stat: bool = False
) -> list[WorkerDiff]:
    """Each worker's (or ``worker``'s) changes against the session's base commit, as
    session-export records them: from its worktree (commits, edits, new files) while
    it has one, else the diff a bundle brought (``diff.patch``/``diffstat.txt``)."""
    sdir = _session_dir(session, coordination_root)
    record = read_session_record(sdir.path)
    slugs = _slugs(sdir, record)
    if worker is not None:
        if worker not in slugs:
            raise unknown_worker(session, worker, slugs)
        slugs = [worker]
    repo = _live_repo(record)
    own: dict[str, _Worker] = {}
    base: str | None = None
    if repo is not None and record is not None:
        if not record.base_commit:
            raise KodelythError(
                f"session {session!r} records no base commit in {sdir.record_file}: "
                "there is nothing to diff its workers against (sessions of the JavaScript "
                "tool have none; diff each worktree with git)"
            )
        base = record.base_commit
        own, _ = _workers(record, repo, slugs)
    diffs = []
    for slug in slugs:
        mine = own.get(slug)
        if mine is not None and mine.worktree is not None and base is not None:
            patch, summary = gitrepo.worktree_diff(mine.worktree, base, stat=stat, patch=not stat)
            text = summary.encode("utf-8") if stat else patch
            diffs.append(WorkerDiff(slug, mine.branch, text, note=None if text else "no changes"))
            continue
        restored = _restored(sdir.worker(slug), DIFFSTAT_FILE if stat else DIFF_FILE)
        if restored is None and mine is not None and record is not None:
            raise _worktree_gone(sdir, record, mine, base)
        note = "no diff recorded" if restored is None else None if restored else "no changes"
        diffs.append(WorkerDiff(slug, None, restored or b"", recorded=True, note=note))
    return diffs


def _restored(worker: WorkerDir, name: str) -> bytes | None:
    """A diff a bundle brought, read safely (no symlink, capped, marked when cut)."""
    data = worker.read(name, MAX_RESTORED_DIFF_BYTES, truncate=True)
    if data is not None and len(data) >= MAX_RESTORED_DIFF_BYTES:
        data += f"\n[kodelyth-ecc: cut at {MAX_RESTORED_DIFF_BYTES:,} bytes]\n".encode()
    return data


def _worktree_gone(
    sdir: SessionDir, record: SessionRecord, worker: _Worker, base: str | None
) -> KodelythError:
    if record.torn_down_at:
        return KodelythError(
            f"session {sdir.name!r} was torn down at {one_line(record.torn_down_at, 40)}: "
            f"worker {worker.slug}'s worktree is gone, so there is nothing to diff (unsaved "
            f"work that teardown --force kept is under {sdir.teardown_dir})"
        )
    if base and gitrepo.branch_exists(record.repo_root, worker.branch):
        return KodelythError(
            f"worker {worker.slug}'s worktree {worker.worktree_path} is gone: only its "
            f"commits are left, on branch {worker.branch} (`git diff {base[:12]} "
            f"{worker.branch}` shows them)"
        )
    return KodelythError(
        f"worker {worker.slug}'s worktree {worker.worktree_path} and branch {worker.branch} "
        f"are gone: nothing to diff (see `kodelyth-ecc status {sdir.name}`)"
    )


# --- what was applied, and whether git still confirms it ---------------------------------


@dataclass(frozen=True)
class Applied:
    """A confirmed applied.json: the worker's work is on ``target`` as ``result``."""

    mode: str
    target: str
    result: str
    snapshot: str


def _snapshot_holds_the_worker(
    repo: str, worker: _Worker, snapshot: str, tree: str | None = None
) -> bool:
    """The worker is still exactly ``snapshot``: its worktree's content (as apply takes
    it) is the snapshot's tree, and its HEAD and branch lead to the snapshot."""
    snap_tree = gitrepo.rev_parse(repo, f"{snapshot}^{{tree}}")
    if snap_tree is None:
        return False
    tips = []
    if worker.worktree is not None:
        if _in_progress(worker.worktree) is not None:
            return False  # a merge or rebase half done there is not what was applied
        current = tree or gitrepo.worktree_tree(worker.worktree, worker.seeds)
        if current != snap_tree:
            return False
        head = gitrepo.head_commit(worker.worktree)
        tips += [head] if head else []
    tip = gitrepo.branch_tip(repo, worker.branch)
    tips += [tip] if tip else []
    return bool(tips) and all(gitrepo.is_ancestor(repo, t, snapshot) for t in tips)


def _branch_holds_the_work(repo: str, target: str, onto: str, result: str, snapshot: str) -> bool:
    """``result`` is on ``target`` and has the snapshot's changes in it: the snapshot
    itself is in its history (a merge), or its tree is what merging the snapshot into
    ``onto`` (an ancestor of it) gives, as git computes it now."""
    tip = gitrepo.branch_tip(repo, target)
    if tip is None or not gitrepo.is_ancestor(repo, result, tip):
        return False
    if gitrepo.is_ancestor(repo, snapshot, result):
        return True
    if not gitrepo.is_ancestor(repo, onto, result):
        return False
    merged = gitrepo.merge_tree(repo, onto, snapshot)
    return merged is not None and merged == gitrepo.rev_parse(repo, f"{result}^{{tree}}")


# A gitlink's mode: a tree entry that is another repository's commit, not files.
_GITLINK = "160000"


def _nested_repos(repo: str, old: str, new: str) -> list[str]:
    """Paths where ``new`` adds or changes a gitlink against ``old``: a nested repository
    (or submodule) whose files and commits are in the worker's worktree only, since git
    records just a commit id for it."""
    out = gitrepo.git_bytes("diff-tree", "-r", "-z", "--no-renames", "--raw", old, new, cwd=repo)
    fields = out.split(b"\0")
    found = []
    for meta, path in zip(fields[0::2], fields[1::2], strict=False):
        parts = meta.decode("ascii", errors="replace").split()
        if len(parts) >= 5 and parts[1] == _GITLINK and parts[4] != "D":
            found.append(os.fsdecode(path))
    return found


def _read_applied(worker_dir: WorkerDir) -> dict[str, str] | None:
    """applied.json's fields, when it is a regular file of the right shape."""
    try:
        data = worker_dir.read(APPLIED_FILE, _MAX_APPLIED_BYTES)
        parsed = json.loads(data) if data is not None else None
    except (KodelythError, ValueError, RecursionError):
        return None
    if not isinstance(parsed, dict) or parsed.get("schema") != APPLIED_SCHEMA:
        return None
    fields = ("mode", "target", "onto", "result", "snapshot")
    values = {k: parsed.get(k) for k in fields}
    if not all(isinstance(v, str) for v in values.values()):
        return None
    checked = {k: str(v) for k, v in values.items()}
    shas = (checked["onto"], checked["result"], checked["snapshot"])
    if checked["mode"] not in MODES or not all(_SHA.fullmatch(s) for s in shas):
        return None
    return checked


def _is_worker_branch(branch: str) -> bool:
    """A branch some session's teardown deletes (``naming.branch_name``): work kept only
    there is not saved."""
    return branch.startswith(naming.branch_name("", "").rstrip("-") + "-")


def _confirmed(repo: str, worker_dir: WorkerDir, worker: _Worker) -> Applied | None:
    fields = _read_applied(worker_dir)
    if fields is None or _is_worker_branch(fields["target"]):
        return None
    # The branch by its exact name: ``main@{1}`` (the reflog) or ``main~1`` keep nothing.
    if gitrepo.branch_tip(repo, fields["target"]) is None:
        return None
    snapshot = fields["snapshot"]
    if not gitrepo.commit_exists(repo, snapshot) or not gitrepo.commit_exists(
        repo, fields["result"]
    ):
        return None
    if not _snapshot_holds_the_worker(repo, worker, snapshot):
        return None
    merge_base = gitrepo.git("merge-base", fields["onto"], snapshot, cwd=repo, check=False)
    if not merge_base.strip() or _nested_repos(repo, merge_base.strip(), snapshot):
        return None  # a nested repository's own commits go with the worktree
    if not _branch_holds_the_work(
        repo, fields["target"], fields["onto"], fields["result"], snapshot
    ):
        return None
    return Applied(fields["mode"], fields["target"], fields["result"], snapshot)


def saved_by_apply(
    repo: str, worker_dir: WorkerDir, target: TeardownTarget, worktree: str | None
) -> Applied | None:
    """What apply brought of this worker into a branch, if git confirms that it is all
    of the worker's current work (teardown then counts its commits and edits saved)."""
    if not os.path.lexists(worker_dir.file(APPLIED_FILE)):
        return None
    worker = _Worker(target.slug, target.branch, target.worktree, worktree, target.seed_paths)
    try:
        return _confirmed(repo, worker_dir, worker)
    except KodelythError:
        return None  # git could not say: not confirmed


# --- apply --------------------------------------------------------------------------------


@dataclass
class ApplyResult:
    session: str
    worker: str
    mode: str
    target: str
    # Where the work was done: the checkout holding the target, or None (a temporary one).
    checkout: str | None
    onto: str
    # The target's new tip (None after conflicts).
    result: str | None = None
    # None: git could not say (its diff stopped by a Ctrl-C).
    files_changed: int | None = 0
    commits: int = 0
    # The work was in the target already: nothing was committed.
    already: bool = False
    # Conflicted paths (git's conflict state is left in ``checkout``, or aborted when the
    # work was done in a temporary checkout), and how to finish or abort.
    conflicts: list[str] = field(default_factory=list)
    finish: str | None = None
    abort: str | None = None
    # applied.json written: teardown counts the work saved while it stays as it is.
    recorded: bool = False
    # What apply does not carry: git-ignored files, edited seeds (worktree-relative).
    ignored: list[str] = field(default_factory=list)
    edited_seeds: list[str] = field(default_factory=list)
    message_unused: bool = False
    # Why applied.json was not written when git did confirm the work (None: it was, or
    # git could not confirm it).
    unrecorded: str | None = None
    # A Ctrl-C, SIGTERM or SIGHUP came once git had changed the target: held until the
    # result was recorded, so everything above stands.
    interrupted: bool = False


# State files of operations that stop half way, and how to finish or abort each.
_IN_PROGRESS = (
    ("MERGE_HEAD", "a merge", "git commit", "git merge --abort"),
    ("CHERRY_PICK_HEAD", "a cherry-pick", "git cherry-pick --continue", "git cherry-pick --abort"),
    ("REVERT_HEAD", "a revert", "git revert --continue", "git revert --abort"),
    ("rebase-merge", "a rebase", "git rebase --continue", "git rebase --abort"),
    ("rebase-apply", "a rebase or `git am`", "git rebase --continue", "git rebase --abort"),
    ("sequencer", "a cherry-pick or revert", "git cherry-pick --continue",
     "git cherry-pick --abort"),
)  # fmt: skip


def _git(checkout: str, *args: str) -> CmdResult:
    return cmd_output("git", *args, cwd=checkout, check=False)


def _in_progress(checkout: str) -> tuple[str, str, str] | None:
    """The operation stopped half way in ``checkout`` (what, finish, abort), if any."""
    args = [a for name, *_ in _IN_PROGRESS for a in ("--git-path", name)]
    paths = gitrepo.git("rev-parse", *args, cwd=checkout).splitlines()
    for path, (_, what, finish, abort) in zip(paths, _IN_PROGRESS, strict=False):
        if os.path.lexists(os.path.join(checkout, path)):
            return what, finish, abort
    return None


def _check_checkout(checkout: str, branch: str) -> None:
    """Refuse a checkout apply may not change: an operation half way, uncommitted
    changes to tracked files (an abort could not give them back)."""
    busy = _in_progress(checkout)
    if busy is not None:
        what, finish, abort = busy
        raise KodelythError(
            f"{what} is in progress in {checkout}: finish it (`{finish}`) or abort it "
            f"(`{abort}`) first, then apply again"
        )
    dirty = gitrepo.git("status", "--porcelain", "--untracked-files=no", cwd=checkout)
    lines = [line[3:] for line in dirty.splitlines() if line.strip()]
    if lines:
        raise KodelythError(
            f"{checkout} has uncommitted changes ({few_paths(lines)}) on {branch}: commit or "
            "stash them first (`git stash`), then apply again"
        )


def few_paths(paths: Sequence[str]) -> str:
    """The first three of ``paths`` for a one-line message (``a, b, c and 4 more``),
    each shown safely: names come from the worker's files."""
    shown = ", ".join(one_line(p, 60) for p in paths[:3])
    return shown + (f" and {len(paths) - 3} more" if len(paths) > 3 else "")


def _paths_written(repo: str, onto: str, snapshot: str) -> list[str]:
    """Every path a merge or cherry-pick of the work may write: those each of its
    commits changes (a merge commit's against its first parent, so what it brought in or
    changed itself), and those it changes in sum since it parted from ``onto``."""
    logged = gitrepo.git_bytes(
        "log", "--format=", "--name-only", "--no-renames", "--no-relative", "-m",
        "--first-parent", "-z", f"{onto}..{snapshot}", cwd=repo,
    )  # fmt: skip
    merge_base = gitrepo.git("merge-base", onto, snapshot, cwd=repo).strip()
    net = gitrepo.git_bytes(
        "diff", "--name-only", "--no-renames", "--no-relative", "-z", merge_base, snapshot,
        cwd=repo,
    )  # fmt: skip
    return sorted({os.fsdecode(p) for p in (logged + b"\0" + net).split(b"\0") if p})


def _untracked_in_the_way(checkout: str, paths: Sequence[str]) -> list[str]:
    """Untracked or ignored files of ``checkout`` that writing ``paths`` would replace:
    git would overwrite an ignored one silently, and stop half way on another."""
    if not paths:
        return []
    wanted = set(paths)
    for rel in paths:
        parts = rel.split("/")
        wanted.update("/".join(parts[:i]) for i in range(1, len(parts)))
    names = sorted(wanted)
    listed = b"".join(
        gitrepo.git_bytes(
            "--literal-pathspecs", "ls-files", "-z", "--", *names[i : i + 500], cwd=checkout
        )
        for i in range(0, len(names), 500)
    )
    tracked = {os.fsdecode(p) for p in listed.split(b"\0") if p}
    in_the_way = []
    for rel in sorted(wanted):
        path = os.path.join(checkout, rel)
        if rel in tracked or not os.path.lexists(path):
            continue
        if rel in paths or os.path.islink(path) or not os.path.isdir(path):
            in_the_way.append(rel)
    return in_the_way


def _first_line(text: str | None) -> str:
    for line in (text or "").splitlines():
        if line.strip():
            return one_line(line.strip(), 120)
    return ""


def _messages(record: SessionRecord, slug: str, message: str | None) -> tuple[str, str]:
    """(the squash or merge commit's message, the uncommitted part's commit message)."""
    if message is not None:
        return message, message
    task = _first_line(record.task)
    body = f"\n\n{task}" if task else ""
    where = f"from kodelyth-ecc session {record.session}"
    return (
        f"Apply worker {slug} {where}{body}",
        f"Uncommitted work of worker {slug} {where}{body}",
    )


def _snapshot(repo: str, worker: _Worker, message: str) -> tuple[str, str, str]:
    """(worker HEAD, snapshot commit, its tree): the worker's commits plus, when its
    worktree holds more, one commit on top of its HEAD with exactly that content."""
    if worker.worktree is None:
        tip = gitrepo.rev_parse(repo, f"refs/heads/{worker.branch}^{{commit}}")
        if tip is None:
            raise KodelythError(
                f"worker {worker.slug} has neither its worktree {worker.worktree_path} nor its "
                f"branch {worker.branch} any more (was its session torn down?): nothing to apply"
            )
        return tip, tip, gitrepo.git("rev-parse", f"{tip}^{{tree}}", cwd=repo).strip()
    head = gitrepo.head_commit(worker.worktree)
    if head is None:
        raise KodelythError(f"worker {worker.slug}'s worktree has no commit checked out")
    tree = gitrepo.worktree_tree(worker.worktree, worker.seeds)
    if tree == gitrepo.rev_parse(repo, f"{head}^{{tree}}"):
        return head, head, tree
    # Dated as its parent, so that the same worktree gives the same commit every time
    # (a merge of it, finished by hand, is then recognised as already there).
    when = gitrepo.git("log", "-1", "--format=%ct", head, cwd=repo).strip()
    dates = {"GIT_AUTHOR_DATE": f"@{when} +0000", "GIT_COMMITTER_DATE": f"@{when} +0000"}
    snapshot = cmd_output(
        "git", "commit-tree", "--no-gpg-sign", tree, "-p", head, "-m", message,
        cwd=repo, env=scrubbed_env(dates),
    ).stdout.strip()  # fmt: skip
    return head, snapshot, tree


def _conflicted(checkout: str) -> list[str]:
    out = gitrepo.git_bytes("diff", "--name-only", "-z", "--diff-filter=U", cwd=checkout)
    return [os.fsdecode(p) for p in out.split(b"\0") if p]


def _git_failed(what: str, result: CmdResult) -> str:
    """What git (or a hook it ran) said, on one line: every line but git's hints, so
    that a hook's own complaint is not hidden behind "cherry-pick failed"."""
    lines = [line.strip() for line in (result.stderr or result.stdout).splitlines()]
    said = [line for line in lines if line and not line.startswith("hint:")]
    return one_line("; ".join(said), 300) if said else f"{what} exited {result.returncode}"


@dataclass(frozen=True)
class _Plan:
    repo: str
    target: str
    checkout: str | None  # None: a temporary worktree
    onto: str
    snapshot: str
    message: str
    mode: str
    # In the target's checkout: the paths the work may write, and those of their
    # parent directories that are not there yet (what a git stopped half way may leave).
    written: tuple[str, ...] = ()
    new_dirs: tuple[str, ...] = ()


def _bring_in(checkout: str, plan: _Plan) -> CmdResult:
    """The one git operation that changes the target: a cherry-pick or a merge."""
    repo, onto, snapshot, message = plan.repo, plan.onto, plan.snapshot, plan.message
    if plan.mode == "squash":
        # The whole change as one commit on the merge base, cherry-picked: git's own
        # three-way merge, and its standard conflict state (CHERRY_PICK_HEAD) if any.
        merge_base = gitrepo.git("merge-base", onto, snapshot, cwd=repo).strip()
        squashed = gitrepo.git(
            "commit-tree", "--no-gpg-sign", f"{snapshot}^{{tree}}", "-p", merge_base,
            "-m", message, cwd=repo,
        ).strip()  # fmt: skip
        return _git(checkout, "cherry-pick", squashed)
    if plan.mode == "merge":
        return _git(checkout, "merge", "--no-ff", "--no-edit", "--no-autostash", "-m", message,
                    snapshot)  # fmt: skip
    return _git(checkout, "cherry-pick", "--allow-empty", f"{onto}..{snapshot}")


def _finish_and_abort(mode: str) -> tuple[str, str]:
    if mode == "merge":
        return "git add <files> && git commit", "git merge --abort"
    return "git add <files> && git cherry-pick --continue", "git cherry-pick --abort"


def _abort(checkout: str) -> None:
    """Give the checkout back as it was before a stopped merge or cherry-pick."""
    busy = _in_progress(checkout)
    if busy is not None:
        _git(checkout, *busy[2].split()[1:])


# --- changing the target: never half done, Ctrl-C included --------------------------------


class _Held:
    """The stop signals (Ctrl-C, SIGTERM, SIGHUP) that came while apply was changing
    the target: noted, and acted on only where nothing is half done."""

    def __init__(self) -> None:
        self.came: list[int] = []

    def stop_here(self) -> None:
        """Stop (KeyboardInterrupt) if a signal came: called only where the target is
        still as it was."""
        if self.came:
            raise KeyboardInterrupt


@contextlib.contextmanager
def _held_interrupts() -> Iterator[_Held]:
    """Ctrl-C, SIGTERM and SIGHUP noted, never raised inside a git command (Python would
    kill it a moment later, leaving its lock files and half its writes). Handlers, not
    a signal mask: git and its hooks stay interruptible from the terminal, which is why
    ``_apply_here`` undoes what a git stopped that way left."""
    import signal
    import threading

    held = _Held()
    if threading.current_thread() is not threading.main_thread():
        yield held
        return

    def note(signum: int, frame: object) -> None:
        held.came.append(signum)

    previous = {}
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        with contextlib.suppress(ValueError, OSError):
            previous[sig] = signal.signal(sig, note)
    try:
        yield held
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _run(plan: _Plan, result: ApplyResult, held: _Held) -> None:
    if plan.checkout is not None:
        _apply_here(plan.checkout, plan, result, held)
    else:
        _apply_elsewhere(plan, result, held)


def _apply_here(checkout: str, plan: _Plan, result: ApplyResult, held: _Held) -> None:
    """Git's merge or cherry-pick in the checkout that has the target. A stop signal
    that came meanwhile (a terminal's Ctrl-C stops git too) undoes what git did."""
    held.stop_here()
    if gitrepo.head_commit(checkout) != plan.onto:
        raise KodelythError(
            f"{plan.target} moved in {checkout} while apply was getting ready: it was left as "
            "it is; apply again"
        )
    outcome = _bring_in(checkout, plan)
    if held.came and outcome.returncode != 0:
        if _put_back(checkout, plan):
            raise KeyboardInterrupt
        # Stopped only after it had committed: that result stands, as git left it.
        outcome = CmdResult(0, outcome.stdout, outcome.stderr)
    _settle(checkout, plan, result, outcome)


def _put_back(checkout: str, plan: _Plan) -> bool:
    """After git was stopped half way in the user's checkout: git's own abort, then the
    files a stopped checkout step left written put back as HEAD has them. Only those
    are touched: the checkout had no changes to tracked files, and no untracked file
    where the work writes. False when git had committed already (nothing to undo)."""
    _abort(checkout)
    busy = _in_progress(checkout)
    if busy is not None:
        raise KodelythError(
            f"apply was interrupted while git was changing {checkout}, and `{busy[2]}` "
            f"did not finish there: run it yourself, then check `git status`"
        )
    if gitrepo.head_commit(checkout) != plan.onto:
        return False
    gitrepo.git("reset", "--quiet", cwd=checkout)  # the index as HEAD has it, as it was
    if plan.written:
        listed = gitrepo.git_bytes(
            "--literal-pathspecs", "ls-files", "-z", "--", *plan.written, cwd=checkout
        )
        tracked = sorted({os.fsdecode(p) for p in listed.split(b"\0") if p})
        if tracked:
            gitrepo.git("--literal-pathspecs", "checkout", "--quiet", "HEAD", "--", *tracked,
                        cwd=checkout)  # fmt: skip
        real = os.path.realpath(checkout)
        for rel in sorted(set(plan.written) - set(tracked)):
            path = os.path.join(checkout, rel)
            parent = os.path.realpath(os.path.dirname(path))
            inside = parent == real or parent.startswith(real + os.sep)
            if (
                inside
                and os.path.lexists(path)
                and (os.path.islink(path) or not os.path.isdir(path))
            ):
                os.unlink(path)
        for rel in sorted(plan.new_dirs, key=len, reverse=True):
            with contextlib.suppress(OSError):
                os.rmdir(os.path.join(checkout, rel))
    return True


def _apply_elsewhere(plan: _Plan, result: ApplyResult, held: _Held) -> None:
    """In a temporary worktree detached at ``onto`` and removed afterwards, whatever
    happens. Only the finished result moves the branch, compare-and-swap from
    ``onto``: it is never half done, and a commit someone else put on it meanwhile
    is never taken off it."""
    import shutil
    import tempfile

    from kodelyth_ecc import repolock

    tmp = tempfile.mkdtemp(prefix="kodelyth-apply-")
    checkout = os.path.join(tmp, "checkout")
    try:
        try:
            with repolock.worktree_lock(plan.repo):
                gitrepo.git("worktree", "add", "--quiet", "--detach", "--no-checkout", checkout,
                            plan.onto, cwd=plan.repo)  # fmt: skip
            held.stop_here()
            gitrepo.git("reset", "--hard", "--quiet", cwd=checkout)
            held.stop_here()
            outcome = _bring_in(checkout, plan)
            held.stop_here()
        except KodelythError:
            if held.came:  # git stopped by the same Ctrl-C: an interrupt, not an error
                raise KeyboardInterrupt from None
            raise
        _settle(checkout, plan, result, outcome)
        if result.conflicts:
            return
        assert result.result is not None
        moved = _git(plan.repo, "update-ref", "-m",
                     f"kodelyth-ecc apply: worker {result.worker} of session {result.session}",
                     f"refs/heads/{plan.target}", result.result, plan.onto)  # fmt: skip
        if moved.returncode != 0 and gitrepo.branch_tip(plan.repo, plan.target) != result.result:
            result.result = None
            held.stop_here()  # update-ref stopped by the same Ctrl-C: nothing moved
            raise KodelythError(
                f"{plan.target} moved while worker {result.worker}'s work was being applied "
                f"to it, so it was left as it is now ({_git_failed('git update-ref', moved)}): "
                "apply again"
            )
    finally:
        with repolock.worktree_lock(plan.repo):
            if os.path.isdir(checkout):
                _git(plan.repo, "worktree", "remove", "--force", "--force", checkout)
            shutil.rmtree(tmp, ignore_errors=True)
            gitrepo.worktree_prune(plan.repo)


def _settle(checkout: str, plan: _Plan, result: ApplyResult, outcome: CmdResult) -> None:
    """What git's merge or cherry-pick came to: the new tip, conflicts (git's state left
    in the user's checkout), or any other stop undone and reported."""
    if outcome.returncode == 0:
        # Asked twice: a Ctrl-C that came just then stopped the first asking, not git's work.
        head = gitrepo.head_commit(checkout) or gitrepo.head_commit(checkout)
        if head is None:
            raise KodelythError(f"git committed in {checkout} but cannot say what: see `git log`")
        result.result = head
        return
    conflicts = _conflicted(checkout)
    if conflicts:
        result.conflicts = conflicts
        result.finish, result.abort = _finish_and_abort(plan.mode)
        return
    # Stopped for another reason (a hook, an empty commit): nothing may stay half done.
    _abort(checkout)
    command = "merge" if plan.mode == "merge" else "cherry-pick"
    busy = _in_progress(checkout)
    if busy is not None or gitrepo.head_commit(checkout) != plan.onto:
        left = (
            f"{plan.target} could not be put back: run `{busy[2] if busy else 'git status'}` "
            f"in {checkout}"
        )
    else:
        left = f"{plan.target} was left as it was"
    raise KodelythError(
        f"`git {command}` stopped in {checkout}: {_git_failed('git', outcome)}; {left} (fix "
        "what git reports, or try another --squash/--merge/--cherry-pick)"
    )


def _target(
    repo: str,
    onto: str | None,
    *,
    session: str,
    workers: dict[str, _Worker],
    registered: dict[str, str | None],
    own_branches: set[str],
) -> tuple[str, str | None]:
    """(target branch, the checkout it is checked out in, or None: nowhere)."""
    if onto is None:
        branch = gitrepo.current_branch(repo)
        if branch is None:
            raise KodelythError(
                f"HEAD is detached in {repo}: check out the branch to apply to "
                "(`git switch main`), or name it with --onto BRANCH"
            )
    else:
        if not gitrepo.is_branch_name(onto):
            # A revision (main~1, main@{1}, a tag's peel) names a commit no branch moves
            # with: the work would be committed nowhere.
            raise KodelythError(
                f"{one_line(onto, 60)!r} is not a branch name: --onto takes a local branch "
                "as `git branch --list` shows it (not a revision such as main~1 or a tag)"
            )
        if gitrepo.branch_tip(repo, onto) is None:
            raise KodelythError(
                f"no branch {one_line(onto, 60)!r} in {repo}: name an existing local branch "
                "(`git branch --list` lists them)"
            )
        branch = onto
    if branch in own_branches or _is_worker_branch(branch):
        whose = f"session {session!r}" if branch in own_branches else "a session"
        raise KodelythError(
            f"{branch} is a worker branch of {whose}, which teardown deletes: apply into "
            "your own branch (--onto BRANCH, or check out your branch in the repository)"
        )
    worker_trees = {os.path.realpath(w.worktree_path): w.slug for w in workers.values()}
    for path, checked_out in registered.items():
        if checked_out != branch:
            continue
        if path in worker_trees:
            raise KodelythError(
                f"{branch} is checked out in worker {worker_trees[path]}'s worktree {path}: "
                "apply never changes a worker's worktree; switch it to its own branch first"
            )
        return branch, path
    return branch, None


def apply_worker(
    session: str,
    coordination_root: str,
    slug: str,
    *,
    onto: str | None = None,
    mode: str = "squash",
    message: str | None = None,
) -> ApplyResult:
    """Bring worker ``slug``'s work (commits since the base, uncommitted edits, new
    files) into ``onto`` (default: the branch checked out in the session's repository)
    as one squashed commit, a merge, or cherry-picked commits. Refuses, changing
    nothing, while the worker runs or the checkout has uncommitted changes; on
    conflicts git's conflict state is left (``result.conflicts``)."""
    if mode not in MODES:
        raise KodelythError(f"unknown apply mode {mode!r}: use one of {', '.join(MODES)}")
    sdir = _session_dir(session, coordination_root)
    record = read_session_record(sdir.path)
    repo = _live_repo(record)
    if record is None or repo is None:
        why = (
            "was imported from a bundle and has no worktrees here"
            if record is not None
            else "has no readable session.json naming its repository and base commit"
        )
        raise KodelythError(
            f"session {session!r} {why}: nothing to apply from (replay it with "
            f"`kodelyth-ecc replay {session} --execute`, or `git apply` its diff)"
        )
    slugs = _slugs(sdir, record)
    recorded_slugs = [w.slug for w in record.workers if is_slug(w.slug)]
    if slug not in recorded_slugs:
        raise unknown_worker(session, slug, slugs)
    _check_worker_dir(sdir.worker(slug))
    base = gitrepo.rev_parse(repo, f"{record.base_commit or ''}^{{commit}}")
    if not record.base_commit or base is None:
        raise KodelythError(
            f"the base commit of session {session!r} is not a commit in {repo}: apply cannot "
            f"tell which commits are the worker's; fix base_commit in {sdir.record_file}"
        )
    if slug in running_workers(sdir):
        raise KodelythError(
            f"worker {slug} is still running (its pane is alive): its work is not finished; "
            f"wait for it (`kodelyth-ecc status {session} --wait`), then apply"
        )
    workers, registered = _workers(record, repo, recorded_slugs)
    worker = workers[slug]
    busy = _in_progress(worker.worktree) if worker.worktree is not None else None
    if busy is not None:
        what, finish, abort = busy
        raise KodelythError(
            f"worker {slug}'s worktree {worker.worktree} has {what} in progress, so its work "
            f"is half done (conflict markers, say): finish it there (`{finish}`) or abort it "
            f"(`{abort}`), then apply again"
        )
    own_branches = {w.branch for w in workers.values()}
    target, checkout = _target(
        repo,
        onto,
        session=session,
        workers=workers,
        registered=registered,
        own_branches=own_branches,
    )
    onto_commit = gitrepo.branch_tip(repo, target)
    if onto_commit is None:
        raise KodelythError(
            f"branch {one_line(target, 60)} checked out in {repo} has no commit yet: apply "
            "brings work into a branch with history; commit on it first, or name another "
            "with --onto BRANCH"
        )
    if checkout is not None:
        _check_checkout(checkout, target)
    squash_message, rest_message = _messages(record, slug, message)
    head, snapshot, tree = _snapshot(
        repo, worker, rest_message if mode == "cherry-pick" else squash_message
    )
    result = ApplyResult(session, slug, mode, target, checkout, onto_commit)
    if worker.worktree is not None:
        result.ignored = ignored_work(worker.worktree, worker.seeds)
        result.edited_seeds = seed_changes(repo, worker.worktree, worker.seeds)
    result.message_unused = message is not None and mode == "cherry-pick" and snapshot == head
    if tree == gitrepo.rev_parse(repo, f"{base}^{{tree}}"):
        raise KodelythError(
            f"worker {slug} has no changes against the session's base commit {base[:12]}: "
            "nothing to apply"
        )
    nested = _nested_repos(repo, base, snapshot)
    if nested:
        raise KodelythError(
            f"worker {slug}'s work holds a nested git repository ({few_paths(nested)}): git would "
            "record only its commit id, and its files and commits would stay in the worker's "
            "worktree alone; push its commits somewhere (or remove its .git so that its files "
            "are plain ones), then apply again"
        )
    if not gitrepo.git("merge-base", onto_commit, snapshot, cwd=repo, check=False).strip():
        raise KodelythError(
            f"{target} and worker {slug}'s branch share no history: nothing to merge into"
        )
    if _already_in(repo, mode, onto_commit, snapshot):
        result.already = True
        result.result = onto_commit
    else:
        if mode == "cherry-pick":
            merges = gitrepo.git("rev-list", "--count", "--merges", f"{onto_commit}..{snapshot}",
                                 cwd=repo).strip()  # fmt: skip
            if merges != "0":
                raise KodelythError(
                    f"worker {slug}'s branch holds {merges} merge commit(s), which cherry-pick "
                    "cannot copy: use --squash or --merge"
                )
        written: list[str] = []
        if checkout is not None:
            written = _paths_written(repo, onto_commit, snapshot)
            blocking = _untracked_in_the_way(checkout, written)
            if blocking:
                raise KodelythError(
                    f"untracked or ignored files in {checkout} would be overwritten by worker "
                    f"{slug}'s work: {few_paths(blocking)}; move them away first, then apply again"
                )
        result.commits = int(
            gitrepo.git("rev-list", "--count", f"{onto_commit}..{snapshot}", cwd=repo).strip()
        )
        plan = _Plan(
            repo, target, checkout, onto_commit, snapshot, squash_message, mode,
            tuple(written), _missing_parents(checkout, written) if checkout else (),
        )  # fmt: skip
    # From here the target changes: a Ctrl-C is held until that is done or undone.
    with _held_interrupts() as held:
        if not result.already:
            _run(plan, result, held)
            if result.conflicts:
                return result
            assert result.result is not None
            result.files_changed = _files_changed(repo, onto_commit, result.result)
            if result.files_changed is None:  # stopped by a Ctrl-C just then: ask again
                result.files_changed = _files_changed(repo, onto_commit, result.result)
        result.recorded = _record(
            sdir.worker(slug), repo, worker, result, head=head, snapshot=snapshot, tree=tree,
            base=base,
        )  # fmt: skip
        result.interrupted = bool(held.came)
        if result.interrupted and not result.recorded:
            result.unrecorded = "interrupted before it was recorded"
    return result


def _check_worker_dir(worker_dir: WorkerDir) -> None:
    """Refuse, before anything changes, a worker dir apply could not record in: applied
    .json is written only into a real directory, never through a symlink."""
    from kodelyth_ecc.sessiondir import UnsafeFile

    try:
        fd = open_dir(worker_dir.path)
    except UnsafeFile:
        raise KodelythError(
            f"worker {worker_dir.slug}'s directory {worker_dir.path} is a symlink or not a "
            "directory: apply records what it applied there (for teardown) and never through "
            "a link; make it a real directory, then apply again"
        ) from None
    if fd is None:
        raise KodelythError(
            f"worker {worker_dir.slug} has no directory {worker_dir.path}, where apply records "
            f"what it applied (for teardown): create it (`mkdir {worker_dir.path}`), then "
            "apply again"
        )
    os.close(fd)


def _missing_parents(checkout: str, paths: Sequence[str]) -> tuple[str, ...]:
    """The parent directories of ``paths`` that ``checkout`` does not have yet."""
    parents = {"/".join(p.split("/")[:i]) for p in paths for i in range(1, p.count("/") + 1)}
    return tuple(sorted(d for d in parents if not os.path.lexists(os.path.join(checkout, d))))


def _already_in(repo: str, mode: str, onto: str, snapshot: str) -> bool:
    """The work is in ``onto`` already: the snapshot is in its history, or (a squash or
    cherry-pick) merging it in would change nothing."""
    if gitrepo.is_ancestor(repo, snapshot, onto):
        return True
    if mode == "merge":
        return False
    merged = gitrepo.merge_tree(repo, onto, snapshot)
    return merged is not None and merged == gitrepo.rev_parse(repo, f"{onto}^{{tree}}")


def _files_changed(repo: str, old: str, new: str) -> int | None:
    try:
        out = gitrepo.git_bytes("diff", "--name-only", "-z", "--no-renames", old, new, cwd=repo)
    except KodelythError:
        return None
    return sum(1 for p in out.split(b"\0") if p)


def _record(
    worker_dir: WorkerDir,
    repo: str,
    worker: _Worker,
    result: ApplyResult,
    *,
    head: str,
    snapshot: str,
    tree: str,
    base: str,
) -> bool:
    """Write applied.json and the ref keeping the snapshot, once git confirms the work
    is on the target and the worker is still what was applied (else teardown could not
    count it saved, and nothing is recorded)."""
    assert result.result is not None
    from kodelyth_ecc.sessiondir import UnsafeFile

    try:
        if not _snapshot_holds_the_worker(repo, worker, snapshot):
            return False
        if not _branch_holds_the_work(repo, result.target, result.onto, result.result, snapshot):
            return False
    except KodelythError:
        return False  # git could not say (a Ctrl-C stopped it, say): not confirmed
    from kodelyth_ecc.fsutil import atomic_write_text

    tip = gitrepo.branch_tip(repo, worker.branch)
    data = {
        "schema": APPLIED_SCHEMA,
        "session": result.session,
        "worker": result.worker,
        "mode": result.mode,
        "target": result.target,
        "onto": result.onto,
        "result": result.result,
        "snapshot": snapshot,
        "snapshot_tree": tree,
        "worker_head": head,
        "worker_branch_tip": tip,
        "base_commit": base,
        "applied_at": utc_now(),
    }
    try:
        fd = open_dir(worker_dir.path)  # a real directory, never through a symlink
    except UnsafeFile:
        fd = None
    if fd is None:
        result.unrecorded = f"{worker_dir.path} is no longer a real directory"
        return False
    os.close(fd)
    kept = _git(repo, "update-ref", "--no-deref", applied_ref(result.session, result.worker),
                snapshot)  # fmt: skip
    if kept.returncode != 0:
        result.unrecorded = f"the ref keeping it failed: {_git_failed('git update-ref', kept)}"
        return False
    try:
        atomic_write_text(worker_dir.file(APPLIED_FILE), json.dumps(data, indent=2) + "\n")
    except OSError as exc:
        raise KodelythError(
            f"worker {result.worker}'s work was applied to {result.target} as "
            f"{result.result[:12]}, but {worker_dir.file(APPLIED_FILE)} could not be written "
            f"({exc.strerror or exc}): teardown will not count it saved until you apply again"
        ) from exc
    return True


__all__ = [
    "APPLIED_FILE",
    "APPLIED_REFS",
    "MODES",
    "Applied",
    "ApplyResult",
    "WorkerDiff",
    "applied_ref",
    "applied_refs_prefix",
    "apply_worker",
    "few_paths",
    "saved_by_apply",
    "worker_diffs",
]
