"""The one place that runs external programs (git, tmux).

Errors carry the command, exit code, stdout and stderr. ``GIT_*`` variables that
would redirect git to another repository (as set inside a git hook) are scrubbed.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Mapping

from kodelyth_ecc.errors import CalledProcessError, KodelythError
from kodelyth_ecc.records import Record

# Variables a user may legitimately set for git; everything else GIT_* is dropped.
_GIT_KEEP = frozenset(
    {
        "GIT_EXEC_PATH",
        "GIT_SSH",
        "GIT_SSH_COMMAND",
        "GIT_SSL_CAINFO",
        "GIT_SSL_NO_VERIFY",
        "GIT_CONFIG_GLOBAL",
        "GIT_CONFIG_NOSYSTEM",
        "GIT_AUTHOR_NAME",
        "GIT_AUTHOR_EMAIL",
        "GIT_AUTHOR_DATE",
        "GIT_COMMITTER_NAME",
        "GIT_COMMITTER_EMAIL",
        "GIT_COMMITTER_DATE",
        "GIT_TERMINAL_PROMPT",
        "GIT_ASKPASS",
        "GIT_CEILING_DIRECTORIES",
    }
)

_INSTALL_HINTS = {
    "git": "install git (e.g. `apt-get install git`) and make sure it is on PATH",
    "tmux": "install tmux (e.g. `apt-get install tmux`) and make sure it is on PATH",
}


class CmdResult(Record):
    returncode: int
    stdout: str
    stderr: str


class CmdBytesResult(Record):
    """What ``cmd_output_bytes`` returns: stdout exactly as the program wrote it."""

    returncode: int
    stdout: bytes
    stderr: str


def which(program: str, path: str | None = None) -> str | None:
    """``shutil.which`` for a bare program name, without importing shutil (and its
    compression modules) on the start-up path."""
    for directory in (path if path is not None else os.environ.get("PATH", os.defpath)).split(
        os.pathsep
    ):
        candidate = os.path.join(directory or ".", program)
        if os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            return candidate
    return None


def scrubbed_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_") or k in _GIT_KEEP}
    if extra:
        env.update(extra)
    return env


def _run(
    cmd: tuple[str, ...],
    cwd: str | os.PathLike[str] | None,
    env: Mapping[str, str] | None,
    stdin: bytes | None,
    timeout: float | None = None,
) -> subprocess.CompletedProcess[bytes]:
    """The one ``subprocess.run``: bytes in and out, the scrubbed environment, and a
    missing program, a missing directory or a time-out as one line that says what to do."""
    try:
        return subprocess.run(
            list(cmd),
            cwd=cwd,
            env=dict(env) if env is not None else scrubbed_env(),
            input=stdin,
            capture_output=True,
            check=False,
            timeout=timeout,
        )
    except subprocess.TimeoutExpired:
        raise KodelythError(
            f"`{' '.join(cmd)[:200]}` did not answer within {timeout:g} s: check that "
            f"{cmd[0]} works on its own"
        ) from None
    except FileNotFoundError as exc:
        if cwd is not None and not os.path.isdir(cwd):
            raise KodelythError(f"directory {cwd} does not exist: check the path") from exc
        program = cmd[0]
        hint = _INSTALL_HINTS.get(program, f"install {program} or put it on PATH")
        raise KodelythError(f"{program} was not found: {hint}") from exc


def _text(data: bytes) -> str:
    # What ``text=True`` gave: universal newlines, bad bytes replaced.
    text = data.decode("utf-8", errors="replace")
    return text.replace("\r\n", "\n").replace("\r", "\n") if "\r" in text else text


def cmd_output(
    *cmd: str,
    cwd: str | os.PathLike[str] | None = None,
    check: bool = True,
    env: Mapping[str, str] | None = None,
    stdin: str | None = None,
    timeout: float | None = None,
) -> CmdResult:
    """Run ``cmd`` and capture its output as text; raise on failure when ``check``.
    ``stdin`` is given to it (None: ours is inherited); past ``timeout`` it is killed."""
    proc = _run(cmd, cwd, env, None if stdin is None else stdin.encode("utf-8"), timeout)
    result = CmdResult(proc.returncode, _text(proc.stdout), _text(proc.stderr))
    if check and proc.returncode != 0:
        raise CalledProcessError(cmd, proc.returncode, result.stdout, result.stderr)
    return result


def cmd_output_bytes(
    *cmd: str,
    cwd: str | os.PathLike[str] | None = None,
    check: bool = True,
    env: Mapping[str, str] | None = None,
    stdin: bytes | None = None,
    timeout: float | None = None,
) -> CmdBytesResult:
    """``cmd_output`` keeping stdout as bytes, exactly (patches, NUL-separated path
    lists): no newline translation, no replaced bytes. stderr is still text."""
    proc = _run(cmd, cwd, env, stdin, timeout)
    result = CmdBytesResult(proc.returncode, proc.stdout, _text(proc.stderr))
    if check and proc.returncode != 0:
        raise CalledProcessError(cmd, proc.returncode, _text(proc.stdout), result.stderr)
    return result
