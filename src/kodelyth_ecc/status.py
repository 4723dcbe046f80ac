"""What the workers of a session are doing, read from their ``status.md`` and
their tmux panes. A worker whose pane died while it was running (or before it
ever started) is ``lost``: its runner could not record an outcome.

Beyond the status files (``collect_status``, cheap enough to poll), what a reader of
one session wants and costs a read more: a running worker's tokens so far (what its
proxy recorded, ``RecordedUsage``) and a failed worker's last words (``last_output``).
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass, field

from kodelyth_ecc import tmux
from kodelyth_ecc.coordination import SessionRecord, read_session_record
from kodelyth_ecc.errors import KodelythError
from kodelyth_ecc.sessiondir import (
    EXCHANGES_FILE,
    HANDOFF_FILE,
    MAX_STATUS_BYTES,
    STATUS_FILE,
    TRANSCRIPT_FILE,
    SessionDir,
    WorkerDir,
    is_slug,
    list_session_names,
)
from kodelyth_ecc.statusfile import (
    DONE_STATES,
    LOST,
    STATES,
    UNREADABLE,
    USAGE_BULLETS,
    parse_status,
)

POLL_INTERVAL_S = 0.1
# What a watcher does: a cheap look (status files only) this often, a full one (tmux
# too: has a pane died?) every FULL_LOOK_S, as the experiment scheduler does.
WATCH_INTERVAL_S = 0.5
FULL_LOOK_S = 2.0
# What one look reads of a running worker's exchanges.jsonl at most (its end): a long
# run's recording holds every request whole, and `status` runs often.
USAGE_READ_BYTES = 16 * 1024 * 1024
# What is read of a transcript's end for its last line, and what is kept of that line.
TRANSCRIPT_TAIL_BYTES = 64 * 1024
LAST_OUTPUT_CHARS = 500
# The token counts of a usage (statusfile.USAGE_BULLETS' integers but the turn count).
TOKEN_KEYS = tuple(key for key, _, kind in USAGE_BULLETS if kind is int and key != "turns")


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

    @property
    def task(self) -> str | None:
        """The swarm's task as session.json records it (user or bundle text)."""
        task = self.record.task if self.record is not None else None
        return task if isinstance(task, str) else None

    @property
    def created_at(self) -> str | None:
        return (self.record.created_at or None) if self.record is not None else None

    @property
    def torn_down_at(self) -> str | None:
        """When teardown removed the session's worktrees (None: it has not)."""
        return self.record.torn_down_at if self.record is not None else None


_PANE_ID = re.compile(r"%[0-9]{1,9}")
_STAMP = re.compile(r"([0-9]{4})-([0-9]{2})-([0-9]{2})T([0-9]{2}):([0-9]{2}):([0-9]{2})Z")


def parse_stamp(text: str | None) -> float | None:
    """The moment a status file or session.json names (``2026-11-26T10:00:01Z``, as
    runners and swarms write them) as epoch seconds; None for anything else. Parsed by
    hand: ``time.strptime`` imports locale, calendar and datetime, a tenth of what
    `status` takes to start."""
    match = _STAMP.fullmatch(text or "")
    if match is None:
        return None
    year, month, day, hour, minute, second = (int(g) for g in match.groups())
    if not (1 <= month <= 12 and 1 <= day <= 31 and hour < 24 and minute < 60 and second < 62):
        return None
    # Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's days_from_civil).
    year -= month <= 2
    era = year // 400
    year_of_era = year - era * 400
    day_of_year = (153 * (month + (-3 if month > 2 else 9)) + 2) // 5 + day - 1
    day_of_era = year_of_era * 365 + year_of_era // 4 - year_of_era // 100 + day_of_year
    days = era * 146097 + day_of_era - 719468
    return float(days * 86400 + hour * 3600 + minute * 60 + second)


def elapsed_s(worker: WorkerStatus, now: float | None = None) -> float | None:
    """How long a running worker has been running (its duration is written only when
    it ends); None for any other worker, or a start time that cannot be read."""
    if worker.state != "running":
        return None
    started = parse_stamp(worker.started)
    if started is None:
        return None
    return max(0.0, (time.time() if now is None else now) - started)


def pane_id_of(value: object) -> str | None:
    """A pane id as session.json holds it, if it is one tmux gives (``%12``)."""
    return value if isinstance(value, str) and _PANE_ID.fullmatch(value) else None


def collect_status(
    session: str,
    coordination_root: str,
    *,
    look_at_panes: bool = True,
    only: Collection[str] | None = None,
    record: SessionRecord | None = None,
) -> SessionStatus:
    """The session's workers as their status files say, each file read once; with
    ``look_at_panes`` (one tmux call), a worker whose pane died while it ran is lost.
    Without it nothing is known of the panes (a poller's cheap look between full ones).
    With ``only``, just those workers (a follower of one in a big session); with
    ``record``, its session.json as the caller already read it."""
    sdir = SessionDir.at(coordination_root, session)
    if not sdir.exists():
        raise KodelythError(
            f"no session {session!r} under {coordination_root}: "
            "run `kodelyth-ecc status` to list sessions, or pass --coordination-root"
        )
    if record is None:
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
    # session.json is read like any session file: its slugs must be slugs too, and its
    # pane ids such as tmux gives (a pane id goes to tmux as a target: a list, "%1;" or
    # "=other:1" is no pane).
    pane_of = (
        {w.slug: pane_id_of(w.pane_id) for w in record.workers if is_slug(w.slug)} if record else {}
    )
    slugs = list(pane_of)
    slugs += [s for s in sdir.worker_slugs() if s not in pane_of]
    if only is not None:
        slugs = [s for s in slugs if s in only]

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


def list_sessions(coordination_root: str, *, include_torn_down: bool = True) -> list[SessionStatus]:
    """Every session under the root: directories with a session.json or worker dirs;
    without ``include_torn_down``, not those whose worktrees teardown removed (nor is
    tmux asked about them). A directory that cannot be read as a session (thousands of
    entries over MAX_WORKERS, unreadable) is left out: one bad session must not hide the
    others (``collect_status`` of it says what is wrong)."""
    found = []
    for name in list_session_names(coordination_root):
        sdir = SessionDir(coordination_root, name)
        try:
            if not os.path.lexists(sdir.record_file) and not sdir.worker_slugs():
                continue
            # Read once: to skip a torn-down session before tmux is asked, and for its status.
            record = read_session_record(sdir.path)
            if not include_torn_down and record is not None and record.torn_down_at is not None:
                continue
            status = collect_status(name, coordination_root, record=record)
        except (KodelythError, OSError):
            continue
        if include_torn_down or status.torn_down_at is None:
            found.append(status)
    return found


def never_ran_here(status: SessionStatus) -> str | None:
    """Why nothing will change in a session's files (None: it may): it was imported
    from a bundle, or written with --write-only and never started. Its status files
    may still say "running" (a bundle of a running swarm): waiting would never end."""
    session = status.session
    if status.record is not None and status.record.mode == "imported":
        return (
            f"session {session!r} was imported from a bundle and never ran here: nothing "
            f"to wait for (run it again with `kodelyth-ecc replay {session} --execute`)"
        )
    if status.record is not None and status.record.tmux_session is None:
        return (
            f"session {session!r} was written with --write-only and never started: "
            "nothing to wait for (start it by rerunning that swarm command with "
            "--execute --replace)"
        )
    return None


def _refuse_unwaitable(status: SessionStatus) -> None:
    """A session that never ran here has nothing to wait for: say so instead of hanging."""
    reason = never_ran_here(status)
    if reason is not None:
        raise KodelythError(reason)


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
        _refuse_unwaitable(status)
        if deadline is not None and time.monotonic() >= deadline:
            raise timed_out(status, timeout or 0.0)
        time.sleep(POLL_INTERVAL_S)


def timed_out(status: SessionStatus, timeout: float) -> WaitTimeout:
    """The error of a wait (or watch) that ran out of time, naming who it waited for."""
    waiting = ", ".join(w.slug for w in status.workers if not w.done)
    return WaitTimeout(
        f"timed out after {timeout:g}s waiting for {waiting}: "
        "raise --timeout or check the panes with `tmux attach -t " + status.session + "`",
        status,
    )


def watch_session(
    session: str,
    coordination_root: str,
    *,
    interval: float = WATCH_INTERVAL_S,
    full_look_s: float = FULL_LOOK_S,
) -> Iterator[SessionStatus]:
    """The session's status about every ``interval`` seconds until every worker is
    done (the last one yielded is done). Between full looks only the status files are
    read, and the panes are as the last full look found them (so that a table of them
    does not flicker); one that finds everyone done is confirmed by a full look. A
    session that never ran here is a ``KodelythError``, as for ``wait_for_session``."""
    next_full = 0.0
    panes: dict[str, bool | None] = {}
    tmux_alive: bool | None = None
    while True:
        now = time.monotonic()
        full = now >= next_full
        status = collect_status(session, coordination_root, look_at_panes=full)
        if status.done and not full:
            full = True
            status = collect_status(session, coordination_root)
        if full:
            next_full = now + full_look_s
            panes = {w.slug: w.pane_alive for w in status.workers}
            tmux_alive = status.tmux_alive
        else:
            for worker in status.workers:
                worker.pane_alive = panes.get(worker.slug)
            status.tmux_alive = tmux_alive
        if not status.done:
            _refuse_unwaitable(status)
        yield status
        if status.done:
            return
        time.sleep(interval)


@dataclass
class UsageSoFar:
    """The tokens a running worker's answers reported so far, as its proxy recorded
    them (no price table here: the cost is known when the agent's CLI reports it)."""

    tokens: dict[str, int]
    model: str | None
    turns: int
    # The recording was longer than one read takes: these are its last answers only.
    partial: bool = False

    def to_json(self) -> dict[str, object]:
        return {**self.tokens, "model": self.model, "turns": self.turns, "partial": self.partial}


class RecordedUsage:
    """A worker's ``exchanges.jsonl`` summed as it grows: each ``read`` takes only what
    was appended since the last (at most ``limit`` bytes, its end: then ``partial``).
    Only the ``"usage"`` object of each line is decoded: a line holds a request whole
    (megabytes), and decoding it all, or importing the recording's own reader
    (msgspec), would cost ``status`` more than the rest of it."""

    def __init__(self, worker: WorkerDir, limit: int = USAGE_READ_BYTES) -> None:
        self.worker = worker
        self.limit = limit
        self._file: tuple[int, int] | None = None
        self._reset()

    def _reset(self) -> None:
        self._offset = 0
        self._totals: dict[str, int] = {}
        self._model: str | None = None
        self._turns = 0
        self._partial = False

    def read(self) -> UsageSoFar | None:
        """What the recording says so far (None: no recording, or no usage in it)."""
        try:
            fd = self.worker.open(EXCHANGES_FILE)
        except KodelythError:  # a symlink, a FIFO: nothing to count
            return None
        if fd is None:
            return None
        try:
            info = os.fstat(fd)
            if self._file != (info.st_dev, info.st_ino) or info.st_size < self._offset:
                self._reset()  # a new recording (a retried worker's): from its start
                self._file = (info.st_dev, info.st_ino)
            self._take(fd, info.st_size)
        except OSError:
            return None
        finally:
            os.close(fd)
        if not self._turns:
            return None
        return UsageSoFar(dict(self._totals), self._model, self._turns, self._partial)

    def _take(self, fd: int, size: int) -> None:
        start = self._offset
        if size - start > self.limit:
            start, self._partial = size - self.limit, True
        data = _pread_all(fd, size - start, start)
        if start > self._offset and start > 0 and _pread_all(fd, 1, start - 1) != b"\n":
            # Started inside a line: it is not whole.
            skip = data.find(b"\n") + 1
            data, start = (data[skip:], start + skip) if skip else (b"", size)
        end = data.rfind(b"\n") + 1  # a last line without its newline is still written
        self._offset = start + end
        self._count(data, end)

    def _count(self, data: bytes, end: int) -> None:
        import json

        decoder = json.JSONDecoder()
        pos = 0
        while pos < end:
            line_end = data.find(b"\n", pos, end)
            key = data.rfind(b'"usage":', pos, line_end)
            if key >= 0:
                start = key + len(b'"usage":')
                text = data[start : min(line_end, start + 4096)].decode("utf-8", "replace")
                try:
                    usage, _ = decoder.raw_decode(text)
                except (ValueError, RecursionError):
                    usage = None
                if isinstance(usage, dict):
                    self._add(usage)
            pos = line_end + 1

    def _add(self, usage: dict[str, object]) -> None:
        counted = False
        for name in TOKEN_KEYS:
            value = usage.get(name)
            if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 1 << 53:
                self._totals[name] = self._totals.get(name, 0) + value
                counted = True
        model = usage.get("model")
        if isinstance(model, str) and model:
            self._model, counted = model[:200], True
        if counted:
            self._turns += 1


def _pread_all(fd: int, count: int, offset: int) -> bytes:
    chunks = []
    while count > 0:
        chunk = os.pread(fd, min(count, 1 << 20), offset)
        if not chunk:
            break
        chunks.append(chunk)
        count -= len(chunk)
        offset += len(chunk)
    return b"".join(chunks)


def last_output(worker: WorkerDir) -> str | None:
    """The last non-empty line of the worker's transcript as a reader of its pane saw
    it (escape sequences removed; other controls are the printer's to escape), read
    from its end only. None: no transcript, an empty one, or one not safe to read."""
    try:
        data = worker.read(TRANSCRIPT_FILE, TRANSCRIPT_TAIL_BYTES, tail=True)
    except KodelythError:
        return None
    if not data:
        return None
    from kodelyth_ecc.export import strip_terminal_controls

    # A character cut in two at the start of what was read becomes U+FFFD: the last
    # line is what is wanted, and it is whole.
    text = strip_terminal_controls(data.decode("utf-8", errors="replace"))
    for line in reversed(text.splitlines()):
        if line.strip():
            return line.strip()[:LAST_OUTPUT_CHARS]
    return None
