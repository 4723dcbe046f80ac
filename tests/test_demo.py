"""``kodelyth-ecc demo``: an echo swarm in a throwaway repo, start to finish."""

from __future__ import annotations

import hashlib
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from kodelyth_ecc.bundle import read_bundle
from tests.conftest import Sandbox
from tests.support import git, run_cli
from tests.swarm_helpers import bin_dir_with, has_session, orchestrator_branches


def _lines(text: str, label: str) -> list[str]:
    """Values of the ``label   value`` lines the demo prints after the table."""
    return [
        line[len(label) :].strip() for line in text.splitlines() if line.startswith(label + " ")
    ]


def _bash(command: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """Run a command the demo printed, as a user pasting it into bash would."""
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    return subprocess.run(
        ["bash", "-c", command], cwd=cwd, env=env, capture_output=True, text=True, check=False
    )


def _kodelyth_on_path() -> bool:
    return Path(sys.executable).with_name("kodelyth-ecc").exists()


def _tool_as_printed() -> str:
    """How the demo (run as ``python -m kodelyth_ecc``) names itself in its hints."""
    if shutil.which("kodelyth-ecc"):
        return "kodelyth-ecc"
    return f"{shlex.quote(sys.executable)} -m kodelyth_ecc"


def test_the_follow_up_commands_work_after_the_readme_first_line(tmp_path: Path) -> None:
    """The README's first line runs `.venv/bin/kodelyth-ecc demo` with the venv not on
    PATH: every command the demo prints must still run as printed, after its `cd`."""
    program = Path(sys.executable).with_name("kodelyth-ecc")
    if not program.exists():
        assert not os.environ.get("CI"), "the README's install makes .venv/bin/kodelyth-ecc"
        pytest.skip("kodelyth-ecc is not installed beside this Python")
    bin_dir = str(program.parent)
    path = os.pathsep.join(p for p in os.environ["PATH"].split(os.pathsep) if p != bin_dir)
    assert shutil.which("kodelyth-ecc", path=path) is None
    env = {**os.environ, "PATH": path}
    relative = os.path.relpath(program, tmp_path)
    result = subprocess.run(
        [relative, "demo", "--dir", str(tmp_path), "--timeout", "30"],
        cwd=tmp_path, env=env, capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result
    printed = [_lines(result.stdout, label)[0] for label in ("status", "compare", "clean up")]
    assert all(shlex.quote(str(program)) in line for line in printed), printed
    for line in printed:
        ran = subprocess.run(
            ["bash", "-c", line], cwd=tmp_path, env=env, capture_output=True, text=True,
            check=False,
        )  # fmt: skip
        assert ran.returncode == 0, (line, ran)


def test_demo_runs_an_echo_swarm_replays_it_and_shows_where_everything_is(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    # A space in the path: every command the demo prints must survive being pasted.
    parent = tmp_path / "demo parent"
    parent.mkdir()
    # Run from outside any repository, as on a fresh machine.
    result = run_cli("demo", "--dir", str(parent), "--timeout", "30", cwd=tmp_path)
    assert result.code == 0, result
    assert "Traceback" not in result.stderr

    blocks = result.stdout.split("\n\n")
    table = blocks[1].splitlines()
    assert table[0].split() == ["WORKER", "STATE", "EXIT", "DURATION", "PANE", "HANDOFF"]
    rows = [row.split() for row in table[1:]]
    assert len(rows) == 3
    assert {row[1] for row in rows} == {"completed"}
    assert {row[2] for row in rows} == {"0"}
    first_agents = sorted(row[0] for row in rows)

    # The replay, with another agent list, and its own table.
    (replay_line,) = _lines(result.stdout, "replay")
    replay_table = blocks[3].splitlines()
    assert replay_table[0].split()[0] == "WORKER"
    replay_rows = [row.split() for row in replay_table[1:]]
    assert sorted(row[0] for row in replay_rows) == ["security-reviewer", "tdd-guide"]
    assert {(row[1], row[2]) for row in replay_rows} == {("completed", "0")}

    (attach,) = _lines(result.stdout, "tmux")
    match = re.fullmatch(r"tmux attach -t (demo-[0-9a-f]+)", attach.strip())
    assert match, attach
    session = match.group(1)
    replay = f"{session}-replay-1"
    assert replay_line == f"{replay}: agents security-reviewer, tdd-guide"
    assert f"\n              tmux attach -t {replay}\n" in result.stdout
    assert has_session(session)  # on the sandbox's own tmux server
    assert has_session(replay)

    (repo_line,) = _lines(result.stdout, "demo repo")
    repo = Path(repo_line.strip())
    assert parent in repo.parents
    assert git(repo, "log", "--format=%s").strip() == "demo: initial commit"
    worktrees = [Path(p.strip()) for p in _lines(result.stdout, "worktree")]
    assert len(worktrees) == 3
    assert all(w.is_dir() and parent in w.parents for w in worktrees)
    assert len(orchestrator_branches(repo)) == 3 + 2
    (coord,) = _lines(result.stdout, "coordination")
    (handoff,) = _lines(result.stdout, "handoff")
    assert Path(coord.strip()).is_dir()
    slug = Path(handoff.strip()).parent.name
    assert f"demo worker {slug}" in Path(handoff.strip()).read_text()
    (status_line,) = _lines(result.stdout, "status")
    tool = _tool_as_printed()
    assert status_line == f"cd {shlex.quote(str(repo))} && {tool} status"

    # Both bundles exist, validate, and the second says it replays the first.
    exported = [Path(p) for p in _lines(result.stdout, "exported")]
    (bundles_line,) = _lines(result.stdout, "bundles")
    second_line = result.stdout.split(f"bundles       {bundles_line}\n", 1)[1].splitlines()[0]
    assert exported == [Path(bundles_line), Path(second_line.strip())]
    first, second = exported
    assert first.name == f"{session}.bundle.json"
    assert second.name == f"{replay}.bundle.json"
    origin = read_bundle(str(first))
    again = read_bundle(str(second))
    assert origin.session == session
    assert [w.slug for w in origin.workers] == first_agents
    assert again.session == replay
    assert [w.slug for w in again.workers] == ["security-reviewer", "tdd-guide"]
    assert again.meta["replay_of"] == {
        "session": session,
        "bundle_sha256": hashlib.sha256(first.read_bytes()).hexdigest(),
    }
    assert again.meta["variation"] == {"agents": ["security-reviewer", "tdd-guide"]}
    assert again.meta["task"] == origin.meta["task"]

    # The printed compare command runs and shows the agents that differ.
    (compare,) = _lines(result.stdout, "compare")
    q = shlex.quote
    assert compare == f"{tool} compare {q(str(first))} {q(str(second))}"
    compared = _bash(compare, cwd=tmp_path)
    assert compared.returncode == 0, compared
    assert "tdd-guide" not in first_agents
    assert re.search(r"^  tdd-guide +only B ", compared.stdout, re.MULTILINE), compared
    # The printed clean-up command really cleans up, both sessions and the directory.
    (clean,) = _lines(result.stdout, "clean up")
    down = _bash(clean, cwd=tmp_path)
    assert down.returncode == 0, down
    assert not has_session(session)
    assert not has_session(replay)
    assert not repo.exists()
    assert list(parent.iterdir()) == []
    # Nothing touched the sandbox's own repository.
    assert orchestrator_branches(sandbox.repo) == []
    assert not sandbox.coord_root.exists()


@pytest.mark.parametrize(
    ("programs", "missing"), [(["git"], "tmux"), (["tmux"], "git")], ids=["no-tmux", "no-git"]
)
def test_demo_without_its_tools_fails_cleanly(
    sandbox: Sandbox, tmp_path: Path, programs: list[str], missing: str
) -> None:
    parent = tmp_path / "demo-parent"
    parent.mkdir()
    env = {**os.environ, "PATH": str(bin_dir_with(tmp_path / "bin", programs))}
    result = run_cli("demo", "--dir", str(parent), cwd=tmp_path, env=env)
    assert result.code == 1, result
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result
    assert missing in lines[0]
    assert list(parent.iterdir()) == []  # the throwaway repo went too
