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


# What a tmux client (and so a server it starts) is given of our environment. A server
# keeps the environment it was started with as its global environment for its whole life
# (`tmux show-environment -g`, /proc/<pid>/environ): never API keys. Workers get the
# caller's environment through their runner's private file instead (execute.py).
_CLIENT_ENV = frozenset(
    {
        "PATH", "HOME", "USER", "LOGNAME", "SHELL", "TERM", "LANG", "LANGUAGE", "TZ",
        "TMUX", "TMUX_TMPDIR", "TMPDIR", "XDG_RUNTIME_DIR", "COLORTERM",
    }
)  # fmt: skip


def client_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k in _CLIENT_ENV or k.startswith("LC_")}


def _tmux(*args: str, check: bool = True) -> CmdResult:
    return cmd_output("tmux", *args, check=check, env=client_env())


def available() -> bool:
    return which("tmux") is not None


def require() -> None:
    if not available():
        raise KodelythError(
            "tmux was not found on PATH: install it (e.g. `apt-get install tmux`) to run --execute"
        )


def literal(value: str) -> str:
    """``value`` as tmux reads a format-expanded argument (such as ``-c DIR``): a path
    holding ``#{...}`` or ``#(...)`` must not be expanded or run."""
    return value.replace("#", "##")


def _escape(arg: str) -> str:
    # tmux splits a command sequence at an argument ending in ';' unless escaped.
    return arg[:-1] + "\\;" if arg.endswith(";") else arg


# A tmux client sends its whole command line in one message of at most 16 KiB
# (MAX_IMSGSIZE) and refuses more with "command too long". Sequences are split over
# as few client calls as fit; a margin is left for the message's own header.
MAX_COMMAND_BYTES = 16_000


def _size(command: Sequence[str]) -> int:
    return sum(len(_escape(a).encode("utf-8", "surrogateescape")) + 1 for a in command) + 2


def run_sequence(commands: Sequence[Sequence[str]]) -> CmdResult:
    """Run several tmux commands in order, in as few client calls (``a ; b ; c``)
    as tmux accepts; the output of every call is joined in order."""
    batches: list[list[Sequence[str]]] = []
    budget = 0
    for command in commands:
        size = _size(command)
        if size > MAX_COMMAND_BYTES:
            raise KodelythError(
                f"a tmux {command[0]} command is too long ({size} bytes; tmux accepts about "
                f"{MAX_COMMAND_BYTES // 1000} KB): shorten the launcher command (e.g. move it "
                "into a script) or the paths"
            )
        if not batches or budget + size > MAX_COMMAND_BYTES:
            batches.append([])
            budget = 0
        batches[-1].append(command)
        budget += size
    stdout, stderr = [], []
    for batch in batches:
        argv: list[str] = ["tmux"]
        for index, command in enumerate(batch):
            if index:
                argv.append(";")
            argv.extend(_escape(a) for a in command)
        result = cmd_output(*argv, env=client_env())
        stdout.append(result.stdout)
        stderr.append(result.stderr)
    return CmdResult(0, "".join(stdout), "".join(stderr))


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
    return _tmux("has-session", "-t", f"={name}", check=False).returncode == 0


def kill_session(name: str) -> bool:
    if not has_session(name):
        return False
    _tmux("kill-session", "-t", f"={name}")
    return True


def panes(session: str) -> dict[str, PaneState] | None:
    """The session's panes, or None when tmux is missing or the session is gone."""
    if not available():
        return None
    result = _tmux(
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


def select_pane(pane_id: str) -> bool:
    """Make ``pane_id`` its window's active pane and that window its session's current
    one (what an attaching client then shows). False when the pane is gone."""
    result = _tmux("select-window", "-t", pane_id, ";", "select-pane", "-t", pane_id, check=False)
    return result.returncode == 0


def attach_argv(session: str) -> list[str]:
    """The tmux command that shows ``session`` on this terminal: inside tmux, switch this
    client to it (attaching there would nest tmux); else attach."""
    if os.environ.get("TMUX"):
        return ["tmux", "switch-client", "-t", f"={session}"]
    return ["tmux", "attach-session", "-t", f"={session}"]


def attach_env() -> dict[str, str]:
    """What the attaching client is given: ``client_env`` (a client's environment goes
    into the session's through update-environment: never API keys), and inside tmux the
    pane it runs in, by which switch-client finds its client."""
    env = client_env()
    pane = os.environ.get("TMUX_PANE")
    if env.get("TMUX") and pane:
        env["TMUX_PANE"] = pane
    return env
