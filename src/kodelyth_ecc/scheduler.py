"""Where an experiment's runs run: one small interface, runs in and outcomes out.

``LocalScheduler`` runs them here, each an ordinary replay in its own tmux session:
``kodelyth-ecc replay ... --execute`` as a child process (so runs start in parallel and
a failing one cannot take the experiment with it), then the session's status polled
until every worker is done, then its bundle exported. A cluster engine would take the
same ``RunRequest``s (a command line, an environment, a worker count) and give back
the same ``RunOutcome``s.

At most ``max_parallel`` workers run at once across all runs; a run takes as many
slots as it has workers (a run larger than the limit runs alone).
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from kodelyth_ecc.errors import KodelythError
from kodelyth_ecc.records import Record

TYPE_CHECKING = False
if TYPE_CHECKING:
    import subprocess
    from typing import Protocol

# How often running runs are looked at, and how long a starting replay may take to
# roll back once it is told to stop.
POLL_S = 0.1
STOP_GRACE_S = 30.0
# How often tmux is asked whether a running session's panes are alive (its status
# files are read at every poll).
FULL_LOOK_S = 2.0
# A run whose workers are all done, its bundle not yet exported (never an outcome).
_DONE = "done"
# How much of a failed start's log its reason quotes.
_REASON_CHARS = 200


class RunRequest(Record):
    """One run to make: the kodelyth-ecc arguments that start it (``replay ...
    --execute``; its session is ``session``), the variables it gets on top of ours,
    how many workers it runs, where its output goes and where its bundle is written.
    ``started``: the session was started by an earlier, interrupted scheduler (only
    its waiting and export are left)."""

    run: str
    argv: tuple[str, ...]
    session: str
    coordination_root: str
    workers: int
    log: str
    export: str
    env: tuple[tuple[str, str], ...] = ()
    started: bool = False
    cwd: str | None = None
    # Added to the exported bundle's meta (``experiment``: which experiment, arm, run).
    meta: Mapping[str, Any] | None = None
    # The token its replay records in session.json (``experiment_run``): what proves a
    # session of that name is this run's, whoever started it.
    tag: str = ""


class RunOutcome(Record):
    """How a run ended. ``state``: completed (every worker completed), failed (some
    worker failed or was lost), error (it could not be started or exported: ``reason``
    says why), interrupted (stopped by Ctrl-C or the experiment's timeout)."""

    run: str
    state: str
    session: str
    reason: str | None = None
    started_at: float | None = None
    finished_at: float | None = None

    @property
    def duration_s(self) -> float | None:
        if self.started_at is None or self.finished_at is None:
            return None
        return round(self.finished_at - self.started_at, 3)


class Stopped(KodelythError):
    """The scheduler stopped before every run was done (Ctrl-C or its deadline); the
    outcomes it has are in ``outcomes``, the runs it stopped are ``interrupted``."""

    def __init__(self, message: str, outcomes: list[RunOutcome], *, timed_out: bool) -> None:
        super().__init__(message)
        self.outcomes = outcomes
        self.timed_out = timed_out


# (what happened: "started" or "finished"; the request; the outcome when finished)
Event = Callable[[str, RunRequest, "RunOutcome | None"], None]
# Called just before a run starts, to name its session then (a name is taken when it is
# used, not when the experiment was planned): the request to start.
Prepare = Callable[[RunRequest], RunRequest]

if TYPE_CHECKING:

    class Scheduler(Protocol):
        """Runs in, outcomes out; ``on_event`` hears each start and finish (the
        experiment keeps its file and its progress line from them)."""

        def run(
            self,
            requests: Sequence[RunRequest],
            on_event: Event,
            *,
            deadline: float | None = None,
            prepare: Prepare | None = None,
        ) -> list[RunOutcome]: ...


class _Running:
    """A run in progress: its replay starting (``proc``), then its session waited on."""

    def __init__(self, request: RunRequest, proc: subprocess.Popen[bytes] | None) -> None:
        self.request = request
        self.proc = proc
        self.started_at = time.time()
        # When tmux is next asked about the session's panes, and how its workers ended.
        self.next_full = 0.0
        self.completed = False
        # Its session is known to be this run's: its replay exited 0 here, or it was
        # adopted on resume (its record has the run's token).
        self.launched = request.started


def _die_with_parent() -> None:  # pragma: no cover - runs in the child before exec
    """The replay child gets SIGTERM (and rolls back) when the experiment dies, even by
    SIGKILL: no start goes on unrecorded."""
    import ctypes

    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


class LocalScheduler:
    """Runs on this machine, each in its own tmux session (see the module docstring)."""

    def __init__(self, max_parallel: int) -> None:
        if max_parallel < 1:
            raise ValueError("max_parallel must be at least 1")
        self.max_parallel = max_parallel

    def run(
        self,
        requests: Sequence[RunRequest],
        on_event: Event,
        *,
        deadline: float | None = None,
        prepare: Prepare | None = None,
    ) -> list[RunOutcome]:
        queue = list(requests)
        running: list[_Running] = []
        outcomes: list[RunOutcome] = []

        def finish(item: _Running, outcome: RunOutcome) -> None:
            outcomes.append(outcome)
            on_event("finished", item.request, outcome)

        def start_next(used: int) -> None:
            while queue and (not running or used + queue[0].workers <= self.max_parallel):
                request = queue.pop(0)
                if prepare is not None:
                    request = prepare(request)
                on_event("started", request, None)
                try:
                    running.append(self._start(request))
                except OSError as exc:  # its log cannot be opened (a symlink, ...)
                    item = _Running(request, None)
                    finish(item, self._outcome(item, "error", f"{request.log}: {exc.strerror}"))
                    continue
                used += request.workers

        try:
            while queue or running:
                start_next(sum(r.request.workers for r in running))
                done: list[_Running] = []
                for item in list(running):
                    outcome = self._look(item)
                    if outcome is None:
                        continue
                    running.remove(item)
                    if outcome.state == _DONE:
                        done.append(item)
                    else:
                        finish(item, outcome)
                if done:
                    # The slots go to the next runs before the exports: they start while
                    # the bundles are written.
                    start_next(sum(r.request.workers for r in running))
                    for item in done:
                        finish(item, self._export(item))
                if deadline is not None and time.monotonic() >= deadline:
                    raise TimeoutError
                if running and not done:
                    time.sleep(POLL_S)
        except (KeyboardInterrupt, TimeoutError) as exc:
            timed_out = isinstance(exc, TimeoutError)
            # A second Ctrl-C (people press it twice) must not cut the stopping short:
            # every run is stopped and recorded first.
            previous = _ignore_interrupts()
            try:
                for item in running:
                    finish(item, self._stop(item))
            finally:
                if previous is not None:
                    signal.signal(signal.SIGINT, previous)
            why = "the experiment's --timeout passed" if timed_out else "interrupted"
            raise Stopped(why, outcomes, timed_out=timed_out) from None
        return outcomes

    def _start(self, request: RunRequest) -> _Running:
        if request.started:
            return _Running(request, None)
        import subprocess

        env = {**os.environ, **dict(request.env)}
        flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC
        fd = os.open(request.log, flags, 0o644)  # never through a symlink
        with os.fdopen(fd, "ab") as log:
            proc = subprocess.Popen(
                [sys.executable, "-m", "kodelyth_ecc", *request.argv],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=request.cwd,
                # Its own session: Ctrl-C at the terminal reaches the experiment only,
                # which then stops each run in order.
                start_new_session=True,
                preexec_fn=_die_with_parent,  # noqa: PLW1509 - no threads here
            )
        return _Running(request, proc)

    def _look(self, item: _Running) -> RunOutcome | None:
        """The run's outcome once it has one: its start failed (``error``), or every
        worker of its session is done (``_DONE``: its bundle is to be exported). The
        status files are read at each look; tmux, which alone knows a worker whose pane
        died, is asked when they say done and otherwise every few seconds."""
        request = item.request
        if item.proc is not None:
            code = item.proc.poll()
            if code is None:
                return None
            item.proc = None
            if code != 0:
                return self._outcome(item, "error", _last_line(request.log, code))
            item.launched = True
        from kodelyth_ecc.status import collect_status

        now = time.monotonic()
        full = now >= item.next_full
        try:
            status = collect_status(request.session, request.coordination_root, look_at_panes=full)
            if status.done and not full:
                full = True
                status = collect_status(request.session, request.coordination_root)
        except KodelythError as exc:
            return self._outcome(item, "error", exc.message)
        if full:
            item.next_full = now + FULL_LOOK_S
        if not status.done:
            return None
        item.completed = status.all_completed
        return self._outcome(item, _DONE, None)

    def _export(self, item: _Running) -> RunOutcome:
        try:
            _export(item.request)
        except (KodelythError, OSError) as exc:
            why = exc.message if isinstance(exc, KodelythError) else str(exc)
            return self._outcome(item, "error", f"export: {why}")
        # Exported: its tmux session (dead panes, the proxy's window and process) goes;
        # its files, worktrees and branches stay for a look and for `teardown`.
        from kodelyth_ecc import tmux

        with contextlib.suppress(KodelythError, OSError):
            tmux.kill_session(item.request.session)
        return self._outcome(item, "completed" if item.completed else "failed", None)

    def _stop(self, item: _Running) -> RunOutcome:
        """Stop a run in progress: a starting replay is told to stop (it rolls back
        what it created); a started session's agents are stopped (its tmux session
        killed); its files stay for a look and for ``teardown``."""
        if item.proc is not None:
            with contextlib.suppress(OSError):
                item.proc.send_signal(signal.SIGTERM)
            try:
                item.proc.wait(STOP_GRACE_S)
            except Exception:  # subprocess.TimeoutExpired
                with contextlib.suppress(OSError):
                    os.killpg(item.proc.pid, signal.SIGKILL)
                item.proc.wait()
        request = item.request
        if item.launched or owned(request.session, request.coordination_root, request.tag):
            # Only a session known to be this run's: after a rollback the name may be
            # anyone's.
            from kodelyth_ecc import tmux

            with contextlib.suppress(KodelythError, OSError):
                tmux.kill_session(item.request.session)
        return self._outcome(item, "interrupted", "stopped")

    @staticmethod
    def _outcome(item: _Running, state: str, reason: str | None) -> RunOutcome:
        return RunOutcome(
            run=item.request.run,
            state=state,
            session=item.request.session,
            reason=reason,
            started_at=item.started_at,
            finished_at=time.time(),
        )


def owned(session: str, coordination_root: str, tag: str) -> bool:
    """Whether ``session`` is the run's whose token is ``tag``: started, and its record
    carries the token."""
    from kodelyth_ecc.coordination import read_session_record
    from kodelyth_ecc.sessiondir import SessionDir

    if not tag or not session:
        return False
    try:
        sdir = SessionDir.at(coordination_root, session)
        record = read_session_record(sdir.path) if sdir.exists() else None
    except (KodelythError, OSError):
        return False
    return (
        record is not None
        and record.tmux_session is not None
        and record.extra.get("experiment_run") == tag
    )


def _ignore_interrupts() -> Any:
    """SIGINT ignored (in the main thread, the only one that may); its handler before."""
    import threading

    if threading.current_thread() is not threading.main_thread():
        return None
    return signal.signal(signal.SIGINT, signal.SIG_IGN)


def _export(request: RunRequest) -> None:
    from kodelyth_ecc.bundle import write_bundle
    from kodelyth_ecc.export import export_bundle

    bundle = export_bundle(request.session, request.coordination_root)
    if request.meta:
        bundle.meta.update(request.meta)
    write_bundle(bundle, request.export)


def _last_line(log: str, code: int) -> str:
    """Why a replay did not start: the last line it wrote (its one-line error)."""
    from kodelyth_ecc.termsafe import one_line

    try:
        with open(log, "rb") as fh:
            fh.seek(max(0, os.fstat(fh.fileno()).st_size - 4096))
            lines = [x for x in fh.read().decode("utf-8", "replace").splitlines() if x.strip()]
    except OSError:
        lines = []
    said = lines[-1] if lines else "no output"
    return one_line(f"the replay exited {code}: {said}", _REASON_CHARS)
