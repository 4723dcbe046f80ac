"""Issue 14: progress on a terminal's stderr while something long runs: `status --wait`,
`replay --wait`, the steps of `swarm --execute` and `replay --execute`. One line
rewritten in place, cleared when done, on error and on Ctrl-C; nothing at all (stderr
exactly as before) when stderr is not a terminal or under --json."""

from __future__ import annotations

import os
import pty
import re
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from kodelyth_ecc.progress import CLEAR_LINE, ProgressLine
from tests.conftest import Sandbox
from tests.support import make_failing_tool, run_cli
from tests.swarm_helpers import start_swarm, started, wait_done, wait_until_states
from tests.test_status_view import (
    Screen,
    held,
    release,
    run_on_pty,
    start_on_pty,
    terminal_env,
)


def _stderr_tty(*args: str, cwd: Path, **kwargs: object) -> tuple[int, str, str]:
    """Exit code, what reached the terminal on stderr, and the piped stdout."""
    code, run = run_on_pty(*args, cwd=cwd, stdout_tty=False, **kwargs)
    return code, run.text, run.piped_text


# --- status --wait and replay --wait ---------------------------------------------------------


def test_status_wait_shows_who_is_running_then_clears_the_line(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    launcher, prefix = held(tmp_path)
    started(sandbox, "w", launcher=launcher)
    wait_until_states(sandbox, "w", "running")
    run = start_on_pty("status", "w", "--wait", cwd=sandbox.repo, stdout_tty=False)
    run.wait_for("waiting: 0/2 done, alpha running ")
    release(prefix, "alpha")
    run.wait_for("waiting: 1/2 done, beta running ")
    release(prefix, "beta")
    assert run.finish() == 0, run.text
    assert run.text.startswith(CLEAR_LINE) and run.text.endswith(CLEAR_LINE)
    assert "\n" not in run.text  # one line, rewritten: never a line per update
    assert Screen().feed(run.text).shown == []  # nothing left on the terminal
    # stdout is the table, as without a terminal.
    assert run.piped_text == sandbox.cli("status", "w").stdout


def test_nothing_extra_on_stderr_when_piped_or_json(sandbox: Sandbox, tmp_path: Path) -> None:
    launcher, prefix = held(tmp_path)
    started(sandbox, "p", launcher=launcher, agents="solo")
    wait_until_states(sandbox, "p", "running")
    timed_out = sandbox.cli("status", "p", "--wait", "--timeout", "1")
    assert timed_out.code == 124
    assert timed_out.stderr.startswith("kodelyth-ecc: timed out after 1s waiting for solo: ")
    assert len(timed_out.stderr.splitlines()) == 1
    # --json on a terminal: not a byte on stderr.
    code, err, out = _stderr_tty(
        "status", "p", "--wait", "--timeout", "1", "--json", cwd=sandbox.repo
    )
    assert code == 124 and out.startswith("{")
    assert err == timed_out.stderr.replace("\n", "\r\n")
    release(prefix, "solo")
    piped = sandbox.cli("status", "p", "--wait", "--timeout", "20")
    assert (piped.code, piped.stderr) == (0, "")
    code, err, _ = _stderr_tty("status", "p", "--wait", "--json", cwd=sandbox.repo)
    assert (code, err) == (0, "")
    # TERM=dumb cannot rewrite a line: nothing either.
    code, err, _ = _stderr_tty(
        "status", "p", "--wait", cwd=sandbox.repo, env=terminal_env(TERM="dumb")
    )
    assert (code, err) == (0, "")


def test_a_timeout_clears_the_line_before_saying_so(sandbox: Sandbox, tmp_path: Path) -> None:
    launcher, prefix = held(tmp_path)
    started(sandbox, "t", launcher=launcher, agents="solo")
    wait_until_states(sandbox, "t", "running")
    code, err, _ = _stderr_tty("status", "t", "--wait", "--timeout", "1", cwd=sandbox.repo)
    assert code == 124
    assert "waiting: 0/1 done, solo running" in err
    ending = (
        re.escape(CLEAR_LINE) + r"kodelyth-ecc: timed out after 1s waiting for solo: [^\n]*\r\n"
    )
    assert re.search(ending + "$", err), err
    (shown,) = Screen().feed(err).shown
    assert shown.startswith("kodelyth-ecc: timed out after 1s waiting for solo: ")
    release(prefix, "solo")


def test_ctrl_c_while_waiting_clears_the_line(sandbox: Sandbox, tmp_path: Path) -> None:
    launcher, prefix = held(tmp_path)
    started(sandbox, "c", launcher=launcher, agents="solo")
    wait_until_states(sandbox, "c", "running")
    run = start_on_pty("status", "c", "--wait", cwd=sandbox.repo, stdout_tty=False)
    run.wait_for("waiting: 0/1 done")
    run.proc.send_signal(signal.SIGINT)
    assert run.finish() == 130
    assert Screen().feed(run.text).shown == ["kodelyth-ecc: interrupted"]
    release(prefix, "solo")


def test_replay_execute_and_wait_show_progress(sandbox: Sandbox, tmp_path: Path) -> None:
    started(sandbox, "orig", agents="alpha,beta")
    wait_done(sandbox, "orig")
    launcher, prefix = held(tmp_path)
    run = start_on_pty(
        "replay", "orig", "--launcher-cmd", launcher, "--execute", "--wait", "--timeout", "60",
        cwd=sandbox.repo, stdout_tty=False,
    )  # fmt: skip
    run.wait_for("waiting: 0/2 done")
    release(prefix, "alpha")
    release(prefix, "beta")
    assert run.finish() == 0, run.text
    assert "orig-replay-1: creating the worktree for alpha" in run.text
    assert "orig-replay-1: starting the runners" in run.text
    assert Screen().feed(run.text).shown == []
    assert run.piped_text.startswith("started orig-replay-1 (replay of orig)")
    piped = sandbox.cli("replay", "orig", "--execute", "--wait", "--timeout", "60")
    assert (piped.code, piped.stderr) == (0, "")


# --- swarm --execute steps ---------------------------------------------------------------------


def test_swarm_execute_shows_its_steps_then_clears_them(sandbox: Sandbox) -> None:
    args = ("swarm", "--task", "t", "--agents", "alpha,beta", "--harness", "echo")
    code, err, out = _stderr_tty(*args, "--session", "s1", "--execute", cwd=sandbox.repo)
    assert code == 0, err
    for step in (
        "writing coordination files",
        "creating the tmux session",
        "creating the worktree for alpha",
        "creating the worktree for beta",
        "starting the runners",
        "launching the workers",
    ):
        assert f"{CLEAR_LINE}s1: {step}" in err, step
    assert err.endswith(CLEAR_LINE) and "\n" not in err
    assert Screen().feed(err).shown == []
    assert out.startswith("started s1: 2 workers from HEAD")
    piped = start_swarm(sandbox, "s2")
    assert (piped.code, piped.stderr) == (0, ""), piped


def test_a_failing_step_clears_the_line_before_the_error(sandbox: Sandbox, tmp_path: Path) -> None:
    def failing_git(name: str) -> dict[str, str]:
        bin_dir = tmp_path / name
        make_failing_tool(bin_dir, "git", ["worktree", "add"])
        return terminal_env(PATH=f"{bin_dir}{os.pathsep}{os.environ['PATH']}")

    args = ("swarm", "--task", "t", "--agents", "solo", "--harness", "echo", "--session", "f")
    code, err, _ = _stderr_tty(*args, "--execute", cwd=sandbox.repo, env=failing_git("tty"))
    assert code == 1
    assert "f: creating the worktree for solo" in err
    (shown,) = Screen().feed(err).shown
    assert shown.startswith("kodelyth-ecc: error: --execute failed while creating the worktree")
    piped = run_cli(*args, "--execute", cwd=sandbox.repo, env=failing_git("piped"))
    assert piped.code == 1 and len(piped.stderr.splitlines()) == 1, piped
    assert piped.stderr.startswith("kodelyth-ecc: error: --execute failed while creating")


# --- the line itself ---------------------------------------------------------------------------


@pytest.fixture
def terminal() -> Iterator[tuple[int, int]]:
    master, slave = pty.openpty()
    yield master, slave
    os.close(master)
    os.close(slave)


def _read(master: int) -> str:
    import select

    data = b""
    while select.select([master], [], [], 0.2)[0]:
        data += os.read(master, 65536)
    return data.decode()


def test_the_line_escapes_controls_and_fits_the_width(
    terminal: tuple[int, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    import fcntl
    import struct
    import termios

    monkeypatch.setenv("TERM", "xterm")
    master, slave = terminal
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 30, 0, 0))
    with open(os.dup(slave), "w", encoding="utf-8") as stream, ProgressLine(stream=stream) as line:
        assert line.active
        line.update("worker \x1b]52;c;aGk=\x07evil\r\nnext")
        line.update("worker \x1b]52;c;aGk=\x07evil\r\nnext")  # unchanged: not written again
        line.update("x" * 100)
    written = _read(master)
    assert "\x1b]" not in written and "\x07" not in written
    assert written.count(CLEAR_LINE) == 3  # two updates, and the end
    first = written.split(CLEAR_LINE)[1]
    assert first == "worker \\x1b]52;c;aGk=\\x07evi…"
    assert written.split(CLEAR_LINE)[2] == "x" * 28 + "…"
    with open(os.dup(slave), "w", encoding="utf-8") as stream:
        kept = ProgressLine(stream=stream)
        kept.update("done: 3/3")
        kept.close(keep=True)
        kept.close()
    assert _read(master) == CLEAR_LINE + "done: 3/3\r\n"


def test_nothing_is_written_unless_on_a_terminal(
    terminal: tuple[int, int], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("TERM", "xterm")
    master, slave = terminal
    target = tmp_path / "stderr.txt"
    with target.open("w") as stream, ProgressLine(stream=stream) as line:
        line.update("step one")
        line.close(keep=True)
    assert target.read_text() == ""
    with open(os.dup(slave), "w", encoding="utf-8") as stream:
        for quiet, term in ((True, "xterm"), (False, "dumb")):
            monkeypatch.setenv("TERM", term)
            with ProgressLine(stream=stream, quiet=quiet) as line:
                line.update("step one")
                assert not line.active
    assert _read(master) == ""
