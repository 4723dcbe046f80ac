"""Issue 14: `status --watch`. On a terminal the table is redrawn in place (cursor
movement, no clearing of the screen, leftover lines cleared, the cursor hidden while
live and restored at the end, on Ctrl-C and on SIGTERM); not a terminal, one line per
change of a worker's state and nothing repeated; with --json one JSON object per
change. It ends when every worker is done with `--wait`'s exit codes."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from tests.conftest import Sandbox
from tests.support import retry_until
from tests.swarm_helpers import started, wait_done, wait_until_states
from tests.test_status_view import (
    Screen,
    edit_record,
    held,
    release,
    start_on_pty,
)

HIDE, SHOW = "\x1b[?25l", "\x1b[?25h"
CURSOR_UP = re.compile(r"\x1b\[\d+A")


class Piped:
    """The CLI with stdout on a pipe, read line by line as it comes."""

    def __init__(self, *args: str, cwd: Path) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "kodelyth_ecc", *args],
            cwd=cwd,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.lines: list[str] = []
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))

    def wait_lines(self, count: int) -> None:
        retry_until(lambda: len(self.lines) >= count, message=f"{count} lines: {self.lines}")

    def finish(self, timeout: float = 60) -> tuple[int, str]:
        code = self.proc.wait(timeout=timeout)
        self.reader.join(timeout=10)
        assert self.proc.stderr is not None
        err = self.proc.stderr.read()
        self.proc.stderr.close()
        return code, err


def _quiet_for(path: Path, seconds: float) -> None:
    """Until ``path`` (a status file) has been unchanged ``seconds``: a watcher polling
    every 0.5s has looked several times at the same states by then."""
    retry_until(lambda: time.time() - path.stat().st_mtime >= seconds, timeout=30)


def test_on_a_terminal_the_table_is_redrawn_in_place(sandbox: Sandbox, tmp_path: Path) -> None:
    launcher, prefix = held(tmp_path)
    started(sandbox, "live", launcher=launcher)
    wait_until_states(sandbox, "live", "running")
    run = start_on_pty("status", "live", "--watch", cwd=sandbox.repo)
    run.wait_for("watching: 0/2 done")
    release(prefix, "alpha")
    run.wait_for("watching: 1/2 done")
    release(prefix, "beta")
    assert run.finish() == 0, run.text
    out = run.text
    assert out.startswith(HIDE) and out.endswith(SHOW), out[-200:]
    # Redrawn: the cursor goes back up to the frame's top, over and over; never a
    # cleared screen (which flickers).
    assert len(CURSOR_UP.findall(out)) >= 2
    assert "\x1b[2J" not in out and "\x1bc" not in out
    screen = Screen().feed(out)
    assert screen.cursor_visible
    shown = screen.shown
    # What is left is the final view: header, table, and no footer (the frame shrank
    # by two lines: they were cleared, not left behind).
    assert shown[0].startswith("Session  live, started ")
    assert shown[1] == "Task     audit the auth module"
    rows = {line.split()[0]: line.split()[1] for line in shown[4:]}
    assert rows == {"alpha": "completed", "beta": "completed"}
    assert not any("watching" in line for line in shown)
    # Coloured states (a colour terminal), widths unaffected.
    assert "\x1b[32mcompleted\x1b[0m" in out


def test_a_long_frame_is_cut_to_the_terminal(sandbox: Sandbox, tmp_path: Path) -> None:
    """Lines never wrap and the frame never outgrows the screen: else the cursor could
    not get back to its top, and every redraw would scroll."""
    launcher, prefix = held(tmp_path)
    agents = ",".join(f"w{i}" for i in range(8))
    started(sandbox, "tall", launcher=launcher, agents=agents, task="t" * 300)
    wait_until_states(sandbox, "tall", "running")
    run = start_on_pty("status", "tall", "--watch", cwd=sandbox.repo, columns=40, rows=8)
    run.wait_for("more lines")
    for i in range(8):
        release(prefix, f"w{i}")
    assert run.finish() == 0, run.text
    screen = Screen().feed(run.text)
    assert all(len(line) < 40 for line in screen.lines)
    frames = run.text.split(HIDE, 1)[1]
    for frame in CURSOR_UP.split(frames):
        assert frame.count("\n") <= 7


def test_not_a_terminal_one_line_per_change(sandbox: Sandbox, tmp_path: Path) -> None:
    launcher, prefix = held(tmp_path)
    started(sandbox, "lines", launcher=launcher)
    wait_until_states(sandbox, "lines", "running")
    watch = Piped("status", "lines", "--watch", cwd=sandbox.repo)
    watch.wait_lines(2)
    _quiet_for(sandbox.coord_root / "lines" / "alpha" / "status.md", 1.5)
    release(prefix, "alpha")
    watch.wait_lines(3)
    _quiet_for(sandbox.coord_root / "lines" / "alpha" / "status.md", 1.5)
    release(prefix, "beta")
    code, err = watch.finish()
    assert (code, err) == (0, "")
    clock = r"\d\d:\d\d:\d\d"
    patterns = [
        rf"{clock} alpha: running",
        rf"{clock} beta: running",
        rf"{clock} alpha: running -> completed \(exit 0, \d+\.\ds\)",
        rf"{clock} beta: running -> completed \(exit 0, \d+\.\ds\)",
    ]
    assert len(watch.lines) == 4, watch.lines
    for pattern, line in zip(patterns, watch.lines, strict=True):
        assert re.fullmatch(pattern, line), (pattern, line)


def test_a_failure_ends_the_watch_with_one(sandbox: Sandbox, tmp_path: Path) -> None:
    launcher, prefix = held(tmp_path)
    failing = launcher + "; echo gave-up; [ {worker_slug_sh} = alpha ] || exit 4"
    started(sandbox, "fail", launcher=failing)
    wait_until_states(sandbox, "fail", "running")
    watch = Piped("status", "fail", "--watch", cwd=sandbox.repo)
    watch.wait_lines(2)
    release(prefix, "alpha")
    release(prefix, "beta")
    code, _ = watch.finish()
    assert code == 1
    (failed,) = [line for line in watch.lines if "beta: running -> " in line]
    assert re.search(r"beta: running -> failed \(exit 4, \d+\.\ds\): last output: gave-up$", failed)


def test_json_is_one_object_per_change(sandbox: Sandbox, tmp_path: Path) -> None:
    launcher, prefix = held(tmp_path)
    started(sandbox, "nd", launcher=launcher)
    wait_until_states(sandbox, "nd", "running")
    watch = Piped("status", "nd", "--watch", "--json", cwd=sandbox.repo)
    watch.wait_lines(2)
    _quiet_for(sandbox.coord_root / "nd" / "alpha" / "status.md", 1.5)
    release(prefix, "alpha")
    release(prefix, "beta")
    code, err = watch.finish()
    assert (code, err) == (0, "")
    events = [json.loads(line) for line in watch.lines]  # raises on anything but JSON
    assert [(e["worker"]["slug"], e["from"], e["worker"]["state"]) for e in events] == [
        ("alpha", None, "running"),
        ("beta", None, "running"),
        ("alpha", "running", "completed"),
        ("beta", "running", "completed"),
    ]
    for event in events:
        assert event["schema"] == "kodelyth.status/v1" and event["session"] == "nd"
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", event["time"])
    assert events[0]["worker"]["elapsed_s"] is not None
    assert events[2]["worker"]["exit_code"] == 0 and events[2]["worker"]["elapsed_s"] is None


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_interrupted_it_exits_130_with_the_cursor_restored(
    sandbox: Sandbox, tmp_path: Path, sig: signal.Signals
) -> None:
    launcher, prefix = held(tmp_path)
    started(sandbox, "cc", launcher=launcher, agents="solo")
    wait_until_states(sandbox, "cc", "running")
    run = start_on_pty("status", "cc", "--watch", cwd=sandbox.repo)
    run.wait_for("watching: 0/1 done")
    run.proc.send_signal(sig)
    assert run.finish() == 130, run.text
    assert run.text.endswith(SHOW + "kodelyth-ecc: interrupted\r\n"), run.text[-100:]
    assert Screen().feed(run.text).cursor_visible
    release(prefix, "solo")


def test_ctrl_c_when_piped_exits_130(sandbox: Sandbox, tmp_path: Path) -> None:
    launcher, prefix = held(tmp_path)
    started(sandbox, "cp", launcher=launcher, agents="solo")
    wait_until_states(sandbox, "cp", "running")
    watch = Piped("status", "cp", "--watch", cwd=sandbox.repo)
    watch.wait_lines(1)
    watch.proc.send_signal(signal.SIGINT)
    code, err = watch.finish()
    assert (code, err) == (130, "kodelyth-ecc: interrupted\n")
    release(prefix, "solo")


def test_watch_times_out_with_124(sandbox: Sandbox, tmp_path: Path) -> None:
    launcher, prefix = held(tmp_path)
    started(sandbox, "to", launcher=launcher, agents="solo")
    wait_until_states(sandbox, "to", "running")
    result = sandbox.cli("status", "to", "--watch", "--timeout", "1")
    assert result.code == 124, result
    assert result.stdout == f"{result.stdout[:8]} solo: running\n"
    assert re.fullmatch(r"kodelyth-ecc: timed out after 1s waiting for solo: .*\n", result.stderr)
    run = start_on_pty("status", "to", "--watch", "--timeout", "1", cwd=sandbox.repo)
    assert run.finish() == 124
    assert Screen().feed(run.text).cursor_visible and "timed out after 1s" in run.text
    release(prefix, "solo")


def test_watching_a_done_session_ends_at_once(sandbox: Sandbox) -> None:
    started(sandbox, "over", agents="solo")
    wait_done(sandbox, "over")
    result = sandbox.cli("status", "over", "--watch")
    assert result.code == 0, result
    assert re.fullmatch(r"\d\d:\d\d:\d\d solo: completed \(exit 0, \d+\.\ds\)\n", result.stdout)


def test_watching_a_session_that_never_ran_is_refused(sandbox: Sandbox) -> None:
    written = sandbox.cli(
        "swarm", "--task", "t", "--agents", "x", "--harness", "echo", "--session", "w",
        "--write-only",
    )  # fmt: skip
    assert written.code == 0, written
    result = sandbox.cli("status", "w", "--watch", "--timeout", "20")
    assert result.code == 1, result
    assert "never started" in result.stderr and len(result.stderr.splitlines()) == 1


def test_watching_the_list_refreshes_until_the_timeout(sandbox: Sandbox, tmp_path: Path) -> None:
    launcher, prefix = held(tmp_path)
    started(sandbox, "one", launcher=launcher, agents="solo")
    started(sandbox, "two", agents="solo")
    wait_done(sandbox, "two")
    edit_record(sandbox, "two", torn_down_at="2026-01-01T00:00:00Z")
    wait_until_states(sandbox, "one", "running")
    watch = Piped("status", "--watch", "--timeout", "20", cwd=sandbox.repo)
    watch.wait_lines(1)
    release(prefix, "solo")
    watch.wait_lines(2)
    watch.proc.send_signal(signal.SIGINT)
    code, _ = watch.finish()
    assert code == 130
    assert [line.split(" ", 1)[1].split("  (")[0] for line in watch.lines] == [
        "one  1 worker: 1 running",
        "one  1 worker: 1 completed",
    ]
    # With --all, the torn-down one too; --timeout ends the list with 0.
    everything = sandbox.cli("status", "--watch", "--all", "--timeout", "1")
    assert everything.code == 0, everything
    assert [line.split()[1] for line in everything.stdout.splitlines()] == ["one", "two"]
    run = start_on_pty("status", "--watch", "--timeout", "1", cwd=sandbox.repo)
    assert run.finish() == 0
    shown = Screen().feed(run.text).shown
    assert shown[0].startswith("one  1 worker: 1 completed  (started ")
    assert shown[-1].startswith("watching 1 sessions, ")


def test_wait_and_watch_are_exclusive_and_timeout_needs_one(sandbox: Sandbox) -> None:
    both = sandbox.cli("status", "x", "--wait", "--watch")
    assert both.code == 2 and "not allowed with" in both.stderr
    alone = sandbox.cli("status", "--timeout", "3")
    assert alone.code == 2 and "--timeout only applies with --wait or --watch" in alone.stderr
    assert not os.path.exists(sandbox.coord_root)
