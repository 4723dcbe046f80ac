"""Teardown after ``apply``: applied work counts as saved only while git confirms it
(a forged applied.json proves nothing), the applied refs go with the session's
branches, and a teardown that keeps the coordination dir marks session.json."""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Sandbox
from tests.support import Result, git
from tests.swarm_helpers import (
    branch_of,
    has_session,
    orchestrator_branches,
    session_record,
    worktree_of,
)
from tests.test_apply import LAUNCHER, finished, show

ISO = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ")


def _applied(sandbox: Sandbox, session: str, *args: str) -> Result:
    result = sandbox.cli("apply", session, "alpha", *args)
    assert result.code == 0, result
    return result


def _refused(sandbox: Sandbox, session: str, needle: str) -> None:
    result = sandbox.cli("teardown", session)
    assert result.code == 1, result
    assert "refusing to tear down" in result.stderr and needle in result.stderr, result
    assert worktree_of(sandbox, session, "alpha").is_dir()
    assert orchestrator_branches(sandbox.repo) == [branch_of(session, "alpha")]


def _refs(sandbox: Sandbox) -> str:
    return git(sandbox.repo, "for-each-ref", "--format=%(refname)", "refs/kodelyth/")


@pytest.mark.parametrize("mode", ["squash", "merge", "cherry-pick"])
def test_teardown_after_apply_needs_no_force(sandbox: Sandbox, mode: str) -> None:
    session = f"td-{mode}"
    finished(sandbox, session)
    _refused(sandbox, session, "alpha (2 uncommitted, 1 commits ahead)")
    _applied(sandbox, session, f"--{mode}")
    assert _refs(sandbox) == f"refs/kodelyth/applied/{session}/alpha\n"

    down = sandbox.cli("teardown", session, "--json")
    assert down.code == 0, down
    data = json.loads(down.stdout)
    main = git(sandbox.repo, "rev-parse", "main").strip()
    assert data["applied"] == [{"worker": "alpha", "target": "main", "result": main}]
    assert data["saved_patches"] == [] and data["saved_ignored"] == []
    assert data["deleted_refs"] == [f"refs/kodelyth/applied/{session}/alpha"]
    assert _refs(sandbox) == ""
    assert orchestrator_branches(sandbox.repo) == []
    assert not worktree_of(sandbox, session, "alpha").exists()
    assert not has_session(session)
    assert show(sandbox.repo, "main", "new-alpha.txt") == "brand new\n"


def test_teardown_text_says_the_work_is_saved(sandbox: Sandbox) -> None:
    finished(sandbox, "txt")
    _applied(sandbox, "txt")
    down = sandbox.cli("teardown", "txt")
    assert down.code == 0, down
    main = git(sandbox.repo, "rev-parse", "main").strip()
    lines = down.stdout.splitlines()
    assert lines[0] == f"work of alpha is saved: applied to main as {main[:12]}"
    assert "deleted ref refs/kodelyth/applied/txt/alpha" in lines


@pytest.mark.parametrize(
    "change",
    ["edit", "new-file", "commit", "delete", "chmod"],
)
def test_work_changed_after_apply_is_unsaved_again(sandbox: Sandbox, change: str) -> None:
    session = f"chg-{change}"
    finished(sandbox, session)
    _applied(sandbox, session)
    worktree = worktree_of(sandbox, session, "alpha")
    if change == "edit":
        (worktree / "src" / "app.py").write_text("print('hello')\nedited\nmore\n")
    elif change == "new-file":
        (worktree / "later.txt").write_text("written after the apply\n")
    elif change == "commit":
        (worktree / "later.txt").write_text("committed after the apply\n")
        git(worktree, "add", "later.txt")
        git(worktree, "commit", "--quiet", "--no-gpg-sign", "-m", "later")
    elif change == "chmod":
        (worktree / "src" / "app.py").chmod(0o755)  # the mode alone
    else:
        (worktree / "new-alpha.txt").unlink()
    _refused(sandbox, session, "alpha (")
    if change in ("new-file", "commit"):
        # Applying again (here without conflicts with the first apply) saves it again.
        _applied(sandbox, session)
        down = sandbox.cli("teardown", session)
        assert down.code == 0, down


def test_a_reset_target_branch_no_longer_saves_the_work(sandbox: Sandbox) -> None:
    finished(sandbox, "reset")
    _applied(sandbox, "reset")
    git(sandbox.repo, "reset", "--quiet", "--hard", "HEAD~1")
    _refused(sandbox, "reset", "alpha (2 uncommitted, 1 commits ahead)")
    _applied(sandbox, "reset", "--onto", "main")
    git(sandbox.repo, "branch", "-m", "main", "renamed")
    _refused(sandbox, "reset", "alpha (")


def _snapshot_of(worktree: Path, tmp_path: Path) -> str:
    """The worker's real current state as a commit, made as apply makes it."""
    env = {**os.environ, "GIT_INDEX_FILE": str(tmp_path / "forged-index")}

    def run(*args: str) -> str:
        return subprocess.run(
            ["git", *args], cwd=worktree, env=env, capture_output=True, text=True, check=True
        ).stdout.strip()

    run("read-tree", "HEAD")
    run("add", "--all")
    tree = run("write-tree")
    return run("commit-tree", tree, "-p", "HEAD", "-m", "forged")


def _forge(sandbox: Sandbox, session: str, **fields: str) -> Path:
    path = sandbox.coord_root / session / "alpha" / "applied.json"
    main = git(sandbox.repo, "rev-parse", "main").strip()
    data: dict[str, Any] = {
        "schema": "kodelyth.applied/v1",
        "session": session,
        "worker": "alpha",
        "mode": "squash",
        "target": "main",
        "onto": main,
        "result": main,
        **fields,
    }
    path.write_text(json.dumps(data))
    return path


def test_a_forged_applied_record_does_not_fool_teardown(sandbox: Sandbox, tmp_path: Path) -> None:
    finished(sandbox, "forge")
    base = session_record(sandbox, "forge")["base_commit"]
    worktree = worktree_of(sandbox, "forge", "alpha")
    snapshot = _snapshot_of(worktree, tmp_path)
    head = git(worktree, "rev-parse", "HEAD").strip()
    expected = "alpha (2 uncommitted, 1 commits ahead)"
    # The worker's true state, claimed to be on main as main's tip (where it is not).
    for mode in ("squash", "merge", "cherry-pick"):
        _forge(sandbox, "forge", snapshot=snapshot, mode=mode)
        _refused(sandbox, "forge", expected)
    # The base as the result, the onto, or both.
    _forge(sandbox, "forge", snapshot=snapshot, result=base, onto=base)
    _refused(sandbox, "forge", expected)
    # The snapshot as its own onto, or the worker's HEAD standing in for everything.
    _forge(sandbox, "forge", snapshot=snapshot, onto=snapshot)
    _refused(sandbox, "forge", expected)
    _forge(sandbox, "forge", snapshot=head, onto=head, result=head)
    _refused(sandbox, "forge", expected)
    # The worker's own branch as the target.
    _forge(sandbox, "forge", snapshot=snapshot, target=branch_of("forge", "alpha"),
           onto=head, result=head)  # fmt: skip
    _refused(sandbox, "forge", expected)
    # Not the file apply writes: garbage, a link to a real record, a FIFO.
    path = _forge(sandbox, "forge", snapshot="not-a-sha")
    _refused(sandbox, "forge", expected)
    path.write_text("{")
    _refused(sandbox, "forge", expected)
    path.unlink()
    os.mkfifo(path)
    _refused(sandbox, "forge", expected)
    path.unlink()
    _applied(sandbox, "forge", "--onto", "main")
    real = path.read_text()
    path.unlink()
    elsewhere = tmp_path / "applied.json"
    elsewhere.write_text(real)
    path.symlink_to(elsewhere)
    _refused(sandbox, "forge", expected)
    path.unlink()
    path.write_text(real)
    assert sandbox.cli("teardown", "forge").code == 0


def test_a_record_naming_the_worker_branch_as_target_saves_nothing(sandbox: Sandbox) -> None:
    """A worker with commits only: its snapshot is its HEAD, which its own branch holds.
    That branch goes with the teardown, so it cannot be where the work is saved."""
    committed_only = LAUNCHER.split(" && printf 'edited", maxsplit=1)[0]
    finished(sandbox, "own", launcher=committed_only)
    head = git(worktree_of(sandbox, "own", "alpha"), "rev-parse", "HEAD").strip()
    _forge(sandbox, "own", target=branch_of("own", "alpha"), onto=head, result=head,
           snapshot=head)  # fmt: skip
    _refused(sandbox, "own", "alpha (0 uncommitted, 1 commits ahead)")


def test_ignored_files_are_not_carried_and_still_refused(sandbox: Sandbox) -> None:
    (sandbox.repo / ".gitignore").write_text(".env\n")
    git(sandbox.repo, "add", ".gitignore")
    git(sandbox.repo, "commit", "--quiet", "--no-gpg-sign", "-m", "ignores")
    finished(sandbox, "ign", launcher=LAUNCHER + " && printf 'TOKEN=x\\n' > .env")
    result = _applied(sandbox, "ign")
    assert "not carried: 1 git-ignored file (.env)" in result.stdout, result
    assert "cat-file" not in result.stdout
    assert git(sandbox.repo, "ls-tree", "-r", "--name-only", "main").count(".env") == 0
    _refused(sandbox, "ign", "alpha (1 ignored file in .env)")
    forced = sandbox.cli("teardown", "ign", "--force", "--json")
    assert forced.code == 0, forced
    data = json.loads(forced.stdout)
    assert data["saved_patches"] == []  # the applied work needs no patch
    (copies,) = data["saved_ignored"]
    assert (Path(copies) / ".env").read_text() == "TOKEN=x\n"


def test_force_added_ignored_files_are_work_apply_carries(sandbox: Sandbox) -> None:
    """A file the worker staged with `git add -f` is in its index though ignored: apply
    brings it, and a change to it afterwards is unsaved work again."""
    (sandbox.repo / ".gitignore").write_text("*.local\n")
    git(sandbox.repo, "add", ".gitignore")
    git(sandbox.repo, "commit", "--quiet", "--no-gpg-sign", "-m", "ignores")
    staged = LAUNCHER + " && printf 'one\\n' > cfg.local && git add -f cfg.local"
    finished(sandbox, "forced", launcher=staged)
    _applied(sandbox, "forced")
    assert show(sandbox.repo, "main", "cfg.local") == "one\n"
    (worktree_of(sandbox, "forced", "alpha") / "cfg.local").write_text("two\n")
    _refused(sandbox, "forced", "alpha (")


def test_force_patch_holds_a_force_added_ignored_file(sandbox: Sandbox) -> None:
    """Staged with `git add -f` and not committed: no ignored-file copy takes it (git
    does not list it as ignored), so the patch must."""
    (sandbox.repo / ".gitignore").write_text("*.local\n")
    git(sandbox.repo, "add", ".gitignore")
    git(sandbox.repo, "commit", "--quiet", "--no-gpg-sign", "-m", "ignores")
    finished(sandbox, "fpatch", launcher="printf 'kept\\n' > cfg.local && git add -f cfg.local")
    _refused(sandbox, "fpatch", "alpha (1 uncommitted, 0 commits ahead)")
    forced = sandbox.cli("teardown", "fpatch", "--force", "--json")
    assert forced.code == 0, forced
    (patch,) = json.loads(forced.stdout)["saved_patches"]
    assert "+kept" in Path(patch).read_text()


def test_unresolved_conflicts_are_not_saved_and_force_keeps_a_patch(sandbox: Sandbox) -> None:
    finished(sandbox, "cnf")
    (sandbox.repo / "README.md").write_text("# test repo\nmain line\n")
    git(sandbox.repo, "commit", "--quiet", "--no-gpg-sign", "-am", "main readme")
    stopped = sandbox.cli("apply", "cnf", "alpha")
    assert stopped.code == 1, stopped
    _refused(sandbox, "cnf", "alpha (2 uncommitted, 1 commits ahead)")
    forced = sandbox.cli("teardown", "cnf", "--force", "--json")
    assert forced.code == 0, forced
    (patch,) = json.loads(forced.stdout)["saved_patches"]
    text = Path(patch).read_text()
    assert "+worker line" in text and "+edited" in text and "+brand new" in text


# --- teardown marks session.json -----------------------------------------------------------


def test_teardown_marks_the_session_torn_down(sandbox: Sandbox) -> None:
    finished(sandbox, "mark", launcher="echo done", agents="alpha,beta")
    before = session_record(sandbox, "mark")
    assert "torn_down_at" not in before
    down = sandbox.cli("teardown", "mark")
    assert down.code == 0, down
    after = session_record(sandbox, "mark")
    assert ISO.fullmatch(after["torn_down_at"]), after
    # Everything else is as it was.
    assert {k: v for k, v in after.items() if k != "torn_down_at"} == before
    again = sandbox.cli("teardown", "mark")
    assert again.code == 0, again
    assert session_record(sandbox, "mark")["torn_down_at"] == after["torn_down_at"]
    assert not list((sandbox.coord_root / "mark").glob(".session.json.*"))


def test_a_refused_teardown_does_not_mark_the_session(sandbox: Sandbox) -> None:
    finished(sandbox, "nomark")
    _refused(sandbox, "nomark", "alpha (")
    assert "torn_down_at" not in session_record(sandbox, "nomark")
    purged = sandbox.cli("teardown", "nomark", "--force", "--purge")
    assert purged.code == 0, purged
    assert not (sandbox.coord_root / "nomark").exists()
