"""Test helpers: polling, running the CLI for real, and tools that fail on cue."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")

DEFAULT_TIMEOUT = 20.0


def retry_until(
    predicate: Callable[[], T | bool | None],
    timeout: float = DEFAULT_TIMEOUT,
    interval: float = 0.05,
    message: str = "condition",
) -> T:
    """Poll ``predicate`` until it returns something truthy, or fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value  # type: ignore[return-value]
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {message}")
        time.sleep(interval)


@dataclass(frozen=True)
class Result:
    code: int
    stdout: str
    stderr: str

    def __str__(self) -> str:
        return f"exit {self.code}\n--- stdout\n{self.stdout}\n--- stderr\n{self.stderr}"


def run_cli(
    *args: str,
    cwd: str | os.PathLike[str],
    env: Mapping[str, str] | None = None,
    timeout: float = 120,
) -> Result:
    """Run ``python -m kodelyth_ecc`` as a real process, as a user would."""
    proc = subprocess.run(
        [sys.executable, "-m", "kodelyth_ecc", *args],
        cwd=cwd,
        env=dict(env) if env is not None else None,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    return Result(proc.returncode, proc.stdout, proc.stderr)


def run_cli_with_file_size_limit(limit: int, *args: str, cwd: str | os.PathLike[str]) -> Result:
    """The real CLI with RLIMIT_FSIZE: writing past ``limit`` bytes fails mid-write
    (EFBIG), as a full disk would (a read-only directory does not stop root)."""
    import resource

    def limit_writes() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    proc = subprocess.run(
        [sys.executable, "-m", "kodelyth_ecc", *args],
        cwd=cwd,
        env=dict(os.environ, PYTHONDONTWRITEBYTECODE="1"),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        preexec_fn=limit_writes,
    )
    return Result(proc.returncode, proc.stdout, proc.stderr)


def git(repo: str | os.PathLike[str], *args: str) -> str:
    return subprocess.run(
        ["git", *args], cwd=repo, capture_output=True, text=True, check=True
    ).stdout


def tmux(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["tmux", *args], capture_output=True, text=True, check=check)


def make_failing_tool(
    bin_dir: Path, tool: str, match: Sequence[str], nth: int = 1, stderr: str = "injected failure"
) -> Path:
    """Put a ``tool`` wrapper in ``bin_dir`` that fails on its ``nth`` call whose
    arguments start with ``match`` and passes every other call to the real tool."""
    real = subprocess.run(
        ["which", tool], capture_output=True, text=True, check=True
    ).stdout.strip()
    bin_dir.mkdir(parents=True, exist_ok=True)
    counter = bin_dir / f".{tool}-count"
    script = f"""#!/bin/sh
case " $* " in
  *" {" ".join(match)} "*)
    n=$(cat {shlex.quote(str(counter))} 2>/dev/null || echo 0)
    n=$((n + 1))
    echo "$n" > {shlex.quote(str(counter))}
    if [ "$n" -eq {nth} ]; then
      echo {shlex.quote(stderr)} >&2
      exit 3
    fi
    ;;
esac
exec {shlex.quote(real)} "$@"
"""
    path = bin_dir / tool
    path.write_text(script)
    path.chmod(0o755)
    return path
