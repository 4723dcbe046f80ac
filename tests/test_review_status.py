"""Status cases found in review: asked from a shell where tmux is not on PATH, a
running worker is of unknown pane state, not lost."""

from __future__ import annotations

import json
import os
from pathlib import Path

from tests.conftest import Sandbox
from tests.support import run_cli
from tests.swarm_helpers import bin_dir_with, started, wait_until_states


def test_status_without_tmux_on_path_does_not_call_workers_lost(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    started(sandbox, "busy", launcher="sleep 60")
    wait_until_states(sandbox, "busy", "running")
    path = bin_dir_with(tmp_path / "no-tmux", ["git"])
    env = {**os.environ, "PATH": str(path)}
    result = run_cli("status", "busy", "--json", cwd=sandbox.repo, env=env)
    assert result.code == 0, result
    data = json.loads(result.stdout)["session"]
    assert [w["state"] for w in data["workers"]] == ["running", "running"]
    assert [w["pane_alive"] for w in data["workers"]] == [None, None]
    assert data["tmuxAlive"] is None
    waited = run_cli("status", "busy", "--wait", "--timeout", "1", cwd=sandbox.repo, env=env)
    assert waited.code == 124, waited


def test_a_worker_is_done_when_its_agent_exits_even_if_a_child_keeps_the_terminal(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    """An agent that leaves a background process holding its terminal (and deaf to
    SIGHUP) has still finished: status must not say "running" until that process ends."""
    ready = tmp_path / "ready"
    launcher = (
        f"(trap '' HUP; : > '{ready}'; exec sleep 30) & "
        f"i=0; until [ -e '{ready}' ] || [ $i -ge 400 ]; do sleep 0.02; i=$((i+1)); done; "
        "echo agent-done; exit 3"
    )
    started(sandbox, "bg", launcher=launcher, agents="solo")
    status = wait_until_states(sandbox, "bg", "failed", timeout=10)
    assert status["workers"][0]["exit_code"] == 3
    transcript = (sandbox.coord_root / "bg" / "solo" / "transcript.log").read_text()
    assert "agent-done" in transcript


def test_status_file_is_replaced_whole_never_rewritten_in_place(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    """Readers must see the old status.md or the new one, never half of one: each
    update is a new file renamed over the old (so the inode changes from one state
    to the next), and no temporary file is left behind."""
    release = tmp_path / "release"
    launcher = f"i=0; until [ -e '{release}' ] || [ $i -ge 400 ]; do sleep 0.05; i=$((i+1)); done"
    started(sandbox, "atomic", launcher=launcher, agents="solo")
    status_file = sandbox.coord_root / "atomic" / "solo" / "status.md"
    wait_until_states(sandbox, "atomic", "running")
    running = status_file.stat().st_ino
    assert "- State: running\n" in status_file.read_text()
    release.touch()
    wait_until_states(sandbox, "atomic", "completed")
    completed = status_file.stat().st_ino
    assert running != completed, (running, completed)
    leftovers = [p.name for p in status_file.parent.iterdir() if p.name.endswith(".tmp")]
    assert leftovers == []
