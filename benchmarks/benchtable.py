"""What the benchmark scripts share: the figures table they print (one row a
measure, with its ratio against a floor and the target it must meet), the summary
around it, the isolated sandbox they run in, and SIGTERM/SIGHUP handling so their
temp trees are always removed."""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Protocol, TypeVar

_STARTED = time.monotonic()
# How often ``Sandbox.kill_tmux`` looks whether the dying server's socket is gone.
_SOCKET_POLL_S = 0.005


@dataclass
class Row:
    label: str
    # Seconds (shown in milliseconds), or a value already formatted (a size, say).
    value: float | str | None = None
    note: str = ""
    ratio: float | None = None
    target: float | None = None
    indent: int = 0

    @property
    def passed(self) -> bool | None:
        if self.ratio is None or self.target is None:
            return None
        return self.ratio <= self.target


@dataclass
class Report:
    value_title: str = "median"
    rows: list[Row] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def add(self, row: Row) -> Row:
        self.rows.append(row)
        return row

    def heading(self, text: str) -> None:
        self.rows.append(Row(text))

    def render(self) -> str:
        width = max(len("  " * r.indent + r.label) for r in self.rows) + 2
        head = (
            f"{'measure':<{width}}{self.value_title:>10}  {'ratio':>7}  {'target':>8}  result  note"
        )
        lines = [head, "-" * len(head)]
        for r in self.rows:
            label = "  " * r.indent + r.label
            if r.value in (None, "") and r.ratio is None and not r.note:
                lines.append(label)
                continue
            value = f"{r.value * 1000:8.1f}ms" if isinstance(r.value, float) else r.value or ""
            ratio = f"{r.ratio:6.2f}x" if r.ratio is not None else ""
            target = f"<={r.target:.1f}x" if r.target is not None else ""
            verdict = {True: "PASS", False: "FAIL", None: ""}[r.passed]
            line = f"{label:<{width}}{value:>10}  {ratio:>7}  {target:>8}  {verdict:<6}  {r.note}"
            lines.append(line.rstrip())
        return "\n".join(lines)

    @property
    def missed(self) -> list[Row]:
        return [r for r in self.rows if r.passed is False]


@contextlib.contextmanager
def terminate_gracefully() -> Iterator[None]:
    """SIGTERM/SIGHUP unwind like Ctrl-C, so the sandbox is cleaned up."""

    def handler(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    previous = {s: signal.signal(s, handler) for s in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


class BenchError(Exception):
    """Something in the benchmark itself failed; reported without a traceback."""


def progress(text: str = "") -> None:
    """Progress goes to stderr, stamped with the time so far; the figures go to stdout."""
    print(f"[{time.monotonic() - _STARTED:6.1f}s] {text}", file=sys.stderr, flush=True)


def run(
    argv: Sequence[str], *, cwd: Path, env: dict[str, str], check: bool = True
) -> subprocess.CompletedProcess[str]:
    """Run ``argv`` to completion, output captured; a failure is a ``BenchError``."""
    result = subprocess.run(
        list(argv), cwd=cwd, env=env, capture_output=True, text=True, check=False
    )
    if check and result.returncode != 0:
        raise BenchError(
            f"`{' '.join(argv[:4])}` failed (exit {result.returncode}): "
            f"{(result.stderr or result.stdout).strip()[-800:]}"
        )
    return result


def tool_version(program: str) -> str:
    """``program``'s version, for the machine line: the figures depend on it."""
    try:
        flag = "-V" if program == "tmux" else "--version"
        out = subprocess.run([program, flag], capture_output=True, text=True, check=False).stdout
        return out.split()[-1] if out.split() else "?"
    except OSError:
        return "missing"


def versions(*programs: str) -> str:
    """``Python 3.11.2, git 2.39.2, ...``: the Python and ``programs`` the figures were
    taken with."""
    return ", ".join(
        [f"Python {platform.python_version()}", *(f"{p} {tool_version(p)}" for p in programs)]
    )


def print_machine(machine: str, load_before: float) -> None:
    """The machine line above the table, with the load average at start and end, and a
    warning if the machine was busy: its figures are not comparable with an idle one's."""
    load_after = os.getloadavg()[0]
    print()
    print(f"{machine}; load average {load_before:.2f} at start, {load_after:.2f} at end")
    if load_before > 0.5:
        print(
            "warning: the machine was busy before the benchmark started; "
            "figures are noisier and slower than on an idle machine"
        )


def print_report(report: Report) -> None:
    """The table, then its notes indented under it."""
    print(report.render())
    for note in report.notes:
        print(f"  {note}")


def print_missed(report: Report) -> bool:
    """The ``missed:`` line naming every target missed, if any; whether one was (``--check``
    exits 1 then)."""
    missed = report.missed
    if missed:
        print(
            "\nmissed: " + "; ".join(f"{r.label} ({r.ratio:.2f}x > {r.target:g}x)" for r in missed)
        )
    return bool(missed)


def add_keep_check(parser: argparse.ArgumentParser) -> None:
    """The ``--keep`` and ``--check`` options, as the benchmarks take them."""
    parser.add_argument("--keep", action="store_true", help="keep the temp dir for inspection")
    parser.add_argument(
        "--check", action="store_true", help="exit 1 if a target is missed (for CI)"
    )


def missing_programs(name: str, programs: Sequence[str] = ("git", "tmux")) -> bool:
    """Whether one of ``programs`` is not on PATH; said on stderr (``name: ...``), and
    the benchmark then exits 2."""
    for program in programs:
        if shutil.which(program) is None:
            print(f"{name}: {program} is not on PATH", file=sys.stderr)
            return True
    return False


class _Closable(Protocol):
    def close(self) -> None: ...


_S = TypeVar("_S", bound=_Closable)


def run_in_sandbox(name: str, make_sandbox: Callable[[], _S], body: Callable[[_S], None]) -> int:
    """Run ``body`` in a new sandbox, removed afterwards even on Ctrl-C, SIGTERM or SIGHUP.
    A ``BenchError`` or an interruption is one line on stderr and exit status 2 or 130,
    not a traceback; 0 if ``body`` returns."""
    with terminate_gracefully():
        sandbox = make_sandbox()
        try:
            body(sandbox)
        except BenchError as exc:
            print(f"{name}: {exc}", file=sys.stderr)
            return 2
        except KeyboardInterrupt:
            print(f"{name}: interrupted; cleaning up", file=sys.stderr)
            return 130
        finally:
            sandbox.close()
    return 0


class Sandbox:
    """Private HOME, tmux server and temp tree, and the caller's environment without
    ``TMUX``/``GIT_*``, so a run neither reads the user's config nor touches their tmux;
    everything goes away in ``close``."""

    def __init__(
        self,
        keep: bool = False,
        tmpdir: str | None = None,
        *,
        prefix: str = "kodelyth-bench-",
        drop: Iterable[str] = (),
        drop_prefixes: tuple[str, ...] = (),
        extra_env: Mapping[str, str] | None = None,
    ) -> None:
        """``drop`` and ``drop_prefixes`` name more of the caller's variables to leave
        out; ``extra_env`` is set on top of the sandbox's own."""
        self.keep = keep
        self.root = Path(tempfile.mkdtemp(prefix=prefix, dir=tmpdir))
        # Unix socket paths are limited to 108 bytes: keep the tmux dir short.
        self.tmux_dir = Path(tempfile.mkdtemp(prefix="kb-", dir="/tmp"))
        self.socket = str(self.tmux_dir / f"tmux-{os.getuid()}" / "default")
        # `tmux -S` does not create the socket's directory (a plain `tmux` under
        # TMUX_TMPDIR does); make it as tmux would, private to us.
        os.makedirs(os.path.dirname(self.socket), mode=0o700, exist_ok=True)
        self.home = self.root / "home"
        self.home.mkdir()
        self.inherited_no_bytecode = bool(os.environ.get("PYTHONDONTWRITEBYTECODE"))
        dropped = {"TMUX", "TMUX_PANE", "BASH_ENV", "ENV", "PYTHONDONTWRITEBYTECODE", *drop}
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("GIT_", *drop_prefixes)) and k not in dropped
        }
        env.update(
            HOME=str(self.home),
            TMUX_TMPDIR=str(self.tmux_dir),
            SHELL="/bin/sh",
            LC_ALL="C.UTF-8",
            GIT_CONFIG_NOSYSTEM="1",
            GIT_AUTHOR_NAME="Bench Author",
            GIT_AUTHOR_EMAIL="author@example.invalid",
            GIT_COMMITTER_NAME="Bench Committer",
            GIT_COMMITTER_EMAIL="committer@example.invalid",
            PYTHONPYCACHEPREFIX=str(self.root / "pycache"),
        )
        env.update(extra_env or {})
        self.env = env
        self.procs: list[subprocess.Popen[bytes]] = []

    def activate(self) -> None:
        """Make this process use the sandbox too (``collect_status`` calls tmux)."""
        os.environ.clear()
        os.environ.update(self.env)

    def tmux(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            ["tmux", "-S", self.socket, *args],
            env=self.env,
            capture_output=True,
            text=True,
            check=False,
        )
        if check and result.returncode != 0:
            raise BenchError(f"tmux {' '.join(args[:3])} failed: {result.stderr.strip()}")
        return result

    def kill_tmux(self) -> None:
        self.tmux("kill-server", check=False)
        # The dying server unlinks its socket on the way out; a server started before
        # that would lose its socket to it. Wait (bounded) until it is gone.
        deadline = time.monotonic() + 5
        while os.path.exists(self.socket) and time.monotonic() < deadline:
            time.sleep(_SOCKET_POLL_S)

    def close(self) -> None:
        # Cleaning up must not itself be interrupted half-way.
        for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(signum, signal.SIG_IGN)
        # Each leads its own process group (start_new_session): kill the group of any still
        # running (not yet reaped, so its id is still ours), so nothing it started can write
        # into the tree after it is removed.
        for proc in self.procs:
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(proc.pid, signal.SIGKILL)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(timeout=5)
        self.kill_tmux()
        if self.keep:
            print(f"kept {self.root} (tmux dir {self.tmux_dir})", file=sys.stderr)
            return
        shutil.rmtree(self.root, ignore_errors=True)
        shutil.rmtree(self.tmux_dir, ignore_errors=True)
