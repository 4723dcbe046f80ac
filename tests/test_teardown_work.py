"""Issue 9: what teardown counts as work, how it saves it, and what it may touch.

Byte-exact patches, git-ignored files, only the session's own names, running
workers, commits another ref keeps, and git failures told as they are."""

from __future__ import annotations

import json
import os
import re
import stat
from pathlib import Path

import pytest

from kodelyth_ecc.coordination import (
    WorkerRecord,
    read_session_record,
    write_session_record,
)
from tests.conftest import Sandbox
from tests.support import Result, git, make_failing_tool, run_cli
from tests.swarm_helpers import (
    branch_of,
    has_session,
    orchestrator_branches,
    panes,
    registered_worktrees,
    session_record,
    started,
    wait_done,
    worktree_of,
)


def _finished(sandbox: Sandbox, session: str, *extra: str, agents: str = "alpha,beta") -> None:
    started(sandbox, session, *extra, agents=agents)
    wait_done(sandbox, session)


def _one_line_refusal(result: Result, *needles: str) -> str:
    assert result.code == 1, result
    assert "Traceback" not in result.stderr
    (line,) = result.stderr.strip().splitlines()
    assert "refusing to tear down" in line and "--force" in line, line
    for needle in needles:
        assert needle in line, line
    return line


def _clone_at(sandbox: Sandbox, base: str, where: Path) -> Path:
    git(where.parent, "clone", "--quiet", "--no-checkout", str(sandbox.repo), str(where))
    git(where, "checkout", "--quiet", "--detach", base)
    return where


def _commit_gitignore(sandbox: Sandbox, text: str) -> None:
    (sandbox.repo / ".gitignore").write_text(text)
    git(sandbox.repo, "add", ".gitignore")
    git(sandbox.repo, "commit", "--quiet", "--no-gpg-sign", "-m", "ignores")


# --- 1: patches are byte-exact --------------------------------------------------------

AWKWARD = {
    "crlf.txt": b"line one\r\nline two\r\n",
    "lone-cr.txt": b"progress 10%\rprogress 100%\rdone\n",
    "latin1.txt": b"caf\xe9 cr\xe8me br\xfbl\xe9e\n",
    "mixed.txt": b"a\r\nb\nc\rd",
    "nul.bin": b"\x00\x01\x02\xff\xfe\r\n\x00" * 40,
}


def test_force_patch_restores_the_exact_bytes(sandbox: Sandbox, tmp_path: Path) -> None:
    # A tracked CRLF file edited, a committed binary, and new awkward files.
    (sandbox.repo / "dos.txt").write_bytes(b"one\r\ntwo\r\n")
    git(sandbox.repo, "add", "dos.txt")
    git(sandbox.repo, "commit", "--quiet", "--no-gpg-sign", "-m", "dos file")
    _finished(sandbox, "bytes", agents="alpha")
    base = session_record(sandbox, "bytes")["base_commit"]
    worktree = worktree_of(sandbox, "bytes", "alpha")
    (worktree / "committed.bin").write_bytes(bytes(range(256)) + b"\r\n\r")
    git(worktree, "add", "committed.bin")
    git(worktree, "commit", "--quiet", "--no-gpg-sign", "-m", "binary")
    expected = dict(AWKWARD, **{"dos.txt": b"one\r\ntwo edited\r\nthree\r"})
    expected["committed.bin"] = bytes(range(256)) + b"\r\n\r"
    for rel, data in expected.items():
        (worktree / rel).write_bytes(data)

    forced = sandbox.cli("teardown", "bytes", "--force", "--json")
    assert forced.code == 0, forced
    (patch,) = json.loads(forced.stdout)["saved_patches"]
    clone = _clone_at(sandbox, base, tmp_path / "verify")
    git(clone, "apply", "--binary", patch)
    for rel, data in expected.items():
        assert (clone / rel).read_bytes() == data, rel


# --- 2: git-ignored files are work ----------------------------------------------------


def test_ignored_files_are_refused_then_copied_with_force(sandbox: Sandbox) -> None:
    _commit_gitignore(sandbox, ".env\nout/\n*.log\n")
    _finished(sandbox, "ign", agents="alpha")
    worktree = worktree_of(sandbox, "ign", "alpha")
    secret = "S" + os.urandom(8).hex()
    (worktree / ".env").write_text(f"TOKEN={secret}\n")
    (worktree / "out").mkdir()
    (worktree / "out" / "results.csv").write_bytes(b"a,b\r\n1,\xe9\r\n")
    (worktree / "out" / "run.sh").write_text("#!/bin/sh\necho hi\n")
    (worktree / "out" / "run.sh").chmod(0o750)
    outside = sandbox.root / "outside-secret.txt"
    outside.write_text("not in the worktree\n")
    (worktree / "out" / "latest.log").symlink_to(outside)

    refused = sandbox.cli("teardown", "ign")
    line = _one_line_refusal(refused, "alpha (4 ignored files in out/ (3), .env)")
    assert secret not in line, "the refusal quoted a file's content"
    assert worktree.is_dir() and (worktree / ".env").is_file()
    assert orchestrator_branches(sandbox.repo) == [branch_of("ign", "alpha")]

    forced = sandbox.cli("teardown", "ign", "--force", "--json")
    assert forced.code == 0, forced
    data = json.loads(forced.stdout)
    assert data["saved_patches"] == []  # nothing tracked or untracked changed
    (copies,) = data["saved_ignored"]
    assert re.fullmatch(r"alpha-\d{8}T\d{6}Z\.ignored", Path(copies).name), copies
    copies_dir = Path(copies)
    assert copies_dir.parent == sandbox.coord_root / "ign.teardown"
    assert (copies_dir / ".env").read_text() == f"TOKEN={secret}\n"
    assert (copies_dir / "out" / "results.csv").read_bytes() == b"a,b\r\n1,\xe9\r\n"
    assert stat.S_IMODE((copies_dir / "out" / "run.sh").stat().st_mode) == 0o750
    link = copies_dir / "out" / "latest.log"
    assert link.is_symlink() and os.readlink(link) == str(outside)
    assert not worktree.exists()
    assert outside.read_text() == "not in the worktree\n"


def test_big_ignored_build_output_is_counted_and_saved(sandbox: Sandbox) -> None:
    _commit_gitignore(sandbox, "node_modules/\n")
    _finished(sandbox, "nm", agents="alpha")
    worktree = worktree_of(sandbox, "nm", "alpha")
    for pkg in range(30):
        pkg_dir = worktree / "node_modules" / f"pkg{pkg}" / "lib"
        pkg_dir.mkdir(parents=True)
        for index in range(10):
            (pkg_dir / f"m{index}.js").write_text(f"module.exports = {pkg * 10 + index};\n")
    _one_line_refusal(sandbox.cli("teardown", "nm"), "300 ignored files in node_modules/ (300)")
    forced = sandbox.cli("teardown", "nm", "--force", "--json")
    assert forced.code == 0, forced
    (copies,) = json.loads(forced.stdout)["saved_ignored"]
    saved = [p for p in Path(copies).rglob("*") if p.is_file()]
    assert len(saved) == 300
    assert (Path(copies) / "node_modules/pkg29/lib/m9.js").read_text() == "module.exports = 299;\n"


def test_ignored_seeds_still_as_seeded_are_not_work(sandbox: Sandbox) -> None:
    _commit_gitignore(sandbox, ".env\nvendor/\n")
    (sandbox.repo / ".env").write_text("A=1\n")
    (sandbox.repo / "vendor").mkdir()
    (sandbox.repo / "vendor" / "lib.js").write_text("x\n")
    _finished(sandbox, "sd", "--seed", ".env", "--seed", "vendor", agents="alpha")
    assert (worktree_of(sandbox, "sd", "alpha") / "vendor" / "lib.js").is_file()
    result = sandbox.cli("teardown", "sd")
    assert result.code == 0, result
    assert not (sandbox.coord_root / "sd.teardown").exists()
    assert (sandbox.repo / ".env").read_text() == "A=1\n"


# --- 3: only the session's own names --------------------------------------------------


def _user_worktree(sandbox: Sandbox) -> tuple[Path, str]:
    """A worktree and branch of the user's own, with a commit only that branch has."""
    mine = sandbox.root / "my-feature"
    git(sandbox.repo, "worktree", "add", "--quiet", "-b", "feature", str(mine))
    (mine / "mine.txt").write_text("the user's work\n")
    git(mine, "add", "mine.txt")
    git(mine, "commit", "--quiet", "--no-gpg-sign", "-m", "user work")
    return mine, git(sandbox.repo, "rev-parse", "feature").strip()


def _assert_user_untouched(sandbox: Sandbox, mine: Path, tip: str) -> None:
    assert (mine / "mine.txt").read_text() == "the user's work\n"
    assert git(sandbox.repo, "rev-parse", "feature").strip() == tip
    assert str(mine) in registered_worktrees(sandbox.repo)


def test_js_status_naming_a_foreign_branch_and_worktree_is_left_alone(sandbox: Sandbox) -> None:
    mine, tip = _user_worktree(sandbox)
    session = "js-old"
    own_tree = worktree_of(sandbox, session, "beta")
    git(sandbox.repo, "worktree", "add", "--quiet", "-b", branch_of(session, "beta"), str(own_tree))
    for slug, branch, tree in (
        ("alpha", "feature", mine),
        ("beta", branch_of(session, "beta"), own_tree),
    ):
        worker = sandbox.coord_root / session / slug
        worker.mkdir(parents=True)
        (worker / "status.md").write_text(
            f"# Status: {slug}\n\n- State: not started\n- Branch: `{branch}`\n"
            f"- Worktree: `{tree}`\n\nstate: completed\n"
        )
    # --force: even when told to save and remove, the user's own names are not ours.
    result = sandbox.cli("teardown", session, "--force")
    assert result.code == 0, result
    _assert_user_untouched(sandbox, mine, tip)
    assert not (sandbox.coord_root / f"{session}.teardown").exists()
    assert "left branch feature alone" in result.stdout
    assert f"left worktree {mine} alone" in result.stdout
    # Its own names are still torn down.
    assert not own_tree.exists()
    assert orchestrator_branches(sandbox.repo) == []


def test_hand_edited_session_json_cannot_aim_teardown_elsewhere(sandbox: Sandbox) -> None:
    mine, tip = _user_worktree(sandbox)
    _finished(sandbox, "edited", agents="alpha")
    coord = str(sandbox.coord_root / "edited")
    record = read_session_record(coord)
    assert record is not None
    record.workers[0].branch = "feature"
    record.workers[0].worktree = str(mine)
    record.workers.append(WorkerRecord("x", "x", "main", str(sandbox.repo), ""))
    write_session_record(coord, record)
    forced = sandbox.cli("teardown", "edited", "--force", "--json")
    assert forced.code == 0, forced
    _assert_user_untouched(sandbox, mine, tip)
    assert git(sandbox.repo, "rev-parse", "--abbrev-ref", "HEAD").strip() == "main"
    data = json.loads(forced.stdout)
    assert data["saved_patches"] == []
    assert "branch feature" in data["left_alone"] and f"worktree {mine}" in data["left_alone"]
    # The worker's own worktree and branch went, as their own names.
    assert not worktree_of(sandbox, "edited", "alpha").exists()
    assert orchestrator_branches(sandbox.repo) == []


# --- 6: a running worker is work in progress ------------------------------------------


def test_running_worker_is_refused_without_force(sandbox: Sandbox) -> None:
    started(sandbox, "busy", launcher="sleep 60")
    before = sorted(p.pane_id for p in panes("busy") if not p.dead)
    refused = sandbox.cli("teardown", "busy")
    _one_line_refusal(refused, "alpha (still running)", "beta (still running)")
    assert has_session("busy")
    assert sorted(p.pane_id for p in panes("busy") if not p.dead) == before
    assert worktree_of(sandbox, "busy", "alpha").is_dir()
    forced = sandbox.cli("teardown", "busy", "--force")
    assert forced.code == 0, forced
    assert not has_session("busy")
    assert orchestrator_branches(sandbox.repo) == []


# --- 17: commits another ref keeps are saved ------------------------------------------


def _commit_in(worktree: Path, name: str) -> None:
    (worktree / name).write_text(f"{name}\n")
    git(worktree, "add", name)
    git(worktree, "commit", "--quiet", "--no-gpg-sign", "-m", name)


@pytest.mark.parametrize("keeper", ["merged-into-main", "tag", "other-branch"])
def test_commits_kept_by_another_ref_are_not_unsaved(sandbox: Sandbox, keeper: str) -> None:
    _finished(sandbox, "kept", agents="alpha")
    _commit_in(worktree_of(sandbox, "kept", "alpha"), "feature.txt")
    branch = branch_of("kept", "alpha")
    if keeper == "merged-into-main":
        git(sandbox.repo, "merge", "--quiet", "--ff-only", branch)
    elif keeper == "tag":
        git(sandbox.repo, "tag", "v-kept", branch)
    else:
        git(sandbox.repo, "branch", "review/alpha", branch)
    result = sandbox.cli("teardown", "kept")
    assert result.code == 0, result
    assert not (sandbox.coord_root / "kept.teardown").exists()
    assert orchestrator_branches(sandbox.repo) == []


def test_commits_kept_only_by_a_branch_of_the_same_session_are_unsaved(sandbox: Sandbox) -> None:
    """beta merged alpha's work, but beta's branch goes too: nothing keeps it."""
    _finished(sandbox, "both")
    _commit_in(worktree_of(sandbox, "both", "alpha"), "a.txt")
    git(
        worktree_of(sandbox, "both", "beta"),
        "merge",
        "--quiet",
        "--ff-only",
        branch_of("both", "alpha"),
    )
    _one_line_refusal(
        sandbox.cli("teardown", "both"),
        "alpha (0 uncommitted, 1 commits ahead)",
        "beta (0 uncommitted, 1 commits ahead)",
    )


# --- 19: git failures are told as git told them ---------------------------------------


def _failing_git_env(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, failures: int = 1
) -> dict[str, str]:
    """An environment whose git fails its first ``failures`` calls of ``rev-parse
    --show-toplevel``: wrappers chained, each failing its own first matching call."""
    for index in range(failures):
        bin_dir = tmp_path / f"bin{index}"
        make_failing_tool(  # wraps the git first on PATH: the previous wrapper
            bin_dir, "git", ["rev-parse", "--show-toplevel"], stderr="fatal: injected lock failure"
        )
        monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    return dict(os.environ)


@pytest.mark.parametrize(
    ("command", "failures"),
    [
        (["teardown", "any"], 1),
        (["status"], 1),
        # swarm asks once for the top and the base together, then once more for the
        # top alone: both calls fail here.
        (["swarm", "--task", "t", "--agents", "a"], 2),
    ],
)
def test_a_transient_git_failure_is_not_called_not_a_repository(
    sandbox: Sandbox,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    command: list[str],
    failures: int,
) -> None:
    env = _failing_git_env(tmp_path, monkeypatch, failures)
    result = run_cli(*command, cwd=sandbox.repo, env=env)
    assert result.code == 1, result
    (line,) = result.stderr.strip().splitlines()
    assert "not inside a git work tree" not in line, line
    assert "injected lock failure" in line and "exited 3" in line, line
    assert "rev-parse --show-toplevel" in line, line


def test_a_single_transient_failure_of_the_first_lookup_is_retried(
    sandbox: Sandbox, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = _failing_git_env(tmp_path, monkeypatch)
    result = run_cli("swarm", "--task", "t", "--agents", "a", cwd=sandbox.repo, env=env)
    assert result.code == 0, result


def test_outside_a_repository_is_still_said_so(sandbox: Sandbox, tmp_path: Path) -> None:
    outside = tmp_path / "plain"
    outside.mkdir()
    env = {**os.environ, "GIT_CEILING_DIRECTORIES": str(tmp_path), "LC_ALL": "de_DE.UTF-8"}
    result = run_cli("teardown", "any", cwd=outside, env=env)
    assert result.code == 1, result
    assert "is not inside a git work tree" in result.stderr, result
