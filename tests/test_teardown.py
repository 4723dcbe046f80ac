"""``teardown`` and ``swarm --replace``: remove a session's tmux session,
worktrees and branches, but never destroy work silently."""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import pytest

from tests.conftest import Sandbox
from tests.support import Result, git, tmux
from tests.swarm_helpers import (
    FIXTURES,
    branch_of,
    has_session,
    orchestrator_branches,
    panes,
    registered_worktrees,
    session_record,
    start_swarm,
    started,
    wait_done,
    worktree_of,
)

SLUGS = ("alpha", "beta")
JS_SESSION = "swarm-2026-11-20-3a"


def _finished(sandbox: Sandbox, session: str, *extra: str, **kwargs: str) -> None:
    started(sandbox, session, *extra, **kwargs)
    wait_done(sandbox, session)


def _snapshot(sandbox: Sandbox, session: str) -> dict[str, object]:
    """Everything teardown could touch, to prove a refusal changed nothing."""
    coord = sandbox.coord_root / session
    return {
        "files": {
            str(p.relative_to(sandbox.root)): p.read_bytes()
            for base in [coord, *(worktree_of(sandbox, session, s) for s in SLUGS)]
            if base.exists()
            for p in sorted(base.rglob("*"))
            if p.is_file() and ".git" not in p.relative_to(base).parts
        },
        "branches": {
            b: git(sandbox.repo, "rev-parse", b).strip()
            for b in orchestrator_branches(sandbox.repo)
        },
        "worktrees": registered_worktrees(sandbox.repo),
        "panes": [p.pane_id for p in panes(session)] if has_session(session) else None,
        "salvage": sorted(p.name for p in sandbox.coord_root.glob("*.teardown")),
        "status": [
            git(worktree_of(sandbox, session, s), "status", "--porcelain")
            for s in SLUGS
            if worktree_of(sandbox, session, s).exists()
        ],
    }


def _assert_refused(result: Result, *needles: str) -> None:
    assert result.code == 1, result
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result
    assert "refusing to tear down" in lines[0], result
    assert "--force" in lines[0], result
    for needle in needles:
        assert needle in lines[0], result


def _assert_gone(sandbox: Sandbox, session: str) -> None:
    assert not has_session(session)
    assert orchestrator_branches(sandbox.repo) == []
    assert [os.path.realpath(p) for p in registered_worktrees(sandbox.repo)] == [
        os.path.realpath(sandbox.repo)
    ]
    for slug in SLUGS:
        assert not worktree_of(sandbox, session, slug).exists()


def test_clean_session_is_torn_down_and_coordination_kept(sandbox: Sandbox) -> None:
    _finished(sandbox, "done")
    result = sandbox.cli("teardown", "done")
    assert result.code == 0, result
    assert "killed tmux session done" in result.stdout
    for slug in SLUGS:
        assert f"removed worktree {worktree_of(sandbox, 'done', slug)}" in result.stdout
        assert f"deleted branch {branch_of('done', slug)}" in result.stdout
    _assert_gone(sandbox, "done")
    coord = sandbox.coord_root / "done"
    assert (coord / "session.json").is_file()
    assert "demo worker alpha" in (coord / "alpha" / "handoff.md").read_text()
    assert not list(sandbox.coord_root.glob("*.teardown"))
    # The session is still there to read (and, later, to export).
    status = json.loads(sandbox.cli("status", "done", "--json").stdout)["session"]
    assert [w["state"] for w in status["workers"]] == ["completed", "completed"]
    assert status["tmuxAlive"] is False
    # A second teardown finds nothing left but the files, and --purge takes those.
    again = sandbox.cli("teardown", "done")
    assert again.code == 0, again
    assert "nothing to tear down" in again.stdout
    purged = sandbox.cli("teardown", "done", "--purge")
    assert purged.code == 0, purged
    assert not coord.exists()
    assert git(sandbox.repo, "status", "--porcelain") == ""


def test_purge_removes_the_coordination_dir(sandbox: Sandbox) -> None:
    _finished(sandbox, "gone")
    _finished(sandbox, "other", agents="x")
    result = sandbox.cli("teardown", "gone", "--purge", "--json")
    assert result.code == 0, result
    data = json.loads(result.stdout)
    assert data["killed_tmux"] is True
    assert sorted(data["deleted_branches"]) == sorted(branch_of("gone", s) for s in SLUGS)
    assert data["saved_patches"] == []
    assert data["purged"] == str(sandbox.coord_root / "gone")
    assert not (sandbox.coord_root / "gone").exists()
    assert not has_session("gone")
    # Another session is not touched.
    assert has_session("other")
    assert orchestrator_branches(sandbox.repo) == [branch_of("other", "x")]
    assert (sandbox.coord_root / "other" / "session.json").is_file()


def test_running_session_with_clean_worktrees_is_refused_then_forced(sandbox: Sandbox) -> None:
    """A running worker is work in progress (issue 9, item 6): only --force stops it."""
    started(sandbox, "busy", launcher="sleep 60")
    refused = sandbox.cli("teardown", "busy")
    assert refused.code == 1 and "alpha (still running)" in refused.stderr, refused
    assert has_session("busy")
    assert sandbox.cli("teardown", "busy", "--force").code == 0
    _assert_gone(sandbox, "busy")


def test_unknown_session_is_an_error(sandbox: Sandbox) -> None:
    result = sandbox.cli("teardown", "nope")
    assert result.code == 1, result
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert "no session 'nope'" in result.stderr
    assert not sandbox.coord_root.exists()


def test_sessions_are_matched_by_exact_name(sandbox: Sandbox) -> None:
    """tmux takes a prefix for a target: ``ab`` must never reach ``ab-long``."""
    _finished(sandbox, "ab-long", agents="x")
    result = sandbox.cli("teardown", "ab")
    assert result.code == 1, result
    assert "no session 'ab'" in result.stderr
    assert has_session("ab-long")
    assert orchestrator_branches(sandbox.repo) == [branch_of("ab-long", "x")]
    assert sandbox.cli("status", "ab").code == 1
    # A session named like a prefix of a live one starts and ends on its own.
    _finished(sandbox, "ab", agents="x")
    assert sandbox.cli("teardown", "ab", "--purge").code == 0
    assert has_session("ab-long")
    assert not has_session("ab")
    assert orchestrator_branches(sandbox.repo) == [branch_of("ab-long", "x")]


def _make_dirty(sandbox: Sandbox, session: str, kind: str) -> dict[str, bytes]:
    """Change alpha's worktree; return the files the change should reproduce."""
    worktree = worktree_of(sandbox, session, "alpha")
    if kind == "modified":
        (worktree / "README.md").write_text("# test repo\n\nedited by alpha\n")
        return {"README.md": b"# test repo\n\nedited by alpha\n"}
    if kind == "untracked":
        (worktree / "notes").mkdir()
        (worktree / "notes" / "findings.md").write_text("new finding\n")
        (worktree / "blob.bin").write_bytes(bytes(range(256)) * 4)
        return {"notes/findings.md": b"new finding\n", "blob.bin": bytes(range(256)) * 4}
    if kind == "staged-delete":
        git(worktree, "rm", "--quiet", "src/app.py")
        return {"src/app.py": b""}
    assert kind == "committed"
    (worktree / "src" / "feature.py").write_text("FEATURE = 1\n")
    git(worktree, "add", "src/feature.py")
    git(worktree, "commit", "--quiet", "--no-gpg-sign", "-m", "alpha's work")
    return {"src/feature.py": b"FEATURE = 1\n"}


def _apply_on_base(sandbox: Sandbox, base: str, patch: Path, tmp_path: Path) -> Path:
    """A fresh clone at ``base`` with ``patch`` applied by plain ``git apply``."""
    clone = tmp_path / "verify"
    git(tmp_path, "clone", "--quiet", "--no-checkout", str(sandbox.repo), str(clone))
    git(clone, "checkout", "--quiet", "--detach", base)
    git(clone, "apply", "--binary", str(patch))
    return clone


@pytest.mark.parametrize("kind", ["modified", "untracked", "staged-delete", "committed"])
def test_unsaved_work_is_refused_then_saved_as_a_patch_with_force(
    sandbox: Sandbox, tmp_path: Path, kind: str
) -> None:
    _finished(sandbox, "dirty")
    base = session_record(sandbox, "dirty")["base_commit"]
    expected = _make_dirty(sandbox, "dirty", kind)
    before = _snapshot(sandbox, "dirty")

    refused = sandbox.cli("teardown", "dirty")
    _assert_refused(refused, "alpha")
    assert "beta" not in refused.stderr.split("unsaved work in", 1)[1].split(";")[0]
    assert _snapshot(sandbox, "dirty") == before
    refused_purge = sandbox.cli("teardown", "dirty", "--purge")
    _assert_refused(refused_purge, "alpha")
    assert _snapshot(sandbox, "dirty") == before

    forced = sandbox.cli("teardown", "dirty", "--force")
    assert forced.code == 0, forced
    salvage = sandbox.coord_root / "dirty.teardown"
    patches = sorted(salvage.iterdir())
    assert len(patches) == 1, patches  # beta was clean: nothing to save
    assert re.fullmatch(r"alpha-\d{8}T\d{6}Z\.patch", patches[0].name), patches[0].name
    assert f"saved unsaved work to {patches[0]}" in forced.stdout
    # The patch was written before the worktree went away.
    assert forced.stdout.index("saved unsaved work") < forced.stdout.index("removed worktree")
    _assert_gone(sandbox, "dirty")

    clone = _apply_on_base(sandbox, base, patches[0], tmp_path)
    for rel, content in expected.items():
        if kind == "staged-delete":
            assert not (clone / rel).exists()
        else:
            assert (clone / rel).read_bytes() == content
    # Nothing else changed: the clone differs from base only by the expected paths.
    changed = git(clone, "status", "--porcelain", "--untracked-files=all").splitlines()
    assert sorted(line[3:] for line in changed) == sorted(expected)


def test_force_purge_keeps_the_saved_patch(sandbox: Sandbox) -> None:
    _finished(sandbox, "fp")
    _make_dirty(sandbox, "fp", "untracked")
    result = sandbox.cli("teardown", "fp", "--force", "--purge")
    assert result.code == 0, result
    assert not (sandbox.coord_root / "fp").exists()
    patches = list((sandbox.coord_root / "fp.teardown").iterdir())
    assert len(patches) == 1
    assert "notes/findings.md" in patches[0].read_text()
    _assert_gone(sandbox, "fp")


def test_commits_on_a_branch_without_worktree_are_saved(sandbox: Sandbox, tmp_path: Path) -> None:
    _finished(sandbox, "br")
    base = session_record(sandbox, "br")["base_commit"]
    expected = _make_dirty(sandbox, "br", "committed")
    git(sandbox.repo, "worktree", "remove", str(worktree_of(sandbox, "br", "alpha")))
    before = _snapshot(sandbox, "br")
    _assert_refused(sandbox.cli("teardown", "br"), "alpha", "1 commits ahead")
    assert _snapshot(sandbox, "br") == before
    forced = sandbox.cli("teardown", "br", "--force")
    assert forced.code == 0, forced
    (patch,) = (sandbox.coord_root / "br.teardown").iterdir()
    clone = _apply_on_base(sandbox, base, patch, tmp_path)
    assert (clone / "src" / "feature.py").read_bytes() == expected["src/feature.py"]
    _assert_gone(sandbox, "br")


def test_seeded_files_alone_are_not_unsaved_work(sandbox: Sandbox) -> None:
    repo = sandbox.repo
    (repo / "local.env").write_text("TOKEN=x\n")  # untracked, not ignored
    (repo / "cfg").mkdir()
    (repo / "cfg" / "dev.toml").write_text("debug = true\n")
    (repo / "src" / "app.py").write_text("print('local overlay')\n")  # tracked, modified
    _finished(sandbox, "seeded", "--seed", "local.env", "--seed", "cfg", "--seed", "src/app.py")
    wt = worktree_of(sandbox, "seeded", "alpha")
    assert git(wt, "status", "--porcelain")  # git itself does see the seeds
    result = sandbox.cli("teardown", "seeded")
    assert result.code == 0, result
    assert not (sandbox.coord_root / "seeded.teardown").exists()
    _assert_gone(sandbox, "seeded")
    # The user's own files are untouched.
    assert (repo / "local.env").read_text() == "TOKEN=x\n"
    assert (repo / "src" / "app.py").read_text() == "print('local overlay')\n"


def test_work_beside_seeds_is_still_refused(sandbox: Sandbox) -> None:
    (sandbox.repo / "local.env").write_text("TOKEN=x\n")
    _finished(sandbox, "seeded", "--seed", "local.env")
    (worktree_of(sandbox, "seeded", "beta") / "real-work.txt").write_text("keep me\n")
    _assert_refused(sandbox.cli("teardown", "seeded"), "beta (1 uncommitted")


def test_foreign_directory_at_a_worktree_path_is_refused(sandbox: Sandbox) -> None:
    _finished(sandbox, "fd")
    worktree = worktree_of(sandbox, "fd", "alpha")
    git(sandbox.repo, "worktree", "remove", str(worktree))
    worktree.mkdir()
    (worktree / "precious.txt").write_text("not ours\n")
    result = sandbox.cli("teardown", "fd", "--force")
    assert result.code == 1, result
    assert "not a worktree" in result.stderr
    assert (worktree / "precious.txt").read_text() == "not ours\n"
    assert has_session("fd")


def test_session_written_by_the_js_tool_is_torn_down(sandbox: Sandbox) -> None:
    """No session.json: branches and worktrees come from each status.md."""
    coord = sandbox.coord_root / JS_SESSION
    shutil.copytree(FIXTURES / "js-coordination" / JS_SESSION, coord)
    slugs = sorted(p.name for p in coord.iterdir())
    for status_file in coord.glob("*/status.md"):
        text = status_file.read_text().replace("/home/dev/src/acme-api", str(sandbox.repo))
        status_file.write_text(text)
    for slug in slugs:
        path = sandbox.root / f"repo-{JS_SESSION}-{slug}"
        git(
            sandbox.repo, "worktree", "add", "--quiet", "-b", branch_of(JS_SESSION, slug), str(path)
        )
    result = sandbox.cli("teardown", JS_SESSION)
    assert result.code == 0, result
    assert orchestrator_branches(sandbox.repo) == []
    assert len(registered_worktrees(sandbox.repo)) == 1
    for slug in slugs:
        assert not (sandbox.root / f"repo-{JS_SESSION}-{slug}").exists()
    assert (coord / "security-reviewer" / "handoff.md").is_file()


# --- swarm --replace: the same safe teardown ---


def test_replace_swaps_a_finished_clean_session(sandbox: Sandbox) -> None:
    # Keep the tmux server up across the replacement, so pane ids are never reused.
    tmux("new-session", "-d", "-s", "bystander")
    _finished(sandbox, "rep", launcher="echo first-run > {handoff_file_sh}")
    old_panes = {p.pane_id for p in panes("rep")}
    old_record = session_record(sandbox, "rep")
    result = start_swarm(
        sandbox, "rep", "--replace", launcher="echo second-run > {handoff_file_sh}"
    )
    assert result.code == 0, result
    wait_done(sandbox, "rep")
    coord = sandbox.coord_root / "rep"
    for slug in SLUGS:
        assert (coord / slug / "handoff.md").read_text() == "second-run\n"
        assert "first-run" not in (coord / slug / "transcript.log").read_text()
        assert worktree_of(sandbox, "rep", slug).is_dir()
    new_panes = {p.pane_id for p in panes("rep")}
    assert len(new_panes) == 3
    assert not new_panes & old_panes
    record = session_record(sandbox, "rep")
    assert record["launcher"] != old_record["launcher"]
    assert sorted(orchestrator_branches(sandbox.repo)) == sorted(branch_of("rep", s) for s in SLUGS)
    assert len(registered_worktrees(sandbox.repo)) == 3
    sessions = tmux("list-sessions", "-F", "#{session_name}").stdout.split()
    assert sorted(sessions) == ["bystander", "rep"]


@pytest.mark.parametrize("kind", ["untracked", "committed"])
def test_replace_refuses_to_lose_work(sandbox: Sandbox, kind: str) -> None:
    _finished(sandbox, "rep")
    _make_dirty(sandbox, "rep", kind)
    before = _snapshot(sandbox, "rep")
    result = start_swarm(sandbox, "rep", "--replace")
    assert result.code == 1, result
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert "--replace refused" in result.stderr
    assert "unsaved work in alpha" in result.stderr
    assert "kodelyth-ecc teardown rep --force" in result.stderr
    assert _snapshot(sandbox, "rep") == before
    assert has_session("rep")


@pytest.mark.parametrize("kind", ["untracked-seed", "ignored-seed", "tracked-seed", "seed-dir"])
def test_edited_seed_is_unsaved_work(sandbox: Sandbox, tmp_path: Path, kind: str) -> None:
    """A worker's edit to a seeded file is work like any other: seeds are only
    exempt while they still match what was seeded."""
    repo = sandbox.repo
    (repo / ".gitignore").write_text("secret.env\n")
    git(repo, "add", ".gitignore")
    git(repo, "commit", "--quiet", "--no-gpg-sign", "-m", "ignore secret.env")
    (repo / "local.env").write_text("A=1\n")
    (repo / "secret.env").write_text("S=1\n")
    (repo / "src" / "app.py").write_text("print('overlay')\n")
    (repo / "cfg").mkdir()
    (repo / "cfg" / "dev.toml").write_text("debug = true\n")
    seeds = ["local.env", "secret.env", "src/app.py", "cfg"]
    _finished(sandbox, "es", *(arg for s in seeds for arg in ("--seed", s)))
    base = session_record(sandbox, "es")["base_commit"]
    worktree = worktree_of(sandbox, "es", "alpha")
    rel, content = {
        "untracked-seed": ("local.env", "A=2\n"),
        "ignored-seed": ("secret.env", "S=2\n"),
        "tracked-seed": ("src/app.py", "print('worker edit')\n"),
        "seed-dir": ("cfg/new.toml", "added = 1\n"),
    }[kind]
    (worktree / rel).write_text(content)
    before = _snapshot(sandbox, "es")
    _assert_refused(sandbox.cli("teardown", "es"), "alpha")
    assert _snapshot(sandbox, "es") == before

    forced = sandbox.cli("teardown", "es", "--force")
    assert forced.code == 0, forced
    (patch,) = (sandbox.coord_root / "es.teardown").iterdir()
    clone = _apply_on_base(sandbox, base, patch, tmp_path)
    assert (clone / rel).read_text() == content
    _assert_gone(sandbox, "es")
