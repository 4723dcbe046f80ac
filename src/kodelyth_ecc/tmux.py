"""The tmux calls a swarm makes. Sessions are always addressed as ``=name`` (exact
match: tmux would otherwise accept a prefix of another session's name)."""

from __future__ import annotations

import os
from collections.abc import Sequence

from kodelyth_ecc.errors import KodelythError
from kodelyth_ecc.process import CmdResult, cmd_output, which
from kodelyth_ecc.records import Record


class PaneState(Record):
    pane_id: str
    dead: bool
    dead_status: int | None


def available() -> bool:
    return which("tmux") is not None


def require() -> None:
    if not available():
        raise KodelythError(
            "tmux was not found on PATH: install it (e.g. `apt-get install tmux`) to run --execute"
        )


def _escape(arg: str) -> str:
    # tmux splits a command sequence at an argument ending in ';' unless escaped.
    return arg[:-1] + "\\;" if arg.endswith(";") else arg


def run_sequence(commands: Sequence[Sequence[str]]) -> CmdResult:
    """Run several tmux commands in one client call (``a ; b ; c``)."""
    argv: list[str] = ["tmux"]
    for index, command in enumerate(commands):
        if index:
            argv.append(";")
        argv.extend(_escape(a) for a in command)
    return cmd_output(*argv)


def _server_socket() -> str:
    """Where the default server listens (what a plain `tmux` client connects to)."""
    attached = os.environ.get("TMUX")
    if attached:
        return attached.split(",", 1)[0]
    base = os.environ.get("TMUX_TMPDIR") or "/tmp"
    return os.path.join(base, f"tmux-{os.getuid()}", "default")


def has_session(name: str) -> bool:
    # No socket, no server, no session: skip spawning a client (a dry-run asks this).
    if not os.path.exists(_server_socket()) or not available():
        return False
    return cmd_output("tmux", "has-session", "-t", f"={name}", check=False).returncode == 0


def kill_session(name: str) -> bool:
    if not has_session(name):
        return False
    cmd_output("tmux", "kill-session", "-t", f"={name}")
    return True


def panes(session: str) -> dict[str, PaneState] | None:
    """The session's panes, or None when tmux is missing or the session is gone."""
    if not available():
        return None
    result = cmd_output(
        "tmux",
        "list-panes",
        "-s",
        "-t",
        f"={session}",
        "-F",
        "#{pane_id}\t#{pane_dead}\t#{pane_dead_status}",
        check=False,
    )
    if result.returncode != 0:
        return None
    found: dict[str, PaneState] = {}
    for line in result.stdout.splitlines():
        parts = line.split("\t")
        if len(parts) != 3:
            continue
        pane_id, dead, status = parts
        found[pane_id] = PaneState(
            pane_id, dead == "1", int(status) if status.lstrip("-").isdigit() else None
        )
    return found
