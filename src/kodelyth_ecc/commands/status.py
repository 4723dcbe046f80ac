"""``kodelyth-ecc status``: sessions, workers, waiting for them and watching them."""

from __future__ import annotations

import argparse
import os
import sys
import time
from dataclasses import asdict, dataclass, field
from typing import Any, TextIO

from kodelyth_ecc.commands._common import (
    coordination_root,
    human_bytes,
    human_duration,
    print_json,
)
from kodelyth_ecc.coordination import utc_now
from kodelyth_ecc.errors import EXIT_FAILURE, EXIT_OK, EXIT_WAIT_TIMEOUT, UsageError
from kodelyth_ecc.humanize import human_elapsed, local_time, time_ago
from kodelyth_ecc.sessiondir import SessionDir
from kodelyth_ecc.status import (
    RecordedUsage,
    SessionStatus,
    UsageSoFar,
    WaitTimeout,
    WorkerStatus,
    collect_status,
    elapsed_s,
    last_output,
    list_sessions,
    parse_stamp,
    timed_out,
    wait_for_session,
    watch_session,
)
from kodelyth_ecc.termsafe import cells, colour_wanted, is_terminal, one_line, paint

STATUS_SCHEMA = "kodelyth.status/v1"
# How a state looks on a terminal with colour.
STATE_STYLES = {
    "completed": "green",
    "failed": "red",
    "lost": "red",
    "unreadable": "red",
    "running": "yellow",
    "pending": "dim",
}
# How often `status --watch` (no SESSION) looks at every session again.
LIST_WATCH_INTERVAL_S = 1.0
# What a listing or header shows of a session's task: its first line, cut.
TASK_CHARS = 100

Segments = list[tuple[str, str | None]]


# --- what a one-session view reads beyond the status files ------------------------------


@dataclass
class Details:
    """Per worker: seconds running, tokens recorded so far, last line of output."""

    elapsed: dict[str, float | None] = field(default_factory=dict)
    usage: dict[str, UsageSoFar | None] = field(default_factory=dict)
    last: dict[str, str | None] = field(default_factory=dict)


class DetailReader:
    """Reads ``Details`` for one session, keeping what it read between looks (a
    watcher's): each recording is read on from where the last look stopped, and a
    finished worker's transcript once."""

    def __init__(self, root: str, session: str) -> None:
        self.sdir = SessionDir.at(root, session)
        self._usage: dict[str, RecordedUsage] = {}
        self._last: dict[str, tuple[str, str | None, str | None]] = {}

    def read(self, status: SessionStatus) -> Details:
        details = Details()
        now = time.time()
        for w in status.workers:
            details.elapsed[w.slug] = elapsed_s(w, now)
            # A running worker's usage is in its recording only; so is a lost one's,
            # and a failed one's whose CLI never said.
            if w.usage is None and w.state in ("running", "failed", "lost"):
                reader = self._usage.get(w.slug)
                if reader is None:
                    reader = self._usage[w.slug] = RecordedUsage(self.sdir.worker(w.slug))
                details.usage[w.slug] = reader.read()
            if w.state in ("failed", "lost"):
                known = self._last.get(w.slug)
                if known is None or known[:2] != (w.state, w.finished):
                    known = (w.state, w.finished, last_output(self.sdir.worker(w.slug)))
                    self._last[w.slug] = known
                details.last[w.slug] = known[2]
        return details


# --- JSON --------------------------------------------------------------------------------


def worker_json(w: WorkerStatus, details: Details | None = None) -> dict[str, Any]:
    data = asdict(w)
    data["elapsed_s"] = elapsed_s(w)
    if details is not None:
        usage = details.usage.get(w.slug)
        data["usage_so_far"] = usage.to_json() if usage is not None else None
        data["last_output"] = details.last.get(w.slug)
    return data


def session_json(status: SessionStatus, details: Details | None = None) -> dict[str, Any]:
    """The session as ``status --json`` shows it; keys are only ever added."""
    return {
        "session": status.session,
        "coordinationDir": status.coordination_dir,
        "tmuxAlive": status.tmux_alive,
        "done": status.done,
        "counts": status.counts(),
        "workers": [worker_json(w, details) for w in status.workers],
        "task": status.task,
        "createdAt": status.created_at,
        "tornDownAt": status.torn_down_at,
    }


def _json_line(data: Any) -> None:
    """One compact JSON object a line (``--watch --json``), written at once."""
    import json

    from kodelyth_ecc.termsafe import json_safe

    sys.stdout.write(json_safe(json.dumps(data, ensure_ascii=False)) + "\n")
    sys.stdout.flush()


# --- text ----------------------------------------------------------------------------------


def _pane(alive: bool | None) -> str:
    return "-" if alive is None else ("alive" if alive else "dead")


def _state(state: str) -> tuple[str, str | None]:
    """A state as a segment: escaped (status.md is written by whatever runs in the
    pane), in its colour."""
    return one_line(state, 24), STATE_STYLES.get(state)


def _task_line(task: str | None) -> str | None:
    if not task or not task.strip():
        return None
    lines = task.strip().splitlines()
    first = one_line(lines[0].strip(), TASK_CHARS)
    return first + (" …" if len(lines) > 1 and not first.endswith("…") else "")


def _started(status: SessionStatus, now: float, *, when: bool) -> str | None:
    """``12 min ago``, or with ``when`` ``2026-12-08 10:14 (12 min ago)``."""
    created = parse_stamp(status.created_at)
    if created is None:
        return None
    ago = time_ago(now - created)
    return f"{local_time(created)} ({ago})" if when else ago


def header_lines(status: SessionStatus, now: float | None = None) -> list[Segments]:
    """What `status SESSION` says above its table: the session, when it started,
    whether teardown removed it, and its task (none for a session without session.json)."""
    if status.record is None:
        return []
    now = time.time() if now is None else now
    line: Segments = [("Session  ", None), (status.session, "bold")]
    started = _started(status, now, when=True)
    if started:
        line.append((f", started {started}", None))
    lines = [line]
    if status.torn_down_at is not None:
        stamp = parse_stamp(status.torn_down_at)
        when = local_time(stamp) if stamp is not None else one_line(status.torn_down_at, 40)
        lines.append(
            [("Torn down", "dim"), (f" {when}: its worktrees and branches are gone", None)]
        )
    task = _task_line(status.task)
    if task:
        lines.append([("Task     ", None), (task, None)])
    return lines


def _usage_cells(
    usage: dict[str, object] | None, so_far: UsageSoFar | None = None
) -> tuple[str, str, str]:
    """Model, tokens in/out and cost, as the agent's CLI reported them ('-' unknown);
    for a worker still running, the tokens its recording holds so far (no cost: that
    comes from the CLI at the end; '≥' when only the recording's end was read)."""
    if usage is None and so_far is not None:
        mark = "≥" if so_far.partial else ""
        tokens_in, tokens_out = (so_far.tokens.get(k, 0) for k in ("input_tokens", "output_tokens"))
        return (
            one_line(so_far.model, 32) if so_far.model else "-",
            f"{mark}{tokens_in:,}/{mark}{tokens_out:,}",
            "-",
        )
    usage = usage or {}

    def number(key: str) -> str:
        value = usage.get(key)
        return f"{value:,}" if isinstance(value, int) else "-"

    cost = usage.get("cost_usd")
    model = usage.get("model")
    return (
        one_line(model, 32) if isinstance(model, str) else "-",
        f"{number('input_tokens')}/{number('output_tokens')}",
        f"${cost:.4f}" if isinstance(cost, (int, float)) else "-",
    )


def _outcome(w: WorkerStatus) -> str:
    """``exit 1, timeout``: what a finished worker's status says of how it ended."""
    parts = []
    if w.exit_code is not None:
        parts.append(f"exit {w.exit_code}")
    if w.reason:
        parts.append(one_line(w.reason, 60))
    return ", ".join(parts)


def _cell(text: str) -> Segments:
    return [(text, None)]


def _layout(rows: list[list[Segments]]) -> list[Segments]:
    """Cells in columns two spaces apart, widths counted in terminal columns on the
    text (colour is a style of a segment, never in it; a wide character takes two)."""
    widths = [max(sum(cells(t) for t, _ in row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = []
    for row in rows:
        line: Segments = []
        for i, cell in enumerate(row):
            line += cell
            if i < len(row) - 1:
                line.append((" " * (widths[i] - sum(cells(t) for t, _ in cell) + 2), None))
        while line and not line[-1][0].strip():
            line.pop()
        if line:
            line[-1] = (line[-1][0].rstrip(), line[-1][1])
        lines.append(line)
    return lines


def table_lines(status: SessionStatus, details: Details | None = None) -> list[Segments]:
    """One row per worker, then a line for each worker whose status could not be read
    and for each failed or lost one (its reason and last output)."""
    details = details or Details()
    with_usage = any(w.usage or details.usage.get(w.slug) for w in status.workers)
    with_verify = any(w.verify for w in status.workers)
    head: tuple[str, ...] = ("WORKER", "STATE", "EXIT", "DURATION", "PANE", "HANDOFF")
    head += ("VERIFY",) if with_verify else ()
    head += ("MODEL", "TOKENS IN/OUT", "COST") if with_usage else ()
    rows: list[list[Segments]] = [[_cell(h) for h in head]]
    for w in status.workers:
        state: Segments = [_state(w.state)]
        if w.reason:
            state.append((f" ({one_line(w.reason, 40)})", None))
        elapsed = details.elapsed.get(w.slug)
        duration = human_elapsed(elapsed) if elapsed is not None else human_duration(w.duration_s)
        texts = [
            w.slug,
            "-" if w.exit_code is None else str(w.exit_code),
            duration,
            _pane(w.pane_alive),
            human_bytes(w.handoff_bytes),
        ]
        row: list[Segments] = [_cell(texts[0]), state, *(_cell(c) for c in texts[1:])]
        if with_verify:
            # "passed (exit 0, 1.2s): ...": the outcome, the command is in status.md.
            row.append(_cell(one_line((w.verify or "-").split(":", 1)[0], 40)))
        if with_usage:
            row += [_cell(c) for c in _usage_cells(w.usage, details.usage.get(w.slug))]
        rows.append(row)
    lines = _layout(rows)
    for w in status.workers:
        if w.problem:
            lines.append([(f"{w.slug}: {one_line(w.problem)}", None)])
    for w in status.workers:
        if w.state in ("failed", "lost"):
            lines.append(_failure_line(w, details))
    return lines


def _failure_line(w: WorkerStatus, details: Details) -> Segments:
    """``b: failed (exit 1, timeout): last output: <line>``."""
    outcome = _outcome(w)
    line: Segments = [(f"{w.slug}: ", None), _state(w.state)]
    if outcome:
        line.append((f" ({outcome})", None))
    last = details.last.get(w.slug)
    line.append((f": last output: {one_line(last, 200)}" if last else ": no output", None))
    return line


def render(line: Segments, colour: bool) -> str:
    return "".join(paint(text, style, colour) for text, style in line)


def print_lines(lines: list[Segments], out: TextIO) -> None:
    colour = colour_wanted(out)
    out.write("".join(render(line, colour) + "\n" for line in lines))


def print_table(status: SessionStatus, out: TextIO, details: Details | None = None) -> None:
    """The workers' table (with what ``DetailReader`` adds, read now unless given)."""
    if details is None:
        root = os.path.dirname(status.coordination_dir)
        details = DetailReader(root, status.session).read(status)
    print_lines(table_lines(status, details), out)


def session_view(status: SessionStatus, details: Details) -> list[Segments]:
    """`status SESSION`: the header, a blank line, the table."""
    head = header_lines(status)
    return [*head, *([[]] if head else []), *table_lines(status, details)]


def summary_line(status: SessionStatus, now: float | None = None) -> Segments:
    """``name  2 workers: 1 running, 1 completed  (started 12 min ago)  task``."""
    now = time.time() if now is None else now
    total = len(status.workers)
    line: Segments = [(f"{status.session}  {total} worker{'' if total == 1 else 's'}: ", None)]
    counts = [(state, n) for state, n in status.counts().items() if n]
    for i, (state, n) in enumerate(counts):
        line += [(f"{', ' if i else ''}{n} ", None), _state(state)]
    if not counts:
        line.append(("none", None))
    when = [f"started {s}"] if (s := _started(status, now, when=False)) else []
    when += ["torn down"] if status.torn_down_at is not None else []
    if when:
        line.append((f"  ({', '.join(when)})", None))
    task = _task_line(status.task)
    if task:
        line.append((f"  {task}", None))
    return line


# --- waiting -------------------------------------------------------------------------------


def wait_exit_code(status: SessionStatus) -> int:
    return EXIT_OK if status.all_completed else EXIT_FAILURE


def waiting_text(status: SessionStatus, now: float | None = None) -> str:
    """``waiting: 2/3 done, b running 1m12s, c pending``: the progress line."""
    now = time.time() if now is None else now
    done = sum(w.done for w in status.workers)
    parts = [f"waiting: {done}/{len(status.workers)} done"]
    for w in status.workers:
        if not w.done:
            elapsed = elapsed_s(w, now)
            clock = f" {human_elapsed(elapsed)}" if elapsed is not None else ""
            parts.append(f"{one_line(w.slug, 32)} {one_line(w.state, 24)}{clock}")
    return ", ".join(parts)


def wait_with_exit_code(
    session: str, coordination_root: str, timeout: float | None, *, quiet: bool = False
) -> tuple[SessionStatus, int]:
    """``--wait`` for `status` and `replay`: the last status seen, and 0, 1 or 124. On
    a terminal (unless ``quiet``) a progress line on stderr says who is still running."""
    from kodelyth_ecc.progress import ProgressLine  # only --wait needs it (and threading)

    with ProgressLine(quiet=quiet) as line:
        on_poll = (lambda status: line.update(waiting_text(status))) if line.active else None
        try:
            status = wait_for_session(session, coordination_root, timeout=timeout, on_poll=on_poll)
        except WaitTimeout as exc:
            line.clear()
            sys.stderr.write(f"kodelyth-ecc: {exc.message}\n")
            return exc.status, EXIT_WAIT_TIMEOUT
    return status, wait_exit_code(status)


# --- watching --------------------------------------------------------------------------------


def _clock() -> str:
    return time.strftime("%H:%M:%S")


class _Changes:
    """Not a terminal: one line (or, with --json, one JSON object) per change of a
    worker's state; the first look says each worker's state once."""

    def __init__(self, as_json: bool) -> None:
        self.as_json = as_json
        self.seen: dict[str, str] = {}

    def show(self, status: SessionStatus, details: Details) -> None:
        for w in status.workers:
            before = self.seen.get(w.slug)
            if before == w.state:
                continue
            self.seen[w.slug] = w.state
            if self.as_json:
                _json_line(
                    {
                        "schema": STATUS_SCHEMA,
                        "time": utc_now(),
                        "session": status.session,
                        "from": before,
                        "worker": worker_json(w, details),
                    }
                )
                continue
            line = f"{_clock()} {w.slug}: " + (f"{one_line(before, 24)} -> " if before else "")
            line += one_line(w.state, 24)
            if w.done:
                took = human_duration(w.duration_s) if w.duration_s is not None else ""
                outcome = ", ".join(p for p in (_outcome(w), took) if p)
                line += f" ({outcome})" if outcome else ""
            if w.state in ("failed", "lost"):
                last = details.last.get(w.slug)
                line += f": last output: {one_line(last, 200)}" if last else ": no output"
            sys.stdout.write(line + "\n")
            sys.stdout.flush()

    def close(self) -> None:
        pass


class _Live:
    """A terminal: the session view redrawn in place, a footer while it is live."""

    def __init__(self) -> None:
        from kodelyth_ecc.live import LiveScreen

        self.screen = LiveScreen(sys.stdout, colour=colour_wanted(sys.stdout))

    def show(self, status: SessionStatus, details: Details) -> None:
        view = session_view(status, details)
        if not status.done:
            done = sum(w.done for w in status.workers)
            footer = f"watching: {done}/{len(status.workers)} done, {_clock()}; Ctrl-C to stop"
            view += [[], [(footer, "dim")]]
        self.screen.draw(view)

    def close(self) -> None:
        self.screen.close()


def _watch_session(args: argparse.Namespace, root: str) -> int:
    deadline = None if args.timeout is None else time.monotonic() + args.timeout
    reader = DetailReader(root, args.session)
    view: _Changes | _Live
    view = _Changes(args.json) if args.json or not is_terminal(sys.stdout) else _Live()
    last: SessionStatus | None = None
    try:
        for last in watch_session(args.session, root):
            view.show(last, reader.read(last))
            if not last.done and deadline is not None and time.monotonic() >= deadline:
                view.close()
                sys.stderr.write(f"kodelyth-ecc: {timed_out(last, args.timeout).message}\n")
                return EXIT_WAIT_TIMEOUT
    finally:
        view.close()
    # The watch ends with a look at a session whose workers are all done.
    return wait_exit_code(last) if last is not None else EXIT_OK


def _listing(root: str, include_torn_down: bool) -> list[SessionStatus]:
    return list_sessions(root, include_torn_down=include_torn_down)


def _watch_list(args: argparse.Namespace, root: str) -> int:
    """The session list, refreshed (a terminal) or a line per session that changed,
    until Ctrl-C or --timeout (exit 0: a list has nothing to finish)."""
    deadline = None if args.timeout is None else time.monotonic() + args.timeout
    live = None
    if not args.json and is_terminal(sys.stdout):
        from kodelyth_ecc.live import LiveScreen

        live = LiveScreen(sys.stdout, colour=colour_wanted(sys.stdout))
    seen: dict[str, tuple[object, ...]] = {}
    try:
        while True:
            sessions = _listing(root, args.all)
            if live is not None:
                lines = [summary_line(s) for s in sessions] or [
                    [(f"no sessions under {root}", None)]
                ]
                footer = f"watching {len(sessions)} sessions, {_clock()}; Ctrl-C to stop"
                live.draw([*lines, [], [(footer, "dim")]])
            for s in sessions:
                key = (tuple(s.counts().items()), s.torn_down_at)
                if live is not None or seen.get(s.session) == key:
                    continue
                seen[s.session] = key
                if args.json:
                    _json_line(
                        {"schema": STATUS_SCHEMA, "time": utc_now(), "session": session_json(s)}
                    )
                else:
                    sys.stdout.write(f"{_clock()} {render(summary_line(s), False)}\n")
                    sys.stdout.flush()
            if deadline is not None and time.monotonic() >= deadline:
                return EXIT_OK
            time.sleep(LIST_WATCH_INTERVAL_S)
    finally:
        if live is not None:
            live.close()


# --- the command -----------------------------------------------------------------------------


def run(args: argparse.Namespace) -> int:
    root = coordination_root(args.coordination_root)
    if args.timeout is not None and not (args.wait or args.watch):
        raise UsageError("--timeout only applies with --wait or --watch")
    if args.session is None:
        if args.wait:
            raise UsageError("--wait needs a SESSION to wait for")
        if args.watch:
            return _watch_list(args, root)
        sessions = _listing(root, args.all)
        if args.json:
            print_json({"schema": STATUS_SCHEMA, "sessions": [session_json(s) for s in sessions]})
        elif not sessions:
            sys.stderr.write(f"no sessions under {root}\n")
        else:
            print_lines([summary_line(s) for s in sessions], sys.stdout)
        return EXIT_OK
    if args.watch:
        return _watch_session(args, root)
    code = EXIT_OK
    if args.wait:
        status, code = wait_with_exit_code(args.session, root, args.timeout, quiet=args.json)
    else:
        status = collect_status(args.session, root)
    details = DetailReader(root, args.session).read(status)
    if args.json:
        print_json({"schema": STATUS_SCHEMA, "session": session_json(status, details)})
    else:
        print_lines(session_view(status, details), sys.stdout)
    return code
