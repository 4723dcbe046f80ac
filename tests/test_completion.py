"""Shell completion: the bash script sourced in a real bash and its completion function
called as bash calls it (COMP_WORDS, COMP_CWORD, then COMPREPLY read back), fish's own
`complete -C`, zsh driven through a real terminal in the test's tmux server; session
names and worker slugs from real coordination dirs; the hidden `__complete` command."""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from kodelyth_ecc import completion
from kodelyth_ecc.harnesses import HARNESSES
from kodelyth_ecc.main import COMMANDS, build_parser, command_parser
from tests.conftest import Sandbox
from tests.support import retry_until, run_cli, tmux

SLUGS = ["alpha", "beta"]


@pytest.fixture
def on_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """`kodelyth-ecc` on PATH, as installed: this checkout's code."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    program = bin_dir / "kodelyth-ecc"
    program.write_text(f'#!/bin/sh\nexec {shlex.quote(sys.executable)} -m kodelyth_ecc "$@"\n')
    program.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    return program


def _script(shell: str, where: Path) -> Path:
    path = where / f"completion.{shell}"
    path.write_text(completion.script(shell))
    return path


@pytest.fixture
def bash_script(tmp_path: Path, on_path: Path) -> Path:
    return _script("bash", tmp_path)


def _sessions(sandbox: Sandbox, *extra: str) -> None:
    """Two sessions written to disk (--write-only: no tmux, no agents)."""
    for session, agents in (("s-one", ",".join(SLUGS)), ("s-two", "gamma")):
        args = ["--task", "audit", "--agents", agents, "--harness", "echo"]
        result = sandbox.cli("swarm", *args, "--session", session, *extra, "--write-only")
        assert result.code == 0, result


_BASH_DRIVER = r"""
source "$1"
shift
COMP_WORDS=("$@")
COMP_CWORD=$((${#COMP_WORDS[@]} - 1))
COMP_LINE="$*"
COMP_POINT=${#COMP_LINE}
_kodelyth_ecc
printf '%s\n' "${COMPREPLY[@]}"
"""


def bash_complete(script: Path, *words: str, cwd: Path) -> list[str]:
    """COMPREPLY for the command line WORDS (the last one is being completed)."""
    run = subprocess.run(
        ["bash", "--norc", "--noprofile", "-c", _BASH_DRIVER, "bash", str(script), *words],
        cwd=cwd, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert run.returncode == 0 and not run.stderr, run
    return [line for line in run.stdout.split("\n") if line]


def _flags(command: str) -> set[str]:
    parser = build_parser()
    if command:
        parser = command_parser(parser, command) or parser
    import argparse

    return {
        flag
        for action in parser._actions
        if action.help != argparse.SUPPRESS
        for flag in action.option_strings
    }


# --------------------------------------------------------------------------- bash


def test_the_bash_install_line_registers_the_completion(sandbox: Sandbox, on_path: Path) -> None:
    run = subprocess.run(
        ["bash", "--norc", "--noprofile", "-c",
         'eval "$(kodelyth-ecc completion bash)" && complete -p kodelyth-ecc'],
        cwd=sandbox.repo, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert run.returncode == 0, run
    assert run.stdout.strip() == "complete -F _kodelyth_ecc kodelyth-ecc"


def test_bash_completes_commands(sandbox: Sandbox, bash_script: Path) -> None:
    assert bash_complete(bash_script, "kodelyth-ecc", "", cwd=sandbox.repo) == list(COMMANDS)
    assert bash_complete(bash_script, "kodelyth-ecc", "st", cwd=sandbox.repo) == ["status"]
    assert bash_complete(bash_script, "kodelyth-ecc", "se", cwd=sandbox.repo) == [
        "session-export",
        "session-import",
    ]
    # The hidden candidates command is not one to offer.
    assert bash_complete(bash_script, "kodelyth-ecc", "_", cwd=sandbox.repo) == []


def test_bash_completes_each_commands_flags_from_its_parser(
    sandbox: Sandbox, bash_script: Path
) -> None:
    """Generated from argparse: a flag added to a parser is completed with no edit to
    completion.py (hidden flags are not offered)."""
    for command in ("", *COMMANDS):
        words = ["kodelyth-ecc", *([command] if command else []), "-"]
        assert set(bash_complete(bash_script, *words, cwd=sandbox.repo)) == _flags(command)
    assert "--experiment-run" not in bash_complete(
        bash_script, "kodelyth-ecc", "replay", "--", cwd=sandbox.repo
    )
    got = bash_complete(bash_script, "kodelyth-ecc", "swarm", "--ex", cwd=sandbox.repo)
    assert got == ["--execute"]


def test_bash_completes_flag_values(sandbox: Sandbox, bash_script: Path) -> None:
    def complete(*words: str) -> list[str]:
        return bash_complete(bash_script, "kodelyth-ecc", *words, cwd=sandbox.repo)

    assert complete("swarm", "--harness", "") == list(HARNESSES)
    assert complete("swarm", "--task", "x", "--harness", "co") == ["codex"]
    assert complete("replay", "b.json", "--on-divergence", "") == ["stop", "continue", "live"]
    # --flag=value, as bash splits it at the '=' (COMP_WORDBREAKS) and not.
    assert complete("swarm", "--harness", "=", "co") == ["codex"]
    assert complete("swarm", "--harness", "=") == list(HARNESSES)
    # A flag's value is not completed as a flag or a command.
    assert complete("swarm", "--task", "") == []
    assert complete("help", "sw") == ["swarm"]
    assert complete("completion", "") == ["bash", "zsh", "fish"]


def test_bash_completes_files_where_a_flag_takes_one(
    sandbox: Sandbox, bash_script: Path, tmp_path: Path
) -> None:
    where = tmp_path / "files"
    (where / "plans").mkdir(parents=True)
    (where / "plan.json").write_text("{}")
    (where / "notes.txt").write_text("")

    def complete(*words: str) -> list[str]:
        return bash_complete(bash_script, "kodelyth-ecc", *words, cwd=where)

    assert sorted(complete("swarm", "--plan", "pl")) == ["plan.json", "plans"]
    assert complete("swarm", "--worktree-root", "") == ["plans"]  # DIR: directories only
    assert sorted(complete("sanitize", "")) == ["plan.json", "plans"]  # BUNDLE.json
    assert sorted(complete("status", "--coord-root", "")) == ["plans"]


def test_bash_completes_session_names_and_worker_slugs(sandbox: Sandbox, bash_script: Path) -> None:
    _sessions(sandbox)

    def complete(*words: str) -> list[str]:
        return bash_complete(bash_script, "kodelyth-ecc", *words, cwd=sandbox.repo / "src")

    assert complete("logs", "") == ["s-one", "s-two"]
    assert complete("status", "--json", "s-t") == ["s-two"]
    assert complete("logs", "s-one", "") == SLUGS
    assert complete("logs", "s-two", "") == ["gamma"]
    assert complete("apply", "--onto", "main", "s-one", "b") == ["beta"]
    assert complete("logs", "no-such", "") == []
    # A bundle or a session.
    assert complete("replay", "s-") == ["s-one", "s-two"]
    assert complete("compare", "s-one", "--vs", "s-t") == ["s-two"]
    # After the last positional: the flags.
    assert "--follow" in complete("logs", "s-one", "alpha", "")


def test_bash_honours_the_coordination_root_on_the_line(
    sandbox: Sandbox, bash_script: Path, tmp_path: Path
) -> None:
    root = tmp_path / "elsewhere" / "my root"
    _sessions(sandbox, "--coordination-root", str(root))
    outside = tmp_path / "outside"
    outside.mkdir()

    def complete(*words: str) -> list[str]:
        return bash_complete(bash_script, "kodelyth-ecc", *words, cwd=outside)

    quoted = shlex.quote(str(root))
    assert complete("logs", "--coordination-root", quoted, "") == ["s-one", "s-two"]
    assert complete("logs", "--coord-root", quoted, "s-one", "") == SLUGS
    assert complete("diff", "s-one", "--coord-root", "=", quoted, "") == SLUGS
    escaped = str(root).replace(" ", "\\ ")
    assert complete("attach", "--coord-root", escaped, "s-one", "a") == ["alpha"]
    # Outside a repository and without the flag: nothing, quietly.
    assert complete("logs", "") == []


def test_bash_takes_candidates_as_data(sandbox: Sandbox, tmp_path: Path) -> None:
    """Whatever the candidates command prints is offered as it is: never expanded,
    globbed or run."""
    fake = tmp_path / "fake" / "kodelyth-ecc"
    fake.parent.mkdir()
    hostile = ["$(touch pwned)", "`touch pwned2`", "*", "a b", "-n"]
    fake.write_text("#!/bin/sh\nprintf '%s\\n' " + " ".join(map(shlex.quote, hostile)) + "\n")
    fake.chmod(0o755)
    script = _script("bash", tmp_path)
    work = tmp_path / "empty"
    work.mkdir()
    assert bash_complete(script, str(fake), "logs", "", cwd=work) == hostile
    assert bash_complete(script, str(fake), "logs", "s", "", cwd=work) == hostile
    assert bash_complete(script, str(fake), "logs", "$", cwd=work) == ["$(touch pwned)"]
    assert list(work.iterdir()) == []


# --------------------------------------------------------------------------- the candidates


def test_the_candidates_command(sandbox: Sandbox, tmp_path: Path) -> None:
    _sessions(sandbox)
    # A stray file, a symlink and a dot-dir are not sessions; a symlinked worker is no worker.
    (sandbox.coord_root / "notes.txt").write_text("")
    (sandbox.coord_root / "linked").symlink_to(tmp_path)
    (sandbox.coord_root / ".hidden").mkdir()
    (sandbox.coord_root / "s-one" / "zlink").symlink_to(tmp_path)
    result = sandbox.cli("__complete", "sessions")
    assert (result.code, result.stdout, result.stderr) == (0, "s-one\ns-two\n", "")
    assert sandbox.cli("__complete", "workers", "s-one").stdout == "alpha\nbeta\n"
    root = str(sandbox.coord_root)
    got = run_cli("__complete", "workers", "s-two", "--coord-root", root, cwd=tmp_path)
    assert got.stdout == "gamma\n"


@pytest.mark.parametrize(
    "words",
    [
        ["sessions"],
        ["workers", "s-one"],
        [],
        ["workers"],
        ["workers", "../s-one"],
        ["bogus"],
        ["sessions", "--coordination-root"],
        ["sessions", "--coordination-root", "/dev/null"],
        ["workers", "x\x1b[2J", "--coord-root", "/"],
    ],
)
def test_the_candidates_command_is_quiet_outside_a_repo(tmp_path: Path, words: list[str]) -> None:
    result = run_cli("__complete", *words, cwd=tmp_path)
    assert (result.code, result.stdout, result.stderr) == (0, "", ""), result


def test_the_candidates_command_loads_no_tmux_nor_status(sandbox: Sandbox) -> None:
    """Called on every Tab press: the directories alone (sessiondir), no tmux, no status
    collection, no session.json parsing (a benchmark, not this test, times it)."""
    _sessions(sandbox)
    heavy = ("kodelyth_ecc.tmux", "kodelyth_ecc.status", "kodelyth_ecc.coordination")
    code = (
        "import sys; from kodelyth_ecc.main import main; rc = main(sys.argv[1:]); "
        f"print(rc, [m for m in {heavy!r} if m in sys.modules])"
    )
    run = subprocess.run(
        [sys.executable, "-c", code, "__complete", "workers", "s-one"],
        cwd=sandbox.repo, capture_output=True, text=True, check=False, timeout=60,
    )  # fmt: skip
    assert run.stdout.splitlines() == ["alpha", "beta", "0 []"], run


# --------------------------------------------------------------------------- fish


def _needs(shell: str) -> str:
    """The shell's path; a test skips without it only outside CI."""
    path = shutil.which(shell)
    if path is None:
        if os.environ.get("CI"):
            pytest.fail(f"{shell} is not installed (CI installs it: .ci/run)")
        pytest.skip(f"{shell} is not installed")
    return path


@pytest.mark.parametrize(
    ("shell", "check"), [("bash", "-n"), ("zsh", "-n"), ("fish", "--no-execute")]
)
def test_each_script_is_valid_in_its_shell(tmp_path: Path, shell: str, check: str) -> None:
    run = subprocess.run(
        [_needs(shell), check, str(_script(shell, tmp_path))],
        capture_output=True, text=True, check=False, timeout=60,
    )  # fmt: skip
    assert run.returncode == 0 and not run.stderr, run


def fish_complete(fish: str, line: str, cwd: Path, source: str) -> list[str]:
    """fish's own completions for LINE (`complete -C`), the candidate before any tab."""
    run = subprocess.run(
        [fish, "--no-config", "-c", f"{source}; complete -C {shlex.quote(line)}"],
        cwd=cwd, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert run.returncode == 0 and not run.stderr, run
    return [entry.split("\t")[0] for entry in run.stdout.splitlines()]


def test_fish_completes_commands_flags_values_sessions_and_workers(
    sandbox: Sandbox, on_path: Path
) -> None:
    fish = _needs("fish")
    _sessions(sandbox)
    source = "kodelyth-ecc completion fish | source"  # the README's line

    def complete(line: str) -> list[str]:
        return fish_complete(fish, line, sandbox.repo, source)

    assert complete("kodelyth-ecc st") == ["status"]
    assert set(complete("kodelyth-ecc ")) == set(COMMANDS)
    assert set(complete("kodelyth-ecc logs -")) == _flags("logs")
    assert complete("kodelyth-ecc swarm --exe") == ["--execute"]
    assert complete("kodelyth-ecc swarm --harness ") == sorted(HARNESSES)
    assert complete("kodelyth-ecc swarm --harness=co") == ["--harness=codex"]
    assert complete("kodelyth-ecc replay x --on-divergence s") == ["stop"]
    assert complete("kodelyth-ecc logs ") == ["s-one", "s-two"]
    assert complete("kodelyth-ecc logs s-one ") == SLUGS
    assert complete("kodelyth-ecc logs s-one b") == ["beta"]
    assert complete("kodelyth-ecc swarm --task ") == []
    assert complete("kodelyth-ecc completion ") == ["bash", "fish", "zsh"]
    root = shlex.quote(str(sandbox.coord_root))
    outside = sandbox.root
    got = fish_complete(fish, f"kodelyth-ecc diff --coord-root {root} s-one ", outside, source)
    assert got == SLUGS


def test_fish_takes_candidates_as_data(tmp_path: Path) -> None:
    fish = _needs("fish")
    fake = tmp_path / "fake" / "kodelyth-ecc"
    fake.parent.mkdir()
    hostile = ["(touch pwned)", "$(touch pwned2)", "*"]
    fake.write_text("#!/bin/sh\nprintf '%s\\n' " + " ".join(map(shlex.quote, hostile)) + "\n")
    fake.chmod(0o755)
    work = tmp_path / "empty"
    work.mkdir()
    source = f"source {shlex.quote(str(_script('fish', tmp_path)))}"
    got = fish_complete(fish, f"{fake} logs ", work, source)
    assert sorted(got) == sorted(hostile)
    assert list(work.iterdir()) == []


# --------------------------------------------------------------------------- zsh


@pytest.fixture
def zsh_pane(sandbox: Sandbox, on_path: Path, tmp_path: Path) -> Iterator[str]:
    """An interactive zsh in the test's own tmux server, completion loaded as the README
    says (after compinit); yields the pane's target."""
    zsh = _needs("zsh")
    rc = tmp_path / "zshrc"
    rc.write_text(
        "autoload -U compinit && compinit -u -D\n"
        "source <(kodelyth-ecc completion zsh)\n"
        "zstyle ':completion:*' format '== %d'\n"
        "PS1='%% '\n"
    )
    tmux(
        "new-session", "-d", "-s", "zsh-completion", "-x", "160", "-y", "40",
        "-c", str(sandbox.repo), "-e", f"PATH={os.environ['PATH']}",
        f"{zsh} -f -i",
    )  # fmt: skip
    target = "zsh-completion"
    tmux("send-keys", "-t", target, "-l", f"source {shlex.quote(str(rc))}; print ready")
    tmux("send-keys", "-t", target, "Enter")
    retry_until(lambda: "\nready" in _screen(target), message="zsh to start")
    yield target


def _screen(target: str) -> str:
    return tmux("capture-pane", "-p", "-t", target).stdout


def _zsh_tab(target: str, typed: str, expect: str) -> str:
    """Type TYPED, press Tab, wait until the screen shows EXPECT (capture-pane drops
    trailing spaces); then clear the line."""
    tmux("send-keys", "-t", target, "-l", typed)
    tmux("send-keys", "-t", target, "Tab")

    def shown() -> str | None:
        screen = _screen(target)
        return screen if expect in screen else None

    screen: str = retry_until(shown, message=f"zsh to complete {typed!r} to {expect!r}")
    # Line editor keys, handled in order: kill the line, clear the screen.
    tmux("send-keys", "-t", target, "C-u", "C-l")
    retry_until(lambda: expect not in _screen(target), message="the screen to clear")
    return screen


def test_zsh_completes_commands_values_sessions_and_workers(
    sandbox: Sandbox, zsh_pane: str
) -> None:
    _sessions(sandbox)
    _zsh_tab(zsh_pane, "kodelyth-ecc stat", "% kodelyth-ecc status")
    _zsh_tab(zsh_pane, "kodelyth-ecc swarm --harness ec", "--harness echo")
    _zsh_tab(zsh_pane, "kodelyth-ecc replay x --on-divergence=co", "--on-divergence=continue")
    _zsh_tab(zsh_pane, "kodelyth-ecc logs s-t", "% kodelyth-ecc logs s-two")
    screen = _zsh_tab(zsh_pane, "kodelyth-ecc logs s-one ", "== worker")
    assert "alpha" in screen and "beta" in screen
    _zsh_tab(zsh_pane, "kodelyth-ecc logs --fol", "--follow")
    # Sessions of another coordination root, named on the line (quoted, as typed).
    far = sandbox.root / "far root"
    args = ["--task", "t", "--agents", "delta", "--harness", "echo", "--session", "s-far"]
    assert sandbox.cli("swarm", *args, "--coord-root", str(far), "--write-only").code == 0
    root = shlex.quote(str(far))
    _zsh_tab(zsh_pane, f"kodelyth-ecc diff --coord-root {root} s-f", "s-far")
    _zsh_tab(zsh_pane, f"kodelyth-ecc diff --coordination-root={root} s-far d", "s-far delta")
