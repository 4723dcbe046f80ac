"""Running workers of an existing session again, in their own worktrees and branches.

``retry_workers`` restarts the workers named (after a failure, a timeout, a lost pane,
or a machine restart that ended the tmux server); ``resume_session`` restarts every
worker that had not finished, once the session's tmux session is gone. Their work so
far is the user's: the worktree, the branch and the handoff stay as they are; what a
runner writes again (status, transcript, verify and divergence files, the proxy's
recording) is moved into ``<worker dir>/attempts/<N>/`` first.

Each worker's command is rebuilt from the plan ``execute`` recorded in session.json
(``plan_config``), and started as ``execute`` starts it: its runner in a tmux pane,
reading the caller's environment from a private file it deletes, waiting at a launch
gate. With a message, the agent continues its own conversation where its CLI can
(``Harness.resume_args``, by the id its usage recorded), the message on stdin from a
file; else it starts afresh on its task, the message added to ``task.md``.

The session dir is hostile input (anything running as the user can write it, and a
stranger's can be copied in): the plan runs only with this user's seal
(``plan.plan_seal``), a worker only in its own registered worktree on its own branch,
never beside a runner of it still alive anywhere, never through a symlinked worker
dir, task or handoff.

Everything made is pushed on an undo stack first; any failure (or Ctrl-C) pops it, as
``execute`` does: files moved back, panes and proxy ended, session.json as it was.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

from kodelyth_ecc import tmux
from kodelyth_ecc.coordination import (
    GONE_PANE,
    SessionRecord,
    read_session_record,
    session_lock,
    write_pending_status,
    write_session_record,
)
from kodelyth_ecc.errors import KodelythError, UsageError
from kodelyth_ecc.fsutil import atomic_write_bytes, atomic_write_text
from kodelyth_ecc.plan import WINDOW_NAME, OrchestrationPlan, WorkerPlan
from kodelyth_ecc.sessiondir import (
    DIVERGENCE_FILE,
    EXCHANGES_FILE,
    MAX_SESSION_RECORD_BYTES,
    MAX_TEXT_BYTES,
    PROXY_FILE,
    RECORDING_FILE,
    SANDBOX_DIR,
    SEAL_FILE,
    SESSION_FILE,
    STATUS_FILE,
    TASK_FILE,
    TRANSCRIPT_FILE,
    VERIFY_FILE,
    SessionDir,
    read_file,
)
from kodelyth_ecc.statusfile import LOST

TYPE_CHECKING = False
if TYPE_CHECKING:
    from kodelyth_ecc.status import SessionStatus, WorkerStatus

# In each worker's directory: one directory per earlier attempt, numbered from 1.
ATTEMPTS_DIR = "attempts"
# The message a resumed agent reads on stdin (``--message``).
MESSAGE_FILE = "message.md"
# What a new attempt writes again, and so what is moved into attempts/<N>/ first: the
# runner's status, transcript and --verify outcome, the proxy's recording of the
# worker and where an offline replay diverged, the message it was given, and the
# private git state a sandboxed attempt could not bring back.
ATTEMPT_FILES = (
    STATUS_FILE,
    TRANSCRIPT_FILE,
    VERIFY_FILE,
    DIVERGENCE_FILE,
    EXCHANGES_FILE,
    SEAL_FILE,
    RECORDING_FILE,
    MESSAGE_FILE,
    SANDBOX_DIR,
)
# Workers in these states have not finished (lost: its pane or tmux server died first).
UNFINISHED = ("pending", "running", LOST)
# The reason a runner records for an agent or check it stopped on a signal (runner.main).
STOPPED_REASON = "stopped"
MAX_MESSAGE_BYTES = 1024 * 1024
# The window a dead proxy's window is renamed to while a new one starts (ended after).
_ENDED_PROXY_WINDOW = "proxy-ended"
# How long a runner found alive may take to end (its tmux server has just ended: a
# sandboxed one brings its commits back first) before the worker is refused as running.
_RUNNER_END_WAIT_S = 5.0
# What a runner's command line holds (``OrchestrationPlan.runner_argv``).
_RUNNER_MAIN = b"from kodelyth_ecc.runner import main"
# attempts/<N>/ numbers tried past the one session.json counts before giving up.
_MAX_ATTEMPT_TRIES = 10_000


@dataclass
class Restarted:
    """One worker started again."""

    slug: str
    # The new attempt's number (the first run was attempt 1).
    attempt: int
    pane_id: str
    # Where the previous attempt's files were moved.
    kept: str
    # The agent session id its conversation continues from (None: started afresh).
    resumed: str | None = None
    # Why a message could not continue the agent's conversation (None: it did, or no
    # message was given).
    afresh_because: str | None = None
    # The private git state of a sandboxed attempt that ended before bringing its
    # commits back (a machine restart), kept here with them (None: there was none).
    stranded: str | None = None


@dataclass
class RetryResult:
    session: str
    coordination_root: str
    coordination_dir: str
    workers: list[Restarted] = field(default_factory=list)
    # The session's tmux session was gone and is made again.
    new_tmux_session: bool = False
    # The session's model proxy: "started" (again), "reused" (it ran), None (no proxy).
    proxy: str | None = None
    # Unfinished workers left lost in a tmux session made again (retry one by one).
    left_lost: list[str] = field(default_factory=list)


def retry_workers(
    session: str,
    coordination_root: str,
    slugs: Sequence[str],
    *,
    message: str | None = None,
    on_step: Callable[[str], None] | None = None,
) -> RetryResult:
    """Start the workers ``slugs`` of ``session`` again (a worker whose pane still runs
    is refused; a completed one may be run again). ``message``: what to tell each
    agent (its conversation continued where its CLI can). ``on_step`` is told each
    step as it begins, for a progress line."""
    from kodelyth_ecc.execute import termination_interrupts

    if not slugs:
        raise UsageError("retry: name at least one worker (see `kodelyth-ecc status SESSION`)")
    if message is not None:
        message = check_message(message)
    with termination_interrupts(), _session_lock(session, coordination_root):
        run = _RetryRun(session, coordination_root)
        for slug in dict.fromkeys(slugs):
            run.add(slug)
        return run.start(message, on_step or (lambda _step: None))


def resume_session(
    session: str, coordination_root: str, *, on_step: Callable[[str], None] | None = None
) -> RetryResult:
    """After a restart or a killed tmux server: the session's tmux session made again
    and every worker that had not finished (pending, running or lost) started again in
    it; completed and failed workers are left as they are. Nothing unfinished: nothing
    is done (an empty result)."""
    from kodelyth_ecc.execute import termination_interrupts

    with termination_interrupts(), _session_lock(session, coordination_root):
        run = _RetryRun(session, coordination_root)
        if run.tmux_alive:
            raise KodelythError(
                f"session {session!r} is running; use `kodelyth-ecc retry {session} WORKER` "
                "for one worker"
            )
        for worker in run.status.workers:
            if unfinished(worker):
                run.add(worker.slug)
        if not run.chosen:
            return run.result
        return run.start(None, on_step or (lambda _step: None))


def unfinished(worker: WorkerStatus) -> bool:
    """Whether ``worker`` had not finished: pending, running or lost, or stopped by a
    signal before it could (its runner records that as failed, reason "stopped": the
    hangup of a tmux server that ended during its --verify check or in its sandbox)."""
    return worker.state in UNFINISHED or (
        worker.state == "failed" and worker.reason == STOPPED_REASON
    )


def check_message(message: str) -> str:
    """A message for an agent: text, not empty, at most MAX_MESSAGE_BYTES."""
    if not message.strip():
        raise UsageError("message: it is empty; say what the agent should do next")
    if "\0" in message:
        raise UsageError("message: it holds a NUL character; pass text")
    try:
        size = len(message.encode("utf-8"))
    except UnicodeEncodeError:
        raise UsageError("message: it is not UTF-8 text") from None
    if size > MAX_MESSAGE_BYTES:
        raise UsageError(
            f"message: it is {size:,} bytes, over the {MAX_MESSAGE_BYTES:,}-byte limit; "
            "put the details in a file in the worktree and point the agent at it"
        )
    return message


# --- the run ---------------------------------------------------------------------------


@contextlib.contextmanager
def _session_lock(session: str, coordination_root: str) -> Iterator[None]:
    """One retry or resume of a session at a time (both would move the same files)."""
    path = SessionDir.at(os.path.abspath(coordination_root), session).path
    busy = (
        f"another retry or resume of session {session!r} is under way: wait for it to "
        "finish and try again"
    )
    with session_lock(path, busy):
        yield


class _Kept:
    """A worker's previous attempt, moved into attempts/<N>/ (and moved back on undo).
    Put on the undo stack before ``make``: an interruption at any point is undone from
    what is on disk (what is in its fresh attempts/<N>/ was moved there by it)."""

    def __init__(self, worker_dir: str, number: int) -> None:
        self.worker_dir = worker_dir
        self.number = number
        self.root = os.path.join(worker_dir, ATTEMPTS_DIR)
        self.made_root = False
        self.directory: str | None = None
        self.moved: list[str] = []
        # Names that were not there: what is there on undo was made for the new attempt.
        self.absent: list[str] = []
        self.task_text: bytes | None = None

    @property
    def kept(self) -> str:
        assert self.directory is not None
        return self.directory

    def make(self) -> None:
        """attempts/<N>/: the first free number from the attempt's own, never over an
        earlier one."""
        root = self.root
        if not os.path.lexists(root):
            os.mkdir(root)
            self.made_root = True
        elif not os.path.isdir(root) or os.path.islink(root):
            raise KodelythError(
                f"{root} is not a directory: move it away so the earlier attempts can be kept"
            )
        for number in range(self.number, self.number + _MAX_ATTEMPT_TRIES):
            candidate = os.path.join(root, str(number))
            try:
                os.mkdir(candidate)
            except FileExistsError:
                continue
            self.directory, self.number = candidate, number
            return
        raise KodelythError(
            f"{root} holds no free attempt number from {self.number} on: move the earlier "
            "attempts away and retry"
        )

    def keep(self) -> None:
        directory = self.kept
        for name in ATTEMPT_FILES:
            source = os.path.join(self.worker_dir, name)
            if not os.path.lexists(source):
                self.absent.append(name)
                continue
            os.rename(source, os.path.join(directory, name))  # a link moves as one
            self.moved.append(name)

    def add_to_task(self, text: str) -> None:
        """The message appended to task.md, the task as it was kept beside the rest."""
        path = os.path.join(self.worker_dir, TASK_FILE)
        before = read_file(path, MAX_TEXT_BYTES) or b""
        atomic_write_bytes(os.path.join(self.kept, TASK_FILE), before)
        self.task_text = before
        atomic_write_bytes(path, before + text.encode("utf-8"))

    def undo(self) -> None:
        directory = self.directory
        if directory is None:
            if self.made_root:
                os.rmdir(self.root)
            return
        if self.task_text is not None:
            atomic_write_bytes(os.path.join(self.worker_dir, TASK_FILE), self.task_text)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(os.path.join(directory, TASK_FILE))
        for name in self.absent:
            # Made for the new attempt (a fresh recording, the message): not there before.
            path = os.path.join(self.worker_dir, name)
            if os.path.lexists(path) and not os.path.isdir(path):
                os.unlink(path)
        for name in reversed(ATTEMPT_FILES):
            kept = os.path.join(directory, name)
            if os.path.lexists(kept):  # moved there by keep (the directory is this run's)
                os.replace(kept, os.path.join(self.worker_dir, name))
        os.rmdir(directory)
        if self.made_root:
            os.rmdir(self.root)


@dataclass
class _Chosen:
    worker: WorkerPlan
    status: WorkerStatus
    old_pane: str | None
    attempts: int


class _RetryRun:
    """One retry or resume of a session: what it found, what it changed."""

    def __init__(self, session: str, coordination_root: str) -> None:
        from kodelyth_ecc.status import collect_status

        self.session = session
        self.root = os.path.abspath(coordination_root)
        self.status: SessionStatus = collect_status(session, self.root)
        self.sdir = SessionDir.at(self.root, session)
        self.record = _runnable_record(self.status)
        self.plan = _rebuilt_plan(self.record, self.sdir.path)
        self.chosen: list[_Chosen] = []
        tmux.require()
        self.tmux_alive = tmux.has_session(session)
        self.result = RetryResult(session, self.root, self.sdir.path)
        self._ended_proxy: _Window | None = None
        self._stale_proxy_file: str | None = None
        # Looked up once for every worker chosen (git worktree list, /proc).
        self._worktrees: dict[str, str | None] | None = None
        self._runners: dict[str, int] | None = None

    def add(self, slug: str) -> None:
        """Choose a worker to start again (refused while its pane runs)."""
        found = {w.worker_slug: w for w in self.plan.workers}
        status = {w.slug: w for w in self.status.workers}
        if slug not in found or slug not in status:
            from kodelyth_ecc.sessiondir import unknown_worker

            raise unknown_worker(self.session, slug, list(found))
        worker, now = found[slug], status[slug]
        if now.pane_alive:
            raise KodelythError(
                f"worker {slug} of {self.session!r} is still running (its pane {now.pane_id} is "
                f"alive): wait for it (`kodelyth-ecc status {self.session} --wait`), or end it "
                f"(`tmux kill-pane -t {now.pane_id}`) and retry"
            )
        runner = self._live_runner(worker)
        if runner is not None:
            raise KodelythError(
                f"worker {slug} of {self.session!r} is still running: its runner (pid "
                f"{runner}) lives on outside the pane session.json names (in another tmux "
                f"server?); wait for it, or end it (`kill {runner}`) and retry"
            )
        self._check_worktree(worker)
        _check_worker_files(worker)
        record = next(w for w in self.record.workers if w.slug == slug)
        self.chosen.append(_Chosen(worker, now, record.pane_id, record.attempts))

    def _check_worktree(self, worker: WorkerPlan) -> None:
        """The worker runs again only in its own worktree, on its own branch: anywhere
        else its agent would edit (and commit to) what is not the worker's."""
        from kodelyth_ecc import gitrepo

        slug, tree, branch = worker.worker_slug, worker.worktree_path, worker.branch_name
        if not os.path.isdir(tree):
            raise KodelythError(
                f"worker {slug}'s worktree {tree} is gone, and its work with it: there is "
                "nothing to run it in again; start a new session"
            )
        repo = self.plan.repo_root
        if self._worktrees is None:
            self._worktrees = gitrepo.worktrees(repo)
        real = os.path.realpath(tree)
        if real not in self._worktrees or real == os.path.realpath(repo):
            raise KodelythError(
                f"worker {slug}'s worktree {tree} is not a worktree of {repo} any more (the "
                "worker's was removed, and this directory is not its): nothing is run in it; "
                "start a new session"
            )
        on = self._worktrees[real]
        if on is None:
            raise KodelythError(
                f"worker {slug}'s worktree {tree} has no branch checked out (a detached HEAD, "
                "or a rebase or bisect under way): finish that, run "
                f"`git -C {tree} switch {branch}`, and retry"
            )
        if on != branch:
            raise KodelythError(
                f"worker {slug}'s worktree {tree} is on branch {on}, not {branch}: its agent "
                f"would commit to the wrong branch; run `git -C {tree} switch {branch}` "
                "and retry"
            )
        if not gitrepo.branch_exists(repo, branch):
            raise KodelythError(
                f"worker {slug}'s branch {branch} is gone (deleted under its worktree {tree}): "
                f"make it again where its work is (`git -C {tree} branch {branch} COMMIT`) "
                "and retry"
            )

    def _live_runner(self, worker: WorkerPlan) -> int | None:
        """A runner of ``worker`` still alive on this machine, wherever its pane is (a
        tmux server on another socket, a pane session.json does not name): two agents in
        one worktree would undo each other's work. One that is ending (its server just
        went) is given a moment."""
        deadline = time.monotonic() + _RUNNER_END_WAIT_S
        while True:
            if self._runners is None:
                self._runners = _live_runners()
            pid = self._runners.get(os.path.realpath(worker.status_file_path))
            if pid is None or time.monotonic() >= deadline:
                return pid
            time.sleep(0.05)
            self._runners = None

    # --- starting ----------------------------------------------------------------------

    def start(self, message: str | None, on_step: Callable[[str], None]) -> RetryResult:
        from kodelyth_ecc.execute import check_harness, rollback

        plan = self.plan
        on_step("checking the harness")
        cli = check_harness(plan)
        undo: list[tuple[str, Callable[[], None]]] = []
        env_dirs: list[str] = []
        step = "keeping the previous attempts"
        try:
            launches = self._keep_attempts(message, undo, on_step)
            step = "writing the workers' environment"
            on_step(step)
            from kodelyth_ecc.execute import harness_env, write_environment_files

            slugs = [c.worker.worker_slug for c in self.chosen]
            env_dir, env_files = write_environment_files(slugs, harness_env(plan))
            env_dirs.append(env_dir)
            run_id = secrets.token_hex(4)
            step = "creating the tmux session" if not self.tmux_alive else "adding the panes"
            on_step(step)
            panes = self._panes(launches, run_id, env_files, cli, undo)
            if plan.proxied:
                step = "starting the session's model proxy"
                on_step(step)
                self._proxy(env_dir, undo)
            step = "recording the new panes in session.json"
            self._record(panes, undo)
            step = "starting the runners"
            on_step(step)
            from kodelyth_ecc.execute import launch_commands, wait_for_runners

            wait_for_runners(plan, env_files, panes)
            step = "launching the workers"
            on_step(step)
            tmux.run_sequence(launch_commands(plan, slugs, run_id))
        except BaseException as exc:
            failures = rollback(undo)
            if isinstance(exc, KeyboardInterrupt):
                raise
            reason = (
                exc.message if isinstance(exc, KodelythError) else f"{type(exc).__name__}: {exc}"
            )
            tail = (
                f"; could not undo {'; '.join(failures)}"
                if failures
                else "; the session was left as it was"
            )
            raise KodelythError(f"retry failed while {step}: {reason}{tail}") from exc
        finally:
            for directory in env_dirs:
                shutil.rmtree(directory, ignore_errors=True)
        self._tidy()
        return self.result

    def _keep_attempts(
        self,
        message: str | None,
        undo: list[tuple[str, Callable[[], None]]],
        on_step: Callable[[str], None],
    ) -> list[WorkerPlan]:
        """Each chosen worker's previous attempt moved into its attempts, its status
        pending again, and the command it runs (continuing its conversation, or its
        task with the message added)."""
        launches = []
        for chosen in self.chosen:
            worker = chosen.worker
            on_step(f"keeping {worker.worker_slug}'s previous attempt")
            recorded = (chosen.status.usage or {}).get("agent_session_id")
            agent = recorded if isinstance(recorded, str) and recorded else None
            kept = _Kept(worker.coordination_dir, chosen.attempts)
            undo.append((f"{worker.worker_slug}'s previous attempt", kept.undo))
            kept.make()
            kept.keep()
            restarted = Restarted(worker.worker_slug, kept.number + 1, "", kept.kept)
            if SANDBOX_DIR in kept.moved:
                restarted.stranded = os.path.join(kept.kept, SANDBOX_DIR)
            launch = worker
            if message is not None:
                message_file = os.path.join(worker.coordination_dir, MESSAGE_FILE)
                resumed = self.plan.resumed_worker(worker, agent, message_file) if agent else None
                if resumed is not None:
                    atomic_write_text(message_file, message.rstrip("\n") + "\n")
                    launch, restarted.resumed = resumed, agent
                else:
                    restarted.afresh_because = _why_afresh(self.plan, worker, agent)
                    kept.add_to_task(_task_addition(message, restarted.attempt))
            write_pending_status(
                worker.status_file_path,
                worker.worker_name,
                worker.branch_name,
                worker.worktree_path,
            )
            self.result.workers.append(restarted)
            launches.append(launch)
        return launches

    def _panes(
        self,
        launches: list[WorkerPlan],
        run_id: str,
        env_files: dict[str, str],
        cli: str | None,
        undo: list[tuple[str, Callable[[], None]]],
    ) -> dict[str, str]:
        """A pane per worker running its runner: in a tmux session made again (with its
        banner window, as execute makes it), or added to the live one."""
        from kodelyth_ecc.execute import kill_pane, session_commands, worker_pane_commands

        plan = self.plan
        panes: dict[str, str] = {}
        if not self.tmux_alive:
            undo.append((f"tmux session {plan.session_name}", lambda: _kill_session(plan)))
            commands = session_commands(plan)
            for worker in launches:
                env = env_files[worker.worker_slug]
                commands += worker_pane_commands(plan, worker, run_id, env, cli)
            out = tmux.run_sequence(commands)
            ids = [line.strip() for line in out.stdout.splitlines() if line.startswith("%")]
            if len(ids) != len(launches) + 1:
                raise KodelythError(
                    f"tmux reported {len(ids)} panes for {len(launches) + 1} expected"
                )
            panes = {w.worker_slug: p for w, p in zip(launches, ids[1:], strict=True)}
            self.result.new_tmux_session = True
        else:
            window = self._worker_window(undo)
            for worker in launches:
                env = env_files[worker.worker_slug]
                commands = worker_pane_commands(plan, worker, run_id, env, cli, window=window)
                out = tmux.run_sequence(commands)
                pane = out.stdout.strip().splitlines()[0] if out.stdout.strip() else ""
                if not pane.startswith("%"):
                    raise KodelythError(f"tmux reported no pane for {worker.worker_slug}")
                undo.append(
                    (f"{worker.worker_slug}'s new pane", _pane_killer(kill_pane, plan, pane))
                )
                panes[worker.worker_slug] = pane
        for restarted in self.result.workers:
            restarted.pane_id = panes[restarted.slug]
        return panes

    def _worker_window(self, undo: list[tuple[str, Callable[[], None]]]) -> str:
        """The live session's workers' window (made again, banner first, when it was
        closed)."""
        from kodelyth_ecc.execute import kill_pane, session_commands

        plan = self.plan
        for window in _windows(plan.session_name):
            if window.name == WINDOW_NAME:
                return window.window_id
        commands = session_commands(plan, window_only=True)
        out = tmux.run_sequence(commands)
        banner = out.stdout.strip().splitlines()[0] if out.stdout.strip() else ""
        if banner:
            undo.append(("the workers' window", _pane_killer(kill_pane, plan, banner)))
        return f"={plan.session_name}:{WINDOW_NAME}"

    def _proxy(self, env_dir: str, undo: list[tuple[str, Callable[[], None]]]) -> None:
        """The session's model proxy: the live one reused; else one started again (a
        stale proxy.json, of a proxy that ended, set aside first: the runners must not
        take its ports for the new one's)."""
        from kodelyth_ecc.execute import PROXY_WINDOW, start_proxy

        plan = self.plan
        ended: _Window | None = None
        if self.tmux_alive:
            windows = [w for w in _windows(plan.session_name) if w.name == PROXY_WINDOW]
            live = [w for w in windows if not w.dead]
            if live:
                _check_live_proxy(plan, live[0])
                self.result.proxy = "reused"
                return
            if windows:
                ended = windows[0]
                _rename_window(ended.window_id, _ENDED_PROXY_WINDOW)
                undo.append(
                    (
                        "the ended proxy's window",
                        lambda: _rename_window(ended.window_id, PROXY_WINDOW),
                    )
                )
        stale = plan.proxy_file
        if os.path.lexists(stale):
            aside = os.path.join(self.sdir.path, f".{PROXY_FILE}.{secrets.token_hex(4)}.ended")
            os.rename(stale, aside)
            self._stale_proxy_file = aside

            def put_back() -> None:
                os.replace(aside, stale)

            undo.append(("the ended proxy's proxy.json", put_back))
        start_proxy(plan, env_dir, undo)
        self.result.proxy = "started"
        self._ended_proxy = ended

    def _record(self, panes: dict[str, str], undo: list[tuple[str, Callable[[], None]]]) -> None:
        """session.json: the new panes and attempt counts; in a tmux session made
        again, every other pane is one of the ended server (GONE_PANE)."""
        before = self.sdir.read(SESSION_FILE, MAX_SESSION_RECORD_BYTES)
        path = self.sdir.record_file
        if before is not None:
            undo.append(("session.json", lambda: atomic_write_bytes(path, before)))
        # As it is now, not as it was read at the start: what another command wrote
        # meanwhile (teardown's torn_down_at, another tool's extra) stays.
        record = read_session_record(self.sdir.path) or self.record
        if record.torn_down_at is not None:
            raise KodelythError(
                f"session {self.session!r} was torn down while this retry started it: start "
                "a new session"
            )
        record.tmux_session = self.plan.session_name
        for worker in record.workers:
            if worker.slug in panes:
                worker.pane_id = panes[worker.slug]
                worker.attempts = next(
                    r.attempt for r in self.result.workers if r.slug == worker.slug
                )
            elif self.result.new_tmux_session and worker.pane_id is not None:
                worker.pane_id = GONE_PANE
                now = next((w for w in self.status.workers if w.slug == worker.slug), None)
                if now is not None and unfinished(now):
                    self.result.left_lost.append(worker.slug)
        write_session_record(self.sdir.path, record)

    def _tidy(self) -> None:
        """After the launch: the dead panes of the attempts before, an ended proxy's
        window and its stale proxy.json. Cosmetic: a failure here is no failed retry."""
        if self.tmux_alive:
            from kodelyth_ecc.execute import kill_pane

            states = tmux.panes(self.session) or {}
            for chosen in self.chosen:
                old = chosen.old_pane
                if old and old in states and states[old].dead:
                    with contextlib.suppress(KodelythError):
                        kill_pane(self.session, old)
            ended = self._ended_proxy
            if ended is not None:
                with contextlib.suppress(KodelythError):
                    tmux.run_sequence([["kill-window", "-t", ended.window_id]])
        aside = self._stale_proxy_file
        if aside is not None:
            with contextlib.suppress(OSError):
                os.unlink(aside)


# --- what it reads ---------------------------------------------------------------------


def _live_runners() -> dict[str, int]:
    """Every runner of this user alive on this machine: the real path of the status
    file it keeps, and its pid (from /proc; none where there is no /proc)."""
    found: dict[str, int] = {}
    try:
        entries = os.listdir("/proc")
    except OSError:
        return found
    uid = os.geteuid()
    for entry in entries:
        if not entry.isdigit():
            continue
        try:
            if os.stat(f"/proc/{entry}").st_uid != uid:
                continue
            with open(f"/proc/{entry}/cmdline", "rb") as fh:
                argv = fh.read(1 << 20).split(b"\0")
        except OSError:
            continue  # gone meanwhile, or not ours to read
        if not any(_RUNNER_MAIN in arg for arg in argv[:4]) or b"--status-file" not in argv:
            continue
        at = argv.index(b"--status-file") + 1
        if at < len(argv):
            found[os.path.realpath(os.fsdecode(argv[at]))] = int(entry)
    return found


def _check_worker_files(worker: WorkerPlan) -> None:
    """What the new attempt reads or appends to must be the worker's own files: its
    directory, task (the agent's stdin) and handoff (appended to), never a symlink to
    somewhere else (a secret sent to the model, a file of the user's written into), a
    FIFO or a device."""
    import stat

    from kodelyth_ecc.sessiondir import HANDOFF_FILE, open_file

    directory = worker.coordination_dir
    try:
        is_dir = stat.S_ISDIR(os.lstat(directory).st_mode)
    except FileNotFoundError:
        is_dir = False
    if not is_dir:
        raise KodelythError(
            f"worker {worker.worker_slug}'s directory {directory} is not a directory (a "
            "symlink, or gone): its files are never written through a link; put the "
            "worker's directory back and retry"
        )
    for name in (TASK_FILE, HANDOFF_FILE):
        try:
            fd = open_file(os.path.join(directory, name))
        except KodelythError as exc:
            raise KodelythError(
                f"worker {worker.worker_slug} cannot run again: {exc.message}"
            ) from None
        if fd is not None:
            os.close(fd)


def _runnable_record(status: SessionStatus) -> SessionRecord:
    """The session's record, if its workers can run again here (else why not, and what
    to do instead)."""
    session, record = status.session, status.record
    if record is None:
        raise KodelythError(
            f"session {session!r} has no readable session.json: kodelyth-ecc cannot tell how "
            "its workers were started; start a new session"
        )
    if record.mode == "imported":
        raise KodelythError(
            f"session {session!r} was imported from a bundle and never ran here: run it with "
            f"`kodelyth-ecc replay {session} --execute`"
        )
    if record.tmux_session is None or record.mode == "write-only":
        raise KodelythError(
            f"session {session!r} was written with --write-only and never started: start it "
            "by rerunning that swarm command with --execute --replace"
        )
    if record.torn_down_at is not None:
        raise KodelythError(
            f"session {session!r} was torn down at {record.torn_down_at} (its worktrees are "
            "gone): start a new session"
        )
    if record.plan_config is None:
        raise KodelythError(
            f"session {session!r} was started by an older kodelyth-ecc that did not record "
            "how to start its workers again: start a new session for the work left"
        )
    return record


def _rebuilt_plan(record: SessionRecord, coordination_dir: str) -> OrchestrationPlan:
    """The plan the session ran, built again from session.json's ``plan_config``:
    seeds are not copied again (the worktrees exist), so they are left out."""
    from kodelyth_ecc.plan import build_orchestration_plan, plan_config_from_record

    config = plan_config_from_record(record.plan_config)
    config = config._replace(
        seed_paths=(), workers=tuple(w._replace(seed_paths=()) for w in config.workers)
    )
    try:
        plan = build_orchestration_plan(config)
    except UsageError as exc:  # it was a plan once: what changed is here, not in the flags
        raise KodelythError(
            f"session {record.session!r}'s workers cannot be started again: {exc.message}"
        ) from None
    recorded = {(w.slug, w.branch, os.path.normpath(w.worktree)) for w in record.workers}
    rebuilt = {(w.worker_slug, w.branch_name, w.worktree_path) for w in plan.workers}
    same_dir = os.path.realpath(plan.coordination_dir) == os.path.realpath(coordination_dir)
    if plan.session_name != record.session or recorded != rebuilt or not same_dir:
        raise KodelythError(
            f"session {record.session!r}'s session.json names other workers or places than "
            "its plan_config (was the session moved or edited?): start a new session"
        )
    return plan


def _why_afresh(plan: OrchestrationPlan, worker: WorkerPlan, agent: str | None) -> str:
    """Why a message cannot continue ``worker``'s own conversation (one line)."""
    if worker.result_harness is None:
        name = plan.harness if plan.harness not in (None, "custom") else "a custom launcher"
        return f"{name} cannot continue a conversation"
    if plan.sandbox is not None:
        return "its CLI kept the conversation in its sandbox's private HOME, which is gone"
    if agent is None:
        return "its previous attempt recorded no agent session id to continue"
    from kodelyth_ecc.termsafe import one_line

    return f"{worker.result_harness} cannot continue the conversation '{one_line(agent, 40)}'"


def _task_addition(message: str, attempt: int) -> str:
    return f"\n## Message for attempt {attempt}\n\n{message.strip()}\n"


# --- tmux ------------------------------------------------------------------------------


@dataclass
class _Window:
    name: str
    window_id: str
    pane_id: str
    pid: int | None
    dead: bool


def _windows(session: str) -> list[_Window]:
    """The session's panes with their windows' names and ids (one pane a line)."""
    out = tmux.run_sequence(
        [["list-panes", "-s", "-t", f"={session}", "-F",
          "#{window_name}\t#{window_id}\t#{pane_id}\t#{pane_pid}\t#{pane_dead}"]]
    )  # fmt: skip
    found = []
    for line in out.stdout.splitlines():
        parts = line.split("\t")
        if len(parts) == 5:
            name, window, pane, pid, dead = parts
            found.append(
                _Window(name, window, pane, int(pid) if pid.isdigit() else None, dead == "1")
            )
    return found


def _rename_window(window_id: str, name: str) -> None:
    tmux.run_sequence([["rename-window", "-t", window_id, name]])


def _kill_session(plan: OrchestrationPlan) -> None:
    tmux.kill_session(plan.session_name)


def _pane_killer(
    kill: Callable[[str, str], None], plan: OrchestrationPlan, pane: str
) -> Callable[[], None]:
    return lambda: kill(plan.session_name, pane)


def _check_live_proxy(plan: OrchestrationPlan, window: _Window) -> None:
    """A live proxy pane must be the proxy proxy.json names (its ports are the runners'
    way to it): else it is no proxy of this session's."""
    try:
        data = read_file(plan.proxy_file, 1 << 20)
        state = json.loads(data) if data else None
    except (KodelythError, ValueError):
        state = None
    pid = state.get("pid") if isinstance(state, dict) else None
    if pid is None or pid != window.pid:
        raise KodelythError(
            f"the session's model proxy (pane {window.pane_id}) runs but {plan.proxy_file} "
            f"does not name it: end it (`tmux kill-pane -t {window.pane_id}`) and retry"
        )
