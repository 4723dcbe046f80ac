"""`attach` (through a real tmux client on the test's own server) and `logs`."""

from __future__ import annotations

import os
import pty
import select
import shlex
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import Sandbox
from tests.support import retry_until, tmux
from tests.swarm_helpers import started, wait_until_states, workers_by_slug, worktree_of

# Prints a line, a coloured word and an OSC 52 clipboard write, then waits for the test.
WAITING = (
    "printf 'line one\\n\\033[31mred\\033[0m\\n\\033]52;c;aGVsbG8=\\007two\\n'; "
    "while [ ! -e release ]; do sleep 0.05; done; echo bye"
)


def _kodelyth(sandbox: Sandbox, *args: str) -> list[str]:
    return [
        sys.executable, "-m", "kodelyth_ecc", *args,
        "--coordination-root", str(sandbox.coord_root),
    ]  # fmt: skip


class _Client:
    """A process on a pty of its own, its output drained (a tmux client blocks when
    nobody reads its terminal)."""

    def __init__(self, argv: list[str], env: dict[str, str], cwd: Path) -> None:
        pid, fd = pty.fork()
        if pid == 0:  # the child: never returns
            os.chdir(cwd)
            os.execvpe(argv[0], argv, env)
        self.pid, self.fd = pid, fd
        self.output = b""

    def drain(self) -> bool:
        """Read what is there; True (for use in a predicate with what follows)."""
        while select.select([self.fd], [], [], 0)[0]:
            try:
                chunk = os.read(self.fd, 65536)
            except OSError:
                break
            if not chunk:
                break
            self.output += chunk
        return True

    def wait(self, timeout: float = 20.0) -> int:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.drain()
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                os.close(self.fd)
                return os.waitstatus_to_exitcode(status)
            time.sleep(0.02)
        os.kill(self.pid, 9)
        os.waitpid(self.pid, 0)
        raise AssertionError(f"client did not exit: {self.output[-500:]!r}")


@pytest.fixture
def client_env() -> Iterator[dict[str, str]]:
    env = {k: v for k, v in os.environ.items() if k not in ("TMUX", "TMUX_PANE")}
    env["TERM"] = "xterm-256color"
    yield env


def _clients() -> list[str]:
    return tmux("list-clients", "-F", "#{client_session}", check=False).stdout.split()


def _active_pane(session: str) -> str:
    return tmux("display-message", "-p", "-t", f"={session}:", "#{pane_id}").stdout.strip()


def _running_swarm(sandbox: Sandbox, session: str) -> dict[str, dict[str, object]]:
    started(sandbox, session, agents="a,b", harness="echo", launcher=WAITING)
    return workers_by_slug(wait_until_states(sandbox, session, "running"))


def test_attach_outside_tmux_focuses_the_worker_pane(
    sandbox: Sandbox, client_env: dict[str, str]
) -> None:
    workers = _running_swarm(sandbox, "att")
    client = _Client(_kodelyth(sandbox, "attach", "att", "b"), client_env, sandbox.repo)
    retry_until(lambda: client.drain() and "att" in _clients(), message="a client on att")
    assert _active_pane("att") == workers["b"]["pane_id"]
    tmux("detach-client", "-s", "=att")
    assert client.wait() == 0


def test_attach_inside_tmux_switches_the_client(
    sandbox: Sandbox, client_env: dict[str, str]
) -> None:
    workers = _running_swarm(sandbox, "sw")
    tmux("new-session", "-d", "-s", "driver", "-x", "120", "-y", "30", "/bin/sh")
    client = _Client(["tmux", "attach-session", "-t", "=driver"], client_env, sandbox.repo)
    retry_until(lambda: client.drain() and "driver" in _clients(), message="driver client")
    command = shlex.join(_kodelyth(sandbox, "attach", "sw", "a"))
    tmux("send-keys", "-t", "=driver:", "-l", command)
    tmux("send-keys", "-t", "=driver:", "Enter")
    retry_until(lambda: client.drain() and _clients() == ["sw"], message="switched to sw")
    assert _active_pane("sw") == workers["a"]["pane_id"]
    tmux("detach-client", "-s", "=sw")
    assert client.wait() == 0


def test_attach_needs_a_terminal_and_a_live_session(sandbox: Sandbox) -> None:
    _running_swarm(sandbox, "nt")
    result = sandbox.cli("attach", "nt", "a")
    assert result.code == 1
    assert "needs a terminal" in result.stderr and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    unknown = sandbox.cli("attach", "nt", "zed")
    assert unknown.code == 1 and "its workers are a, b" in unknown.stderr
    tmux("kill-server")
    gone = sandbox.cli("attach", "nt")
    assert gone.code == 1
    assert "is gone" in gone.stderr and "kodelyth-ecc resume nt" in gone.stderr


def test_logs_prints_the_transcript_without_terminal_controls(sandbox: Sandbox) -> None:
    _running_swarm(sandbox, "lg")
    (worktree_of(sandbox, "lg", "a") / "release").touch()
    wait_until_states(sandbox, "lg", {"a": "completed"})
    result = sandbox.cli("logs", "lg", "a")
    assert result.code == 0, result
    assert "line one\nred\ntwo\nbye\n" in result.stdout
    assert "\x1b" not in result.stdout and "\x07" not in result.stdout
    last = sandbox.cli("logs", "lg", "a", "-n", "2")
    assert last.code == 0
    assert last.stdout.splitlines() == ["two", "bye"]


def test_logs_follow_until_the_worker_is_done(sandbox: Sandbox) -> None:
    _running_swarm(sandbox, "fl")
    proc = subprocess.Popen(
        _kodelyth(sandbox, "logs", "fl", "b", "--follow"),
        cwd=sandbox.repo,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        assert proc.stdout is not None
        os.set_blocking(proc.stdout.fileno(), False)
        seen = b""

        def saw(text: bytes) -> bool:
            nonlocal seen
            seen += proc.stdout.read() or b"" if proc.stdout else b""
            return text in seen

        retry_until(lambda: saw(b"two\n"), message="the transcript so far")
        assert proc.poll() is None  # still following
        (worktree_of(sandbox, "fl", "b") / "release").touch()
        assert proc.wait(timeout=30) == 0
        retry_until(lambda: saw(b"bye\n"), timeout=5, message="the transcript's end")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_logs_refuses_a_symlinked_transcript(sandbox: Sandbox, tmp_path: Path) -> None:
    _running_swarm(sandbox, "sl")
    (worktree_of(sandbox, "sl", "a") / "release").touch()
    wait_until_states(sandbox, "sl", {"a": "completed"})
    secret = tmp_path / "secret.txt"
    secret.write_text("TOP-SECRET-CONTENT\n")
    transcript = sandbox.coord_root / "sl" / "a" / "transcript.log"
    transcript.unlink()
    transcript.symlink_to(secret)
    result = sandbox.cli("logs", "sl", "a")
    assert result.code == 1
    assert "symlink" in result.stderr and "TOP-SECRET" not in result.stdout + result.stderr


def test_following_reads_a_new_transcript_from_its_start(tmp_path: Path) -> None:
    """A retried worker's next attempt writes a new transcript.log in its place."""
    from kodelyth_ecc.commands.logs import Transcript
    from kodelyth_ecc.sessiondir import WorkerDir

    (tmp_path / "s" / "w").mkdir(parents=True)
    path = tmp_path / "s" / "w" / "transcript.log"
    path.write_bytes(b"first attempt\npartial")
    reader = Transcript(WorkerDir(str(tmp_path / "s"), "w"))
    try:
        assert reader.read() == "first attempt\n"
        path.rename(tmp_path / "s" / "w" / "old.log")
        path.write_bytes(b"second attempt\n")
        assert reader.read() == "second attempt\n"
        with path.open("ab") as fh:
            fh.write(b"\x1b]0;title\x07more\n")
        assert reader.read(final=True) == "more\n"
    finally:
        reader.close()
