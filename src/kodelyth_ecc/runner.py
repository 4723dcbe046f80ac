"""The worker runner: what each tmux pane runs instead of an interactive shell.

It waits for the launch signal (so no agent starts before every pane exists),
keeps ``status.md`` true (pending -> running -> completed/failed), runs the
launcher in a pseudo-terminal and copies its output both to the pane and to
``transcript.log``. Standard library only, and few modules of it: it starts in
every pane, and its start-up is part of every swarm's launch time.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import pty
import re
import select
import signal
import stat
import sys
import termios
import time
import tty
from collections.abc import Sequence

from kodelyth_ecc.fsutil import atomic_write_text
from kodelyth_ecc.statusfile import StatusRecord, render_status

TYPE_CHECKING = False
if TYPE_CHECKING:
    import subprocess

    from kodelyth_ecc.sandbox import Prepared, WorkerSandbox

_DROP_ENV = ("BASH_ENV", "ENV")
# What tmux sets for the pane itself: kept from the pane, whatever the caller had.
_PANE_ENV = ("TMUX", "TMUX_PANE", "TERM")
_MAX_ENV_BYTES = 64 * 1024 * 1024


def _utc_now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


# Escape sequences that set the terminal title (OSC 0, 1 and 2, ended by BEL or
# ST). Agents send them (Claude Code titles its terminal); in a tmux pane they
# would replace the worker's slug as the pane title, so the runner drops them.
_TITLE_SEQ = re.compile(rb"\x1b\][012];[^\x07\x1b]*(?:\x07|\x1b\\)")
# The unfinished start of such a sequence at the end of a read.
_TITLE_START = re.compile(rb"\x1b(?:\](?:[012](?:;[^\x07\x1b]*\x1b?)?)?)?\Z")
_MAX_HELD = 4096
# How often the runner checks whether the agent exited while a process it started in
# the background still holds the terminal open, and how long it then keeps reading.
_POLL_S = 0.5
_DRAIN_S = 1.0


class TitleFilter:
    """Removes title-setting sequences from a byte stream read in arbitrary chunks."""

    def __init__(self) -> None:
        self._held = b""

    def feed(self, data: bytes) -> bytes:
        data = _TITLE_SEQ.sub(b"", self._held + data)
        self._held = b""
        start = _TITLE_START.search(data)
        if start and len(data) - start.start() <= _MAX_HELD:
            self._held = data[start.start() :]
            data = data[: start.start()]
        return data

    def flush(self) -> bytes:
        held, self._held = self._held, b""
        return held


# Every terminal control sequence: CSI, OSC (to BEL or ST), DCS/SOS/PM/APC (to ST), the
# two- and three-byte escapes; and control bytes other than tab and newline.
_CONTROL_SEQ = re.compile(
    rb"\x1b\[[0-?]*[ -/]*[@-~]"
    rb"|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)"
    rb"|\x1b[PX^_][^\x1b]*\x1b\\"
    # (not the introducers of the sequences above: "ESC [" alone is unfinished)
    rb"|\x1b[ -/]*[0-OQ-WYZ\\`a-~]"
    rb"|[\x00-\x08\x0b-\x1a\x1c-\x1f\x7f]"
)


class ControlFilter:
    """What a reader of the transcript should see: the pane's output without escape
    sequences or carriage returns (``\\r\\n`` becomes ``\\n``), for a stream read in
    arbitrary chunks."""

    def __init__(self) -> None:
        self._held = b""

    def feed(self, data: bytes) -> bytes:
        data = self._held + data
        self._held = b""
        # The first escape near the end that does not start a complete sequence is
        # the start of one the next read finishes.
        pos = max(0, len(data) - _MAX_HELD)
        while (esc := data.find(b"\x1b", pos)) >= 0:
            done = _CONTROL_SEQ.match(data, esc)
            if done is None:
                self._held = data[esc:]
                data = data[:esc]
                break
            pos = done.end()
        return _CONTROL_SEQ.sub(b"", data.replace(b"\r\n", b"\n")).replace(b"\r", b"\n")

    def flush(self) -> bytes:
        held, self._held = self._held, b""
        return _CONTROL_SEQ.sub(b"", held)


def _copy_winsize(src: int, dst: int) -> None:
    with contextlib.suppress(OSError):
        size = fcntl.ioctl(src, termios.TIOCGWINSZ, b"\0" * 8)
        fcntl.ioctl(dst, termios.TIOCSWINSZ, size)


def _write_all(fd: int, data: bytes) -> None:
    while data:
        try:
            written = os.write(fd, data)
        except InterruptedError:
            continue
        except BlockingIOError:
            select.select([], [fd], [])
            continue
        data = data[written:]


def read_environment(path: str) -> dict[str, str]:
    """The caller's environment from the file ``execute_plan`` wrote (``NAME=value\\0``
    entries), deleted as soon as it is open: its values never reach disk for longer,
    nor any command line. Only a regular file of ours, never through a symlink."""
    env: dict[str, str] = {}
    for entry in read_environment_bytes(path).split(b"\0"):
        key, sep, value = entry.partition(b"=")
        if sep and key:
            env[os.fsdecode(key)] = os.fsdecode(value)
    return env


def read_environment_bytes(path: str) -> bytes:
    """A file ``execute_plan`` wrote for one reader (an environment, the proxy's
    config), deleted as soon as it is open; only a regular file of ours."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        os.unlink(path)
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode) or info.st_uid != os.geteuid():
            raise OSError(errno.EPERM, "not a regular file of this user", path)
        chunks = []
        size = 0
        while chunk := os.read(fd, 1 << 20):
            size += len(chunk)
            if size > _MAX_ENV_BYTES:
                raise OSError(errno.EFBIG, "environment file too large", path)
            chunks.append(chunk)
    finally:
        os.close(fd)
    return b"".join(chunks)


def worker_environment(caller: dict[str, str]) -> dict[str, str]:
    """Exactly the caller's environment, plus what tmux set for this pane."""
    env = {k: v for k, v in caller.items() if k not in _DROP_ENV}
    for name in _PANE_ENV:
        if name in os.environ:
            env[name] = os.environ[name]
    return env


# After --timeout: SIGTERM to the agent's process group, SIGKILL this much later.
_KILL_GRACE_S = 5.0
EXIT_TIMEOUT = 124


class TimedOut(Exception):
    """The agent ran past its --timeout and was stopped (its whole process group)."""


def _stop_group(pid: int) -> None:
    """SIGTERM the agent's process group (pty.fork made it a session leader), then
    SIGKILL whatever is left after a grace period."""
    with contextlib.suppress(OSError):
        os.killpg(pid, signal.SIGTERM)
    deadline = time.monotonic() + _KILL_GRACE_S
    while time.monotonic() < deadline:
        done, _ = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        time.sleep(0.05)
    with contextlib.suppress(OSError):
        os.killpg(pid, signal.SIGKILL)


def run_in_pty(
    argv: Sequence[str],
    transcript_path: str,
    env: dict[str, str] | None = None,
    timeout: float | None = None,
) -> int:
    """Run ``argv`` on a new pty; tee its output to stdout and the transcript. Past
    ``timeout`` seconds its process group is stopped and ``TimedOut`` raised."""
    if env is None:
        env = {k: v for k, v in os.environ.items() if k not in _DROP_ENV}
    pid, master = pty.fork()
    if pid == 0:  # pragma: no cover - the child execs or exits
        try:
            os.execvpe(argv[0], list(argv), env)  # noqa: S606 - argv is ours, no shell
        except OSError as exc:
            os.write(2, f"kodelyth-ecc runner: cannot start {argv[0]}: {exc}\n".encode())
        os._exit(127)

    stdin_tty = os.isatty(0)
    saved_attrs = None
    if stdin_tty:
        _copy_winsize(0, master)
        signal.signal(signal.SIGWINCH, lambda *_: _copy_winsize(0, master))
        with contextlib.suppress(termios.error):
            saved_attrs = termios.tcgetattr(0)
            tty.setraw(0)
    titles = TitleFilter()
    plain = ControlFilter()
    status: int | None = None  # the agent's wait status, once it has exited
    drain_until = 0.0
    deadline = None if timeout is None else time.monotonic() + timeout
    timed_out = False
    try:
        with open(transcript_path, "ab", buffering=0) as transcript:
            inputs = [master, 0] if stdin_tty else [master]
            while True:
                try:
                    ready, _, _ = select.select(inputs, [], [], _POLL_S)
                except InterruptedError:
                    continue
                if status is None and deadline is not None and time.monotonic() > deadline:
                    timed_out = True
                    _stop_group(pid)
                    break
                if status is not None and (master not in ready or time.monotonic() > drain_until):
                    # The agent exited and its output is read, but a process it left
                    # behind still holds the terminal: the worker is done all the same.
                    break
                if master in ready:
                    try:
                        data = os.read(master, 65536)
                    except OSError as exc:
                        if exc.errno == errno.EIO:  # the child side closed
                            break
                        raise
                    if not data:
                        break
                    transcript.write(plain.feed(data))
                    _write_all(1, titles.feed(data))
                if 0 in ready:
                    data = os.read(0, 4096)
                    if data:
                        _write_all(master, data)
                    else:
                        inputs.remove(0)
                if status is None:
                    done, wait_status = os.waitpid(pid, os.WNOHANG)
                    if done:
                        status = wait_status
                        drain_until = time.monotonic() + _DRAIN_S
                        if 0 in inputs:
                            inputs.remove(0)
            _write_all(1, titles.flush())
            transcript.write(plain.flush())
    except BaseException:
        # Interrupted (the pane closed): the agent goes first, whole, before whoever
        # called us looks at what it left (a sandboxed worker's commits).
        if status is None and not timed_out:
            _stop_group(pid)
        raise
    finally:
        if saved_attrs is not None:
            with contextlib.suppress(termios.error, OSError):  # a hung-up terminal
                termios.tcsetattr(0, termios.TCSAFLUSH, saved_attrs)
        os.close(master)
    if timed_out:
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, 0)
        raise TimedOut
    if status is None:
        _, status = os.waitpid(pid, 0)
    code = os.waitstatus_to_exitcode(status)
    return 128 - code if code < 0 else code


_OPTIONS = (
    "--sandbox",
    "--path-prepend",
    "--proxy",
    "--proxy-env",
    "--offline-key",
    "--name",
    "--status-file",
    "--transcript",
    "--gate",
    "--branch",
    "--worktree",
    "--cwd",
    "--env-file",
    "--harness",
    "--handoff",
    "--timeout",
    "--cli",
    "--model",
    "--verify",
    "--verify-timeout",
)


def _parse(argv: Sequence[str]) -> tuple[dict[str, str], list[str]]:
    """``--opt value`` pairs, then ``--`` and the command. No argparse: it would add to the
    start-up of every pane, and these arguments are written by ``execute_plan`` only."""
    options: dict[str, str] = {}
    rest = list(argv)
    while rest and rest[0] != "--":
        if rest[0] not in _OPTIONS or len(rest) < 2:
            raise SystemExit(f"kodelyth-ecc runner: unexpected argument {rest[0]!r}")
        options[rest[0][2:]] = rest[1]
        del rest[:2]
    command = rest[1:]
    missing = [o for o in ("name", "status-file", "transcript") if o not in options]
    if missing or not command:
        raise SystemExit(f"kodelyth-ecc runner: missing {', '.join(missing) or 'command'}")
    return options, command


# Control characters an answer never needs (tab and newline stay).
_ANSWER_CONTROLS = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]|\x1b\[[0-?]*[ -/]*[@-~]")
_MAX_RESULT_READ = 64 * 1024 * 1024


def _take_result(
    options: dict[str, str], record: StatusRecord, code: int, *, timed_out: bool = False
) -> None:
    """The agent's final answer into the handoff (under the template) and its usage into
    the status, read from its structured output in the transcript."""
    from kodelyth_ecc.harnesses import read_result

    try:
        with open(options["transcript"], "rb") as fh:
            size = os.fstat(fh.fileno()).st_size
            fh.seek(max(0, size - _MAX_RESULT_READ))
            text = fh.read().decode("utf-8", errors="replace")
    except OSError:
        return
    result = read_result(options["harness"], text, options.get("cli"), options.get("model"))
    if result is None:
        return
    record.usage = result.usage
    reason = result.reason or (_last_words(text) if code != 0 else None)
    if reason and code != 0 and not record.reason:
        record.reason = _ANSWER_CONTROLS.sub("", reason)[:200]
    if result.answer and options.get("handoff") and not timed_out:
        answer = _ANSWER_CONTROLS.sub("", result.answer.replace("\r\n", "\n")).strip("\n")
        with open(options["handoff"], "a", encoding="utf-8") as fh:
            fh.write("\n" + answer + "\n")


def _last_words(text: str) -> str | None:
    """The last line an agent printed that is not one of its structured events: what a
    CLI says when it fails outside its event stream ("database is locked")."""
    for raw in reversed(text[-65536:].split("\n")):
        line = raw.strip()
        if line and not line.startswith("{") and not line.startswith("[kodelyth-ecc]"):
            return line
    return None


# harnesses.OFFLINE_KEY, spelled here: the runner does not import harnesses before its
# agent starts (tests/test_proxy.py checks they are the same).
OFFLINE_KEY = "kodelyth-offline-replay"


class ProxyPlace:
    """Where this worker's model proxy listens: its loopback port and, for a sandboxed
    worker, its unix socket and the allowed-hosts socket (``proxy.json``)."""

    def __init__(self, port: int, socket: str | None, egress: str | None) -> None:
        self.port, self.socket, self.egress = port, socket, egress


def _point_at_proxy(options: dict[str, str], env: dict[str, str]) -> ProxyPlace:
    """Point the agent at its port of the session's model proxy: the variables its
    harness adapter names (``--proxy-env NAME=suffix,...``), ``KODELYTH_PROXY_URL``, and
    loopback exempt from any HTTP proxy the user has."""
    import json

    from kodelyth_ecc.sessiondir import read_file

    slug = os.path.basename(os.path.dirname(os.path.abspath(options["status-file"])))
    data = read_file(options["proxy"], 1 << 20)  # never through a symlink; capped
    state = json.loads(data or b"{}")
    port = (state.get("ports") or {}).get(slug)
    if not isinstance(port, int):
        raise OSError(errno.ENOENT, f"the session's proxy has no port for {slug}")
    sockets = state.get("sockets") or {}
    egress = state.get("egress")
    place = ProxyPlace(
        port,
        sockets.get(slug) if isinstance(sockets.get(slug), str) else None,
        egress if isinstance(egress, str) else None,
    )
    url = f"http://127.0.0.1:{port}"
    # [[NAME, [json, path], suffix], ...]: NAME becomes the URL (plus suffix), or, with a
    # path, the JSON document NAME holds gets the URL at that path (merged into the
    # user's own: opencode's OPENCODE_CONFIG_CONTENT).
    for name, path, suffix in json.loads(options.get("proxy-env") or "[]"):
        if not path:
            env[name] = url + suffix
            continue
        try:
            document = json.loads(env.get(name) or "{}")
        except ValueError:
            document = {}
        node = document if isinstance(document, dict) else {}
        top = node
        for key in path[:-1]:
            child = node.get(key)
            node[key] = child = child if isinstance(child, dict) else {}
            node = child
        node[path[-1]] = url + suffix
        env[name] = json.dumps(top)
    env["KODELYTH_PROXY_URL"] = url
    for name in ("NO_PROXY", "no_proxy"):
        kept = [h for h in env.get(name, "").split(",") if h.strip()]
        env[name] = ",".join([*kept, "127.0.0.1", "localhost"])
    keys = [k for k in options.get("offline-key", "").split(",") if k]
    if keys and not any(env.get(k) for k in keys):
        env[keys[0]] = OFFLINE_KEY
    return place


def _take_divergence(options: dict[str, str], record: StatusRecord) -> None:
    """Where the proxy saw this worker part from its recording; under the ``stop``
    policy the worker failed for that reason, whatever its CLI's exit code says."""
    import json

    from kodelyth_ecc.errors import KodelythError
    from kodelyth_ecc.sessiondir import DIVERGENCE_FILE, read_file

    path = os.path.join(os.path.dirname(os.path.abspath(options["status-file"])), DIVERGENCE_FILE)
    try:
        data = read_file(path, 65536)
        found = json.loads(data) if data else None
    except (OSError, ValueError, KodelythError):  # an unsafe or damaged file says nothing
        return
    if not isinstance(found, dict) or not isinstance(found.get("turn"), int):
        return
    reason = str(found.get("reason") or "")[:200]
    record.divergence = _ANSWER_CONTROLS.sub("", f"turn {found['turn']}: {reason}")
    if found.get("policy") == "stop":
        record.state = "failed"
        record.reason = f"diverged at turn {found['turn']}"


# A --verify check may run this long unless --verify-timeout says; the status keeps the
# last lines of its output.
VERIFY_TIMEOUT_S = 600.0
_VERIFY_TAIL_LINES = 40
_VERIFY_TAIL_BYTES = 4096
_VERIFY_HELD_BYTES = 64 * 1024


def run_verify(
    command: str,
    cwd: str,
    env: dict[str, str] | None,
    timeout: float = VERIFY_TIMEOUT_S,
    wrapper: Sequence[str] = (),
) -> dict[str, object]:
    """Run the user's ``--verify`` check in the worktree (inside the worker's sandbox:
    ``wrapper`` is its bwrap command line up to ``--``), its output shown in the pane;
    the ``verify.json`` object. Past ``timeout`` its process group is stopped."""
    import subprocess

    start = time.monotonic()
    held = b""
    code: int | None = None
    timed_out = False
    # A hangup (the pane closed) while the check is being started would interrupt
    # Popen after the fork, with no process to stop: it waits until ``proc`` is known.
    stopping = {signal.SIGHUP, signal.SIGTERM, signal.SIGINT}
    signal.pthread_sigmask(signal.SIG_BLOCK, stopping)
    try:
        proc = subprocess.Popen(
            [*wrapper, "/bin/sh", "-c", command],
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            # The check itself starts with nothing blocked.
            preexec_fn=lambda: signal.pthread_sigmask(signal.SIG_UNBLOCK, stopping),  # noqa: PLW1509
        )
    except OSError as exc:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, stopping)
        held = f"cannot start /bin/sh: {exc.strerror}".encode()
    else:
        try:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, stopping)
        except BaseException:  # a hangup that came meanwhile, now delivered
            _stop_verify(proc)
            raise
        assert proc.stdout is not None
        try:
            held, timed_out = _read_verify_output(proc, start + timeout)
        except BaseException:
            _stop_verify(proc)
            raise
        finally:
            proc.stdout.close()
        if timed_out:
            _stop_verify(proc)
        else:
            code = proc.wait()
            code = 128 - code if code < 0 else code
    plain = _CONTROL_SEQ.sub(b"", held.replace(b"\r\n", b"\n")).decode("utf-8", "replace")
    tail = "\n".join(plain.rstrip("\n").split("\n")[-_VERIFY_TAIL_LINES:])
    tail = tail.encode("utf-8")[-_VERIFY_TAIL_BYTES:].decode("utf-8", "ignore")
    return {
        "command": command,
        "exit_code": code,
        "passed": code == 0,
        "timed_out": timed_out,
        "duration_s": round(time.monotonic() - start, 3),
        "output_tail": tail,
        "sandboxed": bool(wrapper),
    }


def _read_verify_output(proc: subprocess.Popen[bytes], deadline: float) -> tuple[bytes, bool]:
    """Copy the check's output to the pane until it exits (and a process it left behind
    has had a moment to finish writing) or the deadline passes: (its tail, timed out)."""
    assert proc.stdout is not None
    fd = proc.stdout.fileno()
    held = b""
    drain_until: float | None = None
    while True:
        now = time.monotonic()
        if now > deadline:
            return held, True
        if drain_until is None and proc.poll() is not None:
            drain_until = now + _DRAIN_S
        if drain_until is not None and now > drain_until:
            return held, False
        try:
            ready, _, _ = select.select([fd], [], [], min(_POLL_S, max(0.0, deadline - now)))
        except InterruptedError:
            continue
        if not ready:
            continue
        data = os.read(fd, 65536)
        if not data:
            if proc.poll() is None:
                # Output closed, the check still running: wait for it (bounded).
                try:
                    proc.wait(max(0.0, deadline - time.monotonic()))
                except Exception:  # subprocess.TimeoutExpired
                    return held, True
            return held, False
        _write_all(1, data)
        held = (held + data)[-_VERIFY_HELD_BYTES:]


def _stop_verify(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM the check's process group, SIGKILL it after the grace period."""
    with contextlib.suppress(OSError):
        os.killpg(proc.pid, signal.SIGTERM)
    with contextlib.suppress(Exception):  # subprocess.TimeoutExpired
        proc.wait(_KILL_GRACE_S)
    with contextlib.suppress(OSError):
        os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(Exception):
        proc.wait(_KILL_GRACE_S)


def verify_summary(found: dict[str, object]) -> str:
    """The status bullet: "passed (exit 0, 1.2s): pytest -q"."""
    command = " ".join(str(found.get("command") or "").split())
    shown = command if len(command) <= 120 else command[:119] + "\u2026"
    duration = found.get("duration_s")
    took = f"{duration:.1f}s" if isinstance(duration, (int, float)) else "?"
    if found.get("timed_out"):
        return f"timed out after {took}: {shown}"
    code = found.get("exit_code")
    if code is None:
        return f"could not run: {shown}"
    return f"{'passed' if code == 0 else 'failed'} (exit {code}, {took}): {shown}"


def _take_verify(
    options: dict[str, str],
    env: dict[str, str] | None,
    wrapper: Sequence[str],
    record: StatusRecord,
) -> None:
    """Run the --verify check and keep its outcome: ``verify.json`` beside the status,
    and the Verify bullet."""
    import json

    from kodelyth_ecc.sessiondir import VERIFY_FILE

    command = options["verify"]
    timeout = float(options.get("verify-timeout") or VERIFY_TIMEOUT_S)
    print(f"\n[kodelyth-ecc] verify: {command}", flush=True)
    # A closed pane (SIGHUP) stops the check with the runner: it is in a session of its own.
    signal.signal(signal.SIGHUP, signal.default_int_handler)
    found = run_verify(command, os.getcwd(), env, timeout, wrapper)
    found["at"] = _utc_now()
    path = os.path.join(os.path.dirname(os.path.abspath(options["status-file"])), VERIFY_FILE)
    atomic_write_text(path, json.dumps(found, ensure_ascii=False, sort_keys=True) + "\n")
    record.verify = verify_summary(found)
    print(f"[kodelyth-ecc] verify {record.verify}", flush=True)


def _enter_sandbox(
    options: dict[str, str],
    command: list[str],
    place: ProxyPlace | None,
    record: StatusRecord,
) -> tuple[WorkerSandbox, Prepared] | None:
    """The worker's sandbox made ready (its private git state, the bwrap command line
    around ``command``), or None after saying why in the status. A closed pane then
    stops the agent and still brings its commits back (SIGHUP and SIGTERM interrupt)."""
    from kodelyth_ecc.errors import KodelythError
    from kodelyth_ecc.sandbox import WorkerSandbox, prepare

    try:
        ws = WorkerSandbox.from_argument(options["sandbox"])
        if place is not None and place.socket is None:
            raise OSError(errno.ENOENT, "the session's proxy has no unix socket for it")
        prepared = prepare(
            ws,
            command,
            proxy=(place.port, place.socket) if place is not None and place.socket else None,
            egress=place.egress if place is not None and ws.egress else None,
        )
    except (OSError, ValueError, TypeError, KodelythError) as exc:
        why = exc.message if isinstance(exc, KodelythError) else str(exc)
        record.state, record.finished, record.exit_code = "failed", _utc_now(), 1
        record.reason = f"sandbox: {why}"[:200]
        atomic_write_text(options["status-file"], render_status(record))
        print(f"kodelyth-ecc runner: cannot prepare the sandbox: {why}", file=sys.stderr)
        return None

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    for sig in (signal.SIGHUP, signal.SIGTERM):
        signal.signal(sig, interrupt)
    return ws, prepared


def _wait_for_launch(channel: str, env: dict[str, str]) -> bool:
    """Block on the tmux channel that ``execute_plan`` signals once every pane exists."""
    try:
        argv = ["tmux", "wait-for", channel]
        # The caller's PATH finds the tmux it ran.
        return os.spawnvpe(os.P_WAIT, "tmux", argv, env) == 0  # noqa: S606 - fixed argv
    except OSError:
        return False


def main(argv: Sequence[str] | None = None) -> int:
    options, command = _parse(sys.argv[1:] if argv is None else argv)
    name = options["name"]
    record = StatusRecord(name=name, branch=options.get("branch"), worktree=options.get("worktree"))
    env = None
    if "env-file" in options:
        try:
            env = worker_environment(read_environment(options["env-file"]))
        except OSError as exc:
            # The path only: never a value of the environment.
            print(
                f"kodelyth-ecc runner: cannot read the environment file: {exc.strerror}",
                file=sys.stderr,
            )
            return 1
    gate = options.get("gate")
    if gate and not _wait_for_launch(gate, env if env is not None else dict(os.environ)):
        print(f"kodelyth-ecc runner: launch signal {gate!r} failed", file=sys.stderr)
        return 1
    if "path-prepend" in options:
        env = env if env is not None else dict(os.environ)
        env["PATH"] = options["path-prepend"] + os.pathsep + env.get("PATH", os.defpath)
    place = None
    if "proxy" in options:
        env = env if env is not None else dict(os.environ)
        from kodelyth_ecc.errors import KodelythError

        try:
            place = _point_at_proxy(options, env)
        except (OSError, ValueError, AttributeError, KodelythError) as exc:
            print(f"kodelyth-ecc runner: cannot reach the session's proxy: {exc}", file=sys.stderr)
            return 1
    if "cwd" in options:
        os.chdir(options["cwd"])
    sandboxed = None
    if "sandbox" in options:
        sandboxed = _enter_sandbox(options, command, place, record)
        if sandboxed is None:
            return 1
        command = list(sandboxed[1].argv)
        from kodelyth_ecc.sandbox import sandbox_environment

        env = sandbox_environment(env if env is not None else dict(os.environ), options)
    record.state = "running"
    record.started = _utc_now()
    atomic_write_text(options["status-file"], render_status(record))
    start = time.monotonic()
    timeout = float(options["timeout"]) if options.get("timeout") else None
    try:
        try:
            code = run_in_pty(command, options["transcript"], env, timeout)
        except TimedOut:
            code = EXIT_TIMEOUT
            record.reason = "timeout"
        except OSError as exc:
            print(f"kodelyth-ecc runner: {exc}", file=sys.stderr)
            code = 127
        except KeyboardInterrupt:  # the pane was closed (SIGHUP) or the runner stopped
            code = 130
            record.reason = "stopped"
        record.duration_s = time.monotonic() - start
        if options.get("verify") and record.reason != "stopped":
            # The check sees what the agent left: the worktree and, sandboxed, its
            # commits (still in its private state until they are brought back).
            wrapper = sandboxed[1].wrapper if sandboxed is not None else ()
            try:
                _take_verify(options, env, wrapper, record)
            except KeyboardInterrupt:
                code, record.reason = code or 130, "stopped"
            except OSError as exc:
                print(f"kodelyth-ecc runner: verify: {exc}", file=sys.stderr)
    finally:
        if sandboxed is not None:
            from kodelyth_ecc.sandbox import bring_back

            # Nothing interrupts the commits' way back (a second SIGHUP would strand
            # them in the worker's private state).
            for sig in (signal.SIGHUP, signal.SIGTERM, signal.SIGINT):
                signal.signal(sig, signal.SIG_IGN)
            note = bring_back(*sandboxed)
            if note is not None:
                record.reason = note[:200]
                code = code or 1
    if record.duration_s is None:
        record.duration_s = time.monotonic() - start
    if options.get("harness"):
        _take_result(options, record, code, timed_out=record.reason == "timeout")
    record.finished = _utc_now()
    record.exit_code = code
    record.state = "completed" if code == 0 else "failed"
    if "proxy" in options:
        _take_divergence(options, record)
    atomic_write_text(options["status-file"], render_status(record))
    print(
        f"\n[kodelyth-ecc] {name}: {record.state} (exit {code}) in {record.duration_s:.1f}s",
        flush=True,
    )
    return code
