"""Checks that decide whether a plan can run, cheap enough for every dry-run."""

from __future__ import annotations

import os
import re

from kodelyth_ecc import gitrepo, tmux
from kodelyth_ecc.harnesses import CUSTOM, DEFAULT_HARNESS, Harness, get_harness, parse_version
from kodelyth_ecc.launchers import missing_program
from kodelyth_ecc.plan import OrchestrationPlan
from kodelyth_ecc.process import cmd_output

VERSION_TIMEOUT_S = 20.0


def _adapter(plan: OrchestrationPlan) -> Harness | None:
    """The harness adapter some worker runs the built-in template of, if any."""
    if plan.harness in (None, CUSTOM):
        return None
    harness = get_harness(plan.harness or DEFAULT_HARNESS)
    return (
        harness
        if any(
            w.result_harness
            or w.launcher_template
            == harness.launch_template(
                plan.model, plan.proxy_point.flags if plan.proxy_point else ""
            )
            for w in plan.workers
        )
        else None
    )


def harness_problems(
    plan: OrchestrationPlan, *, probe_version: bool = True
) -> tuple[list[str], str | None]:
    """What stops the harness from working here (each a one-line reason naming the fix),
    and the CLI's name and version (``claude 2.1.197``) when it was asked. A dry-run
    does not ask (a node CLI takes a second to print its version)."""
    harness = _adapter(plan)
    missing = launcher_problems(plan)
    if missing:
        return missing, None
    if harness is None or harness.program is None:
        return [], None
    program = missing_program(harness)
    if program:
        return [
            f"{program} is not on PATH, so the {harness.name} harness cannot start: install it "
            "(see the README's harness table), or choose another --harness or --launcher-cmd"
        ], None
    problems: list[str] = []
    cli = None
    if harness.version_args and probe_version:
        # Never our stdin, never for ever: a wrapper that waits for input must not hang us.
        result = cmd_output(
            harness.program, *harness.version_args, check=False, stdin="", timeout=VERSION_TIMEOUT_S
        )
        version = parse_version(result.stdout + " " + result.stderr)
        if version is None:
            problems.append(
                f"`{harness.program} {' '.join(harness.version_args)}` gave no version: "
                f"check that {harness.program} on PATH is the {harness.name} CLI"
            )
        else:
            cli = f"{harness.name} {'.'.join(map(str, version))}"
            if harness.min_version and version < harness.min_version:
                oldest = ".".join(map(str, harness.min_version))
                problems.append(
                    f"{cli} is older than {oldest}, the oldest the {harness.name} harness "
                    f"supports (tested: {', '.join(harness.tested_versions)}): upgrade it"
                )
    # In --sandbox it runs in one (bubblewrap), which tells it so with IS_SANDBOX=1.
    inside = plan.sandbox is not None or os.environ.get("IS_SANDBOX") == "1"
    if harness.refuses_root and os.geteuid() == 0 and not inside:
        problems.append(
            f"{harness.name} refuses to skip its permission prompts as root: pass --sandbox "
            "(each agent then runs in its own sandbox), run kodelyth-ecc as a normal user, "
            "or, if this machine is a disposable sandbox, set IS_SANDBOX=1"
        )
    return problems, cli


# What a launch command may start with that is not a program on PATH: the shell's
# builtins (bash's, which also covers sh's); its reserved words after which a command
# follows, and those after which names follow up to the next separator (``for x in a b``).
_BUILTINS = frozenset((
    ".", ":", "[", "[[", "alias", "bg", "bind", "break", "builtin", "caller", "cd",
    "command", "compgen", "complete", "compopt", "continue", "declare", "dirs",
    "disown", "echo", "enable", "eval", "exec", "exit", "export", "false", "fc", "fg",
    "getopts", "hash", "help", "history", "jobs", "kill", "let", "local", "logout",
    "mapfile", "popd", "printf", "pushd", "pwd", "read", "readarray", "readonly",
    "return", "set", "shift", "shopt", "source", "suspend", "test", "times", "trap",
    "true", "type", "typeset", "ulimit", "umask", "unalias", "unset", "wait"
))  # fmt: skip
_BEFORE_COMMAND = frozenset((
    "!", "{", "}", "if", "then", "else", "elif", "do", "done", "fi", "while", "until",
    "time", "exec", "nohup"
))  # fmt: skip
_BEFORE_NAMES = frozenset(("for", "select"))
# Shell syntax this does not read (a here-document's lines, case patterns, functions):
# nothing is checked rather than a false "not on PATH".
_UNREAD = re.compile(r"<<|\bcase\b|\bfunction\b|\(\s*\)")
_PLAIN_WORD = re.compile(r"[A-Za-z0-9_.+-]+")
_ASSIGNMENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*=")


def launch_programs(command: str) -> list[str]:
    """The programs a launch command starts by name (the first word of each simple
    command, after ``VAR=value`` and ``exec``), for a pre-flight PATH check. Only plain
    names: a path, a variable or anything this cannot read for sure is left to the
    shell, as is a command line shlex cannot split."""
    import shlex

    if _UNREAD.search(command):
        return []
    lexer = shlex.shlex(command.replace("\n", " ; "), posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    try:
        words = list(lexer)
    except ValueError:
        return []
    found: list[str] = []
    first = True
    target = False  # the word after a redirection is its file
    arithmetic = False  # inside $(( ... )) or (( ... ))
    for word in words:
        if arithmetic or word.startswith("(("):
            arithmetic = "))" not in word
        elif word[:1] in "<>":
            target = True
        elif target:
            target = False
        elif word.strip("|&;()") == "":  # a separator: a new command follows
            first = True
        elif not first or _ASSIGNMENT.match(word) or word in _BEFORE_COMMAND:
            continue
        elif word.isdigit():
            continue  # the descriptor of a redirection (2>&1)
        else:
            first = False
            if word in _BEFORE_NAMES or word in _BUILTINS or not _PLAIN_WORD.fullmatch(word):
                continue
            if word not in found:
                found.append(word)
    return found


def launcher_problems(plan: OrchestrationPlan) -> list[str]:
    """A custom launch command's program missing from PATH, caught here instead of as
    exit 127 in a transcript. The harness's own program is checked by
    ``harness_problems``."""
    from kodelyth_ecc.process import which

    problems = []
    for worker in plan.workers:
        if worker.result_harness is not None:
            continue  # the built-in template: its program is the harness's
        for program in launch_programs(worker.launch_command):
            if which(program) is None:
                problems.append(
                    f"{program} (in the launch command of {worker.worker_slug}) is not on "
                    "PATH: install it, fix the --launcher-cmd, or give its full path"
                )
                return problems
    return problems


def checkout_warnings(plan: OrchestrationPlan) -> list[str]:
    """Uncommitted changes in the repository's checkout: the workers start from a commit
    (``plan.base_ref``) and will not see them."""
    result = cmd_output(
        "git", "status", "--porcelain", "--untracked-files=normal", cwd=plan.repo_root,
        check=False,
    )  # fmt: skip
    changed = [line for line in result.stdout.splitlines() if line.strip()]
    if result.returncode != 0 or not changed:
        return []
    count = len(changed)
    return [
        f"the checkout has {count} uncommitted change{'' if count == 1 else 's'} the agents "
        f"will not see (their worktrees start from {plan.base_ref}): commit them first if "
        "they should"
    ]


def plan_warnings(plan: OrchestrationPlan, *, check_names: bool = True) -> list[str]:
    """What would stop ``--execute``, reported by dry-run instead of failing.
    ``check_names=False`` when the name was just found free (each check is a process)."""
    problems = harness_problems(plan, probe_version=False)[0]
    warnings = [f"{p} (--execute will refuse)" for p in problems]
    warnings += checkout_warnings(plan)
    if not tmux.available():
        warnings.append("tmux is not on PATH: --execute needs it")
    taken = collisions(plan, execute=True) if check_names else []
    if taken and not plan.replace_existing:
        warnings.append(
            f"session {plan.session_name!r} is taken ({'; '.join(taken)}): "
            "--execute will refuse without --replace"
        )
    return warnings


def collisions(plan: OrchestrationPlan, *, execute: bool) -> list[str]:
    found = []
    if os.path.lexists(plan.coordination_dir):
        found.append(f"coordination dir {plan.coordination_dir} exists")
    if not execute:
        return found
    if tmux.has_session(plan.session_name):
        found.append(f"tmux session {plan.session_name!r} exists")
    branches = gitrepo.branches(plan.repo_root, prefix=f"orchestrator-{plan.session_name}-")
    for worker in plan.workers:
        if worker.branch_name in branches:
            found.append(f"branch {worker.branch_name} exists")
        if os.path.lexists(worker.worktree_path):
            found.append(f"worktree path {worker.worktree_path} exists")
    return found
