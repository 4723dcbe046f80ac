"""Issue 14, adversarially: `status` (and --watch), progress lines, `logs`, `attach` and
the completion script against hostile or merely unusual input. A crafted session.json
(values of the wrong type, pane ids that are no pane's), a bundle of a swarm that was
still running, transcripts of a gigabyte, carriage-return "lines", a session directory
that cannot be read, wide characters and resized terminals, a user's `set -e` shell,
an API key in the environment. Nothing may crash, hang, leak or print raw controls."""

from __future__ import annotations

import contextlib
import json
import os
import pty
import re
import select
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from kodelyth_ecc import completion
from kodelyth_ecc.live import LiveScreen
from kodelyth_ecc.progress import CLEAR_LINE, ProgressLine
from kodelyth_ecc.status import collect_status
from kodelyth_ecc.termsafe import cells
from tests.conftest import Sandbox
from tests.support import Result, retry_until, run_cli, tmux
from tests.swarm_helpers import started, wait_until_states
from tests.test_attach_logs import _Client, _clients, _kodelyth
from tests.test_completion import _BASH_DRIVER, on_path  # noqa: F401 (a fixture)
from tests.test_progress import _read, terminal  # noqa: F401 (a fixture)
from tests.test_status_view import edit_record, exchange, held, release

FAKE_KEY = "sk-ant-api03-" + "Q" * 40 + "-hostile-test-key-AA"


def _write_only(sandbox: Sandbox, session: str, agents: str = "a,b") -> Path:
    args = ["--task", "t", "--agents", agents, "--harness", "echo", "--session", session]
    result = sandbox.cli("swarm", *args, "--write-only")
    assert result.code == 0, result
    return sandbox.coord_root / session


def _running(sandbox: Sandbox, tmp_path: Path, session: str, **kwargs: Any) -> Path:
    launcher, _ = held(tmp_path)
    started(sandbox, session, launcher=launcher, **kwargs)
    wait_until_states(sandbox, session, "running")
    return sandbox.coord_root / session


def _no_crash(result: Result) -> None:
    assert "internal error" not in result.stderr and "Traceback" not in result.stderr, result
    assert "\x1b" not in result.stdout + result.stderr, result


# --- session.json of the wrong shape ---------------------------------------------------------

HOSTILE_RECORDS: list[tuple[str, Any]] = [
    ("created_at", 12345),
    ("created_at", [1, 2]),
    ("created_at", "9" * 2_000_000),
    ("created_at", "0000-01-01T00:00:00Z"),
    ("created_at", "9999-12-31T23:59:59Z"),
    ("torn_down_at", 5),
    ("torn_down_at", {"when": "now"}),
    ("torn_down_at", "\x1b]52;c;aGk=\x07\u202eevil"),
    ("task", {"not": "text"}),
    ("task", "\u202e\x1b[2J" + "修复" * 500 + "\n\nmore"),
    ("pane_id", [1]),
    ("pane_id", {"a": 1}),
    ("pane_id", 7),
    ("pane_id", "%0;"),
    ("pane_id", "=other:0.0"),
]


@pytest.mark.parametrize(("key", "value"), HOSTILE_RECORDS, ids=lambda v: repr(v)[:30])
def test_a_crafted_session_json_breaks_no_view(
    sandbox: Sandbox, tmp_path: Path, key: str, value: Any
) -> None:
    sdir = _running(sandbox, tmp_path, "h", agents="a")
    data = json.loads((sdir / "session.json").read_text())
    if key == "pane_id":
        data["workers"][0]["pane_id"] = value
    else:
        data[key] = value
    (sdir / "session.json").write_text(json.dumps(data))
    for args in (("status",), ("status", "--all"), ("status", "h"), ("status", "h", "--json")):
        result = sandbox.cli(*args)
        assert result.code == 0, result
        _no_crash(result)
    shown = json.loads(sandbox.cli("status", "h", "--json").stdout)["session"]
    if key == "pane_id":
        # Not a pane tmux gave: no pane at all (never handed to tmux as a target).
        assert shown["workers"][0]["pane_id"] is None
        assert shown["workers"][0]["state"] == "running"


# --- attach ----------------------------------------------------------------------------------


def _active_pane(session: str) -> str:
    return tmux("display-message", "-p", "-t", f"={session}:", "#{pane_id}").stdout.strip()


def test_attach_never_selects_a_pane_of_another_session(sandbox: Sandbox, tmp_path: Path) -> None:
    """session.json names the pane (a valid id) of another session of the same server:
    attaching must not make it that session's active pane."""
    sdir = _running(sandbox, tmp_path, "mine", agents="a,b")
    tmux("new-session", "-d", "-s", "other", "-x", "80", "-y", "24", "sleep 600")
    tmux("split-window", "-t", "=other:", "sleep 600")
    panes = tmux("list-panes", "-t", "=other:", "-F", "#{pane_id}").stdout.split()
    first, active = panes[0], _active_pane("other")
    assert active != first
    data = json.loads((sdir / "session.json").read_text())
    data["workers"][0]["pane_id"] = first
    (sdir / "session.json").write_text(json.dumps(data))
    env = {k: v for k, v in os.environ.items() if k not in ("TMUX", "TMUX_PANE")}
    env["TERM"] = "xterm-256color"
    client = _Client(_kodelyth(sandbox, "attach", "mine", "a"), env, sandbox.repo)
    retry_until(lambda: client.drain() and "mine" in _clients(), message="a client on mine")
    assert _active_pane("other") == active
    assert b"the pane of a is gone" in client.output
    tmux("detach-client", "-s", "=mine")
    assert client.wait() == 0


# --- logs ------------------------------------------------------------------------------------


def _bundle_of_running_swarm(sandbox: Sandbox, tmp_path: Path) -> Path:
    _running(sandbox, tmp_path, "live", agents="a")
    bundle = tmp_path / "live.bundle.json"
    exported = sandbox.cli("session-export", "live", "--out", str(bundle))
    assert exported.code == 0, exported
    return bundle


def test_logs_follow_ends_on_a_session_that_never_ran_here(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    """A bundle exported while its worker ran says "running" for ever once imported."""
    bundle = _bundle_of_running_swarm(sandbox, tmp_path)
    far = tmp_path / "far"
    imported = sandbox.cli("session-import", str(bundle), "--coordination-root", str(far))
    assert imported.code == 0, imported
    assert collect_status("live", str(far)).workers[0].state == "running"
    argv = ["logs", "live", "a", "--follow", "--coordination-root", str(far)]
    result = run_cli(*argv, cwd=sandbox.repo, env=os.environ, timeout=30)
    assert result.code == 0, result
    assert result.stderr.startswith("kodelyth-ecc: not following: session 'live' was imported")
    assert len(result.stderr.splitlines()) == 1
    _write_only(sandbox, "wo")
    written = run_cli("logs", "wo", "a", "-f", cwd=sandbox.repo, env=os.environ, timeout=30)
    assert written.code == 0 and "--write-only" in written.stderr, written


def _transcript(sandbox: Sandbox, session: str, data: bytes = b"") -> Path:
    path = sandbox.coord_root / session / "a" / "transcript.log"
    path.write_bytes(data)
    return path


def test_logs_streams_a_gigabyte_transcript(sandbox: Sandbox) -> None:
    """A sparse gigabyte (NULs) after a first line: that line comes at once, not after
    the whole file has been read and cleaned, and the whole file takes seconds."""
    _write_only(sandbox, "big")
    path = _transcript(sandbox, "big", b"first line\n")
    with path.open("r+b") as fh:
        fh.truncate(1 << 30)
        fh.seek(0, os.SEEK_END)
        fh.write(b"\nlast line\n")
    started_at = time.monotonic()
    proc = subprocess.Popen(
        [sys.executable, "-m", "kodelyth_ecc", "logs", "big", "a"],
        cwd=sandbox.repo, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        ready, _, _ = select.select([proc.stdout], [], [], 15)
        assert ready, "no output within 15s: the transcript is read whole before printing"
        assert proc.stdout.readline() == b"first line\n"
        rest, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    assert rest.endswith(b"\nlast line\n") and b"\x00" not in rest
    assert time.monotonic() - started_at < 60
    # -n reads the end only.
    tail = run_cli("logs", "big", "a", "-n", "1", cwd=sandbox.repo, env=os.environ, timeout=30)
    assert tail.code == 0 and tail.stdout == "last line\n", tail


def test_logs_lines_end_at_newlines_only(sandbox: Sandbox) -> None:
    """A progress bar redrawn with carriage returns is one line, as `logs` prints it."""
    _write_only(sandbox, "cr")
    _transcript(sandbox, "cr", b"one\ntwo 10%\r50%\r100%\nthree\n" + b"\r" * 5000 + b"\n")
    whole = sandbox.cli("logs", "cr", "a")
    assert whole.stdout == "one\ntwo 10%50%100%\nthree\n\n", whole
    last = sandbox.cli("logs", "cr", "a", "-n", "3")
    assert last.code == 0 and last.stdout == "two 10%50%100%\nthree\n\n", last


def test_logs_never_prints_controls_split_across_reads(sandbox: Sandbox) -> None:
    """Lines longer than one read (1 MiB) are cut between reads, sequences with them."""
    _write_only(sandbox, "osc")
    line = b"\x1b]52;c;" + b"QUFB" * 300_000 + b"\x07\x1b[2J\x9b\xc2\x9b31m\xe2\x80\xae tail\n"
    _transcript(sandbox, "osc", line * 3)
    result = sandbox.cli("logs", "osc", "a")
    assert result.code == 0, result
    assert not re.search("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202e]", result.stdout)
    assert result.stdout.count("tail\n") == 3


# --- the listing -----------------------------------------------------------------------------


def test_a_session_dir_that_cannot_be_read_hides_no_other(sandbox: Sandbox) -> None:
    _write_only(sandbox, "fine")
    crowded = sandbox.coord_root / "crowded"
    crowded.mkdir()
    for i in range(4 * 4096 + 2):
        (crowded / f"f{i}").touch()
    listing = sandbox.cli("status")
    assert listing.code == 0, listing
    assert listing.stdout.startswith("fine  2 workers"), listing
    assert json.loads(sandbox.cli("status", "--json").stdout)["sessions"][0]["session"] == "fine"
    # Asked by name, it says what is wrong with it.
    named = sandbox.cli("status", "crowded")
    assert named.code == 1 and "entries: not a session directory" in named.stderr, named


def test_the_listing_asks_tmux_nothing_of_torn_down_sessions(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    _running(sandbox, tmp_path, "old", agents="a")
    edit_record(sandbox, "old", torn_down_at="2026-01-01T00:00:00Z")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    log = tmp_path / "tmux-calls"
    real = subprocess.run(["which", "tmux"], capture_output=True, text=True, check=True)
    (bin_dir / "tmux").write_text(
        f'#!/bin/sh\necho "$*" >> {shlex.quote(str(log))}\n'
        f'exec {shlex.quote(real.stdout.strip())} "$@"\n'
    )
    (bin_dir / "tmux").chmod(0o755)
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}
    listing = run_cli("status", cwd=sandbox.repo, env=env)
    assert listing.code == 0 and "old" not in listing.stdout, listing
    assert not log.exists() or "list-panes" not in log.read_text()
    every = run_cli("status", "--all", cwd=sandbox.repo, env=env)
    assert "old" in every.stdout and "list-panes" in log.read_text()


# --- wide characters, small and resized terminals --------------------------------------------


def _pane_text(target: str) -> list[str]:
    shown = tmux("capture-pane", "-p", "-t", target).stdout.splitlines()
    return [line for line in shown if line.strip()]


def _redrawn(target: str) -> list[str]:
    """The pane once the watch has drawn a frame with a new clock (a full redraw)."""
    footer = re.compile(r"watching: \d+/\d+ done, (\d\d:\d\d:\d\d)")

    def clock() -> str | None:
        found = [m.group(1) for line in _pane_text(target) if (m := footer.search(line))]
        return found[-1] if found else None

    first = retry_until(clock, message="a first frame")
    retry_until(lambda: (now := clock()) is not None and now != first, message="a redraw")
    return _pane_text(target)


def test_watch_redraws_wide_characters_and_resizes_in_place(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    launcher, prefix = held(tmp_path)
    started(sandbox, "wide", launcher=launcher, agents="a", task="修复认证模块中的错误" * 8)
    wait_until_states(sandbox, "wide", "running")
    command = shlex.join(
        ["env", f"HOME={sandbox.home}", f"PYTHONPATH={os.environ['PYTHONPATH']}",
         "TERM=xterm-256color", sys.executable, "-m", "kodelyth_ecc", "status", "wide", "--watch"]
    )  # fmt: skip
    tmux(
        "new-session", "-d", "-s", "viewer", "-x", "60", "-y", "20", "-c", str(sandbox.repo),
        f"{command}; sleep 600",
    )  # fmt: skip
    shown = _redrawn("=viewer:")
    assert [line for line in shown if line.startswith("Session")] == shown[:1], shown
    assert all(cells(line) <= 60 for line in shown)
    task = next(line for line in shown if line.startswith("Task"))
    assert task.endswith("…") and cells(task) <= 59
    tmux("resize-window", "-t", "=viewer:", "-x", "5", "-y", "3")
    retry_until(lambda: "Ses…" in _pane_text("=viewer:"), message="the small frame")
    tmux("resize-window", "-t", "=viewer:", "-x", "100", "-y", "20")
    shown = _redrawn("=viewer:")
    assert shown[0].startswith("Session  wide") and sum("Session" in x for x in shown) == 1, shown
    assert sum(line.startswith("WORKER") for line in shown) == 1, shown
    release(prefix, "a")


def _set_size(fd: int, columns: int, rows: int) -> None:
    import fcntl
    import struct
    import termios

    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, columns, 0, 0))


def test_the_progress_line_fits_wide_characters(
    terminal: tuple[int, int],  # noqa: F811 (the fixture imported above)
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("TERM", "xterm")
    master, slave = terminal
    _set_size(slave, 30, 24)
    with open(os.dup(slave), "w", encoding="utf-8") as stream, ProgressLine(stream=stream) as line:
        line.update("waiting: a 修复认证模块中的错误修复认证模块中的错误")
    shown = _read(master).split(CLEAR_LINE)[1]
    assert cells(shown) <= 29 and shown.endswith("…"), shown
    assert shown.startswith("waiting: a 修复")


def test_a_live_screen_on_one_row_and_a_terminal_that_went_away() -> None:
    """A one-row terminal shows the count of what it cannot; SIGHUP (the window
    closed) ends a watch through close(), on a terminal that fails every write."""
    master, slave = pty.openpty()
    _set_size(slave, 40, 1)
    stream = open(os.dup(slave), "w", encoding="utf-8")  # noqa: SIM115
    try:
        screen = LiveScreen(stream, colour=False)
        screen.draw([[("first", None)], [("second", None)]])
        assert "… 2 more lines" in _read(master)
        os.close(master)  # the terminal is gone: writes fail with EIO
        os.close(slave)
        screen.close()
        assert not screen.live
    finally:
        with contextlib.suppress(OSError):
            stream.close()


# --- completion under the user's shell options -----------------------------------------------

# test_completion's driver, in a shell with the options users have: a function that
# fails under `set -e` ends it (a non-zero exit here, no output).
_STRICT_DRIVER = "set -euo pipefail\nshopt -s failglob nullglob\n" + _BASH_DRIVER


@pytest.mark.parametrize(
    ("words", "expected"),
    [
        # The last candidate does not match: a loop's status was the function's.
        (["status", "s-o"], ["s-one"]),
        (["logs", "s-one", "a"], ["alpha"]),
        (["swarm", "--harness", "ec"], ["echo"]),
        (["session-import", "nothing-here"], []),
        (["logs", "'s-one'", ""], ["alpha", "beta"]),
        (["status", "--coordination-root", "~/nowhere", ""], []),
    ],
)
@pytest.mark.usefixtures("on_path")
def test_bash_completion_survives_set_e_set_u_and_glob_options(
    sandbox: Sandbox, tmp_path: Path, words: list[str], expected: list[str]
) -> None:
    """Users have `set -e` in an interactive bash: a completion function that returns
    non-zero there ends their shell on Tab."""
    for session, agents in (("s-one", "alpha,beta"), ("s-two", "gamma")):
        _write_only(sandbox, session, agents)
    script = tmp_path / "completion.bash"
    script.write_text(completion.script("bash"))
    run = subprocess.run(
        ["bash", "--norc", "--noprofile", "-c", _STRICT_DRIVER, "bash", str(script),
         "kodelyth-ecc", *words],
        cwd=sandbox.repo, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert run.returncode == 0 and not run.stderr, run
    assert [line for line in run.stdout.splitlines() if line] == expected


# --- secrets ---------------------------------------------------------------------------------


def test_an_api_key_in_the_environment_reaches_no_view(
    sandbox: Sandbox, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The key is in every process's environment and even in a recording's request
    headers (as a proxy that failed to redact would write it): no view shows it."""
    monkeypatch.setenv("ANTHROPIC_API_KEY", FAKE_KEY)
    monkeypatch.setenv("OPENAI_API_KEY", FAKE_KEY)
    sdir = _running(sandbox, tmp_path, "sec", agents="a")
    (sdir / "a" / "exchanges.jsonl").write_bytes(
        exchange(1, {"input_tokens": 3, "output_tokens": 4, "model": "m"},
                 request_headers={"x-api-key": FAKE_KEY, "usage": FAKE_KEY})
        + exchange(2, None, request_headers={"authorization": f"Bearer {FAKE_KEY}"})
    )  # fmt: skip
    outputs = [
        sandbox.cli("status"),
        sandbox.cli("status", "sec"),
        sandbox.cli("status", "sec", "--json"),
        sandbox.cli("status", "--json"),
        sandbox.cli("logs", "sec", "a"),
        sandbox.cli("status", "sec", "--watch", "--timeout", "1"),
        sandbox.cli("status", "sec", "--watch", "--json", "--timeout", "1"),
        run_cli("__complete", "sessions", cwd=sandbox.repo, env=os.environ),
        run_cli("__complete", "workers", "sec", cwd=sandbox.repo, env=os.environ),
    ]
    for result in outputs:
        assert FAKE_KEY not in result.stdout + result.stderr, result
    usage = json.loads(outputs[2].stdout)["session"]["workers"][0]["usage_so_far"]
    assert usage == {
        "input_tokens": 3, "output_tokens": 4, "model": "m", "turns": 1, "partial": False,
    }  # fmt: skip


# --- many workers ----------------------------------------------------------------------------


def test_following_one_worker_reads_only_its_status(sandbox: Sandbox) -> None:
    """`logs -f` looks five times a second: in a session of thousands of workers it
    reads one status file, not all of them."""
    sdir = _write_only(sandbox, "many", agents="a,b,c")
    (sdir / "c" / "status.md").unlink()
    os.mkfifo(sdir / "c" / "status.md")  # read by a full look (and refused there)
    full = collect_status("many", str(sandbox.coord_root))
    assert [w.slug for w in full.workers] == ["a", "b", "c"]
    assert full.workers[2].state == "unreadable"
    one = collect_status("many", str(sandbox.coord_root), only=("b",))
    assert [(w.slug, w.state) for w in one.workers] == [("b", "pending")]


def test_status_of_4096_workers_is_quick(sandbox: Sandbox) -> None:
    sdir = _write_only(sandbox, "huge", agents="a")
    record = json.loads((sdir / "session.json").read_text())
    template = record["workers"][0]
    record["workers"] = []
    for i in range(4096):
        slug = f"w{i:04d}-" + "x" * 58  # the longest a slug may be
        record["workers"].append({**template, "name": slug, "slug": slug})
        (sdir / slug).mkdir()
        state = ("running", "failed", "completed")[i % 3]
        (sdir / slug / "status.md").write_text(
            f"# Status: {slug}\n\n- State: {state}\n- Started: 2026-12-08T01:00:00Z\n"
        )
        (sdir / slug / "transcript.log").write_text("hello\n" * 50)
    shutil.rmtree(sdir / "a")
    (sdir / "session.json").write_text(json.dumps(record))
    began = time.monotonic()
    result = sandbox.cli("status", "huge")
    took = time.monotonic() - began
    assert result.code == 0, result
    assert len(result.stdout.splitlines()) > 4096
    assert took < 15, f"status of 4096 workers took {took:.1f}s"
    assert sandbox.cli("status").stdout.startswith("huge  4096 workers: 1366 running, ")


@pytest.fixture(autouse=True)
def _no_viewer_left() -> Iterator[None]:
    yield
    tmux("kill-session", "-t", "=viewer", check=False)
    tmux("kill-session", "-t", "=other", check=False)
