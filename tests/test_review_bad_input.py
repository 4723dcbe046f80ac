"""Bad input found in review: a repository without commits, a bare repository."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.conftest import Sandbox
from tests.support import git, run_cli, tmux
from tests.swarm_helpers import has_session, orchestrator_branches

MODES = ((), ("--json",), ("--write-only",), ("--execute",))


@pytest.mark.parametrize("mode", MODES, ids=["dry-run", "json", "write-only", "execute"])
def test_repo_without_commits_says_so(sandbox: Sandbox, tmp_path: Path, mode: tuple[str]) -> None:
    repo = tmp_path / "fresh"
    repo.mkdir()
    git(repo, "init", "--quiet")
    before = sorted(os.listdir(repo))
    siblings = sorted(os.listdir(tmp_path))
    result = run_cli(
        "swarm", "--task", "t", "--harness", "echo", "--session", "s1", *mode,
        cwd=repo, env=os.environ,
    )  # fmt: skip
    assert result.code == 1, result
    (line,) = result.stderr.splitlines()
    assert "has no commits yet" in line and "commit" in line.split(":", 2)[2], line
    assert "Traceback" not in result.stderr
    assert result.stdout == ""
    assert sorted(os.listdir(repo)) == before
    assert sorted(os.listdir(tmp_path)) == siblings


def test_bare_repository_is_not_a_work_tree(sandbox: Sandbox, tmp_path: Path) -> None:
    bare = tmp_path / "bare.git"
    git(tmp_path, "init", "--quiet", "--bare", str(bare))
    before = sorted(os.listdir(bare))
    for mode in MODES:
        result = run_cli(
            "swarm", "--task", "t", "--harness", "echo", *mode, cwd=bare, env=os.environ
        )
        assert result.code == 1, result
        (line,) = result.stderr.splitlines()
        assert "not inside a git work tree" in line
        assert sorted(os.listdir(bare)) == before


def test_a_taken_tmux_session_alone_is_refused_and_left_alone(sandbox: Sandbox) -> None:
    """Only the tmux session is taken (the user's own, say): nothing else collides."""
    tmux("new-session", "-d", "-s", "s1")
    args = ("swarm", "--task", "t", "--harness", "echo", "--session", "s1")
    result = sandbox.cli(*args, "--execute")
    assert result.code == 1, result
    (line,) = result.stderr.splitlines()
    assert "tmux session 's1' exists" in line and "--replace" in line, line
    assert has_session("s1")
    assert not sandbox.coord_root.exists()
    assert orchestrator_branches(sandbox.repo) == []
    dry = sandbox.cli(*args)
    assert dry.code == 0, dry
    assert "tmux session 's1' exists" in dry.stderr
