"""Exceptions the CLI maps to exit codes, and the exit codes themselves.

Every error carries a one-line message that names the problem and the fix; the
CLI prints it without a traceback.
"""

from __future__ import annotations

from collections.abc import Sequence

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_WAIT_TIMEOUT = 124
EXIT_INTERRUPTED = 130


class KodelythError(Exception):
    """An expected failure: bad state on disk, a missing tool, a taken name."""

    exit_code = EXIT_FAILURE

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class UsageError(KodelythError):
    """A flag or value the user gave is wrong; fixing the command line fixes it."""

    exit_code = EXIT_USAGE


class SessionTaken(KodelythError):
    """The session's coordination dir appeared first (another run claimed the name)."""


# How much of a failed command an error message quotes: enough to recognise it.
MAX_SHOWN_COMMAND = 300


class CalledProcessError(KodelythError):
    """A git or tmux call failed; keeps everything needed to explain why."""

    def __init__(self, cmd: Sequence[str], returncode: int, stdout: str, stderr: str) -> None:
        self.cmd = tuple(cmd)
        self.returncode = returncode
        self.stdout = stdout
        self.stderr = stderr
        detail = (stderr.strip() or stdout.strip()).splitlines()
        reason = detail[-1] if detail else "no output"
        shown = " ".join(self.cmd)
        if len(shown) > MAX_SHOWN_COMMAND:  # a batch of tmux commands can run to 16 KB
            shown = shown[: MAX_SHOWN_COMMAND - 1] + "…"
        super().__init__(f"`{shown}` exited {returncode}: {reason}")
