"""The coordination dir on disk: ``<root>/<session>/session.json`` plus one
directory per worker holding ``task.md``, ``handoff.md`` and ``status.md``.

``session.json`` is a file, so tools that treat every directory of a session as a
worker (the JavaScript exporter did) skip it.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from kodelyth_ecc import __version__
from kodelyth_ecc.errors import KodelythError, SessionTaken
from kodelyth_ecc.fsutil import atomic_write_text
from kodelyth_ecc.prompts import initial_handoff_md, worker_task_md
from kodelyth_ecc.sessiondir import (
    GITIGNORE,
    MAX_SESSION_RECORD_BYTES,
    SESSION_FILE,
    WORKER_FILES,
    SessionDir,
)
from kodelyth_ecc.statusfile import StatusRecord, render_status

TYPE_CHECKING = False
if TYPE_CHECKING:
    # Only for annotations: export and import read session.json without the planner.
    from kodelyth_ecc.plan import OrchestrationPlan

SESSION_SCHEMA = "kodelyth.session/v1"
# Set in session.json (an extra field: older readers ignore it) by a teardown that kept
# the coordination dir: when, so `status` stops listing a session that no longer runs.
TORN_DOWN_KEY = "torn_down_at"
# What a worker's command is rebuilt from when it runs again (``retry``): the session's
# ``PlanConfig`` (``plan.PlanConfig.to_record``), written by ``execute``. A field of its
# own, not an extra: extras go into an exported bundle's meta, this stays here.
PLAN_CONFIG_KEY = "plan_config"
# The pane id recorded for a worker whose pane was in a tmux server that has ended: a
# new server numbers its panes from %0 again, so the old id could name another worker's
# pane. tmux never gives a pane this id, so status reads it as a dead pane.
GONE_PANE = "%gone"
__all__ = [
    "GONE_PANE",
    "PLAN_CONFIG_KEY",
    "SESSION_FILE",
    "SESSION_SCHEMA",
    "WORKER_FILES",
    "SessionRecord",
    "WorkerRecord",
    "materialize_plan",
    "read_session_record",
    "session_lock",
    "session_record_for",
    "write_pending_status",
    "write_session_record",
]


def utc_now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


@dataclass
class WorkerRecord:
    name: str
    slug: str
    branch: str
    worktree: str
    launch_command: str
    seed_paths: list[str] = field(default_factory=list)
    pane_id: str | None = None
    # How many times the worker was started (``retry`` counts up).
    attempts: int = 1


@dataclass
class SessionRecord:
    session: str
    repo_root: str
    worktree_root: str
    coordination_root: str
    task: str | None
    agents: list[str]
    harness: str | None
    launcher: str
    base_ref: str
    seed_paths: list[str]
    workers: list[WorkerRecord]
    base_commit: str | None = None
    created_at: str = field(default_factory=utc_now)
    tool: str = f"kodelyth-ecc@{__version__}"
    mode: str = "write-only"
    tmux_session: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    # PLAN_CONFIG_KEY: how to rebuild the workers' commands (None: not recorded, as in
    # sessions written before it was, imported or write-only ones).
    plan_config: dict[str, Any] | None = None

    @property
    def torn_down_at(self) -> str | None:
        """When teardown removed the session's worktrees (None: it has not)."""
        value = self.extra.get(TORN_DOWN_KEY)
        return value if isinstance(value, str) else None

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "schema": SESSION_SCHEMA,
            "session": self.session,
            "task": self.task,
            "agents": self.agents,
            "harness": self.harness,
            "launcher": self.launcher,
            "base_ref": self.base_ref,
            "base_commit": self.base_commit,
            "seed_paths": self.seed_paths,
            "created_at": self.created_at,
            "tool": self.tool,
            "mode": self.mode,
            "repo_root": self.repo_root,
            "worktree_root": self.worktree_root,
            "coordination_root": self.coordination_root,
            "tmux_session": self.tmux_session,
            "workers": [vars(w).copy() for w in self.workers],
        }
        if self.plan_config is not None:
            data[PLAN_CONFIG_KEY] = self.plan_config
        data.update(self.extra)
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> SessionRecord:
        known = {
            "schema",
            "session",
            "task",
            "agents",
            "harness",
            "launcher",
            "base_ref",
            "base_commit",
            "seed_paths",
            "created_at",
            "tool",
            "mode",
            "repo_root",
            "worktree_root",
            "coordination_root",
            "tmux_session",
            "workers",
            PLAN_CONFIG_KEY,
        }
        workers = [
            WorkerRecord(
                name=str(w["name"]),
                slug=str(w["slug"]),
                branch=str(w["branch"]),
                worktree=str(w["worktree"]),
                launch_command=str(w.get("launch_command", "")),
                seed_paths=list(w.get("seed_paths", [])),
                pane_id=w.get("pane_id"),
                attempts=_count(w.get("attempts")),
            )
            for w in data.get("workers", [])
        ]
        plan_config = data.get(PLAN_CONFIG_KEY)
        return cls(
            session=str(data["session"]),
            repo_root=str(data.get("repo_root", "")),
            worktree_root=str(data.get("worktree_root", "")),
            coordination_root=str(data.get("coordination_root", "")),
            task=data.get("task"),
            agents=list(data.get("agents", [])),
            harness=data.get("harness"),
            launcher=str(data.get("launcher", "")),
            base_ref=str(data.get("base_ref", "HEAD")),
            seed_paths=list(data.get("seed_paths", [])),
            workers=workers,
            base_commit=data.get("base_commit"),
            created_at=str(data.get("created_at", "")),
            tool=str(data.get("tool", "")),
            mode=str(data.get("mode", "write-only")),
            tmux_session=data.get("tmux_session"),
            extra={k: v for k, v in data.items() if k not in known},
            plan_config=plan_config if isinstance(plan_config, dict) else None,
        )


def _count(value: object) -> int:
    """An attempt count as session.json may hold it (a hand-edited one: at least 1)."""
    if isinstance(value, int) and not isinstance(value, bool) and 1 <= value < 1_000_000:
        return value
    return 1


def session_record_for(plan: OrchestrationPlan, base_commit: str | None = None) -> SessionRecord:
    return SessionRecord(
        session=plan.session_name,
        repo_root=plan.repo_root,
        worktree_root=plan.worktree_root,
        coordination_root=plan.coordination_root,
        task=plan.task,
        agents=list(plan.agents),
        harness=plan.harness,
        launcher=plan.launcher_template,
        base_ref=plan.base_ref,
        base_commit=base_commit,
        seed_paths=list(plan.seed_paths),
        workers=[
            WorkerRecord(
                name=w.worker_name,
                slug=w.worker_slug,
                branch=w.branch_name,
                worktree=w.worktree_path,
                launch_command=w.launch_command,
                seed_paths=list(w.seed_paths),
            )
            for w in plan.workers
        ],
        extra=dict(plan.extra_meta),
    )


def write_session_record(coordination_dir: str, record: SessionRecord) -> None:
    text = json.dumps(record.to_json(), indent=2, ensure_ascii=False) + "\n"
    atomic_write_text(os.path.join(coordination_dir, SESSION_FILE), text)


def read_session_record(coordination_dir: str) -> SessionRecord | None:
    """The session's record, or None when it has none or it is damaged (a damaged
    session.json must not hide the worker files next to it). Read through
    ``sessiondir``: never through a symlink, never more than its cap."""
    head, name = os.path.split(os.path.normpath(coordination_dir))
    try:
        data = SessionDir(head, name).read(SESSION_FILE, MAX_SESSION_RECORD_BYTES)
        if data is None:
            return None
        parsed = json.loads(data)
        if not isinstance(parsed, dict):
            return None
        return SessionRecord.from_json(parsed)
    except (KodelythError, ValueError, KeyError, TypeError, AttributeError, RecursionError):
        return None


@contextlib.contextmanager
def session_lock(coordination_dir: str, busy: str) -> Iterator[None]:
    """One command at a time changing a session's panes and files (retry and resume;
    teardown and apply should take it too): an flock on its directory, dropped by the
    kernel if the holder dies. Held elsewhere: ``KodelythError(busy)``, at once. No
    directory (or a symlink in its place): nothing to lock, and reading the session
    then says what is wrong."""
    import fcntl

    try:
        fd = os.open(coordination_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        yield
        return
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise KodelythError(busy) from None
        yield
    finally:
        os.close(fd)  # the lock goes with it


def _ensure_root(coordination_root: str, repo_root: str) -> None:
    """Create the root; inside the repo, keep it out of `git status` with a .gitignore."""
    if os.path.isdir(coordination_root):
        return
    os.makedirs(coordination_root, exist_ok=True)
    real_root = os.path.realpath(coordination_root)
    if real_root.startswith(os.path.realpath(repo_root) + os.sep):
        atomic_write_text(os.path.join(coordination_root, GITIGNORE), "*\n")


def write_pending_status(path: str, name: str, branch: str, worktree: str) -> None:
    """A worker's status before its runner starts: pending (a swarm's and a retry's)."""
    atomic_write_text(
        path, render_status(StatusRecord(name=name, branch=branch, worktree=worktree))
    )


def materialize_plan(
    plan: OrchestrationPlan, *, base_commit: str | None = None, mode: str = "write-only"
) -> SessionRecord:
    """Write the session's coordination files; the directory must not exist yet."""
    _ensure_root(plan.coordination_root, plan.repo_root)
    try:
        # The claim on the name: mkdir is atomic, so of two runs racing for one
        # session exactly one gets here.
        os.mkdir(plan.coordination_dir)
    except FileExistsError:
        raise SessionTaken(
            f"session {plan.session_name!r} is already taken: {plan.coordination_dir} exists; "
            "pick another --session, or pass --replace"
        ) from None
    try:
        record = session_record_for(plan, base_commit)
        record.mode = mode
        for worker in plan.workers:
            os.mkdir(worker.coordination_dir)
            atomic_write_text(
                worker.task_file_path,
                worker_task_md(
                    worker_name=worker.worker_name,
                    session_name=plan.session_name,
                    repo_root=plan.repo_root,
                    worktree_path=worker.worktree_path,
                    branch_name=worker.branch_name,
                    status_file=worker.status_file_path,
                    handoff_file=worker.handoff_file_path,
                    objective=worker.task,
                    seed_paths=worker.seed_paths,
                ),
            )
            atomic_write_text(worker.handoff_file_path, initial_handoff_md(worker.worker_name))
            write_pending_status(
                worker.status_file_path,
                worker.worker_name,
                worker.branch_name,
                worker.worktree_path,
            )
        write_session_record(plan.coordination_dir, record)
    except BaseException:
        shutil.rmtree(plan.coordination_dir, ignore_errors=True)
        raise
    return record
