"""Teardown cases found in review: work that lives only on a worktree's detached
HEAD, and a worktree directory someone already deleted by hand."""

from __future__ import annotations

import shutil
from pathlib import Path

from tests.conftest import Sandbox
from tests.support import git, tmux
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


def test_js_session_force_patch_keeps_committed_work(sandbox: Sandbox) -> None:
    """Without session.json the base is the repo's HEAD, not each worktree's own HEAD:
    a patch against the worktree's HEAD would leave out what the worker committed."""
    import json

    session = "js-like"
    coord = sandbox.coord_root / session / "alpha"
    coord.mkdir(parents=True)
    worktree = worktree_of(sandbox, session, "alpha")
    branch = branch_of(session, "alpha")
    git(sandbox.repo, "worktree", "add", "--quiet", "-b", branch, str(worktree))
    (coord / "status.md").write_text(
        f"# Status: alpha\n\n- State: not started\n- Branch: `{branch_of(session, 'alpha')}`\n"
        f"- Worktree: `{worktree}`\n\nstate: completed\n"
    )
    (worktree / "committed.txt").write_text("committed by the worker\n")
    git(worktree, "add", "committed.txt")
    git(worktree, "commit", "--quiet", "--no-gpg-sign", "-m", "work")
    refused = sandbox.cli("teardown", session)
    assert refused.code == 1, refused
    forced = sandbox.cli("teardown", session, "--force", "--json")
    assert forced.code == 0, forced
    (patch,) = json.loads(forced.stdout)["saved_patches"]
    with open(patch, encoding="utf-8") as fh:
        assert "+committed by the worker" in fh.read()


def test_a_tmux_session_that_is_not_ours_is_left_alone(sandbox: Sandbox) -> None:
    """`teardown NAME` with no coordination dir must not kill the user's own tmux
    session that happens to be called NAME."""
    tmux("new-session", "-d", "-s", "mywork")
    result = sandbox.cli("teardown", "mywork")
    assert result.code == 1, result
    (line,) = result.stderr.strip().splitlines()
    assert "no session 'mywork'" in line and "tmux kill-session" in line, line
    assert has_session("mywork")


def test_teardown_under_the_wrong_root_touches_nothing(sandbox: Sandbox, tmp_path: Path) -> None:
    coord = tmp_path / "coord"
    started(sandbox, "away", "--coordination-root", str(coord))
    waited = sandbox.cli("status", "away", "--coordination-root", str(coord), "--wait")
    assert waited.code == 0, waited
    result = sandbox.cli("teardown", "away")  # forgot --coordination-root
    assert result.code == 1, result
    assert "--coordination-root" in result.stderr
    assert has_session("away")
    assert worktree_of(sandbox, "away", "alpha").is_dir()
    done = sandbox.cli("teardown", "away", "--coordination-root", str(coord))
    assert done.code == 0, done
    assert not has_session("away")
    assert orchestrator_branches(sandbox.repo) == []


def test_a_branch_checked_out_elsewhere_stops_teardown_before_it_starts(
    sandbox: Sandbox,
) -> None:
    started(sandbox, "co")
    wait_done(sandbox, "co")
    git(worktree_of(sandbox, "co", "alpha"), "checkout", "--quiet", "--detach")
    git(sandbox.repo, "checkout", "--quiet", branch_of("co", "alpha"))  # reviewing it
    result = sandbox.cli("teardown", "co")
    assert result.code == 1, result
    (line,) = result.stderr.strip().splitlines()
    assert f"branch {branch_of('co', 'alpha')} is checked out in" in line, line
    # Nothing was torn down halfway.
    assert has_session("co")
    assert worktree_of(sandbox, "co", "alpha").is_dir()
    assert worktree_of(sandbox, "co", "beta").is_dir()
    assert sorted(orchestrator_branches(sandbox.repo)) == [
        branch_of("co", "alpha"),
        branch_of("co", "beta"),
    ]
    git(sandbox.repo, "checkout", "--quiet", "main")
    again = sandbox.cli("teardown", "co")
    assert again.code == 0, again
    assert orchestrator_branches(sandbox.repo) == []
