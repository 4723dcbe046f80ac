"""Issue 14: what `status` shows. Colour for states on a terminal only (NO_COLOR, TERM=dumb
and pipes get none; widths never count escape codes), the session's task and start
time, torn-down sessions hidden unless --all, a failed or lost worker's reason and last
line of output (terminal controls stripped), and a running worker's elapsed time and
tokens so far from its recording.

Also the helpers the other issue-14 test modules share: the CLI on a real
pseudo-terminal, and a small screen model to see what a terminal would show."""

from __future__ import annotations

import fcntl
import json
import os
import pty
import re
import select
import struct
import subprocess
import sys
import termios
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kodelyth_ecc.exchanges import Exchange, encode_line
from kodelyth_ecc.sessiondir import SessionDir
from kodelyth_ecc.status import RecordedUsage, parse_stamp
from tests.conftest import Sandbox
from tests.support import retry_until, tmux
from tests.swarm_helpers import panes, started, status_json, wait_done, wait_until_states

SGR = re.compile(r"\x1b\[[0-9;]*m")


# --- the CLI on a pseudo-terminal ---------------------------------------------------------


def terminal_env(**changes: str | None) -> dict[str, str]:
    """The test's environment as a colour terminal's (TERM set, NO_COLOR unset), changed."""
    env = {k: v for k, v in os.environ.items() if k != "NO_COLOR"}
    env["TERM"] = "xterm-256color"
    for key, value in changes.items():
        if value is None:
            env.pop(key, None)
        else:
            env[key] = value
    return env


@dataclass
class PtyRun:
    """A CLI process whose stdout and/or stderr is a pseudo-terminal (the other piped)."""

    proc: subprocess.Popen[bytes]
    master: int
    screen: bytearray = field(default_factory=bytearray)
    piped: bytearray = field(default_factory=bytearray)
    threads: list[threading.Thread] = field(default_factory=list)

    @property
    def text(self) -> str:
        """What reached the terminal (the pty turns each \\n into \\r\\n)."""
        return self.screen.decode("utf-8", errors="replace")

    @property
    def piped_text(self) -> str:
        return self.piped.decode("utf-8", errors="replace")

    def wait_for(self, needle: str, timeout: float = 20) -> None:
        retry_until(lambda: needle in self.text, timeout=timeout, message=repr(needle))

    def finish(self, timeout: float = 60) -> int:
        code = self.proc.wait(timeout=timeout)
        for thread in self.threads:
            thread.join(timeout=10)
        os.close(self.master)
        return code


def _drain_pty(run: PtyRun) -> None:
    quiet_since: float | None = None
    while True:
        ready, _, _ = select.select([run.master], [], [], 0.05)
        if ready:
            try:
                data = os.read(run.master, 65536)
            except OSError:  # EIO: every end of the terminal is closed
                return
            if not data:
                return
            run.screen += data
            quiet_since = None
        elif run.proc.poll() is not None:
            # Exited; a grandchild (a tmux server) may hold the terminal: stop soon.
            quiet_since = quiet_since or time.monotonic()
            if time.monotonic() - quiet_since > 0.5:
                return


def _drain_pipe(run: PtyRun, pipe: Any) -> None:
    for chunk in iter(lambda: pipe.read1(65536), b""):
        run.piped += chunk


def start_on_pty(
    *args: str,
    cwd: Path,
    env: dict[str, str] | None = None,
    stdout_tty: bool = True,
    stderr_tty: bool = True,
    columns: int = 160,
    rows: int = 50,
) -> PtyRun:
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, columns, 0, 0))
    proc = subprocess.Popen(
        [sys.executable, "-m", "kodelyth_ecc", *args],
        cwd=cwd,
        env=env if env is not None else terminal_env(),
        stdin=slave,
        stdout=slave if stdout_tty else subprocess.PIPE,
        stderr=slave if stderr_tty else subprocess.PIPE,
    )
    os.close(slave)
    run = PtyRun(proc, master)
    run.threads.append(threading.Thread(target=_drain_pty, args=(run,), daemon=True))
    pipe = proc.stdout if not stdout_tty else proc.stderr if not stderr_tty else None
    if pipe is not None:
        run.threads.append(threading.Thread(target=_drain_pipe, args=(run, pipe), daemon=True))
    for thread in run.threads:
        thread.start()
    return run


def run_on_pty(*args: str, cwd: Path, **kwargs: Any) -> tuple[int, PtyRun]:
    run = start_on_pty(*args, cwd=cwd, **kwargs)
    return run.finish(), run


class Screen:
    """The part of a terminal the CLI drives: text, \\r, \\n, cursor up, clear to the
    end of the line or of the screen; colour and cursor visibility are ignored. What
    is left in ``lines`` is what a user would see."""

    CSI = re.compile(r"\x1b\[(\??)([0-9;]*)([A-Za-z])")

    def __init__(self) -> None:
        self.lines: list[str] = [""]
        self.row = 0
        self.col = 0
        self.cursor_visible = True

    def feed(self, text: str) -> Screen:
        pos = 0
        while pos < len(text):
            match = self.CSI.match(text, pos)
            if match:
                self._csi(match.group(1), match.group(2), match.group(3))
                pos = match.end()
                continue
            char = text[pos]
            pos += 1
            if char == "\r":
                self.col = 0
            elif char == "\n":
                self.row += 1
                while len(self.lines) <= self.row:
                    self.lines.append("")
            else:
                line = self.lines[self.row].ljust(self.col)
                self.lines[self.row] = line[: self.col] + char + line[self.col + 1 :]
                self.col += 1
        return self

    def _csi(self, private: str, params: str, final: str) -> None:
        if private == "?" and params == "25":
            self.cursor_visible = final == "h"
        elif final == "A":
            self.row = max(0, self.row - int(params or "1"))
        elif final == "K":
            self.lines[self.row] = self.lines[self.row][: self.col]
        elif final == "J":
            self.lines[self.row] = self.lines[self.row][: self.col]
            del self.lines[self.row + 1 :]
        elif final != "m":
            raise AssertionError(f"unexpected control sequence {final!r}")

    @property
    def shown(self) -> list[str]:
        lines = [line.rstrip() for line in self.lines]
        while lines and not lines[-1]:
            lines.pop()
        return lines


# --- helpers ------------------------------------------------------------------------------

HOLD = (
    "i=0; until [ -e {release}-{worker_slug_sh} ] || [ $i -ge 1200 ]; "
    "do sleep 0.05; i=$((i+1)); done"
)


def held(tmp_path: Path) -> tuple[str, Path]:
    """A launcher whose workers run until ``release(<prefix>, slug)`` (at most 60s)."""
    prefix = tmp_path / "release"
    return HOLD.replace("{release}", str(prefix)), prefix


def release(prefix: Path, slug: str) -> None:
    Path(f"{prefix}-{slug}").touch()


def edit_record(sandbox: Sandbox, session: str, **changes: Any) -> None:
    path = sandbox.coord_root / session / "session.json"
    data = json.loads(path.read_text())
    data.update(changes)
    path.write_text(json.dumps(data))


def utc(seconds_ago: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - seconds_ago))


def exchange(turn: int, usage: dict[str, Any] | None, **fields: Any) -> bytes:
    """One line of exchanges.jsonl, as the session's proxy writes it."""
    fields.setdefault("request", json.dumps({"messages": [{"content": "x" * 50_000}]}))
    return encode_line(
        Exchange(
            turn=turn,
            method="POST",
            path="/v1/messages",
            format="anthropic-messages",
            status=200 if usage else 529,
            events=["event: message_start\ndata: {}"] * 20,
            usage=usage,
            source="upstream",
            **fields,
        )
    )


# --- colour ---------------------------------------------------------------------------------


def test_states_are_coloured_on_a_terminal_only(sandbox: Sandbox) -> None:
    started(sandbox, "ok", agents="good,bad", launcher="[ {worker_slug_sh} = good ] || exit 3")
    wait_done(sandbox, "ok")
    code, run = run_on_pty("status", "ok", cwd=sandbox.repo)
    assert code == 0, run.text
    assert "\x1b[32mcompleted\x1b[0m" in run.text
    assert "\x1b[31mfailed\x1b[0m" in run.text
    listing_code, listing = run_on_pty("status", cwd=sandbox.repo)
    assert listing_code == 0 and "\x1b[31mfailed\x1b[0m" in listing.text
    # The columns line up as without colour: widths do not count the escape codes.
    piped = sandbox.cli("status", "ok")
    assert SGR.sub("", run.text).replace("\r\n", "\n") == piped.stdout
    assert "\x1b" not in piped.stdout + sandbox.cli("status").stdout
    for env in (terminal_env(NO_COLOR="1"), terminal_env(TERM="dumb")):
        plain_code, plain = run_on_pty("status", "ok", cwd=sandbox.repo, env=env)
        assert plain_code == 0 and "\x1b" not in plain.text, env.get("TERM")
        assert plain.text.replace("\r\n", "\n") == piped.stdout
    # NO_COLOR set but empty does not disable colour (https://no-color.org).
    _, empty = run_on_pty("status", "ok", cwd=sandbox.repo, env=terminal_env(NO_COLOR=""))
    assert "\x1b[32m" in empty.text


def test_running_and_pending_have_their_colours(sandbox: Sandbox, tmp_path: Path) -> None:
    launcher, prefix = held(tmp_path)
    started(sandbox, "busy", launcher=launcher, agents="solo")
    wait_until_states(sandbox, "busy", "running")
    _, run = run_on_pty("status", "busy", cwd=sandbox.repo)
    assert "\x1b[33mrunning\x1b[0m" in run.text
    written = sandbox.cli(
        "swarm", "--task", "t", "--agents", "x", "--harness", "echo", "--session", "later",
        "--write-only",
    )  # fmt: skip
    assert written.code == 0, written
    _, later = run_on_pty("status", "later", cwd=sandbox.repo)
    assert "\x1b[2mpending\x1b[0m" in later.text
    release(prefix, "solo")


# --- task and start time ---------------------------------------------------------------------


def test_task_and_start_time_head_the_table_and_the_listing(sandbox: Sandbox) -> None:
    task = "audit the auth module\nand then the \x1b]52;c;aGk=\x07billing code"
    started(sandbox, "t1", task=task)
    wait_done(sandbox, "t1")
    created = time.time() - 12 * 60 - 5
    stamp = utc(12 * 60 + 5)
    edit_record(sandbox, "t1", created_at=stamp)
    shown = sandbox.cli("status", "t1")
    assert shown.code == 0, shown
    lines = shown.stdout.splitlines()
    local = time.strftime("%Y-%m-%d %H:%M", time.localtime(created))
    assert lines[0] == f"Session  t1, started {local} (12 min ago)"
    # The first line of the task only, marked as cut.
    assert lines[1] == "Task     audit the auth module …"
    assert lines[2] == ""
    assert lines[3].split() == ["WORKER", "STATE", "EXIT", "DURATION", "PANE", "HANDOFF"]
    listing = sandbox.cli("status")
    assert listing.stdout.splitlines() == [
        "t1  2 workers: 2 completed  (started 12 min ago)  audit the auth module …"
    ]
    data = status_json(sandbox, "t1")
    assert data["task"] == task
    assert data["createdAt"] == stamp
    assert data["tornDownAt"] is None
    assert json.loads(sandbox.cli("status", "--json").stdout)["sessions"][0]["task"] == task


def test_a_hostile_task_is_shown_escaped_and_cut(sandbox: Sandbox) -> None:
    started(sandbox, "t2", agents="solo")
    wait_done(sandbox, "t2")
    edit_record(sandbox, "t2", task="\x1b[2J\x1b]0;owned\x07" + "y" * 500, created_at="soon")
    for args in (("status", "t2"), ("status",)):
        result = sandbox.cli(*args)
        assert result.code == 0, result
        assert "\x1b" not in result.stdout and "\\x1b[2J" in result.stdout
        assert "y" * 120 not in result.stdout
        assert "started" not in result.stdout  # a created_at that is no time is not shown


def test_start_times_are_read_as_runners_write_them() -> None:
    import calendar

    for stamp in range(0, 4_102_444_800, 7_777_777):  # 1970 to 2100, leap days included
        text = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(stamp))
        assert parse_stamp(text) == stamp == calendar.timegm(time.gmtime(stamp)), text
    assert parse_stamp("2000-02-29T23:59:59Z") == 951_868_799
    for bad in ("2026-13-01T00:00:00Z", "2026-01-01 00:00:00", "\u0662026-01-01T00:00:00Z", ""):
        assert parse_stamp(bad) is None, bad


# --- torn-down sessions --------------------------------------------------------------------------


def test_torn_down_sessions_are_listed_only_with_all(sandbox: Sandbox) -> None:
    started(sandbox, "kept", agents="solo")
    started(sandbox, "gone", agents="solo")
    wait_done(sandbox, "kept")
    wait_done(sandbox, "gone")
    stamp = utc(60)
    edit_record(sandbox, "gone", torn_down_at=stamp)
    listing = sandbox.cli("status")
    assert [line.split()[0] for line in listing.stdout.splitlines()] == ["kept"]
    everything = sandbox.cli("status", "--all")
    lines = everything.stdout.splitlines()
    assert [line.split()[0] for line in lines] == ["gone", "kept"]
    assert "torn down" in lines[0] and "torn down" not in lines[1]
    as_json = json.loads(sandbox.cli("status", "--json").stdout)["sessions"]
    assert [s["session"] for s in as_json] == ["kept"]
    all_json = json.loads(sandbox.cli("status", "--all", "--json").stdout)["sessions"]
    assert {s["session"]: s["tornDownAt"] for s in all_json} == {"gone": stamp, "kept": None}
    # Asked for by name, a torn-down session is shown, saying so.
    shown = sandbox.cli("status", "gone")
    assert shown.code == 0, shown
    local = time.strftime("%Y-%m-%d %H:%M", time.localtime(time.time() - 60))
    assert f"Torn down {local}: its worktrees and branches are gone" in shown.stdout.splitlines()
    assert status_json(sandbox, "gone")["tornDownAt"] == stamp
    # Only torn-down sessions: the listing is empty, as with none.
    edit_record(sandbox, "kept", torn_down_at=stamp)
    empty = sandbox.cli("status")
    assert empty.code == 0 and empty.stdout == "" and "no sessions" in empty.stderr


def test_a_session_teardown_removed_leaves_the_listing(sandbox: Sandbox) -> None:
    started(sandbox, "done1", agents="solo")
    wait_done(sandbox, "done1")
    down = sandbox.cli("teardown", "done1")
    assert down.code == 0, down
    assert (sandbox.coord_root / "done1" / "session.json").exists()  # the dir is kept
    assert sandbox.cli("status").stdout == ""
    (line,) = sandbox.cli("status", "--all").stdout.splitlines()
    assert line.startswith("done1  1 worker: ") and ", torn down)" in line
    assert any(
        x.startswith("Torn down ") for x in sandbox.cli("status", "done1").stdout.splitlines()
    )


# --- failed and lost workers ---------------------------------------------------------------------


def test_a_failed_worker_shows_its_last_line_of_output(sandbox: Sandbox) -> None:
    launcher = "echo first; echo; echo 'it broke: boom'; echo '   '; exit 3"
    started(sandbox, "bad", launcher=launcher, agents="solo")
    wait_done(sandbox, "bad")
    shown = sandbox.cli("status", "bad")
    assert shown.code == 0, shown
    assert shown.stdout.splitlines()[-1] == "solo: failed (exit 3): last output: it broke: boom"
    data = status_json(sandbox, "bad")
    assert data["workers"][0]["last_output"] == "it broke: boom"


def test_the_last_line_is_stripped_of_terminal_controls(sandbox: Sandbox) -> None:
    """A transcript restored from a bundle can hold anything: escape sequences are
    removed (an OSC 52 would write the clipboard), other controls shown escaped."""
    started(sandbox, "esc", launcher="exit 2", agents="solo")
    wait_done(sandbox, "esc")
    transcript = sandbox.coord_root / "esc" / "solo" / "transcript.log"
    transcript.write_bytes(
        b"earlier\n" + b"x" * 200_000 + b"\n"
        b"\x1b]52;c;aGVsbG8=\x07\x1b[31mkaboom\x1b[0m \xc2\x9b2Jdone\x07 \xe2\x80\xaeevil\n\n"
    )
    shown = sandbox.cli("status", "esc")
    assert shown.code == 0, shown
    last = shown.stdout.splitlines()[-1]
    assert last == "solo: failed (exit 2): last output: kaboom done \\u202eevil"
    assert "\x1b" not in shown.stdout and "\x9b" not in shown.stdout and "\x07" not in shown.stdout
    assert status_json(sandbox, "esc")["workers"][0]["last_output"] == "kaboom done \u202eevil"
    # A transcript that is a symlink is not followed: no last line, nothing read.
    secret = sandbox.root / "secret.txt"
    secret.write_text("the secret\n")
    transcript.unlink()
    transcript.symlink_to(secret)
    linked = sandbox.cli("status", "esc")
    assert linked.code == 0, linked
    assert linked.stdout.splitlines()[-1] == "solo: failed (exit 2): no output"
    assert "secret" not in linked.stdout


def test_a_timed_out_worker_shows_its_reason_and_output(sandbox: Sandbox) -> None:
    started(sandbox, "slow", "--worker-timeout", "1", launcher="echo still-going; sleep 30")
    wait_done(sandbox, "slow", timeout=30)
    lines = sandbox.cli("status", "slow").stdout.splitlines()
    for slug in ("alpha", "beta"):
        (line,) = [x for x in lines if x.startswith(f"{slug}: ")]
        assert re.fullmatch(
            rf"{slug}: failed \((exit -?\d+, )?timeout\): last output: still-going", line
        ), line


def test_a_lost_worker_shows_its_last_output(sandbox: Sandbox) -> None:
    started(sandbox, "lost", launcher="echo said-this; sleep 60", agents="solo")
    transcript = sandbox.coord_root / "lost" / "solo" / "transcript.log"
    retry_until(lambda: transcript.exists() and "said-this" in transcript.read_text())
    tmux("kill-pane", "-t", panes("lost")[1].pane_id)
    wait_until_states(sandbox, "lost", "lost")
    lines = sandbox.cli("status", "lost").stdout.splitlines()
    assert lines[-1] == "solo: lost: last output: said-this"


# --- running workers: elapsed time and tokens so far ---------------------------------------------


def test_a_running_worker_shows_elapsed_time_and_tokens_so_far(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    launcher, prefix = held(tmp_path)
    started(sandbox, "run", launcher=launcher, agents="busy,idle")
    wait_until_states(sandbox, "run", "running")
    usage = {"model": "claude-x-1", "input_tokens": 1200, "output_tokens": 34}
    recording = sandbox.coord_root / "run" / "busy" / "exchanges.jsonl"
    recording.write_bytes(
        exchange(1, {**usage, "cache_read_tokens": 5})
        + exchange(2, None, error="upstream overloaded")  # no usage: not a turn
        + exchange(3, {**usage, "input_tokens": 800, "output_tokens": 66})
        # A line being written when status looked: not counted.
        + exchange(4, usage)[:-300]
    )
    status_file = sandbox.coord_root / "run" / "busy" / "status.md"
    text = status_file.read_text()
    status_file.write_text(re.sub(r"- Started: .*", f"- Started: {utc(72)}", text))
    table = sandbox.cli("status", "run")
    assert table.code == 0, table
    lines = table.stdout.splitlines()
    header = next(line for line in lines if line.startswith("WORKER"))
    assert header.split() == [
        "WORKER", "STATE", "EXIT", "DURATION", "PANE", "HANDOFF", "MODEL", "TOKENS", "IN/OUT",
        "COST",
    ]  # fmt: skip
    busy = next(line for line in lines if line.startswith("busy "))
    # Running for 72s (as its status says it started): the clock, not "-".
    assert busy.split()[:3] == ["busy", "running", "-"]
    assert re.fullmatch(r"1m1[2-9]s", busy.split()[3]), busy
    assert busy.split()[-3:] == ["claude-x-1", "2,000/100", "-"]
    idle = next(line for line in lines if line.startswith("idle "))
    assert re.fullmatch(r"\d+s", idle.split()[3]), idle
    assert idle.split()[-3:] == ["-", "-/-", "-"]
    data = {w["slug"]: w for w in status_json(sandbox, "run")["workers"]}
    assert data["busy"]["usage_so_far"] == {
        "input_tokens": 2000,
        "output_tokens": 100,
        "cache_read_tokens": 5,
        "model": "claude-x-1",
        "turns": 2,
        "partial": False,
    }
    assert 72 <= data["busy"]["elapsed_s"] < 100
    assert data["idle"]["usage_so_far"] is None
    # The final usage (the CLI's, in status.md) wins once the worker is done.
    release(prefix, "busy")
    release(prefix, "idle")
    done = wait_done(sandbox, "run")
    assert [w["elapsed_s"] for w in done["workers"]] == [None, None]


def test_recorded_usage_reads_only_what_was_appended(sandbox: Sandbox) -> None:
    """Each look reads on from the last one; over the read limit, only the recording's
    end is read, and the figures say they are partial."""
    worker_dir = sandbox.coord_root / "s" / "w"
    worker_dir.mkdir(parents=True)
    recording = worker_dir / "exchanges.jsonl"
    reader = RecordedUsage(SessionDir(str(sandbox.coord_root), "s").worker("w"), limit=400_000)
    assert reader.read() is None  # no recording yet
    one = exchange(1, {"input_tokens": 10, "output_tokens": 1})
    recording.write_bytes(one[:100])
    assert reader.read() is None  # half a line: nothing yet
    with recording.open("ab") as fh:
        fh.write(one[100:])
    first = reader.read()
    assert first is not None and (first.tokens, first.turns, first.partial) == (
        {"input_tokens": 10, "output_tokens": 1},
        1,
        False,
    )
    with recording.open("ab") as fh:
        fh.write(exchange(2, {"input_tokens": 5, "output_tokens": 2}))
    second = reader.read()
    assert second is not None and second.tokens == {"input_tokens": 15, "output_tokens": 3}
    # More than the limit at once: the lines before the last 400 KB are skipped.
    with recording.open("ab") as fh:
        for turn in range(3, 23):  # 20 lines of ~50 KB: ~1 MB
            fh.write(exchange(turn, {"input_tokens": 1, "output_tokens": 1}))
    third = reader.read()
    assert third is not None and third.partial
    assert 15 + 4 <= third.tokens["input_tokens"] < 15 + 20
    # A fresh reader over a big file reads its end only, and says so.
    fresh = RecordedUsage(SessionDir(str(sandbox.coord_root), "s").worker("w"), limit=400_000)
    tail = fresh.read()
    assert tail is not None and tail.partial and tail.turns < 22
    # A new recording in its place (a retried worker's) is read from its start.
    recording.unlink()
    recording.write_bytes(exchange(1, {"input_tokens": 7, "output_tokens": 7}))
    again = reader.read()
    assert again is not None and (again.tokens["input_tokens"], again.partial) == (7, False)


def test_a_partial_count_is_marked_in_the_table(sandbox: Sandbox, tmp_path: Path) -> None:
    launcher, prefix = held(tmp_path)
    started(sandbox, "big", launcher=launcher, agents="solo")
    wait_until_states(sandbox, "big", "running")
    recording = sandbox.coord_root / "big" / "solo" / "exchanges.jsonl"
    line = exchange(1, {"input_tokens": 3, "output_tokens": 4}, request="z" * 1_000_000)
    with recording.open("wb") as fh:
        for _ in range(18):  # over the 16 MiB one look reads
            fh.write(line)
    row = next(x for x in sandbox.cli("status", "big").stdout.splitlines() if x.startswith("solo"))
    assert re.search(r"≥\d+/≥\d+", row), row
    usage = status_json(sandbox, "big")["workers"][0]["usage_so_far"]
    assert usage["partial"] is True and usage["turns"] < 18
    release(prefix, "solo")


def test_a_hostile_recording_breaks_nothing(sandbox: Sandbox, tmp_path: Path) -> None:
    launcher, prefix = held(tmp_path)
    started(sandbox, "h", launcher=launcher, agents="solo")
    wait_until_states(sandbox, "h", "running")
    recording = sandbox.coord_root / "h" / "solo" / "exchanges.jsonl"
    recording.write_bytes(
        b'{"usage":' + b"[" * 5000 + b"\n"
        b'{"usage":{"input_tokens":-5,"output_tokens":true,"model":"\\u001b[2Jm"}}\n'
        b'{"usage":{"input_tokens":99999999999999999999999}}\n'
        b"\xff\xfe garbage\n"
    )
    result = sandbox.cli("status", "h")
    assert result.code == 0, result
    assert "\x1b" not in result.stdout
    usage = status_json(sandbox, "h")["workers"][0]["usage_so_far"]
    assert usage is not None and usage["turns"] == 1 and "input_tokens" not in usage
    # A FIFO in its place is not opened for reading (it would hang).
    recording.unlink()
    os.mkfifo(recording)
    assert sandbox.cli("status", "h").code == 0
    release(prefix, "solo")
