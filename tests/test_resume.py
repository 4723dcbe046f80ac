"""`resume SESSION` after the tmux server was killed mid-run (real git, tmux and HTTP):
the unfinished workers run again in a new tmux session, the finished ones are left
alone, session.json names the new panes, `status --wait` sees them through. With the
session's model proxy: it is started again (its stale proxy.json never taken for the
new one), the other workers' recordings stay as they were, the earlier attempt's is
kept sealed under attempts/1, and the new attempt's is sealed on its own; a retry
while the proxy runs reuses it and still starts a fresh recording."""

from __future__ import annotations

import json
import os
import secrets
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from kodelyth_ecc import exchanges as ex
from kodelyth_ecc.coordination import GONE_PANE
from kodelyth_ecc.execute import PROXY_WINDOW
from tests.conftest import Sandbox
from tests.providers.anthropic import AnthropicStub, Usage
from tests.support import make_failing_tool, retry_until, run_cli, tmux
from tests.swarm_helpers import (
    process_alive,
    session_record,
    started,
    wait_done,
    wait_until_states,
    worktree_of,
)

# A launcher under a harness that talks to a model (not echo): the proxy records it.
CUSTOM = "claude"
STANDIN = Path(__file__).resolve().parent / "standin_agent.py"
AGENT = f"{sys.executable} {STANDIN} < {{task_file_sh}} >> {{handoff_file_sh}} || exit 1"
# alpha finishes; beta's first attempt runs until its tmux server is killed.
BETA_HANGS_ONCE = (
    "[ {worker_slug_sh} = alpha ] && exit 0; [ -e .second-time ] && exit 0; "
    ": > .second-time; sleep 60"
)


def files_of(directory: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(directory)): p.read_bytes()
        for p in sorted(directory.rglob("*"))
        if p.is_file()
    }


def pane_ids(session: str) -> set[str]:
    out = tmux("list-panes", "-s", "-t", f"={session}", "-F", "#{pane_id}", check=False)
    return set(out.stdout.split())


def workers(sandbox: Sandbox, session: str) -> dict[str, dict[str, Any]]:
    return {w["slug"]: w for w in session_record(sandbox, session)["workers"]}


def test_resume_after_the_tmux_server_was_killed_mid_run(sandbox: Sandbox) -> None:
    started(sandbox, "rs", launcher=BETA_HANGS_ONCE)
    wait_until_states(sandbox, "rs", {"alpha": "completed", "beta": "running"})
    alpha_dir = sandbox.coord_root / "rs" / "alpha"
    alpha_before = files_of(alpha_dir)
    old = workers(sandbox, "rs")
    tmux("kill-server")
    wait_until_states(sandbox, "rs", {"alpha": "completed", "beta": "lost"})

    result = run_cli("resume", "rs", cwd=sandbox.repo, env=os.environ)
    assert result.code == 0, result
    assert "restarted beta in rs (attempt 2): afresh on its task" in result.stdout
    assert "alpha" not in result.stdout.split("\n", 1)[0]
    assert "the tmux session rs was gone: made again" in result.stdout
    waited = run_cli("status", "rs", "--wait", "--timeout", "20", cwd=sandbox.repo, env=os.environ)
    assert waited.code == 0, waited
    # The finished worker untouched; the unfinished one's first attempt kept.
    assert files_of(alpha_dir) == alpha_before
    beta_dir = sandbox.coord_root / "rs" / "beta"
    assert "- State: running\n" in (beta_dir / "attempts/1/status.md").read_text()
    assert "- State: completed\n" in (beta_dir / "status.md").read_text()
    # session.json: beta's pane is one of the new session's, alpha's is of the ended server.
    now = workers(sandbox, "rs")
    assert now["beta"]["pane_id"] in pane_ids("rs")
    assert now["beta"]["attempts"] == 2
    assert now["alpha"]["pane_id"] == GONE_PANE != old["alpha"]["pane_id"]
    assert now["alpha"]["attempts"] == 1
    assert session_record(sandbox, "rs")["tmux_session"] == "rs"


def test_resume_refuses_a_running_session_and_does_nothing_when_all_finished(
    sandbox: Sandbox,
) -> None:
    started(sandbox, "live", launcher="sleep 60", agents="solo")
    wait_until_states(sandbox, "live", "running")
    refused = run_cli("resume", "live", cwd=sandbox.repo, env=os.environ)
    assert refused.code == 1, refused
    assert refused.stderr == (
        "kodelyth-ecc: error: session 'live' is running; use "
        "`kodelyth-ecc retry live WORKER` for one worker\n"
    )
    started(sandbox, "fin", launcher="[ {worker_slug_sh} = alpha ] || exit 3")
    wait_done(sandbox, "fin")
    tmux("kill-session", "-t", "=fin")
    before = files_of(sandbox.coord_root / "fin")
    nothing = run_cli("resume", "fin", cwd=sandbox.repo, env=os.environ)
    assert nothing.code == 0, nothing
    assert nothing.stdout.startswith("nothing to resume in fin: every worker completed or failed")
    assert files_of(sandbox.coord_root / "fin") == before
    assert tmux("has-session", "-t", "=fin", check=False).returncode != 0


def test_a_resume_that_fails_leaves_no_tmux_session_and_the_files_back(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    started(sandbox, "rf", launcher=BETA_HANGS_ONCE)
    wait_until_states(sandbox, "rf", {"alpha": "completed", "beta": "running"})
    tmux("kill-server")
    before = files_of(sandbox.coord_root / "rf")
    bin_dir = tmp_path / "bin"
    make_failing_tool(bin_dir, "tmux", ["wait-for", "-S"])
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"}
    result = run_cli("resume", "rf", cwd=sandbox.repo, env=env)
    assert result.code == 1, result
    assert "retry failed while launching the workers" in result.stderr
    assert "the session was left as it was" in result.stderr
    assert files_of(sandbox.coord_root / "rf") == before
    assert tmux("has-session", "-t", "=rf", check=False).returncode != 0


# --- with the session's model proxy ----------------------------------------------------


@pytest.fixture
def stub(monkeypatch: pytest.MonkeyPatch) -> Iterator[AnthropicStub]:
    """The provider every worker's stand-in agent talks to, through the session's proxy."""
    monkeypatch.setenv("ANTHROPIC_API_KEY", "test-key-" + secrets.token_hex(16))
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)
    with AnthropicStub(
        answer="## Summary\nDone.",
        tool_call=("Bash", {"command": "echo hi > hello.txt"}),
        usage=Usage(input_tokens=100, output_tokens=10),
        lifetime_s=120,
    ) as provider:
        monkeypatch.setenv("ANTHROPIC_BASE_URL", provider.base_url)
        yield provider


def recording(worker_dir: Path) -> tuple[bytes, int | None, list[int]]:
    """A worker's exchanges.jsonl, how much of it its seal covers, and its turns."""
    data = (worker_dir / "exchanges.jsonl").read_bytes()
    seal = (worker_dir / "exchanges.seal").read_text()
    return data, ex.file_sealed_here(data, seal), [e.turn for e in ex.parse_lines(data)]


def proxy_pid(sandbox: Sandbox, session: str) -> int:
    pid = json.loads((sandbox.coord_root / session / "proxy.json").read_text())["pid"]
    assert isinstance(pid, int)
    return pid


def proxy_pane_pid(session: str) -> int:
    out = tmux("list-panes", "-t", f"={session}:{PROXY_WINDOW}", "-F", "#{pane_pid}")
    return int(out.stdout.split()[0])


def assert_export_sealed(sandbox: Sandbox, session: str, tmp_path: Path) -> None:
    out = tmp_path / f"{session}.bundle.json"
    exported = sandbox.cli("session-export", session, "--out", str(out))
    assert exported.code == 0, exported
    bundle = json.loads(out.read_text())
    for worker in bundle["workers"]:
        assert [e["turn"] for e in worker["exchanges"]] == [1, 2], worker["slug"]
        assert ex.sealed_here(
            ex.decode_list(json.dumps(worker["exchanges"]).encode(), "test"),
            worker["recording"],
            worker["slug"],
            worker["task"],
        ), worker["slug"]


def test_resume_starts_the_proxy_again_and_keeps_every_recording(
    sandbox: Sandbox, stub: AnthropicStub, tmp_path: Path
) -> None:
    started(sandbox, "px", launcher=f"{AGENT}; {BETA_HANGS_ONCE}", harness=CUSTOM)
    wait_until_states(sandbox, "px", {"alpha": "completed", "beta": "running"})
    beta_tree = worktree_of(sandbox, "px", "beta")
    retry_until((beta_tree / ".second-time").exists, message="beta's agent to finish")
    alpha_dir, beta_dir = sandbox.coord_root / "px" / "alpha", sandbox.coord_root / "px" / "beta"
    alpha_before = files_of(alpha_dir)
    first = recording(beta_dir)
    assert first[1] == len(first[0]) and first[2] == [1, 2]
    old_pid = proxy_pid(sandbox, "px")
    tmux("kill-server")
    retry_until(lambda: not process_alive(old_pid), message="the old proxy to end")

    result = run_cli("resume", "px", cwd=sandbox.repo, env=os.environ)
    assert result.code == 0, result
    assert "the session's model proxy was started again" in result.stdout
    status = wait_done(sandbox, "px", timeout=60)
    assert {w["state"] for w in status["workers"]} == {"completed"}
    # A new proxy, the one proxy.json names (never the ended one's ports).
    new_pid = proxy_pid(sandbox, "px")
    assert new_pid != old_pid and process_alive(new_pid)
    assert new_pid == proxy_pane_pid("px")
    # alpha's recording untouched; beta's first kept, sealed; its second sealed alone.
    assert files_of(alpha_dir) == alpha_before
    assert recording(beta_dir / "attempts" / "1") == first
    data, sealed, turns = recording(beta_dir)
    assert turns == [1, 2] and sealed == len(data)
    assert stub.turns.count("tool") == 3
    assert_export_sealed(sandbox, "px", tmp_path)


def test_a_retry_while_the_proxy_runs_reuses_it_with_a_fresh_recording(
    sandbox: Sandbox, stub: AnthropicStub, tmp_path: Path
) -> None:
    fails_once = "[ -e .second-time ] || { : > .second-time; exit 3; }"
    started(sandbox, "pl", launcher=f"{AGENT}; {fails_once}", agents="solo", harness=CUSTOM)
    wait_until_states(sandbox, "pl", "failed", timeout=30)
    wdir = sandbox.coord_root / "pl" / "solo"
    first = recording(wdir)
    assert first[1] == len(first[0]) and first[2] == [1, 2]
    pid = proxy_pid(sandbox, "pl")

    result = run_cli("retry", "pl", "solo", cwd=sandbox.repo, env=os.environ)
    assert result.code == 0, result
    assert "proxy was started again" not in result.stdout
    wait_until_states(sandbox, "pl", "completed", timeout=30)
    assert proxy_pid(sandbox, "pl") == pid and process_alive(pid)
    assert recording(wdir / "attempts" / "1") == first
    data, sealed, turns = recording(wdir)
    assert turns == [1, 2] and sealed == len(data)
    assert_export_sealed(sandbox, "pl", tmp_path)


def test_a_dead_proxy_in_a_live_session_is_started_again(
    sandbox: Sandbox, stub: AnthropicStub
) -> None:
    fails_once = "[ -e .second-time ] || { : > .second-time; exit 3; }"
    started(sandbox, "pd", launcher=f"{AGENT}; {fails_once}", agents="solo", harness=CUSTOM)
    wait_until_states(sandbox, "pd", "failed", timeout=30)
    old_pid = proxy_pid(sandbox, "pd")
    os.kill(old_pid, 15)
    retry_until(lambda: not process_alive(old_pid), message="the proxy to end")
    result = run_cli("retry", "pd", "solo", cwd=sandbox.repo, env=os.environ)
    assert result.code == 0, result
    assert "the session's model proxy was started again" in result.stdout
    wait_until_states(sandbox, "pd", "completed", timeout=30)
    new_pid = proxy_pid(sandbox, "pd")
    assert new_pid != old_pid and new_pid == proxy_pane_pid("pd")
    # One proxy window: the ended one's is closed.
    out = tmux("list-windows", "-t", "=pd", "-F", "#{window_name}").stdout.split()
    assert out.count(PROXY_WINDOW) == 1 and len(out) == 2, out


def test_an_offline_replays_worker_runs_again_from_its_recording(
    sandbox: Sandbox, stub: AnthropicStub, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The live proxy answers the new attempt from the recording's start again (its
    replayer made afresh with the attempt's recording), with nothing leaving the
    machine: a replayer that went on where the first attempt stopped would diverge."""
    from tests.providers.server import Sentinel

    started(sandbox, "orig", launcher=AGENT, agents="solo", harness=CUSTOM)
    assert wait_done(sandbox, "orig", timeout=30)["workers"][0]["state"] == "completed"
    bundle = tmp_path / "orig.bundle.json"
    assert sandbox.cli("session-export", "orig", "--out", str(bundle)).code == 0
    asked = len(stub.requests)
    dead = Sentinel()
    monkeypatch.setenv("ANTHROPIC_BASE_URL", dead.url)
    try:
        fails_once = "[ -e .second-time ] || { : > .second-time; exit 3; }"
        replayed = sandbox.cli(
            "replay", str(bundle), "--launcher-cmd", f"{AGENT}; {fails_once}", "--offline",
            "--session", "rep", "--execute", "--wait", "--timeout", "30",
        )  # fmt: skip
        assert replayed.code == 1, replayed  # the launcher's first attempt fails on purpose
        wdir = sandbox.coord_root / "rep" / "solo"
        assert not (wdir / "divergence.json").exists()
        result = run_cli("retry", "rep", "solo", cwd=sandbox.repo, env=os.environ)
        assert result.code == 0, result
        status = wait_done(sandbox, "rep", timeout=30)
        assert status["workers"][0]["state"] == "completed", (wdir / "transcript.log").read_text()
        assert not (wdir / "divergence.json").exists()
        assert recording(wdir)[2] == [1, 2]
        assert dead.connections == 0 and len(stub.requests) == asked
    finally:
        dead.close()


def test_a_retry_whose_proxy_cannot_start_leaves_the_session_as_it_was(
    sandbox: Sandbox, stub: AnthropicStub, tmp_path: Path
) -> None:
    fails_once = "[ -e .second-time ] || { : > .second-time; exit 3; }"
    started(sandbox, "pf", launcher=f"{AGENT}; {fails_once}", agents="solo", harness=CUSTOM)
    wait_until_states(sandbox, "pf", "failed", timeout=30)
    old_pid = proxy_pid(sandbox, "pf")
    os.kill(old_pid, 15)
    retry_until(lambda: not process_alive(old_pid), message="the proxy to end")

    def windows() -> list[str]:
        out = tmux("list-panes", "-s", "-t", "=pf", "-F", "#{window_name} #{pane_id} #{pane_dead}")
        return sorted(out.stdout.splitlines())

    before = (files_of(sandbox.coord_root / "pf"), windows())
    bin_dir = tmp_path / "bin"
    make_failing_tool(bin_dir, "tmux", ["new-window"])
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"}
    result = run_cli("retry", "pf", "solo", cwd=sandbox.repo, env=env)
    assert result.code == 1, result
    assert "retry failed while starting the session's model proxy" in result.stderr
    assert "the session was left as it was" in result.stderr
    assert (files_of(sandbox.coord_root / "pf"), windows()) == before
