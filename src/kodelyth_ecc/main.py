"""Command-line entry point: parses arguments and dispatches; the work lives in
``kodelyth_ecc.commands``. Command modules are imported only once chosen, so
``--help`` and ``--version`` stay fast."""

from __future__ import annotations

import argparse
import importlib
import os
import re
import sys
from collections.abc import Callable, Iterable, Sequence

from kodelyth_ecc import __version__
from kodelyth_ecc.errors import (
    EXIT_FAILURE,
    EXIT_INTERRUPTED,
    EXIT_USAGE,
    KodelythError,
    UsageError,
)

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, NoReturn, TypeAlias

    _Sub: TypeAlias = "argparse._SubParsersAction[_Parser]"

PROG = "kodelyth-ecc"


# The hidden command the shell completion scripts call for sessions and workers
# (commands/completion.py): answered before argparse, so it stays fast and quiet.
COMPLETE = "__complete"

_NEGATIVE_NUMBER = re.compile(r"-\d+$|-\d*\.\d+$")


def did_you_mean(word: str, candidates: Iterable[str], *, quote: bool = True) -> str:
    """``did you mean 'status'?`` for the candidate closest to ``word``, or ""."""
    import difflib

    close = difflib.get_close_matches(word, list(candidates), n=1)
    if not close:
        return ""
    return f"did you mean {close[0]!r}?" if quote else f"did you mean {close[0]}?"


def command_parser(
    parser: argparse.ArgumentParser, name: str | None
) -> argparse.ArgumentParser | None:
    """The parser of command ``name`` inside ``parser`` (None: not one of its commands)."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction) and name in action.choices:
            chosen: argparse.ArgumentParser = action.choices[name]
            return chosen
    return None


class _HelpFormatter(argparse.HelpFormatter):
    """argparse's formatter, but indented lines of a description or epilog (the
    examples) are kept as written; the prose around them is wrapped as usual."""

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        lines: list[str] = []
        prose: list[str] = []
        for line in (*text.splitlines(), None):
            if line is not None and line.strip() and not line[0].isspace():
                prose.append(line)
                continue
            if prose:
                lines.append(super()._fill_text(" ".join(prose), width, indent))
                prose = []
            if line is not None:
                lines.append(indent + line if line.strip() else "")
        return "\n".join(lines)


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line naming the fix: the command's own
    ``--help``, and the command or flag the user probably meant."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", _HelpFormatter)
        super().__init__(*args, **kwargs)
        self._arg_strings: list[str] = []

    def parse_known_args(self, args: Any = None, namespace: Any = None) -> Any:
        # Kept for error(): what this parser (a command's: the words after it) was given.
        self._arg_strings = list(sys.argv[1:] if args is None else args)
        return super().parse_known_args(args, namespace)

    def parse_args(self, args: Any = None, namespace: Any = None) -> Any:
        """As argparse's, but arguments no parser knows are the chosen command's
        error (argparse reports them as the top-level parser's)."""
        parsed, extras = self.parse_known_args(args, namespace)
        if extras:
            owner = command_parser(self, getattr(parsed, "command", None)) or self
            owner.error(f"unrecognized arguments: {' '.join(extras)}")
        return parsed

    def _check_value(self, action: argparse.Action, value: Any) -> None:
        """An invalid choice (a command, a --on-divergence value) names the closest one."""
        if action.choices is None or value in action.choices:
            return
        choices = [str(choice) for choice in action.choices]
        hint = did_you_mean(str(value), choices)
        raise argparse.ArgumentError(
            action,
            f"invalid choice: {value!r}{', ' + hint if hint else ''} "
            f"(choose from {', '.join(map(repr, choices))})",
        )

    def _unknown_options(self) -> list[str]:
        """The options among this parser's arguments that it does not know (as argparse
        matches them: exactly, by an unambiguous prefix, or a short option with its
        value attached). A parser of commands looks only before the command."""
        known = self._option_string_actions
        commands = any(isinstance(a, argparse._SubParsersAction) for a in self._actions)
        unknown: list[str] = []
        for arg in self._arg_strings:
            if arg == "--":
                break
            if not arg.startswith("-") or arg == "-" or _NEGATIVE_NUMBER.match(arg):
                if commands:
                    break
                continue
            name = arg.split("=", 1)[0] if arg.startswith("--") else arg
            if name in known or (not arg.startswith("--") and arg[:2] in known):
                continue
            if arg.startswith("--") and any(o.startswith(name) for o in known):
                continue  # an abbreviation (ambiguous ones are argparse's own error)
            unknown.append(name)
        return unknown

    def _flag_hint(self, unknown: Sequence[str]) -> str:
        flags = [
            o
            for a in self._actions
            if a.help != argparse.SUPPRESS
            for o in a.option_strings
            if o.startswith("--")
        ]
        for name in unknown:
            hint = did_you_mean(name, flags, quote=False)
            if hint:
                return hint
        return ""

    def error(self, message: str) -> NoReturn:
        unknown = self._unknown_options()
        if unknown and not message.startswith("unrecognized arguments"):
            # Often the cause of the error argparse reports (a value gone missing, a
            # required argument not seen): name it too.
            message += f"; unrecognized arguments: {' '.join(unknown)}"
        hint = self._flag_hint(unknown)
        message += f"; {hint}" if hint else ""
        sys.stderr.write(f"{self.prog}: error: {message} (see `{self.prog} --help`)\n")
        raise SystemExit(EXIT_USAGE)


def _examples(*lines: str) -> str:
    """A command's epilog: example command lines, shown as written (_HelpFormatter);
    tests/test_cli_help.py parses every one with the real parser, so none can rot.
    A line starting with # says what the next one does."""
    return "examples:\n" + "\n".join(f"  {line}" for line in lines)


def _add_coordination_root(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--coordination-root",
        "--coord-root",
        dest="coordination_root",
        metavar="DIR",
        help="where session directories live (default: <repo>/.orchestration)",
    )


# The largest --max-bundle-size: far beyond any bundle, and still a size the OS can read.
MAX_BYTE_SIZE = 1024**4


def _byte_size(text: str) -> int:
    units = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4}
    raw = text.strip().lower().removesuffix("ib").removesuffix("b")
    unit = raw[-1:] if raw[-1:] in units and raw[-1:] else ""
    number = raw[: -len(unit)] if unit else raw
    # Checked by length first: int() refuses over 4,300 digits with a ValueError.
    if not number.isdigit() or not number.isascii() or len(number) > 15 or int(number) <= 0:
        raise argparse.ArgumentTypeError(
            f"{text[:40]!r} is not a size: use bytes, or e.g. 512M, 1G (at most 1T)"
        )
    size = int(number) * units[unit]
    if size > MAX_BYTE_SIZE:
        raise argparse.ArgumentTypeError(f"{text[:40]!r} is over the largest size, 1T")
    return size


def _duration(text: str) -> float:
    """``90``, ``90s``, ``5m``, ``1h``, ``1.5h``: seconds."""
    units = {"": 1.0, "s": 1.0, "m": 60.0, "h": 3600.0}
    raw = text.strip().lower()
    unit = raw[-1:] if raw[-1:] in ("s", "m", "h") else ""
    number = raw[: -len(unit)] if unit else raw
    try:
        value = float(number) * units[unit] if len(number) <= 12 else -1.0
    except ValueError:
        value = -1.0
    if not 0 < value <= 7 * 24 * 3600:
        raise argparse.ArgumentTypeError(
            f"{text[:40]!r} is not a duration: use seconds, or e.g. 90s, 30m, 2h (at most a week)"
        )
    return value


def _add_agent_run_options(parser: argparse.ArgumentParser, *, model: bool = True) -> None:
    """--model, --worker-timeout, --verify and --no-record, shared by `swarm`, `replay`
    and `experiment` (whose arms name the model)."""
    if model:
        parser.add_argument(
            "--model",
            metavar="NAME",
            help="the model each agent is asked for (the harness's --model flag; meta.model)",
        )
    parser.add_argument(
        "--worker-timeout",
        type=_duration,
        metavar="DURATION",
        help="stop a worker (its whole process group) after this long: failed, reason timeout",
    )
    parser.add_argument(
        "--verify",
        metavar="CMD",
        help="after each agent exits, run this shell command in its worktree (in its "
        "sandbox when it has one) and record the outcome: exit code, duration, output tail",
    )
    parser.add_argument(
        "--verify-timeout",
        type=_duration,
        metavar="DURATION",
        help="stop a --verify check after this long (default 10m): it counts as not passed",
    )
    parser.add_argument(
        "--no-record",
        action="store_true",
        help="do not put the session's recording proxy between the agents and their model "
        "(recording is on for every harness but echo; opencode needs --model provider/model)",
    )


def _add_sandbox_options(parser: argparse.ArgumentParser, *, replay: bool) -> None:
    """--sandbox and what it lets through; a replay also has --no-sandbox (its default
    depends on where the bundle was made)."""
    if replay:
        choice = parser.add_mutually_exclusive_group()
        choice.add_argument(
            "--sandbox",
            action="store_true",
            default=None,
            help="run each agent in its own bubblewrap sandbox (the default for a bundle made "
            "on another machine, and for an --offline replay of a recording made elsewhere)",
        )
        choice.add_argument(
            "--no-sandbox",
            dest="sandbox",
            action="store_false",
            help="run the agents unsandboxed, with your permissions (warns for a "
            "stranger's bundle)",
        )
    else:
        parser.add_argument(
            "--sandbox",
            action="store_true",
            help="run each agent in its own bubblewrap sandbox: the system read-only, its "
            "worktree and branch, a private HOME and /tmp, no network but its model proxy",
        )
    parser.add_argument(
        "--sandbox-allow-host",
        action="append",
        default=[],
        metavar="HOST",
        help="with the sandbox: let the agents reach HOST (host, host:port or *.domain; "
        "ports 80 and 443 unless given) through an allowlist proxy (repeatable)",
    )
    parser.add_argument(
        "--sandbox-allow-path",
        action="append",
        default=[],
        metavar="PATH",
        help="with the sandbox: let the agents read PATH (a toolchain outside /usr, the "
        "program of a --launcher-cmd), read-only (repeatable)",
    )


def _add_offline_options(parser: argparse.ArgumentParser) -> None:
    """--offline and what goes with it, shared by `replay` and `experiment`."""
    parser.add_argument(
        "--offline",
        action="store_true",
        help="answer each worker's model requests from its recorded exchanges: nothing "
        "leaves the machine, no API key is needed",
    )
    parser.add_argument(
        "--on-divergence",
        choices=("stop", "continue", "live"),
        help="with --offline, when a request differs from the recording: stop the worker "
        "(failed, reason diverged; the default), keep answering from the recording, or hand "
        "the worker to the live model from that turn on",
    )
    parser.add_argument(
        "--trust-recording",
        action="store_true",
        help="with --offline --no-sandbox: let a recording made on another machine drive "
        "the agents unsandboxed (its tool calls run here; the dry-run lists them)",
    )


def _add_max_bundle_size(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--max-bundle-size",
        type=_byte_size,
        default=256 * 1024**2,
        metavar="SIZE",
        help="refuse bundles larger than this (default 256M)",
    )


def _add_sanitize_options(parser: argparse.ArgumentParser, prefix: str) -> None:
    """The allow list and path redaction, shared by `sanitize` and `session-export`."""
    parser.add_argument(
        "--redact-paths",
        action="store_true",
        help=f"{prefix}also replace home, user name, repo and worktree paths with <home>, "
        "<user>, <repo>, <worktrees>",
    )
    parser.add_argument(
        "--allow",
        action="append",
        default=[],
        metavar="FP",
        help=f"{prefix}leave the secret of this fingerprint as it is (a false positive; "
        "repeatable)",
    )
    parser.add_argument(
        "--allow-file",
        action="append",
        default=[],
        metavar="FILE",
        help=f"{prefix}fingerprints to allow, one a line, # comments "
        "(besides <repo>/.kodelyth-allow)",
    )


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not 0 < value < float("inf"):  # nan is not more than 0: it would never time out
        raise argparse.ArgumentTypeError(f"{text!r} must be a number of seconds more than 0")
    return value


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """Every command, or with ``only`` that one alone ("": none): building the parsers
    of every command costs more of each start-up than parsing does (measured: 3 ms)."""
    parser = _Parser(
        prog=PROG,
        description="Run AI coding agents as a swarm in git worktrees and tmux panes.",
        epilog="Run `kodelyth-ecc demo` to see a swarm of echo workers in a throwaway repo. "
        "`kodelyth-ecc help COMMAND` shows a command's options; `kodelyth-ecc completion "
        "--help` sets up shell completion.\n\n"
        + _examples(
            "kodelyth-ecc demo",
            'kodelyth-ecc swarm --task "add input validation to the signup form" --agents 3',
            "kodelyth-ecc status",
        ),
    )
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True

    for name, add in COMMANDS.items():
        if only is None or only == name:
            add(sub)
    return parser


def _swarm_parser(sub: _Sub) -> None:
    swarm = sub.add_parser(
        "swarm",
        help="plan or start N agents on one task",
        description=(
            "Plan a swarm of agents on one task, each in its own git worktree and tmux pane. "
            "The default mode is a dry-run that prints the plan and creates nothing."
        ),
        epilog=_examples(
            "# plan three agents on a task: a dry-run, nothing is created",
            'kodelyth-ecc swarm --task "add input validation to the signup form" --agents 3',
            "# start two named codex agents in tmux, as session fix-auth",
            'kodelyth-ecc swarm --task "fix the login bug" --agents backend,tests \\',
            "    --harness codex --session fix-auth --execute",
            "# try it without AI: echo workers",
            'kodelyth-ecc swarm --task "write the docs" --harness echo --execute',
        ),
    )
    swarm.add_argument("--task", help="what the agents should do (required unless --plan)")
    swarm.add_argument(
        "--agents",
        metavar="N|a,b,c",
        help="how many agents (1-12, picked from the task's keywords) or their names (default 4)",
    )
    swarm.add_argument(
        "--harness",
        default="claude",
        help="claude, codex, opencode, gemini or echo (no AI; for demos) (default claude)",
    )
    swarm.add_argument(
        "--launcher-cmd",
        metavar="TEMPLATE",
        help="shell command starting each agent, with {task_file_sh}, {handoff_file_sh}, ... "
        "(recorded as harness 'custom')",
    )
    _add_agent_run_options(swarm)
    swarm.add_argument(
        "--seed",
        action="append",
        default=[],
        metavar="PATH",
        help="file or directory of the repo copied into every worktree (repeatable)",
    )
    swarm.add_argument("--session", metavar="NAME", help="session name (default swarm-<date>-<N>a)")
    swarm.add_argument(
        "--worktree-root", metavar="DIR", help="where worktrees go (default: the repo's parent)"
    )
    _add_coordination_root(swarm)
    swarm.add_argument(
        "--base-ref", metavar="REF", help="commit the worktrees start from (default HEAD)"
    )
    swarm.add_argument(
        "--replace", action="store_true", help="tear down a session of the same name first"
    )
    swarm.add_argument(
        "--plan", metavar="FILE", help="a hand-written plan (JSON) instead of --task"
    )
    _add_sandbox_options(swarm, replay=False)
    mode = swarm.add_mutually_exclusive_group()
    mode.add_argument("--write-only", action="store_true", help="write coordination files only")
    mode.add_argument("--json", action="store_true", help="print the plan as JSON")
    mode.add_argument(
        "--execute",
        action="store_true",
        help="create worktrees and tmux panes and start the agents",
    )


def _status_parser(sub: _Sub) -> None:
    status = sub.add_parser(
        "status",
        help="list sessions, or show one session's workers",
        description=(
            "Without SESSION, one line per session. With it, one row per worker. "
            "--wait exits 0 when all completed, 1 if any failed or was lost, 124 on timeout."
        ),
        epilog=_examples(
            "kodelyth-ecc status",
            "kodelyth-ecc status fix-auth --watch",
            "# in a script: wait up to ten minutes, then read the result",
            "kodelyth-ecc status fix-auth --wait --timeout 600 --json",
        ),
    )
    status.add_argument(
        "session", nargs="?", metavar="SESSION", help="the session to show (default: list them)"
    )
    _add_coordination_root(status)
    status.add_argument("--json", action="store_true", help="print JSON on stdout")
    watching = status.add_mutually_exclusive_group()
    watching.add_argument("--wait", action="store_true", help="block until every worker is done")
    watching.add_argument(
        "--watch",
        action="store_true",
        help="a live table, refreshed in place on a terminal (one line per change otherwise), "
        "until every worker is done or Ctrl-C",
    )
    status.add_argument(
        "--all", action="store_true", help="also list sessions that teardown removed"
    )
    status.add_argument(
        "--timeout",
        type=_positive_float,
        metavar="S",
        help="with --wait or --watch: give up after S seconds",
    )


def _session_worker(parser: argparse.ArgumentParser, *, worker: str | None) -> None:
    """SESSION and, required or optional (``worker``: "required", "optional"), WORKER."""
    parser.add_argument("session", metavar="SESSION", help="the session's name (see `status`)")
    if worker == "required":
        parser.add_argument(
            "worker", metavar="WORKER", help="the worker's slug (see `status SESSION`)"
        )
    elif worker == "optional":
        parser.add_argument(
            "worker", metavar="WORKER", nargs="?", help="the worker's slug (default: every worker)"
        )
    _add_coordination_root(parser)


def _attach_parser(sub: _Sub) -> None:
    attach = sub.add_parser(
        "attach",
        help="attach to a session's tmux session, at a worker's pane",
        description=(
            "Attach to the session's tmux session (inside tmux: switch this client to it), "
            "with WORKER's pane selected. Detach as usual (prefix, then d)."
        ),
        epilog=_examples(
            "kodelyth-ecc attach fix-auth",
            "kodelyth-ecc attach fix-auth backend",
        ),
    )
    _session_worker(attach, worker="optional")


def _logs_parser(sub: _Sub) -> None:
    logs = sub.add_parser(
        "logs",
        help="print a worker's transcript",
        description=(
            "Print the worker's transcript (its agent's terminal output, terminal control "
            "sequences removed). With --follow, keep printing as it grows until the worker "
            "is done."
        ),
        epilog=_examples(
            "kodelyth-ecc logs fix-auth backend",
            "kodelyth-ecc logs fix-auth backend --follow",
            "kodelyth-ecc logs fix-auth tests -n 50",
        ),
    )
    _session_worker(logs, worker="required")
    logs.add_argument(
        "-f", "--follow", action="store_true", help="keep printing while the worker runs"
    )
    logs.add_argument(
        "-n",
        "--lines",
        type=_positive_int,
        metavar="N",
        help="only the last N lines (with --follow: then what follows)",
    )


def _diff_parser(sub: _Sub) -> None:
    diff = sub.add_parser(
        "diff",
        help="show each worker's changes against the session's base commit",
        description=(
            "Show what each worker changed against the session's base commit: its "
            "commits, uncommitted edits and new files, as session-export records them."
        ),
        epilog=_examples(
            "kodelyth-ecc diff fix-auth --stat",
            "kodelyth-ecc diff fix-auth backend",
        ),
    )
    _session_worker(diff, worker="optional")
    diff.add_argument("--stat", action="store_true", help="a diffstat instead of the patch")


def _apply_parser(sub: _Sub) -> None:
    apply = sub.add_parser(
        "apply",
        help="bring one worker's work into your branch",
        description=(
            "Bring WORKER's work (its commits and uncommitted edits) into your branch: by "
            "default one squashed commit. Refuses a checkout with uncommitted changes. On "
            "conflicts it stops as git does, naming the files and how to finish or abort; "
            "nothing of either side is lost. Afterwards `teardown` knows the work is saved."
        ),
        epilog=_examples(
            "kodelyth-ecc apply fix-auth backend",
            "kodelyth-ecc apply fix-auth backend --merge --onto main",
            'kodelyth-ecc apply fix-auth tests --cherry-pick -m "tests for the login fix"',
        ),
    )
    _session_worker(apply, worker="required")
    apply.add_argument(
        "--onto",
        metavar="BRANCH",
        help="the branch to bring it into (default: the branch checked out in the repo)",
    )
    how = apply.add_mutually_exclusive_group()
    how.add_argument(
        "--squash",
        dest="mode",
        action="store_const",
        const="squash",
        help="one new commit holding all of the worker's changes (the default)",
    )
    how.add_argument(
        "--merge",
        dest="mode",
        action="store_const",
        const="merge",
        help="a merge commit, keeping the worker's commits",
    )
    how.add_argument(
        "--cherry-pick",
        dest="mode",
        action="store_const",
        const="cherry-pick",
        help="copy each of the worker's commits (uncommitted edits as one more)",
    )
    apply.add_argument(
        "-m", "--message", metavar="TEXT", help="the commit message (default: names the worker)"
    )


def _retry_parser(sub: _Sub) -> None:
    retry = sub.add_parser(
        "retry",
        help="run a worker again in its own worktree",
        description=(
            "Run a worker again in its own worktree and branch (its work so far is kept; what "
            "the previous attempt wrote goes to <worker>/attempts/<N>/): after a failure, a "
            "timeout, a lost pane or a restart, or a completed one on purpose. A worker still "
            "running is refused. With --message, continue the agent's own conversation where "
            "its CLI can (claude, codex, opencode, gemini: by the agent session id its usage "
            "recorded; not for --sandbox workers); else it starts afresh on the same task, the "
            "message added to its task.md."
        ),
        epilog=_examples(
            "kodelyth-ecc retry fix-auth backend",
            'kodelyth-ecc retry fix-auth backend --message "keep Python 3.10 working"',
        ),
    )
    _session_worker(retry, worker="required")
    retry.add_argument(
        "--message", metavar="TEXT", help="what to tell the agent (continues its conversation)"
    )


def _resume_parser(sub: _Sub) -> None:
    resume = sub.add_parser(
        "resume",
        help="restart every unfinished worker of a session whose tmux server is gone",
        description=(
            "After a restart or a killed tmux server: start the session's tmux session "
            "again and `retry` every worker that had not finished. Completed and failed "
            "workers are left as they are."
        ),
        epilog=_examples(
            "# after a reboot: start the unfinished workers again and watch them",
            "kodelyth-ecc resume fix-auth && kodelyth-ecc status fix-auth --watch",
            "# a session kept under another coordination root",
            "kodelyth-ecc resume fix-auth --coord-root ~/work/app/.orchestration",
        ),
    )
    _session_worker(resume, worker=None)


def _teardown_parser(sub: _Sub) -> None:
    down = sub.add_parser(
        "teardown",
        help="stop a session and remove its worktrees and branches",
        description=(
            "Kill the session's tmux session and remove its own worktrees and branches. "
            "Workers still running, and worktrees holding uncommitted changes, git-ignored "
            "files or commits no other ref keeps, are refused unless --force, which stops the "
            "session and first saves the work under <coordination-root>/<session>.teardown/ "
            "(a byte-exact patch and copies of ignored files)."
        ),
        epilog=_examples(
            "kodelyth-ecc teardown fix-auth",
            "# stop it even with work left (saved first), and delete its coordination dir",
            "kodelyth-ecc teardown fix-auth --force --purge",
        ),
    )
    down.add_argument("session", metavar="SESSION", help="the session's name (see `status`)")
    _add_coordination_root(down)
    down.add_argument(
        "--force",
        action="store_true",
        help="stop running workers and remove worktrees with unsaved work (after saving it)",
    )
    down.add_argument("--purge", action="store_true", help="also delete the coordination dir")
    down.add_argument("--json", action="store_true", help="print what was removed as JSON")


def _session_export_parser(sub: _Sub) -> None:
    export = sub.add_parser(
        "session-export",
        help="bundle a session into one portable JSON file",
        description=(
            "Bundle a session's coordination dir (task, handoff and status of every worker, "
            "plus each worker's diff and transcript) into kodelyth.session-bundle/v1 JSON. "
            "Meta comes from the session's session.json; these flags override it."
        ),
        epilog=_examples(
            "kodelyth-ecc session-export fix-auth",
            "kodelyth-ecc session-export fix-auth --sanitize --out fix-auth.bundle.json",
        ),
    )
    export.add_argument(
        "session", metavar="SESSION", help="directory name under the coordination root"
    )
    export.add_argument(
        "--out",
        metavar="FILE",
        help="output file, - for stdout (default <coord-root>/<session>.bundle.json)",
    )
    export.add_argument("--task", help="set meta.task")
    export.add_argument("--agents", metavar="a,b,c", help="set meta.agents")
    export.add_argument("--harness", help="set meta.harness")
    export.add_argument("--base-ref", metavar="REF", help="set meta.base_ref")
    export.add_argument(
        "--sanitize",
        action="store_true",
        help="redact secrets as `sanitize` does (the bundle is built in memory)",
    )
    export.add_argument(
        "--no-exchanges",
        action="store_true",
        help="leave out the workers' recorded model traffic (exchanges)",
    )
    _add_sanitize_options(export, "with --sanitize: ")
    _add_coordination_root(export)


def _session_import_parser(sub: _Sub) -> None:
    imp = sub.add_parser(
        "session-import",
        help="restore a bundle as a coordination dir",
        description=(
            "Validate a bundle completely, then restore it as a coordination dir (written to a "
            "temporary sibling and renamed into place). Bundles are untrusted input."
        ),
        epilog=_examples(
            "kodelyth-ecc session-import fix-auth.bundle.json",
            "kodelyth-ecc session-import fix-auth.bundle.json --target /tmp/fix-auth --overwrite",
        ),
    )
    imp.add_argument(
        "bundle", metavar="BUNDLE.json", help="the bundle file (from `session-export`)"
    )
    imp.add_argument(
        "--target", metavar="DIR", help="output directory (default <coord-root>/<session>)"
    )
    imp.add_argument(
        "--overwrite", action="store_true", help="replace an existing target directory"
    )
    _add_coordination_root(imp)
    _add_max_bundle_size(imp)


def _sanitize_parser(sub: _Sub) -> None:
    sanitize = sub.add_parser(
        "sanitize",
        help="redact secrets from a bundle before sharing it",
        description=(
            "Scan every string of a bundle (task, handoff, status, diff, transcript, meta) for "
            "credentials and write a copy where each is [REDACTED:<rule>:<fingerprint>] "
            "(fingerprint: first 12 hex digits of the secret's sha256), recorded in "
            "meta.sanitized. Fingerprints in <repo>/.kodelyth-allow are allowed. Output never "
            "shows a secret. Exit codes: 0 done (--check: clean), 1 error, 2 usage, "
            "4 --check found something to redact."
        ),
        epilog=_examples(
            "kodelyth-ecc sanitize --check fix-auth.bundle.json",
            "kodelyth-ecc sanitize fix-auth.bundle.json --redact-paths --out shared.bundle.json",
        ),
    )
    sanitize.add_argument(
        "bundle", metavar="BUNDLE.json", help="the bundle file (from `session-export`)"
    )
    sanitize.add_argument(
        "--out", metavar="FILE", help="output file, - for stdout (default <in>.sanitized.json)"
    )
    sanitize.add_argument(
        "--in-place", action="store_true", help="overwrite the input bundle (atomically)"
    )
    sanitize.add_argument(
        "--check",
        action="store_true",
        help="write nothing; list what would be redacted and exit 4 if anything",
    )
    sanitize.add_argument("--json", action="store_true", help="print the report as JSON")
    _add_sanitize_options(sanitize, "")
    _add_max_bundle_size(sanitize)


def _replay_parser(sub: _Sub) -> None:
    replay = sub.add_parser(
        "replay",
        help="re-run a bundle or session with variations",
        description=(
            "Re-run a bundle (a .json file) or a session with another harness, agents or base "
            "ref, as <origin>-replay-N. The default mode is a dry-run that shows what differs "
            "from the origin. --wait exits like `status --wait` (0, 1, 124)."
        ),
        epilog=_examples(
            "# what would differ with another harness (a dry-run)",
            "kodelyth-ecc replay fix-auth --harness codex",
            "# re-run a bundle from its recorded model traffic: offline, no API key",
            "kodelyth-ecc replay fix-auth.bundle.json --offline --execute --wait",
        ),
    )
    replay.add_argument(
        "target",
        metavar="BUNDLE.json|SESSION",
        help="a bundle file (*.json) or the name of a session to replay",
    )
    replay.add_argument(
        "--harness", help="override the harness (claude, codex, opencode, gemini, echo)"
    )
    replay.add_argument(
        "--launcher-cmd",
        metavar="TEMPLATE",
        help="run this shell command instead of a harness (recorded as harness 'custom')",
    )
    _add_agent_run_options(replay)
    replay.add_argument("--agents", metavar="a,b,c", help="replace the agent list")
    replay.add_argument(
        "--base-ref", metavar="REF", help="commit the replay's worktrees start from"
    )
    replay.add_argument(
        "--session", metavar="NAME", help="replay session name (default <origin>-replay-N)"
    )
    replay.add_argument(
        "--replace", action="store_true", help="tear down a session of the same name first"
    )
    replay.add_argument(
        "--trust-launcher",
        action="store_true",
        help="run the launcher template recorded in the bundle (never done otherwise)",
    )
    _add_offline_options(replay)
    _add_sandbox_options(replay, replay=True)
    _add_coordination_root(replay)
    _add_max_bundle_size(replay)
    replay_mode = replay.add_mutually_exclusive_group()
    replay_mode.add_argument(
        "--write-only", action="store_true", help="write coordination files only"
    )
    replay_mode.add_argument(
        "--json", action="store_true", help='print {"planConfig", "plan"} as JSON'
    )
    replay_mode.add_argument("--execute", action="store_true", help="start the replay")
    replay.add_argument(
        "--wait", action="store_true", help="with --execute: block until every worker is done"
    )
    replay.add_argument(
        "--timeout", type=_positive_float, metavar="S", help="with --wait: give up after S seconds"
    )
    replay.add_argument(
        "--export", metavar="FILE", help="with --execute: then write the replay's bundle"
    )
    # What an experiment's run is told to record (session.json's experiment_run): the
    # token that proves a session of that name is that run's. Not for people.
    replay.add_argument("--experiment-run", metavar="TOKEN", help=argparse.SUPPRESS)


def _positive_int(text: str, most: int = 10_000) -> int:
    if not text.isdigit() or len(text) > 6 or not 0 < int(text) <= most:
        raise argparse.ArgumentTypeError(f"{text[:40]!r} is not a whole number from 1 to {most}")
    return int(text)


def _repeat(text: str) -> int:
    """--repeat: at most 100 runs an arm (experiment.MAX_REPEAT)."""
    return _positive_int(text, 100)


def _experiment_parser(sub: _Sub) -> None:
    exp = sub.add_parser(
        "experiment",
        help="replay one session N times per variation, for compare",
        description=(
            "Replay a bundle or session --repeat times under each --arm (a variation: "
            "harness, model, agents, base ref, launcher, environment). The default mode is "
            "a dry-run: the runs, the workers in all and an estimate of tokens and cost "
            "from the origin's recorded usage. --execute makes every run an ordinary "
            "replay, exports it to DIR/<run>.bundle.json and keeps DIR/experiment.json "
            "(kodelyth.experiment/v1); `compare DIR` then sets the arms side by side. "
            "Exit codes: 0 every run's workers completed, 1 otherwise, 2 usage, 124 "
            "--timeout, 130 interrupted (continue with --resume)."
        ),
        epilog=_examples(
            "kodelyth-ecc experiment fix-auth --arm harness=claude --arm harness=codex --repeat 3",
            "kodelyth-ecc experiment fix-auth --arm model=opus --arm model=sonnet --execute \\",
            "    --out fix-auth.experiment",
            "kodelyth-ecc compare fix-auth.experiment",
        ),
    )
    exp.add_argument(
        "target", metavar="BUNDLE.json|SESSION", nargs="?", help="the session to replay"
    )
    exp.add_argument(
        "--arm",
        action="append",
        default=[],
        metavar="'KEY=VALUE ...'",
        help="a variation, e.g. 'harness=codex model=gpt-5' (keys: harness, model, agents, "
        "base-ref, launcher-cmd, env=NAME=VALUE); repeatable; without it, one arm: the "
        "origin's conditions",
    )
    exp.add_argument(
        "--repeat", type=_repeat, metavar="N", help="runs per arm, at most 100 (default 1)"
    )
    exp.add_argument(
        "--max-parallel",
        type=_positive_int,
        metavar="K",
        help="workers running at once across all runs; more runs wait (default 8)",
    )
    _add_agent_run_options(exp, model=False)
    _add_offline_options(exp)
    _add_sandbox_options(exp, replay=True)
    exp.add_argument(
        "--out",
        metavar="DIR",
        help="the experiment's directory (default <coord-root>/<origin>.experiment-N)",
    )
    exp.add_argument(
        "--resume",
        action="store_true",
        help="continue the experiment in --out DIR: finished runs are kept, the rest made",
    )
    exp.add_argument(
        "--timeout",
        type=_duration,
        metavar="DURATION",
        help="with --execute or --resume: stop the runs after this long (exit 124)",
    )
    mode = exp.add_mutually_exclusive_group()
    mode.add_argument("--execute", action="store_true", help="make the runs")
    exp.add_argument(
        "--json", action="store_true", help="print experiment.json (the plan, or the result)"
    )
    _add_coordination_root(exp)
    _add_max_bundle_size(exp)


def _compare_parser(sub: _Sub) -> None:
    compare = sub.add_parser(
        "compare",
        help="compare runs side by side; regression gate for CI",
        description=(
            "Compare two runs (bundle files or session names) worker by worker: state, exit "
            "code, duration, verify check, what changed, handoff sections, code changes: "
            "facts side by side, for a human to judge. With one run that is a replay, "
            "compares it with its origin. Many runs: an experiment directory (DIR holding "
            "experiment.json), two of them (DIR_A DIR_B: arms matched by label), or "
            "A1 A2 ... --vs B1 B2 ...: per arm and worker, rates and means with 95% "
            "intervals, and the differences between arms (each arm against the first). "
            "--blind, --blind-key, --full, --patch and --origin are for two runs only. "
            "Exit codes: 0 ok, 1 error, 2 usage, 3 the --baseline gate found a regression."
        ),
        epilog=_examples(
            "kodelyth-ecc compare fix-auth fix-auth-replay-1",
            "kodelyth-ecc compare fix-auth-replay-1 --markdown",
            "# in CI: exit 3 when the new run falls short of the baseline",
            "kodelyth-ecc compare baseline.bundle.json new.bundle.json --baseline",
        ),
    )
    compare.add_argument(
        "runs",
        metavar="RUN",
        nargs="+",
        help="bundle file (*.json), session name or experiment directory: A B, or one "
        "replay (compared with its origin), or DIR, or DIR_A DIR_B",
    )
    compare.add_argument(
        "--vs",
        metavar="RUN",
        nargs="+",
        help="many runs: the RUNs before --vs are arm A, these arm B (give --vs last)",
    )
    compare.add_argument(
        "--origin", metavar="PATH", help="with one run: its origin (bundle file or session)"
    )
    compare.add_argument(
        "--full",
        action="store_true",
        help="add unified diffs of the handoffs and the verify output's tail",
    )
    compare.add_argument("--patch", action="store_true", help="add each worker's patch")
    compare.add_argument("--worker", metavar="SLUG", help="only this worker")
    compare.add_argument(
        "--blind",
        action="store_true",
        help='label the runs "Run 1"/"Run 2" in random order; the key goes to a file',
    )
    compare.add_argument(
        "--blind-key",
        metavar="FILE",
        help="where --blind writes its key (default <html>.blind-key.json, else "
        "./compare-blind-key-<random>.json)",
    )
    compare.add_argument(
        "--baseline",
        action="store_true",
        help="A (many runs: the first arm of each pair) is the baseline: exit 3 when B "
        "falls short of it (see --fail-on)",
    )
    compare.add_argument(
        "--fail-on",
        metavar="RULES",
        help="with --baseline: comma list of missing-worker, state-regressed, "
        "empty-handoff, missing-section, verify-regressed (default all); many runs add "
        "verify-rate-dropped, checking the others run pair by run pair (default there "
        "verify-rate-dropped,missing-worker)",
    )
    compare_format = compare.add_mutually_exclusive_group()
    compare_format.add_argument(
        "--json",
        action="store_true",
        help="print kodelyth.compare/v1 JSON on stdout (many runs: kodelyth.compare/v2)",
    )
    compare_format.add_argument(
        "--markdown", action="store_true", help="print markdown for an issue or PR"
    )
    compare.add_argument("--html", metavar="FILE", help="also write a self-contained HTML report")
    _add_coordination_root(compare)
    _add_max_bundle_size(compare)


def _demo_parser(sub: _Sub) -> None:
    demo = sub.add_parser(
        "demo",
        help="run an echo swarm in a throwaway repo and show the result",
        description=(
            "Create a throwaway git repo in a temporary directory, run a 3-worker echo swarm "
            "(no AI needed), wait for it and print the status table and where everything is."
        ),
        epilog=_examples(
            "kodelyth-ecc demo",
            "kodelyth-ecc demo --dir /tmp/kodelyth-demo --timeout 120",
        ),
    )
    demo.add_argument(
        "--dir", metavar="DIR", help="parent directory for the demo (default: a temp dir)"
    )
    demo.add_argument(
        "--timeout",
        type=_positive_float,
        default=60.0,
        metavar="S",
        help="how long to wait (default 60)",
    )


def _completion_parser(sub: _Sub) -> None:
    completion = sub.add_parser(
        "completion",
        help="print a shell completion script (bash, zsh, fish)",
        description=(
            "Print a script that makes the shell complete kodelyth-ecc's commands, flags, "
            "flag values, file names, session names and worker slugs. The commands and flags "
            "are those of this version (a saved script wants regenerating after an upgrade); "
            "the sessions and workers are asked for as you type."
        ),
        epilog=_examples(
            "# bash: in ~/.bashrc",
            'eval "$(kodelyth-ecc completion bash)"',
            "# zsh: in ~/.zshrc, after compinit",
            "source <(kodelyth-ecc completion zsh)",
            "# fish",
            "kodelyth-ecc completion fish > ~/.config/fish/completions/kodelyth-ecc.fish",
        ),
    )
    completion.add_argument(
        "shell", metavar="SHELL", choices=("bash", "zsh", "fish"), help="bash, zsh or fish"
    )


def _help_parser(sub: _Sub) -> None:
    helper = sub.add_parser(
        "help",
        help="show the help of kodelyth-ecc or of one command",
        description="Show kodelyth-ecc's help, or with COMMAND that command's --help.",
        epilog=_examples("kodelyth-ecc help", "kodelyth-ecc help swarm"),
    )
    helper.add_argument(
        "topic",
        metavar="COMMAND",
        nargs="?",
        choices=COMMANDS,
        help="the command to explain (default: list them all)",
    )


# Each command's parser, in the order `--help` lists them.
COMMANDS: dict[str, Callable[[_Sub], None]] = {
    "swarm": _swarm_parser,
    "status": _status_parser,
    "attach": _attach_parser,
    "logs": _logs_parser,
    "diff": _diff_parser,
    "apply": _apply_parser,
    "retry": _retry_parser,
    "resume": _resume_parser,
    "teardown": _teardown_parser,
    "session-export": _session_export_parser,
    "session-import": _session_import_parser,
    "sanitize": _sanitize_parser,
    "replay": _replay_parser,
    "experiment": _experiment_parser,
    "compare": _compare_parser,
    "demo": _demo_parser,
    "completion": _completion_parser,
    "help": _help_parser,
}


def _shown(exc: BaseException) -> str:
    from kodelyth_ecc.termsafe import one_line

    return one_line(str(exc), 300)


def _null_streams() -> None:
    """A command started with stdout or stderr closed (``>&-``) has None there: writes
    go nowhere instead of failing."""
    for name in ("stdout", "stderr"):
        if getattr(sys, name) is None:
            setattr(sys, name, open(os.devnull, "w"))  # noqa: SIM115 - for the process's life


def main(argv: Sequence[str] | None = None) -> int:
    _null_streams()
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == [COMPLETE]:
        from kodelyth_ecc.commands.completion import complete

        return complete(argv[1:])
    # The command is the first word when it comes first (`-h swarm` wants every command):
    # top-level options take no value.
    only = argv[0] if argv and argv[0] in COMMANDS else None
    if argv == ["--version"]:
        only = ""  # no command's parser is needed to print it
    parser = build_parser(only)
    args = parser.parse_args(argv)
    module = importlib.import_module(f"kodelyth_ecc.commands.{args.command.replace('-', '_')}")
    try:
        code: int = module.run(args)
        return code
    except KodelythError as exc:
        from kodelyth_ecc.termsafe import one_line

        # One line, whatever a message quotes: no control character reaches the terminal.
        message = one_line(exc.message)
        if isinstance(exc, UsageError) and "--help" not in message:
            message += f" (see `{PROG} {args.command} --help`)"
        print(f"{PROG}: error: {message}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # Output piped into `head` and the like: not an error of ours.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0
    except OSError as exc:
        from kodelyth_ecc.termsafe import one_line

        where = f" ({one_line(str(exc.filename), 300)})" if exc.filename else ""
        print(f"{PROG}: error: {exc.strerror or exc}{where}", file=sys.stderr)
        return EXIT_FAILURE
    except Exception as exc:
        if os.environ.get("KODELYTH_DEBUG"):
            raise
        print(
            f"{PROG}: internal error: {type(exc).__name__}: {_shown(exc)} "
            "(please report it; rerun with KODELYTH_DEBUG=1 for the traceback)",
            file=sys.stderr,
        )
        return EXIT_FAILURE
