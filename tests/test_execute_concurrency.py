"""Several ``swarm --execute`` runs on one repo at the same moment (issue 9, item 7).

Git keeps one admin dir per worktree in the repo's common git dir; a `git worktree
add` that lists the worktrees while another run is half way through creating or
removing its own fails ("failed to read .git/worktrees/<other>/commondir"). Runs
serialise those calls with a lock in the common git dir, and a rollback removes only
what its own run created."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from kodelyth_ecc import repolock
from kodelyth_ecc.errors import KodelythError
from tests.conftest import Sandbox
from tests.support import git, make_failing_tool, run_cli
from tests.swarm_helpers import has_session, orchestrator_branches, registered_worktrees, wait_done

RUNS = 4
AGENTS = "alpha,beta,gamma,delta"
ROUNDS = 10
# Every round's runs start together; the whole loop is bounded.
BUDGET_S = 240.0


def _start(sandbox: Sandbox, session: str, env: dict[str, str]) -> subprocess.Popen[str]:
    args = ["swarm", "--task", "t", "--agents", AGENTS, "--harness", "echo"]
    return subprocess.Popen(
        [sys.executable, "-m", "kodelyth_ecc", *args, "--session", session, "--execute"],
        cwd=sandbox.repo,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _only_the_main_worktree(sandbox: Sandbox) -> bool:
    return [os.path.realpath(p) for p in registered_worktrees(sandbox.repo)] == [
        os.path.realpath(sandbox.repo)
    ]


def test_concurrent_swarms_all_start_and_leave_nothing_behind(sandbox: Sandbox) -> None:
    deadline = time.monotonic() + BUDGET_S
    env = dict(os.environ)
    for round_no in range(ROUNDS):
        assert time.monotonic() < deadline, f"round {round_no} did not start within the budget"
        sessions = [f"c{round_no}-{i}" for i in range(RUNS)]
        procs = [_start(sandbox, s, env) for s in sessions]
        results = []
        for proc in procs:
            try:
                out, err = proc.communicate(timeout=max(1.0, deadline - time.monotonic()))
            finally:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
            results.append((proc.returncode, out, err))
        failed = [(s, r[2]) for s, r in zip(sessions, results, strict=True) if r[0] != 0]
        assert failed == [], f"round {round_no}: {failed}"
        for session in sessions:
            status = wait_done(sandbox, session, timeout=60)
            assert [w["state"] for w in status["workers"]] == ["completed"] * 4, status
        for session in sessions:
            torn = run_cli("teardown", session, "--purge", cwd=sandbox.repo, env=env)
            assert torn.code == 0, torn
            assert not has_session(session)
        assert orchestrator_branches(sandbox.repo) == [], f"round {round_no}"
        assert _only_the_main_worktree(sandbox), git(sandbox.repo, "worktree", "list")
        assert sorted(p.name for p in sandbox.root.iterdir()) == [sandbox.repo.name]


def test_a_failed_run_rolls_back_only_its_own_worktrees_while_others_start(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    """One run fails at its third `worktree add` while three others start: they all
    succeed, and the failed run leaves no worktree or branch behind."""
    bin_dir = tmp_path / "bin"
    make_failing_tool(bin_dir, "git", ["worktree", "add"], nth=3)
    failing_env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}
    env = dict(os.environ)
    procs = {"f0": _start(sandbox, "f0", failing_env)}
    procs.update({s: _start(sandbox, s, env) for s in ("ok1", "ok2", "ok3")})
    codes: dict[str, tuple[int, str]] = {}
    for session, proc in procs.items():
        try:
            _, err = proc.communicate(timeout=120)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        codes[session] = (proc.returncode, err)
    assert codes["f0"][0] == 1, codes["f0"]
    assert "everything this run created was removed" in codes["f0"][1], codes["f0"]
    assert {s: c for s, (c, _) in codes.items() if s != "f0"} == {"ok1": 0, "ok2": 0, "ok3": 0}, (
        codes
    )
    branches = orchestrator_branches(sandbox.repo)
    assert not [b for b in branches if b.startswith("orchestrator-f0-")], branches
    assert len(branches) == 12, branches
    assert len(registered_worktrees(sandbox.repo)) == 13
    assert not has_session("f0")
    for session in ("ok1", "ok2", "ok3"):
        wait_done(sandbox, session, timeout=60)
        assert run_cli("teardown", session, "--purge", cwd=sandbox.repo, env=env).code == 0
    assert orchestrator_branches(sandbox.repo) == []
    assert _only_the_main_worktree(sandbox)


def test_the_lock_lives_in_the_common_git_dir_and_waits_boundedly(sandbox: Sandbox) -> None:
    # From a linked worktree too, the lock is the main repo's (one lock per repository).
    git(sandbox.repo, "worktree", "add", "--quiet", "-b", "side", str(sandbox.root / "side"))
    from_main = repolock.lock_path(str(sandbox.repo))
    from_side = repolock.lock_path(str(sandbox.root / "side"))
    assert from_main == from_side == str(sandbox.repo / ".git" / repolock.LOCK_NAME)

    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import fcntl, sys; f = open(sys.argv[1], 'a'); fcntl.flock(f, fcntl.LOCK_EX); "
            "print('held', flush=True); sys.stdin.read()",
            from_main,
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline() == "held\n"
        started = time.monotonic()
        with (
            pytest.raises(KodelythError, match="could not lock") as caught,
            repolock.worktree_lock(str(sandbox.repo), timeout=0.5),
        ):
            pass
        assert 0.4 < time.monotonic() - started < 10
        assert "\n" not in caught.value.message
    finally:
        assert holder.stdin is not None
        holder.stdin.close()
        holder.wait(timeout=10)
    # Released when its holder ends: taken at once now.
    with repolock.worktree_lock(str(sandbox.repo), timeout=5):
        pass
