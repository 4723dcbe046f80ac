"""What the workers of a session are doing, read from their ``status.md`` and
their tmux panes. A worker whose pane died while it was running (or before it
ever started) is ``lost``: its runner could not record an outcome.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from kodelyth_ecc import tmux
from kodelyth_ecc.coordination import SessionRecord, read_session_record
from kodelyth_ecc.errors import KodelythError
from kodelyth_ecc.sessiondir import (
    HANDOFF_FILE,
    MAX_STATUS_BYTES,
    STATUS_FILE,
    SessionDir,
    is_slug,
    list_session_names,
)
from kodelyth_ecc.statusfile import DONE_STATES, LOST, STATES, UNREADABLE, parse_status

POLL_INTERVAL_S = 0.1


class WaitTimeout(KodelythError):
    """``wait_for_session`` ran out of time; carries the last status seen."""

    def __init__(self, message: str, status: SessionStatus) -> None:
        super().__init__(message)
        self.status = status


@dataclass
class WorkerStatus:
    name: str
    slug: str
    state: str
    recorded_state: str
    exit_code: int | None = None
    duration_s: float | None = None
    started: str | None = None
    finished: str | None = None
    branch: str | None = None
    worktree: str | None = None
    pane_id: str | None = None
    pane_alive: bool | None = None
    handoff_bytes: int | None = None
    # Why the worker's status could not be read (a symlink, a FIFO, ...), if so.
    problem: str | None = None
    # Why it failed, as its runner recorded it ("timeout", ...).
    reason: str | None = None
    # Model, tokens, cost ... as the agent's CLI reported them (statusfile.USAGE_BULLETS).
    usage: dict[str, object] | None = None
    # Where an offline replay parted from its recording ("turn 3: ...").
    divergence: str | None = None
    # The --verify check's outcome ("passed (exit 0, 1.2s): pytest -q").
    verify: str | None = None

    @property
    def done(self) -> bool:
        return self.state in DONE_STATES


@dataclass
class SessionStatus:
    session: str
    coordination_dir: str
    workers: list[WorkerStatus]
    tmux_alive: bool | None
    record: SessionRecord | None = field(default=None, repr=False)

    def counts(self) -> dict[str, int]:
        counts = dict.fromkeys((*STATES, LOST, UNREADABLE), 0)
        for worker in self.workers:
            counts[worker.state] = counts.get(worker.state, 0) + 1
        return counts

    @property
    def done(self) -> bool:
        return all(w.done for w in self.workers)

    @property
    def all_completed(self) -> bool:
        return all(w.state == "completed" for w in self.workers)


def collect_status(
    session: str, coordination_root: str, *, look_at_panes: bool = True
) -> SessionStatus:
    """The session's workers as their status files say, each file read once; with
    ``look_at_panes`` (one tmux call), a worker whose pane died while it ran is lost.
    Without it nothing is known of the panes (a poller's cheap look between full ones)."""
    sdir = SessionDir.at(coordination_root, session)
    if not sdir.exists():
        raise KodelythError(
            f"no session {session!r} under {coordination_root}: "
            "run `kodelyth-ecc status` to list sessions, or pass --coordination-root"
        )
    record = read_session_record(sdir.path)
    # Panes first, files second: a runner records its outcome before its pane dies,
    # so a file still saying "running" after the pane is gone means the worker is lost.
    # Without tmux on PATH nothing is known about the panes: unknown, not lost.
    executed = (
        look_at_panes
        and record is not None
        and record.tmux_session is not None
        and tmux.available()
    )
    panes = tmux.panes(session) if executed else None
    # session.json is read like any session file: its slugs must be slugs too.
    pane_of = {w.slug: w.pane_id for w in record.workers if is_slug(w.slug)} if record else {}
    slugs = list(pane_of)
    slugs += [s for s in sdir.worker_slugs() if s not in pane_of]

    workers = []
    for slug in slugs:
        worker = sdir.worker(slug)
        problem: str | None = None
        try:
            text = worker.read_text(STATUS_FILE, MAX_STATUS_BYTES, truncate=True)
        except KodelythError as exc:  # a symlink, a FIFO...: this worker, not the session
            text, problem = None, exc.message
        if text is None and problem is None and not os.path.isdir(worker.path):
            continue
        parsed = parse_status(text or "", slug)
        pane_id = pane_of.get(slug)
        alive: bool | None = None
        if executed and pane_id:
            pane = (panes or {}).get(pane_id)
            alive = pane is not None and not pane.dead
        state = UNREADABLE if problem else parsed.state
        if alive is False and state in ("pending", "running"):
            state = LOST
        workers.append(
            WorkerStatus(
                name=parsed.name or slug,
                slug=slug,
                state=state,
                recorded_state=parsed.state,
                exit_code=parsed.exit_code,
                duration_s=parsed.duration_s,
                started=parsed.started,
                finished=parsed.finished,
                branch=parsed.branch,
                worktree=parsed.worktree,
                pane_id=pane_id,
                pane_alive=alive,
                handoff_bytes=worker.size(HANDOFF_FILE),
                problem=problem,
                reason=parsed.reason,
                usage=parsed.usage,
                divergence=parsed.divergence,
                verify=parsed.verify,
            )
        )
    return SessionStatus(
        session=session,
        coordination_dir=sdir.path,
        workers=workers,
        tmux_alive=(panes is not None) if executed else None,
        record=record,
    )


def list_sessions(coordination_root: str) -> list[SessionStatus]:
    """Every session under the root: directories with a session.json or worker dirs."""
    found = []
    for name in list_session_names(coordination_root):
        sdir = SessionDir(coordination_root, name)
        if not os.path.lexists(sdir.record_file) and not sdir.worker_slugs():
            continue
        found.append(collect_status(name, coordination_root))
    return found


def wait_for_session(
    session: str,
    coordination_root: str,
    *,
    timeout: float | None = None,
    on_poll: Callable[[SessionStatus], None] | None = None,
) -> SessionStatus:
    """Block until every worker is completed, failed or lost."""
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        status = collect_status(session, coordination_root)
        if on_poll:
            on_poll(status)
        if status.done:
            return status
        if status.record is not None and status.record.mode == "imported":
            raise KodelythError(
                f"session {session!r} was imported from a bundle and never ran here: nothing "
                f"to wait for (run it again with `kodelyth-ecc replay {session} --execute`)"
            )
        if status.record is not None and status.record.tmux_session is None:
            raise KodelythError(
                f"session {session!r} was written with --write-only and never started: "
                "nothing to wait for (start it by rerunning that swarm command with "
                "--execute --replace)"
            )
        if deadline is not None and time.monotonic() >= deadline:
            waiting = ", ".join(w.slug for w in status.workers if not w.done)
            raise WaitTimeout(
                f"timed out after {timeout:g}s waiting for {waiting}: "
                "raise --timeout or check the panes with `tmux attach -t " + session + "`",
                status,
            )
        time.sleep(POLL_INTERVAL_S)
