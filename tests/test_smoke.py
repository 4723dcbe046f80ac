from __future__ import annotations

import json

from tests.conftest import Sandbox
from tests.support import retry_until, tmux


def test_execute_echo_swarm_completes(sandbox: Sandbox) -> None:
    result = sandbox.cli(
        "swarm",
        "--task",
        "audit auth",
        "--agents",
        "2",
        "--harness",
        "echo",
        "--session",
        "s1",
        "--execute",
    )
    assert result.code == 0, result
    status = retry_until(
        lambda: (
            (r := sandbox.cli("status", "s1", "--json")).code == 0
            and json.loads(r.stdout)["session"]["done"]
            and json.loads(r.stdout)
        ),
        message="workers done",
    )
    states = [w["state"] for w in status["session"]["workers"]]
    assert states == ["completed", "completed"]
    assert tmux("has-session", "-t", "=s1").returncode == 0
