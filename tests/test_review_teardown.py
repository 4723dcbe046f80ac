"""Teardown cases found in review: work that lives only on a worktree's detached
HEAD, and a worktree directory someone already deleted by hand."""

from __future__ import annotations

import shutil

from tests.conftest import Sandbox
from tests.support import git
from tests.swarm_helpers import (
    branch_of,
    has_session,
    orchestrator_branches,
    started,
    wait_done,
    worktree_of,
)


def _commit_on_detached_head(sandbox: Sandbox, session: str, slug: str) -> str:
    worktree = worktree_of(sandbox, session, slug)
    git(worktree, "checkout", "--quiet", "--detach")
    (worktree / "precious.txt").write_text("only here\n")
    git(worktree, "add", "precious.txt")
    git(worktree, "commit", "--quiet", "--no-gpg-sign", "-m", "precious work")
    return git(worktree, "rev-parse", "HEAD").strip()


def test_commits_on_a_detached_head_are_unsaved_work(sandbox: Sandbox) -> None:
    started(sandbox, "det")
    wait_done(sandbox, "det")
    _commit_on_detached_head(sandbox, "det", "alpha")

    refused = sandbox.cli("teardown", "det")
    assert refused.code == 1, refused
    assert "refusing to tear down" in refused.stderr
    assert "alpha (0 uncommitted, 1 commits ahead)" in refused.stderr
    assert worktree_of(sandbox, "det", "alpha").is_dir()
    assert has_session("det")

    forced = sandbox.cli("teardown", "det", "--force")
    assert forced.code == 0, forced
    (patch,) = sorted((sandbox.coord_root / "det.teardown").glob("alpha-*.patch"))
    assert "+only here" in patch.read_text()
    assert not worktree_of(sandbox, "det", "alpha").exists()


def test_commits_on_another_branch_are_kept_by_that_branch(sandbox: Sandbox) -> None:
    """A worker that moved to a branch of its own keeps its commits there: no refusal."""
    started(sandbox, "own", agents="alpha")
    wait_done(sandbox, "own")
    worktree = worktree_of(sandbox, "own", "alpha")
    git(worktree, "switch", "--quiet", "-c", "worker-own-branch")
    (worktree / "kept.txt").write_text("kept\n")
    git(worktree, "add", "kept.txt")
    git(worktree, "commit", "--quiet", "--no-gpg-sign", "-m", "kept")
    result = sandbox.cli("teardown", "own")
    assert result.code == 0, result
    assert "kept.txt" in git(sandbox.repo, "ls-tree", "--name-only", "worker-own-branch")


def test_worktree_deleted_by_hand_is_still_torn_down(sandbox: Sandbox) -> None:
    started(sandbox, "gone")
    wait_done(sandbox, "gone")
    shutil.rmtree(worktree_of(sandbox, "gone", "alpha"))

    result = sandbox.cli("teardown", "gone")
    assert result.code == 0, result
    assert not has_session("gone")
    assert orchestrator_branches(sandbox.repo) == []
    assert not worktree_of(sandbox, "gone", "beta").exists()
    assert "prunable" not in git(sandbox.repo, "worktree", "list", "--porcelain")


def test_worktree_deleted_by_hand_keeps_the_branch_commits_safe(sandbox: Sandbox) -> None:
    started(sandbox, "gone2", agents="alpha")
    wait_done(sandbox, "gone2")
    worktree = worktree_of(sandbox, "gone2", "alpha")
    (worktree / "new.txt").write_text("committed\n")
    git(worktree, "add", "new.txt")
    git(worktree, "commit", "--quiet", "--no-gpg-sign", "-m", "work")
    shutil.rmtree(worktree)

    refused = sandbox.cli("teardown", "gone2")
    assert refused.code == 1, refused
    assert "1 commits ahead" in refused.stderr
    assert orchestrator_branches(sandbox.repo) == [branch_of("gone2", "alpha")]
    forced = sandbox.cli("teardown", "gone2", "--force")
    assert forced.code == 0, forced
    (patch,) = sorted((sandbox.coord_root / "gone2.teardown").glob("alpha-*.patch"))
    assert "+committed" in patch.read_text()
    assert orchestrator_branches(sandbox.repo) == []
