"""Teardown waits for no one: while a retry or resume holds the session's lock it
refuses, and removes nothing (it would pull a worktree from under a starting agent)."""

from __future__ import annotations

from kodelyth_ecc.coordination import session_lock
from tests.conftest import Sandbox
from tests.swarm_helpers import disk_state, started, wait_done


def test_teardown_refuses_while_a_retry_holds_the_session(sandbox: Sandbox) -> None:
    started(sandbox, "lk", agents="a")
    wait_done(sandbox, "lk")
    before = disk_state(sandbox)
    with session_lock(str(sandbox.coord_root / "lk"), "held by the test"):
        result = sandbox.cli("teardown", "lk", "--force", "--purge")
    assert result.code == 1, result
    assert "a retry or resume of session 'lk' is under way" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert disk_state(sandbox) == before
    done = sandbox.cli("teardown", "lk", "--purge")
    assert done.code == 0, done
