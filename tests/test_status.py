"""The worker status lifecycle: pending -> running -> completed / failed, ``lost``
when a pane dies under a running worker, ``status`` listings, ``--json`` and
``--wait`` exit codes, and coordination dirs written by the earlier JS tool."""

from __future__ import annotations

import json
import os
import shutil
import signal
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Sandbox
from tests.support import retry_until, tmux
from tests.swarm_helpers import (
    FIXTURES,
    child_pids,
    panes,
    process_alive,
    started,
    status_json,
    wait_done,
    wait_until_states,
    workers_by_slug,
)

JS_SESSION = "swarm-2026-11-20-3a"
JS_SLUGS = ["code-reviewer", "pair-programmer", "security-reviewer"]
SLOW = "sleep 60"


def _table(text: str) -> dict[str, list[str]]:
    """``status SESSION`` rows keyed by worker: below the session's header lines, above
    the lines about failed workers (``alpha: failed (exit 7): last output: ...``)."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("WORKER "))
    assert lines[start].split() == ["WORKER", "STATE", "EXIT", "DURATION", "PANE", "HANDOFF"]
    rows = [line.split() for line in lines[start + 1 :]]
    return {row[0]: row[1:] for row in rows if not row[0].endswith(":")}


def _fields(path: Path) -> dict[str, str]:
    out = {}
    for line in path.read_text().splitlines():
        if line.startswith("- ") and ": " in line:
            key, value = line[2:].split(": ", 1)
            out[key] = value
    return out


def test_completed_table_and_wait_exit_zero(sandbox: Sandbox) -> None:
    started(sandbox, "ok")
    waited = sandbox.cli("status", "ok", "--wait", "--timeout", "20")
    assert waited.code == 0, waited
    rows = _table(waited.stdout)
    assert set(rows) == {"alpha", "beta"}
    for row in rows.values():
        state, exit_code, duration, pane, *handoff = row
        assert (state, exit_code, pane) == ("completed", "0", "dead")
        assert duration.endswith("s")
        assert handoff[-1] == "B"


def test_failed_worker_keeps_its_exit_code(sandbox: Sandbox) -> None:
    started(sandbox, "bad", launcher="echo about-to-fail; exit 7")
    waited = sandbox.cli("status", "bad", "--wait", "--timeout", "20")
    assert waited.code == 1, waited
    status = status_json(sandbox, "bad")
    assert [(w["state"], w["exit_code"]) for w in status["workers"]] == [("failed", 7)] * 2
    for slug in ("alpha", "beta"):
        worker_dir = sandbox.coord_root / "bad" / slug
        fields = _fields(worker_dir / "status.md")
        assert fields["State"] == "failed"
        assert fields["Exit code"] == "7"
        assert "Finished" in fields
        assert "about-to-fail" in (worker_dir / "transcript.log").read_text()
    assert {row[0] for row in _table(waited.stdout).values()} == {"failed"}


@pytest.mark.parametrize(
    ("launcher", "code"),
    [
        ("false | tee -a {handoff_file_sh}", 1),
        ("sh -c 'exit 5' | tee -a {handoff_file_sh}", 5),
        ("(echo partial; exit 9) 2>&1 | tee -a {handoff_file_sh} | cat", 9),
    ],
    ids=["false-tee", "exit5-tee", "three-stage"],
)
def test_pipeline_keeps_the_agents_failure(sandbox: Sandbox, launcher: str, code: int) -> None:
    started(sandbox, "pipe", launcher=launcher, agents="solo")
    status = wait_done(sandbox, "pipe")
    assert [(w["state"], w["exit_code"]) for w in status["workers"]] == [("failed", code)]


def test_missing_agent_program_is_failed_with_127(sandbox: Sandbox) -> None:
    """A program pre-flight cannot check (a path, run from the worktree) that is not
    there: the worker fails with the shell's 127, and its transcript says why."""
    started(sandbox, "nf", launcher="./no-such-agent-program {task_file_sh}", agents="solo")
    status = wait_done(sandbox, "nf")
    assert [(w["state"], w["exit_code"]) for w in status["workers"]] == [("failed", 127)]
    transcript = (sandbox.coord_root / "nf" / "solo" / "transcript.log").read_text()
    assert "no-such-agent-program" in transcript


def test_any_failure_makes_wait_exit_one(sandbox: Sandbox) -> None:
    launcher = "case {worker_slug_sh} in good) echo fine ;; *) exit 4 ;; esac"
    started(sandbox, "mixed", launcher=launcher, agents="good,broken")
    waited = sandbox.cli("status", "mixed", "--wait", "--timeout", "20", "--json")
    assert waited.code == 1, waited
    workers = workers_by_slug(json.loads(waited.stdout)["session"])
    assert (workers["good"]["state"], workers["good"]["exit_code"]) == ("completed", 0)
    assert (workers["broken"]["state"], workers["broken"]["exit_code"]) == ("failed", 4)


def _running(sandbox: Sandbox, session: str) -> dict[str, Any]:
    return wait_until_states(sandbox, session, "running")


def test_running_while_in_progress(sandbox: Sandbox) -> None:
    started(sandbox, "busy", launcher=SLOW)
    status = _running(sandbox, "busy")
    for worker in status["workers"]:
        assert worker["pane_alive"] is True
        assert worker["exit_code"] is None
        assert worker["finished"] is None
        assert worker["started"]
    assert status["done"] is False
    assert status["counts"]["running"] == 2
    fields = _fields(sandbox.coord_root / "busy" / "alpha" / "status.md")
    assert fields["State"] == "running"
    assert "Exit code" not in fields
    rows = _table(sandbox.cli("status", "busy").stdout)
    assert rows["alpha"][:2] == ["running", "-"]
    assert rows["alpha"][3] == "alive"


def _worker_pane(sandbox: Sandbox, session: str, slug: str) -> str:
    pane_id: str = status_json(sandbox, session)["workers"][["alpha", "beta"].index(slug)][
        "pane_id"
    ]
    assert pane_id.startswith("%")
    return pane_id


def test_killed_pane_makes_a_running_worker_lost(sandbox: Sandbox) -> None:
    started(sandbox, "lose", launcher=SLOW)
    _running(sandbox, "lose")
    tmux("kill-pane", "-t", _worker_pane(sandbox, "lose", "alpha"))
    status = wait_until_states(sandbox, "lose", {"alpha": "lost", "beta": "running"})
    alpha = workers_by_slug(status)["alpha"]
    assert alpha["recorded_state"] == "running"  # the file could not be updated
    assert alpha["pane_alive"] is False
    assert status["counts"]["lost"] == 1
    # Lost is final: --wait does not hang on it, but beta still runs, so it times out.
    waited = sandbox.cli("status", "lose", "--wait", "--timeout", "1")
    assert waited.code == 124, waited
    tmux("kill-pane", "-t", _worker_pane(sandbox, "lose", "beta"))
    waited = sandbox.cli("status", "lose", "--wait", "--timeout", "20")
    assert waited.code == 1, waited
    assert {row[0] for row in _table(waited.stdout).values()} == {"lost"}


def test_killed_runner_makes_the_worker_lost_and_stops_its_agent(sandbox: Sandbox) -> None:
    started(sandbox, "crash", launcher=SLOW)
    _running(sandbox, "crash")
    pane_id = _worker_pane(sandbox, "crash", "alpha")
    pid = int(tmux("display-message", "-p", "-t", pane_id, "#{pane_pid}").stdout)
    agents = retry_until(lambda: child_pids(pid), message="the runner's agent process")
    os.kill(pid, signal.SIGKILL)
    status = wait_until_states(sandbox, "crash", {"alpha": "lost", "beta": "running"})
    assert workers_by_slug(status)["alpha"]["pane_alive"] is False
    # The pane stays (remain-on-exit) but is dead; the agent went with its runner.
    assert any(p.pane_id == pane_id and p.dead for p in panes("crash"))
    retry_until(
        lambda: not any(process_alive(a) for a in agents), message=f"agents {agents} to stop"
    )


def test_agent_killed_by_a_signal_is_failed(sandbox: Sandbox) -> None:
    started(sandbox, "sig", launcher="exec sleep 60", agents="solo")
    status = _running(sandbox, "sig")
    pid = int(
        tmux("display-message", "-p", "-t", status["workers"][0]["pane_id"], "#{pane_pid}").stdout
    )
    (agent,) = retry_until(lambda: child_pids(pid), message="the runner's agent process")
    os.kill(agent, signal.SIGTERM)
    status = wait_until_states(sandbox, "sig", "failed")
    assert status["workers"][0]["exit_code"] == 128 + signal.SIGTERM


def test_killed_tmux_session_makes_running_workers_lost(sandbox: Sandbox) -> None:
    started(sandbox, "gone", launcher=SLOW)
    _running(sandbox, "gone")
    tmux("kill-session", "-t", "=gone")
    status = wait_until_states(sandbox, "gone", "lost")
    assert status["tmuxAlive"] is False
    assert [w["recorded_state"] for w in status["workers"]] == ["running", "running"]


def test_wait_times_out_with_code_124(sandbox: Sandbox) -> None:
    started(sandbox, "slow", launcher=SLOW)
    waited = sandbox.cli("status", "slow", "--wait", "--timeout", "1")
    assert waited.code == 124, waited
    assert "timed out" in waited.stderr
    assert len(waited.stderr.strip().splitlines()) == 1
    rows = _table(waited.stdout)
    assert {row[0] for row in rows.values()} <= {"pending", "running"}
    as_json = sandbox.cli("status", "slow", "--wait", "--timeout", "1", "--json")
    assert as_json.code == 124, as_json
    assert json.loads(as_json.stdout)["session"]["done"] is False


def test_json_output_is_only_json(sandbox: Sandbox) -> None:
    started(sandbox, "js")
    wait_done(sandbox, "js")
    for args in (("status", "js", "--json"), ("status", "--json")):
        result = sandbox.cli(*args)
        assert result.code == 0, result
        data = json.loads(result.stdout)  # raises if anything but JSON is on stdout
        assert data["schema"] == "kodelyth.status/v1"
    one = json.loads(sandbox.cli("status", "js", "--json").stdout)["session"]
    assert one["session"] == "js"
    assert one["counts"]["completed"] == 2
    assert {w["slug"] for w in one["workers"]} == {"alpha", "beta"}
    listing = json.loads(sandbox.cli("status", "--json").stdout)
    assert [s["session"] for s in listing["sessions"]] == ["js"]


def test_status_lists_every_session_with_counts(sandbox: Sandbox) -> None:
    started(sandbox, "good")
    started(sandbox, "bad", launcher="exit 7", agents="one,two,three")
    written = sandbox.cli(
        "swarm",
        "--task",
        "later",
        "--agents",
        "x",
        "--harness",
        "echo",
        "--session",
        "later",
        "--write-only",
    )
    assert written.code == 0, written
    wait_done(sandbox, "good")
    wait_done(sandbox, "bad")
    # Not sessions: the patches teardown saves, and hidden entries.
    (sandbox.coord_root / "good.teardown").mkdir()
    (sandbox.coord_root / ".cache").mkdir()
    result = sandbox.cli("status")
    assert result.code == 0, result
    # Each line goes on with when the session started and its task.
    assert [line.split("  (started ")[0] for line in result.stdout.splitlines()] == [
        "bad  3 workers: 3 failed",
        "good  2 workers: 2 completed",
        "later  1 worker: 1 pending",
    ]


def test_status_without_sessions(sandbox: Sandbox) -> None:
    result = sandbox.cli("status")
    assert result.code == 0, result
    assert result.stdout == ""
    assert "no sessions" in result.stderr
    assert json.loads(sandbox.cli("status", "--json").stdout)["sessions"] == []


def test_status_of_unknown_session_is_an_error(sandbox: Sandbox) -> None:
    result = sandbox.cli("status", "nope")
    assert result.code == 1, result
    assert "no session 'nope'" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert "Traceback" not in result.stderr


def test_wait_on_a_write_only_session_does_not_hang(sandbox: Sandbox) -> None:
    written = sandbox.cli(
        "swarm",
        "--task",
        "t",
        "--agents",
        "x",
        "--harness",
        "echo",
        "--session",
        "w",
        "--write-only",
    )
    assert written.code == 0, written
    result = sandbox.cli("status", "w", "--wait", "--timeout", "20")
    assert result.code == 1, result
    assert "never started" in result.stderr


def _js_session(sandbox: Sandbox) -> Path:
    target = sandbox.coord_root / JS_SESSION
    shutil.copytree(FIXTURES / "js-coordination" / JS_SESSION, target)
    return target


def test_reads_a_coordination_dir_written_by_the_js_tool(sandbox: Sandbox) -> None:
    _js_session(sandbox)
    status = status_json(sandbox, JS_SESSION)
    assert [w["slug"] for w in status["workers"]] == JS_SLUGS
    for worker in status["workers"]:
        assert worker["state"] == "completed"
        assert worker["exit_code"] is None
        assert worker["pane_alive"] is None  # never ran under our tmux bookkeeping
        assert worker["branch"] == f"orchestrator-{JS_SESSION}-{worker['slug']}"
        assert worker["worktree"] == f"/home/dev/src/acme-api-{JS_SESSION}-{worker['slug']}"
        assert worker["handoff_bytes"] > 0
    assert status["tmuxAlive"] is None
    listing = sandbox.cli("status")
    assert listing.stdout.splitlines() == [f"{JS_SESSION}  3 workers: 3 completed"]
    assert sandbox.cli("status", JS_SESSION, "--wait", "--timeout", "5").code == 0


def test_js_tool_worker_not_yet_completed_is_pending(sandbox: Sandbox) -> None:
    target = _js_session(sandbox)
    status_file = target / "security-reviewer" / "status.md"
    status_file.write_text(status_file.read_text().replace("state: completed\n", ""))
    status = workers_by_slug(status_json(sandbox, JS_SESSION))
    assert status["security-reviewer"]["state"] == "pending"
    assert status["code-reviewer"]["state"] == "completed"
    waited = sandbox.cli("status", JS_SESSION, "--wait", "--timeout", "1")
    assert waited.code == 124, waited
    assert "security-reviewer" in waited.stderr
