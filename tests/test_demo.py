"""``kodelyth-ecc demo``: an echo swarm in a throwaway repo, start to finish."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from tests.conftest import Sandbox
from tests.support import git, run_cli
from tests.swarm_helpers import bin_dir_with, has_session, orchestrator_branches


def _lines(text: str, label: str) -> list[str]:
    """Values of the ``label   value`` lines the demo prints after the table."""
    return [
        line[len(label) :].strip() for line in text.splitlines() if line.startswith(label + " ")
    ]


def test_demo_runs_an_echo_swarm_and_shows_where_everything_is(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    parent = tmp_path / "demo-parent"
    parent.mkdir()
    # Run from outside any repository, as on a fresh machine.
    result = run_cli("demo", "--dir", str(parent), "--timeout", "30", cwd=tmp_path)
    assert result.code == 0, result
    assert "Traceback" not in result.stderr

    table = result.stdout.split("\n\n")[1].splitlines()
    assert table[0].split() == ["WORKER", "STATE", "EXIT", "DURATION", "PANE", "HANDOFF"]
    rows = [row.split() for row in table[1:]]
    assert len(rows) == 3
    assert {row[1] for row in rows} == {"completed"}
    assert {row[2] for row in rows} == {"0"}

    (attach,) = _lines(result.stdout, "tmux")
    match = re.fullmatch(r"tmux attach -t (demo-[0-9a-f]+)", attach.strip())
    assert match, attach
    session = match.group(1)
    assert has_session(session)  # on the sandbox's own tmux server

    (repo_line,) = _lines(result.stdout, "demo repo")
    repo = Path(repo_line.strip())
    assert parent in repo.parents
    assert git(repo, "log", "--format=%s").strip() == "demo: initial commit"
    worktrees = [Path(p.strip()) for p in _lines(result.stdout, "worktree")]
    assert len(worktrees) == 3
    assert all(w.is_dir() and parent in w.parents for w in worktrees)
    assert len(orchestrator_branches(repo)) == 3
    (coord,) = _lines(result.stdout, "coordination")
    (handoff,) = _lines(result.stdout, "handoff")
    assert Path(coord.strip()).is_dir()
    slug = Path(handoff.strip()).parent.name
    assert f"demo worker {slug}" in Path(handoff.strip()).read_text()
    # The printed clean-up command really cleans up.
    (status_line,) = _lines(result.stdout, "status")
    assert status_line.strip() == f"cd {repo} && kodelyth-ecc status {session}"
    down = run_cli("teardown", session, "--purge", cwd=repo)
    assert down.code == 0, down
    assert not has_session(session)
    assert orchestrator_branches(repo) == []
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
