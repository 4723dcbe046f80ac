"""``--execute`` cases found in review: big swarms whose tmux commands exceed what
one tmux client call may carry, repo paths tmux would read as formats, roots that
did not exist, and the hints printed for a custom coordination root."""

from __future__ import annotations

import os
import shlex
from pathlib import Path

import pytest

from tests.conftest import Sandbox, make_repo
from tests.support import git, make_failing_tool, run_cli, tmux
from tests.swarm_helpers import panes, start_swarm, started, wait_done

TWELVE = ",".join(f"worker-{i:02d}" for i in range(12))


def test_twelve_workers_with_long_commands_start(sandbox: Sandbox) -> None:
    """tmux refuses a client command line over 16 KiB ("command too long"): twelve
    workers with a long launcher (or long paths) must still get their panes."""
    padding = "x" * 1500
    launcher = f": {padding}; echo ran-{{worker_slug}} | tee -a {{handoff_file_sh}}"
    result = started(sandbox, "big", agents=TWELVE, launcher=launcher)
    assert "started big: 12 workers" in result.stdout
    status = wait_done(sandbox, "big", timeout=60)
    assert [w["state"] for w in status["workers"]] == ["completed"] * 12
    _, *workers = panes("big")
    assert [p.title for p in workers] == [f"worker-{i:02d}" for i in range(12)]
    for i in range(12):
        handoff = sandbox.coord_root / "big" / f"worker-{i:02d}" / "handoff.md"
        assert f"ran-worker-{i:02d}" in handoff.read_text()


def test_a_launcher_too_long_for_tmux_is_refused_in_one_line(sandbox: Sandbox) -> None:
    launcher = ": " + "y" * 20000
    result = start_swarm(sandbox, "huge", agents="alpha", launcher=launcher)
    assert result.code == 1, result
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result
    assert "too long" in lines[0]
    assert "everything this run created was removed" in lines[0]
    assert len(lines[0]) < 1000, len(lines[0])
    assert not (sandbox.coord_root / "huge").exists()


def test_repo_path_with_tmux_format_characters(sandbox: Sandbox) -> None:
    """tmux expands formats (#{...}, #(...)) in -c start directories: the panes
    must start in the repo whatever its name."""
    repo = make_repo(sandbox.root.parent / "odd" / "r#{session_name}#(echo x)")
    result = run_cli(
        "swarm", "--task", "t", "--agents", "alpha", "--harness", "echo", "--session", "fmt",
        "--execute", cwd=repo, env=os.environ,
    )  # fmt: skip
    assert result.code == 0, result
    for pane in panes("fmt"):
        start = tmux("display-message", "-p", "-t", pane.pane_id, "#{pane_start_path}").stdout
        assert start.strip() == str(repo), start


def test_hints_name_a_custom_coordination_root(sandbox: Sandbox, tmp_path: Path) -> None:
    coord = tmp_path / "elsewhere coord"
    result = started(sandbox, "hint", "--coordination-root", str(coord))
    hints = {
        line.split(maxsplit=1)[0]: line.split(maxsplit=1)[1]
        for line in result.stdout.splitlines()[1:]
    }
    # The printed commands work as printed, from the repo.
    watch = shlex.split(hints["watch"])
    assert watch[:2] == ["kodelyth-ecc", "status"]
    waited = run_cli(*watch[1:], "--timeout", "20", cwd=sandbox.repo, env=os.environ)
    assert waited.code == 0, waited
    clean = shlex.split(hints["clean"].removeprefix("up").strip())
    torn = run_cli(*clean[1:], cwd=sandbox.repo, env=os.environ)
    assert torn.code == 0, torn
    assert "removed worktree" in torn.stdout


@pytest.mark.parametrize("root", ["worktree", "coordination"])
def test_rollback_removes_root_directories_it_created(
    sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, root: str
) -> None:
    make_failing_tool(tmp_path / "bin", "git", ["worktree", "add"], nth=2)
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}")
    new_parent = sandbox.root.parent / "not-yet"
    flag = "--worktree-root" if root == "worktree" else "--coordination-root"
    result = start_swarm(sandbox, "rb", flag, str(new_parent / "deeper" / "root"))
    assert result.code == 1, result
    assert "everything this run created was removed" in result.stderr
    assert not new_parent.exists()
    assert git(sandbox.repo, "branch", "--list", "orchestrator-*") == ""


def test_a_failed_tmux_batch_is_reported_in_a_short_line(
    sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    make_failing_tool(tmp_path / "bin", "tmux", ["split-window"])
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}")
    result = start_swarm(sandbox, "short", agents=TWELVE)
    assert result.code == 1, result
    (line,) = result.stderr.strip().splitlines()
    assert "injected failure" in line
    assert "everything this run created was removed" in line
    assert len(line) < 800, len(line)


@pytest.mark.parametrize("sig", ["SIGTERM", "SIGHUP"])
def test_termination_signals_roll_back_like_ctrl_c(
    sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, sig: str
) -> None:
    """`timeout 60 kodelyth-ecc swarm --execute` (SIGTERM) or a closed terminal (SIGHUP)
    mid-run: rolled back like Ctrl-C, not left half made."""
    import signal

    from tests.support import retry_until
    from tests.swarm_helpers import assert_nothing_left, has_session
    from tests.test_rollback import _blocking_tool, _start_cli

    reached, release = _blocking_tool(tmp_path / "bin", "git", ["worktree", "add"], 2)
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}")
    args = ["swarm", "--task", "t", "--agents", "first,second", "--harness", "echo"]
    proc = _start_cli([*args, "--session", "rb", "--execute"], sandbox.repo)
    try:
        retry_until(lambda: reached.exists() or proc.poll() is not None, message="the hold")
        assert proc.poll() is None, proc.communicate()
        assert has_session("rb")
        proc.send_signal(getattr(signal, sig))
        _, stderr = proc.communicate(timeout=30)
    finally:
        release.touch()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, stderr
    assert stderr.strip().splitlines() == ["kodelyth-ecc: interrupted"], stderr
    assert_nothing_left(sandbox, "rb", ["first", "second"])
