"""The Python API named in the issue, used the way a script would: through the
package's top-level names, with no argv parsing and nothing printed."""

from __future__ import annotations

import os

import pytest

import kodelyth_ecc
from kodelyth_ecc.errors import KodelythError, UsageError
from tests.conftest import Sandbox
from tests.swarm_helpers import has_session, orchestrator_branches, worktree_of

API = (
    "build_swarm_plan",
    "build_orchestration_plan",
    "materialize_plan",
    "execute_plan",
    "collect_status",
    "teardown",
)


def test_api_names_are_exported() -> None:
    for name in API:
        assert name in kodelyth_ecc.__all__, name
        assert callable(getattr(kodelyth_ecc, name)), name


def test_api_runs_a_swarm_from_plan_to_teardown(
    sandbox: Sandbox, capfd: pytest.CaptureFixture[str]
) -> None:
    k = kodelyth_ecc
    config = k.build_swarm_plan(
        "audit the auth module",
        repo_root=str(sandbox.repo),
        agents="alpha,beta",
        harness="echo",
        session_name="api",
    )
    assert [w.name for w in config.workers] == ["alpha", "beta"]
    plan = k.build_orchestration_plan(config)
    assert [w.worker_slug for w in plan.workers] == ["alpha", "beta"]
    result = k.execute_plan(plan)
    assert result.session_name == "api"
    assert set(result.panes) == {"alpha", "beta"}
    status = k.wait_for_session("api", plan.coordination_root, timeout=20)
    assert status.all_completed
    again = k.collect_status("api", plan.coordination_root)
    assert [w.state for w in again.workers] == ["completed", "completed"]
    assert all(w.exit_code == 0 for w in again.workers)
    down = k.teardown("api", plan.coordination_root, purge=True)
    assert down.killed_tmux
    assert sorted(down.removed_worktrees) == sorted(
        str(worktree_of(sandbox, "api", s)) for s in ("alpha", "beta")
    )
    assert down.purged == plan.coordination_dir
    assert not has_session("api")
    assert orchestrator_branches(sandbox.repo) == []
    # A library: nothing on the caller's stdout or stderr.
    captured = capfd.readouterr()
    assert (captured.out, captured.err) == ("", "")


def test_api_materialize_plan_writes_files_only(sandbox: Sandbox) -> None:
    k = kodelyth_ecc
    plan = k.build_orchestration_plan(
        k.build_swarm_plan("t", repo_root=str(sandbox.repo), agents=1, session_name="files")
    )
    record = k.materialize_plan(plan)
    assert record.session == "files"
    assert sorted(os.listdir(plan.coordination_dir)) == ["code-reviewer", "session.json"]
    assert orchestrator_branches(sandbox.repo) == []
    assert not has_session("files")


def test_api_reports_bad_input_as_exceptions(sandbox: Sandbox) -> None:
    k = kodelyth_ecc
    with pytest.raises(UsageError, match="missing task"):
        k.build_swarm_plan("  ", repo_root=str(sandbox.repo))
    with pytest.raises(UsageError, match="out of range"):
        k.build_swarm_plan("t", repo_root=str(sandbox.repo), agents=13)
    with pytest.raises(KodelythError, match="no session 'nope'"):
        k.collect_status("nope", str(sandbox.coord_root))
