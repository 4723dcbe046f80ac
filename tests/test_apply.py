"""``apply``: a worker's commits, edits and new files brought into the user's branch in
each mode, refusals that change nothing, and conflicts that stop as git stops (the
abort gives the branch back byte for byte; the worker is never touched)."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Sandbox
from tests.support import Result, git, make_failing_tool
from tests.swarm_helpers import (
    branch_of,
    registered_worktrees,
    session_record,
    started,
    wait_done,
    wait_until_states,
    worktree_of,
)

# A commit to README.md, an uncommitted edit to src/app.py and a new untracked file.
LAUNCHER = (
    "printf 'worker line\\n' >> README.md && git add README.md && "
    "git -c user.name=agent -c user.email=agent@example.invalid commit -q --no-gpg-sign "
    "-m 'agent: readme' && "
    "printf 'edited\\n' >> src/app.py && printf 'brand new\\n' > new-{worker_slug}.txt"
)
COORD = ".orchestration"
STATUS = ("status", "--porcelain", "--untracked-files=all", "--ignored")


def finished(sandbox: Sandbox, session: str, launcher: str = LAUNCHER, **kwargs: Any) -> None:
    kwargs.setdefault("agents", "alpha")
    started(sandbox, session, launcher=launcher, **kwargs)
    wait_done(sandbox, session)


def files(root: Path, skip: tuple[str, ...] = (".git", COORD)) -> dict[str, tuple[bytes, int]]:
    """Every file under ``root`` (bytes and mode), symlinks as their target."""
    found: dict[str, tuple[bytes, int]] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        rel_dir = os.path.relpath(dirpath, root)
        dirnames[:] = [d for d in dirnames if (d if rel_dir == "." else "") not in skip]
        for name in filenames:
            path = Path(dirpath) / name
            rel = os.path.relpath(path, root)
            if rel in skip:
                continue
            info = path.lstat()
            data = os.readlink(path).encode() if path.is_symlink() else path.read_bytes()
            found[rel] = (data, info.st_mode)
    return found


def checkout_state(path: Path) -> dict[str, Any]:
    """What the user's checkout is: files, HEAD, index, branches, in-progress state."""
    git_dir = Path(git(path, "rev-parse", "--absolute-git-dir").strip())
    return {
        "files": files(path),
        "head": git(path, "rev-parse", "HEAD"),
        "symbolic": git(path, "symbolic-ref", "-q", "HEAD"),
        "index": git(path, "ls-files", "--stage"),
        "branches": git(path, "for-each-ref", "--format=%(refname) %(objectname)", "refs/heads"),
        "status": git(path, *STATUS, "--", ".", f":(exclude){COORD}"),
        # Operations half way (MERGE_HEAD, sequencer/ ...); ORIG_HEAD is git's note of
        # where a branch was, which any merge or reset leaves.
        "state": sorted(
            p.name
            for p in git_dir.iterdir()
            if (p.name.endswith("_HEAD") and p.name != "ORIG_HEAD") or p.is_dir()
        ),
    }


def worker_state(sandbox: Sandbox, session: str, slug: str) -> dict[str, Any]:
    """The worker's worktree, its index file's bytes and its branch (read without
    anything that would refresh the index)."""
    worktree = worktree_of(sandbox, session, slug)
    index = Path(
        git(worktree, "rev-parse", "--path-format=absolute", "--git-path", "index").strip()
    )
    return {
        "files": files(worktree, skip=(".git",)),
        "index": hashlib.sha256(index.read_bytes()).hexdigest(),
        "head": git(worktree, "rev-parse", "HEAD"),
        "branch": git(sandbox.repo, "rev-parse", branch_of(session, slug)),
    }


def apply(sandbox: Sandbox, *args: str) -> Result:
    return sandbox.cli("apply", *args)


def log_subjects(repo: Path, rev: str = "main") -> list[str]:
    return git(repo, "log", "--format=%s", rev).splitlines()


def show(repo: Path, rev: str, path: str) -> str:
    return git(repo, "show", f"{rev}:{path}")


def applied_record(sandbox: Sandbox, session: str, slug: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(
        (sandbox.coord_root / session / slug / "applied.json").read_text()
    )
    return data


def the_work_is_in(sandbox: Sandbox, rev: str, slug: str = "alpha") -> None:
    repo = sandbox.repo
    assert show(repo, rev, "README.md") == "# test repo\nworker line\n"
    assert show(repo, rev, "src/app.py") == "print('hello')\nedited\n"
    assert show(repo, rev, f"new-{slug}.txt") == "brand new\n"


# --- the three modes --------------------------------------------------------------------


def test_squash_is_one_commit_with_the_whole_change(sandbox: Sandbox) -> None:
    finished(sandbox, "sq")
    before_main = git(sandbox.repo, "rev-parse", "main").strip()
    worker = worker_state(sandbox, "sq", "alpha")
    (sandbox.repo / "notes.txt").write_text("the user's own untracked file\n")

    result = apply(sandbox, "sq", "alpha")
    assert result.code == 0, result
    head = git(sandbox.repo, "rev-parse", "main").strip()
    lines = result.stdout.splitlines()
    assert lines[0] == f"applied worker alpha to main as {head[:12]} (squash, 3 files changed)"
    assert "teardown now counts" in lines[1]
    # One commit, on top of the old main, holding everything; the checkout shows it.
    assert git(sandbox.repo, "rev-parse", "main~1").strip() == before_main
    assert git(sandbox.repo, "rev-list", "--count", f"{before_main}..main").strip() == "1"
    message = git(sandbox.repo, "log", "-1", "--format=%B", "main")
    assert message.startswith("Apply worker alpha from kodelyth-ecc session sq\n\n")
    assert "audit the auth module" in message  # the task's first line
    the_work_is_in(sandbox, "main")
    assert (sandbox.repo / "new-alpha.txt").read_text() == "brand new\n"
    assert git(sandbox.repo, "status", "--porcelain") == "?? notes.txt\n"
    # The worker is exactly as it was; what was applied is recorded and kept by a ref.
    assert worker_state(sandbox, "sq", "alpha") == worker
    record = applied_record(sandbox, "sq", "alpha")
    assert record["mode"] == "squash" and record["target"] == "main"
    assert record["result"] == head and record["onto"] == before_main
    assert record["worker_head"] == worker["head"].strip()
    snapshot = record["snapshot"]
    ref = git(sandbox.repo, "rev-parse", "refs/kodelyth/applied/sq/alpha").strip()
    assert ref == snapshot
    assert git(sandbox.repo, "rev-parse", f"{snapshot}^").strip() == worker["head"].strip()
    assert (
        git(sandbox.repo, "rev-parse", f"{snapshot}^{{tree}}").strip()
        == git(sandbox.repo, "rev-parse", "main^{tree}").strip()
    )


def test_merge_keeps_the_worker_commits(sandbox: Sandbox) -> None:
    finished(sandbox, "mg")
    (sandbox.repo / "user.txt").write_text("user work\n")
    git(sandbox.repo, "add", "user.txt")
    git(sandbox.repo, "commit", "--quiet", "--no-gpg-sign", "-m", "user commit")
    before_main = git(sandbox.repo, "rev-parse", "main").strip()
    worker = worker_state(sandbox, "mg", "alpha")

    result = apply(sandbox, "mg", "alpha", "--merge", "-m", "Merge the auth audit")
    assert result.code == 0, result
    assert "(merge of 2 commits, 3 files changed)" in result.stdout, result
    parents = git(sandbox.repo, "log", "-1", "--format=%P", "main").split()
    assert parents[0] == before_main
    snapshot = parents[1]
    assert git(sandbox.repo, "rev-parse", f"{snapshot}^").strip() == worker["head"].strip()
    assert log_subjects(sandbox.repo, "main")[0] == "Merge the auth audit"
    # The worker's own commit is in main's history, as it was.
    assert worker["head"].strip() in git(sandbox.repo, "rev-list", "main")
    the_work_is_in(sandbox, "main")
    assert show(sandbox.repo, "main", "user.txt") == "user work\n"
    assert worker_state(sandbox, "mg", "alpha") == worker


def test_cherry_pick_copies_each_commit_then_the_uncommitted_part(sandbox: Sandbox) -> None:
    two_commits = LAUNCHER.replace(
        "&& printf 'edited",
        "&& printf 'second\\n' > second.txt && git add second.txt && "
        "git -c user.name=agent -c user.email=agent@example.invalid commit -q --no-gpg-sign "
        "-m 'agent: second' && printf 'edited",
    )
    finished(sandbox, "cp", launcher=two_commits)
    _commit(sandbox.repo, "user.txt", "user work\n", "user commit")
    before_main = git(sandbox.repo, "rev-parse", "main").strip()
    worker = worker_state(sandbox, "cp", "alpha")

    result = apply(sandbox, "cp", "alpha", "--cherry-pick", "-m", "the edits")
    assert result.code == 0, result
    assert "(cherry-pick of 3 commits, 4 files changed)" in result.stdout, result
    assert log_subjects(sandbox.repo, f"{before_main}..main") == [
        "the edits",
        "agent: second",
        "agent: readme",
    ]
    # Copies, not the worker's commits themselves.
    assert worker["head"].strip() not in git(sandbox.repo, "rev-list", "main")
    the_work_is_in(sandbox, "main")
    assert show(sandbox.repo, "main", "second.txt") == "second\n"
    assert show(sandbox.repo, "main~1", "src/app.py") == "print('hello')\n"
    assert worker_state(sandbox, "cp", "alpha") == worker


def test_commits_only_cherry_pick_leaves_message_unused(sandbox: Sandbox) -> None:
    committed_only = LAUNCHER.split(" && printf 'edited", maxsplit=1)[0]
    finished(sandbox, "co", launcher=committed_only)
    result = apply(sandbox, "co", "alpha", "--cherry-pick", "-m", "unused")
    assert result.code == 0, result
    assert "(cherry-pick of 1 commit, 1 file changed)" in result.stdout, result
    assert "--message was not used" in result.stdout
    assert log_subjects(sandbox.repo)[0] == "agent: readme"


@pytest.fixture
def temp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The temporary directory the CLI's temporary files go to (TMPDIR), empty."""
    path = tmp_path / "tmpdir"
    path.mkdir()
    monkeypatch.setenv("TMPDIR", str(path))
    return path


def test_onto_a_branch_not_checked_out_uses_a_temporary_worktree(
    sandbox: Sandbox, temp: Path
) -> None:
    git(sandbox.repo, "branch", "release")
    finished(sandbox, "onto")
    user = checkout_state(sandbox.repo)
    worktrees = registered_worktrees(sandbox.repo)

    result = apply(sandbox, "onto", "alpha", "--onto", "release")
    assert result.code == 0, result
    assert "applied worker alpha to release as" in result.stdout
    the_work_is_in(sandbox, "release")
    after = checkout_state(sandbox.repo)
    assert {k: v for k, v in after.items() if k != "branches"} == {
        k: v for k, v in user.items() if k != "branches"
    }
    assert git(sandbox.repo, "rev-parse", "main") in user["branches"]
    assert registered_worktrees(sandbox.repo) == worktrees
    assert list(temp.iterdir()) == []  # the temporary checkout is gone
    assert applied_record(sandbox, "onto", "alpha")["target"] == "release"


def test_onto_a_branch_with_conflicts_changes_nothing_and_cleans_up(
    sandbox: Sandbox, temp: Path
) -> None:
    finished(sandbox, "ontoc")
    git(sandbox.repo, "switch", "--quiet", "-c", "release")
    _commit(sandbox.repo, "README.md", "# test repo\nrelease line\n", "release readme")
    git(sandbox.repo, "switch", "--quiet", "main")
    release = git(sandbox.repo, "rev-parse", "release")
    user = checkout_state(sandbox.repo)
    worktrees = registered_worktrees(sandbox.repo)

    result = apply(sandbox, "ontoc", "alpha", "--onto", "release")
    assert result.code == 1, result
    assert "release is not checked out, so nothing was changed" in result.stderr
    assert "git switch release" in result.stderr
    assert "  conflict: README.md" in result.stderr
    assert git(sandbox.repo, "rev-parse", "release") == release
    assert checkout_state(sandbox.repo) == user
    assert registered_worktrees(sandbox.repo) == worktrees
    assert list(temp.iterdir()) == []
    assert not (sandbox.coord_root / "ontoc" / "alpha" / "applied.json").exists()


def test_onto_a_branch_checked_out_in_another_worktree_applies_there(sandbox: Sandbox) -> None:
    finished(sandbox, "other")
    other = sandbox.root / "other-checkout"
    git(sandbox.repo, "worktree", "add", "--quiet", "-b", "release", str(other))
    user = checkout_state(sandbox.repo)
    result = apply(sandbox, "other", "alpha", "--onto", "release")
    assert result.code == 0, result
    the_work_is_in(sandbox, "release")
    assert (other / "new-alpha.txt").read_text() == "brand new\n"
    assert git(other, "status", "--porcelain") == ""
    after = checkout_state(sandbox.repo)
    assert after["files"] == user["files"] and after["head"] == user["head"]
    # Its uncommitted changes are refused as the main checkout's are.
    (other / "README.md").write_text("edited in the other checkout\n")
    _refused(apply(sandbox, "other", "alpha", "--onto", "release"), str(other), "commit or stash")


def test_a_failure_in_the_temporary_worktree_changes_nothing_and_cleans_up(
    sandbox: Sandbox, temp: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    finished(sandbox, "fail")
    git(sandbox.repo, "branch", "release")
    release = git(sandbox.repo, "rev-parse", "release")
    worktrees = registered_worktrees(sandbox.repo)
    make_failing_tool(tmp_path / "bin", "git", ["cherry-pick"])
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}")
    result = apply(sandbox, "fail", "alpha", "--onto", "release")
    assert result.code == 1, result
    (line,) = result.stderr.splitlines()
    assert "injected failure" in line and "release was left as it was" in line, line
    assert git(sandbox.repo, "rev-parse", "release") == release
    assert registered_worktrees(sandbox.repo) == worktrees
    assert list(temp.iterdir()) == []


# --- refusals: nothing changes ---------------------------------------------------------


def _commit(repo: Path, rel: str, text: str, message: str) -> None:
    (repo / rel).write_text(text)
    git(repo, "add", rel)
    git(repo, "commit", "--quiet", "--no-gpg-sign", "-m", message)


def _refused(result: Result, *needles: str) -> str:
    assert result.code == 1, result
    assert result.stdout == "", result
    (line,) = result.stderr.strip().splitlines()
    for needle in needles:
        assert needle in line, line
    return line


def test_a_dirty_checkout_is_refused_and_left_exactly_as_it_was(sandbox: Sandbox) -> None:
    finished(sandbox, "dirty")
    (sandbox.repo / "README.md").write_bytes(b"# test repo\r\nuser edit, not committed\r\n")
    git(sandbox.repo, "add", "README.md")
    (sandbox.repo / "src" / "app.py").write_bytes(b"print('unstaged')\n")
    user = checkout_state(sandbox.repo)
    worker = worker_state(sandbox, "dirty", "alpha")

    line = _refused(apply(sandbox, "dirty", "alpha"), "uncommitted changes", "commit or stash")
    assert "README.md" in line and "src/app.py" in line
    assert checkout_state(sandbox.repo) == user
    assert worker_state(sandbox, "dirty", "alpha") == worker
    assert not (sandbox.coord_root / "dirty" / "alpha" / "applied.json").exists()
    assert git(sandbox.repo, "for-each-ref", "refs/kodelyth/") == ""


def test_an_untracked_file_the_work_would_overwrite_is_refused(sandbox: Sandbox) -> None:
    _commit(sandbox.repo, ".gitignore", "*.local\n", "ignores")
    with_ignored_name = LAUNCHER + " && printf 'x\\n' > cfg.local && git add -f cfg.local"
    finished(sandbox, "inway", launcher=with_ignored_name)
    (sandbox.repo / "new-alpha.txt").write_text("the user's own\n")
    (sandbox.repo / "cfg.local").write_text("the user's ignored file\n")
    user = checkout_state(sandbox.repo)
    line = _refused(apply(sandbox, "inway", "alpha"), "would be overwritten")
    assert "cfg.local" in line and "new-alpha.txt" in line
    assert checkout_state(sandbox.repo) == user


def test_a_running_worker_is_refused(sandbox: Sandbox, tmp_path: Path) -> None:
    release = tmp_path / "release"
    launcher = (
        "printf 'early\\n' > early.txt; "
        f"i=0; until [ -e '{release}' ] || [ $i -ge 600 ]; do sleep 0.05; i=$((i+1)); done"
    )
    started(sandbox, "busy", launcher=launcher, agents="alpha")
    wait_until_states(sandbox, "busy", "running")
    user = checkout_state(sandbox.repo)
    _refused(apply(sandbox, "busy", "alpha"), "still running", "status busy --wait")
    assert checkout_state(sandbox.repo) == user
    release.write_text("")
    wait_done(sandbox, "busy")
    done = apply(sandbox, "busy", "alpha")
    assert done.code == 0, done
    assert show(sandbox.repo, "main", "early.txt") == "early\n"


def test_nothing_to_apply_detached_head_and_bad_names(sandbox: Sandbox) -> None:
    finished(sandbox, "none", launcher="echo nothing", agents="alpha,beta")
    _refused(apply(sandbox, "none", "alpha"), "no changes", "nothing to apply")
    _refused(apply(sandbox, "none", "gamma"), "no worker 'gamma'", "alpha, beta")
    _refused(apply(sandbox, "nosuch", "alpha"), "no session 'nosuch'")
    _refused(apply(sandbox, "none", "alpha", "--onto", "nope"), "no branch 'nope'")
    _refused(
        apply(sandbox, "none", "alpha", "--onto", branch_of("none", "beta")),
        "a worker branch of session 'none', which teardown deletes",
    )
    git(sandbox.repo, "checkout", "--quiet", "--detach")
    _refused(apply(sandbox, "none", "alpha"), "HEAD is detached", "--onto BRANCH")
    usage = apply(sandbox, "none", "alpha", "-m", " ")
    assert usage.code == 2, usage


def test_already_applied_work_is_not_applied_twice(sandbox: Sandbox) -> None:
    finished(sandbox, "twice")
    first = apply(sandbox, "twice", "alpha")
    assert first.code == 0, first
    head = git(sandbox.repo, "rev-parse", "main").strip()
    again = apply(sandbox, "twice", "alpha")
    assert again.code == 0, again
    assert f"already in main ({head[:12]}): nothing new to apply" in again.stdout
    assert git(sandbox.repo, "rev-parse", "main").strip() == head


def test_an_imported_session_has_nothing_to_apply(sandbox: Sandbox, tmp_path: Path) -> None:
    finished(sandbox, "orig")
    bundle = tmp_path / "orig.bundle.json"
    assert sandbox.cli("session-export", "orig", "--out", str(bundle)).code == 0
    imported = sandbox.cli(
        "session-import", str(bundle), "--target", str(sandbox.coord_root / "copy")
    )
    assert imported.code == 0, imported
    _refused(apply(sandbox, "copy", "alpha"), "imported from a bundle", "git apply")


# --- conflicts: git's state, an exact abort, the worker untouched -----------------------

ABORTS = {
    "squash": ("CHERRY_PICK_HEAD", "git cherry-pick --continue", "git cherry-pick --abort"),
    "merge": ("MERGE_HEAD", "git commit", "git merge --abort"),
    "cherry-pick": ("CHERRY_PICK_HEAD", "git cherry-pick --continue", "git cherry-pick --abort"),
}


@pytest.mark.parametrize("mode", list(ABORTS))
def test_conflicts_stop_as_git_does_and_abort_restores_exactly(sandbox: Sandbox, mode: str) -> None:
    session = f"cf-{mode}"
    finished(sandbox, session)
    _commit(sandbox.repo, "README.md", "# test repo\nmain line\r\n", "main readme")
    (sandbox.repo / "scratch.txt").write_bytes(b"untracked, the user's\r\n")
    user = checkout_state(sandbox.repo)
    worker = worker_state(sandbox, session, "alpha")

    result = apply(sandbox, session, "alpha", f"--{mode}")
    assert result.code == 1, result
    state_file, finish, abort = ABORTS[mode]
    lines = result.stderr.splitlines()
    assert "stopped on conflicts in" in lines[0], result
    assert "  conflict: README.md" in lines
    assert any(finish in line for line in lines), result
    assert any(line.endswith(abort) for line in lines), result
    if mode == "merge":
        assert f"apply {session} alpha --merge` records the work" in result.stderr
    git_dir = sandbox.repo / ".git"
    assert (git_dir / state_file).is_file()
    assert "UU README.md" in git(sandbox.repo, "status", "--porcelain")
    # Not recorded: teardown keeps refusing the worker's work.
    assert not (sandbox.coord_root / session / "alpha" / "applied.json").exists()
    refused = sandbox.cli("teardown", session)
    assert refused.code == 1 and "refusing to tear down" in refused.stderr, refused
    # A second apply meanwhile is refused: an operation is in progress.
    busy = apply(sandbox, session, "alpha")
    _refused(busy, "is in progress", abort)

    git(sandbox.repo, *abort.split()[1:])
    assert checkout_state(sandbox.repo) == user
    assert worker_state(sandbox, session, "alpha") == worker


def test_conflicts_finished_by_hand_then_apply_again_records_it(sandbox: Sandbox) -> None:
    finished(sandbox, "fin")
    _commit(sandbox.repo, "src/app.py", "print('hello')\nmain edit\n", "main edit")
    result = apply(sandbox, "fin", "alpha", "--merge")
    assert result.code == 1, result
    assert "  conflict: src/app.py" in result.stderr.splitlines()
    (sandbox.repo / "src" / "app.py").write_text("print('hello')\nedited\n")
    git(sandbox.repo, "add", "src/app.py")
    git(sandbox.repo, "commit", "--quiet", "--no-gpg-sign", "--no-edit")
    again = apply(sandbox, "fin", "alpha", "--merge")
    assert again.code == 0, again
    assert "already in main" in again.stdout and "teardown now counts" in again.stdout
    down = sandbox.cli("teardown", "fin")
    assert down.code == 0, down


def test_base_commit_is_what_the_work_is_measured_from(sandbox: Sandbox) -> None:
    """Commits the user made on main after the swarm started are not the worker's."""
    finished(sandbox, "base")
    base = session_record(sandbox, "base")["base_commit"]
    _commit(sandbox.repo, "later.txt", "later\n", "later user commit")
    result = apply(sandbox, "base", "alpha")
    assert result.code == 0, result
    changed = git(sandbox.repo, "diff", "--name-only", "main~1", "main").split()
    assert changed == ["README.md", "new-alpha.txt", "src/app.py"]
    assert git(sandbox.repo, "merge-base", "--is-ancestor", base, "main") == ""
