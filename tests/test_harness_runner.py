"""Issue 10: what the harness adapters promise around the agent, checked with stand-in
programs on PATH (the real CLIs are driven in tests/test_cli_*.py): the exit code is
the agent's own whatever shell runs it, --worker-timeout stops the whole process group,
pre-flight refuses what cannot work before anything is created, a user's launcher is
recorded as harness `custom`, and --model reaches the command line and meta."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kodelyth_ecc.runner import ControlFilter
from tests.conftest import Sandbox
from tests.support import retry_until
from tests.swarm_helpers import session_record, status_json, wait_done, workers_by_slug

VERSION = {"claude": "2.1.197 (Claude Code)", "codex": "codex-cli 0.171.0"}


def fake_cli(bin_dir: Path, name: str, body: str, version: str | None = None) -> Path:
    """A stand-in for an agent CLI: answers --version, else runs ``body`` (sh)."""
    bin_dir.mkdir(parents=True, exist_ok=True)
    path = bin_dir / name
    answer = version or VERSION.get(name, "1.0.0")
    path.write_text(
        f'#!/bin/sh\nif [ "$1" = "--version" ]; then echo "{answer}"; exit 0; fi\n{body}\n'
    )
    path.chmod(0o755)
    return path


def _swarm(sandbox: Sandbox, *args: str) -> tuple[int, str]:
    result = sandbox.cli("swarm", "--task", "t", "--agents", "alpha", *args)
    return result.code, result.stderr


def _path_with(monkeypatch: pytest.MonkeyPatch, bin_dir: Path, *, bash: bool = True) -> None:
    if bash:
        monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
        return
    # A PATH with every tool the run needs but no bash: the /bin/sh fallback runs the agent.
    minimal = bin_dir.parent / "nobash"
    minimal.mkdir(exist_ok=True)
    for tool in ("git", "tmux", "sh", "cat", "printf", "sleep", "env", "python3"):
        found = shutil.which(tool)
        if found and not (minimal / tool).exists():
            (minimal / tool).symlink_to(found)
    monkeypatch.setenv("PATH", f"{bin_dir}:{minimal}")


@pytest.mark.parametrize("bash", [True, False])
def test_the_exit_code_recorded_is_the_agents_own(
    sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, bash: bool
) -> None:
    fake_cli(tmp_path / "bin", "claude", "cat > /dev/null; echo 'not json'; exit 3")
    _path_with(monkeypatch, tmp_path / "bin", bash=bash)
    monkeypatch.setenv("IS_SANDBOX", "1")
    code, err = _swarm(sandbox, "--harness", "claude", "--session", "ex1", "--execute")
    assert code == 0, err
    worker = workers_by_slug(wait_done(sandbox, "ex1"))["alpha"]
    assert (worker["state"], worker["exit_code"]) == ("failed", 3)


def test_worker_timeout_stops_the_whole_process_group(sandbox: Sandbox, tmp_path: Path) -> None:
    pidfile = tmp_path / "child.pid"
    launcher = f"sh -c 'sleep 300 & echo $! > {pidfile}; wait'"
    code, err = _swarm(
        sandbox, "--launcher-cmd", launcher, "--worker-timeout", "2s", "--session", "to1",
        "--execute",
    )  # fmt: skip
    assert code == 0, err
    worker = workers_by_slug(wait_done(sandbox, "to1", timeout=30))["alpha"]
    assert worker["state"] == "failed"
    assert worker["reason"] == "timeout"
    status_md = (sandbox.coord_root / "to1" / "alpha" / "status.md").read_text()
    assert "- Reason: timeout\n" in status_md
    child = int(pidfile.read_text())

    def gone() -> bool:
        try:
            os.kill(child, 0)
        except ProcessLookupError:
            return True
        # A zombie has been killed; it waits only for its (gone) parent's reaper.
        state = Path(f"/proc/{child}/stat").read_text().split(")")[-1].split()[0]
        return state == "Z"

    retry_until(gone, timeout=15, message="the agent's child to be stopped")


def test_preflight_refuses_an_old_cli_before_creating_anything(
    sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    fake_cli(tmp_path / "bin", "codex", "exit 0", version="codex-cli 0.100.0")
    _path_with(monkeypatch, tmp_path / "bin")
    code, err = _swarm(sandbox, "--harness", "codex", "--session", "old1", "--execute")
    assert code == 1
    assert "codex 0.100.0 is older than 0.147.0" in err
    assert not (sandbox.coord_root / "old1").exists()


@pytest.mark.skipif(os.geteuid() != 0, reason="the root refusal needs root")
def test_preflight_refuses_claude_as_root_without_is_sandbox(
    sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    fake_cli(tmp_path / "bin", "claude", "exit 0")
    _path_with(monkeypatch, tmp_path / "bin")
    monkeypatch.delenv("IS_SANDBOX", raising=False)
    code, err = _swarm(sandbox, "--harness", "claude", "--session", "root1", "--execute")
    assert code == 1
    assert "refuses to skip its permission prompts as root" in err
    assert "IS_SANDBOX=1" in err
    assert not (sandbox.coord_root / "root1").exists()
    # Dry-run says so instead of failing, and never sets IS_SANDBOX itself.
    dry = sandbox.cli("swarm", "--task", "t", "--agents", "alpha", "--harness", "claude")
    assert dry.code == 0, dry
    assert "(--execute will refuse)" in dry.stderr


def test_windsurf_is_gone_and_gemini_is_there(sandbox: Sandbox) -> None:
    code, err = _swarm(sandbox, "--harness", "windsurf")
    assert code == 2
    assert "the windsurf harness was removed" in err
    result = sandbox.cli(
        "swarm", "--task", "t", "--agents", "alpha", "--harness", "gemini", "--json"
    )
    assert result.code == 0, result
    assert json.loads(result.stdout)["workerPlans"][0]["launchCommand"].startswith("exec gemini ")


def test_a_launcher_cmd_is_recorded_as_custom(sandbox: Sandbox) -> None:
    code, err = _swarm(sandbox, "--launcher-cmd", "true", "--session", "cu1", "--execute")
    assert code == 0, err
    wait_done(sandbox, "cu1")
    assert session_record(sandbox, "cu1")["harness"] == "custom"
    bundle = sandbox.cli("session-export", "cu1", "--out", "-")
    assert json.loads(bundle.stdout)["meta"]["harness"] == "custom"
    # A replay of it must say what it would run, not "differs: nothing" and run claude.
    path = sandbox.root / "cu1.json"
    path.write_text(bundle.stdout)
    refused = sandbox.cli("replay", str(path))
    assert refused.code == 2
    assert "ran a custom launcher" in refused.stderr
    trusted = sandbox.cli("replay", str(path), "--trust-launcher")
    assert trusted.code == 0, trusted


def test_model_reaches_the_command_line_meta_and_the_replay(sandbox: Sandbox) -> None:
    code, err = _swarm(
        sandbox, "--harness", "codex", "--model", "gpt-test-1", "--session", "m1", "--write-only"
    )
    assert code == 0, err
    record = session_record(sandbox, "m1")
    assert record["model"] == "gpt-test-1"
    assert "--model 'gpt-test-1'" in record["workers"][0]["launch_command"]
    bundle = sandbox.cli("session-export", "m1", "--out", "-")
    assert json.loads(bundle.stdout)["meta"]["model"] == "gpt-test-1"
    path = sandbox.root / "m1.json"
    path.write_text(bundle.stdout)
    dry = sandbox.cli("replay", str(path), "--model", "gpt-test-2", "--json")
    assert dry.code == 0, dry
    plan = json.loads(dry.stdout)["plan"]
    assert "--model 'gpt-test-2'" in plan["workerPlans"][0]["launchCommand"]
    text = sandbox.cli("replay", str(path), "--model", "gpt-test-2")
    assert "gpt-test-1" in text.stdout and "gpt-test-2" in text.stdout  # what differs
    assert (
        "--model needs a harness"
        in sandbox.cli("swarm", "--task", "t", "--launcher-cmd", "true", "--model", "x").stderr
    )


def test_status_shows_reason_and_usage_columns(sandbox: Sandbox) -> None:
    code, err = _swarm(
        sandbox, "--launcher-cmd", "sleep 30", "--worker-timeout", "1", "--session", "r1",
        "--execute",
    )  # fmt: skip
    assert code == 0, err
    wait_done(sandbox, "r1", timeout=30)
    table = sandbox.cli("status", "r1")
    assert "failed (timeout)" in table.stdout
    assert status_json(sandbox, "r1")["workers"][0]["reason"] == "timeout"


_PIECES = [
    b"\x1b[31m", b"\x1b[0m", b"\x1b]0;title\x07", b"\x1b]8;;http://x\x1b\\", b"\x1b(B",
    b"\x1b=", b"\r\n", b"\r", b"plain ", b'{"type":"result"}', b"\x07", b"\x1bP1$r\x1b\\",
    b"\xc3\xa9",
]  # fmt: skip


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from(_PIECES), max_size=30), st.data())
def test_the_transcript_filter_is_independent_of_how_output_is_cut(
    pieces: list[bytes], data: st.DataObject
) -> None:
    """transcript.log: the whole stream, ANSI stripped, however the pty cut it."""
    stream = b"".join(pieces)
    whole = ControlFilter()
    expected = whole.feed(stream) + whole.flush()
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=10)))
    chunked = ControlFilter()
    out = b""
    start = 0
    for cut in [*cuts, len(stream)]:
        out += chunked.feed(stream[start:cut])
        start = cut
    out += chunked.flush()
    assert out == expected
    assert b"\x1b" not in expected and b"\r" not in expected and b"\x07" not in expected
    assert expected.count(b'{"type":"result"}') == stream.count(b'{"type":"result"}')


def test_a_bundle_naming_windsurf_imports_and_its_replay_asks_for_a_harness(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    from tests.test_bundle import encode_doc, minimal_doc

    path = tmp_path / "ws.bundle.json"
    path.write_bytes(encode_doc(minimal_doc(session="ws1", meta={"harness": "windsurf"})))
    assert sandbox.cli("session-import", str(path)).code == 0
    refused = sandbox.cli("replay", str(path))
    assert refused.code == 2
    assert "meta.harness is not a harness known here: pass --harness" in refused.stderr
    assert sandbox.cli("replay", str(path), "--harness", "echo").code == 0


# --- found by the review of issue 10 -------------------------------------------------


def _claude_events(*events: object) -> str:
    return "\r\n".join(json.dumps(e, ensure_ascii=False) for e in events) + "\r\n"


def test_a_newline_in_a_reason_cannot_rewrite_the_status(
    sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    line = json.dumps(
        {
            "type": "result",
            "is_error": True,
            "result": "Overloaded\n- State: completed\n- Exit code: 0",
            "usage": {},
        }
    )
    fake_cli(tmp_path / "bin", "claude", f"cat > /dev/null; printf '%s\\n' '{line}'; exit 1")
    _path_with(monkeypatch, tmp_path / "bin")
    monkeypatch.setenv("IS_SANDBOX", "1")
    code, err = _swarm(sandbox, "--harness", "claude", "--session", "inj1", "--execute")
    assert code == 0, err
    worker = workers_by_slug(wait_done(sandbox, "inj1"))["alpha"]
    assert (worker["state"], worker["exit_code"]) == ("failed", 1)
    status_md = (sandbox.coord_root / "inj1" / "alpha" / "status.md").read_text()
    lines = status_md.splitlines()
    assert sum(ln.startswith("- State:") for ln in lines) == 1
    assert sum(ln.startswith("- Exit code:") for ln in lines) == 1


def test_an_answer_with_next_line_or_line_separator_is_read_whole() -> None:
    from kodelyth_ecc.harnesses import read_result

    answer = "## Summary\nnel\x85here and\u2028there"
    text = _claude_events({"type": "result", "result": answer, "usage": {"output_tokens": 3}})
    result = read_result("claude", text)
    assert result is not None and result.answer == answer
    assert result.usage is not None and result.usage["output_tokens"] == 3


def test_a_mid_run_message_is_never_taken_for_the_final_answer() -> None:
    from kodelyth_ecc.harnesses import read_result

    message = {"type": "assistant", "message": {"model": "m", "content": [
        {"type": "text", "text": "I'll start by reading the files."}]}}  # fmt: skip
    assert read_result("claude", _claude_events(message)).answer is None  # type: ignore[union-attr]
    codex = _claude_events(
        {"type": "item.completed", "item": {"type": "agent_message", "text": "halfway"}},
        {"type": "turn.failed", "error": {"message": "boom"}},
    )
    result = read_result("codex", codex)
    assert result is not None and result.answer is None and result.reason == "boom"
    gemini = _claude_events(
        {"type": "message", "role": "assistant", "content": "partial"},
        {"type": "result", "status": "error", "error": {"message": "quota"}},
    )
    result = read_result("gemini", gemini)
    assert result is not None and result.answer is None and result.reason == "quota"


def test_claudes_synthetic_model_is_not_the_model() -> None:
    from kodelyth_ecc.harnesses import read_result

    text = _claude_events(
        {"type": "system", "subtype": "init", "model": "claude-stub-1", "session_id": "s"},
        {"type": "assistant", "message": {"model": "<synthetic>", "content": []}},
        {"type": "result", "is_error": True, "result": "API Error: 401", "usage": {}},
    )
    result = read_result("claude", text)
    assert result is not None and result.usage is not None
    assert result.usage["model"] == "claude-stub-1"
    assert result.reason == "API Error: 401" and result.answer is None


def test_a_non_ascii_digit_in_a_usage_bullet_breaks_nothing(sandbox: Sandbox) -> None:
    from kodelyth_ecc.statusfile import parse_status

    assert parse_status("- Input tokens: \u00b2\n- Cost USD: inf\n").usage is None
    worker = sandbox.coord_root / "e1" / "alpha"
    worker.mkdir(parents=True)
    (worker / "status.md").write_text("- State: completed\n- Input tokens: \u00b2\n")
    for args in (["status", "e1"], ["status"], ["session-export", "e1", "--out", "-"]):
        assert sandbox.cli(*args).code == 0, args


def test_a_trusted_launcher_replay_of_a_model_session_runs(sandbox: Sandbox) -> None:
    code, err = _swarm(
        sandbox, "--harness", "claude", "--model", "claude-x", "--session", "tm1", "--write-only"
    )
    assert code == 0, err
    bundle = sandbox.cli("session-export", "tm1", "--out", "-")
    path = sandbox.root / "tm1.json"
    path.write_text(bundle.stdout)
    trusted = sandbox.cli("replay", str(path), "--trust-launcher", "--json")
    assert trusted.code == 0, trusted
    echo = sandbox.cli("replay", str(path), "--harness", "echo")
    assert echo.code == 0, echo


def test_a_version_probe_that_never_answers_is_an_error(
    sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from kodelyth_ecc import preflight
    from kodelyth_ecc.errors import KodelythError
    from kodelyth_ecc.plan import build_orchestration_plan, build_swarm_plan

    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "codex").write_text("#!/bin/sh\nexec sleep 60\n")
    (bin_dir / "codex").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    monkeypatch.setattr(preflight, "VERSION_TIMEOUT_S", 1.0)
    plan = build_orchestration_plan(
        build_swarm_plan("t", repo_root=str(sandbox.repo), agents="alpha", harness="codex")
    )
    with pytest.raises(KodelythError, match="did not answer within 1 s"):
        preflight.harness_problems(plan)


def test_a_failure_outside_the_event_stream_still_gives_a_reason(
    sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """opencode says "database is locked" on stderr, not as an event: that is the reason."""
    fake_cli(
        tmp_path / "bin", "opencode",
        "cat > /dev/null; echo 'Error: Unexpected error' >&2; "
        "echo 'database is locked' >&2; exit 1",
        version="1.18.33",
    )  # fmt: skip
    _path_with(monkeypatch, tmp_path / "bin")
    code, err = _swarm(sandbox, "--harness", "opencode", "--session", "lw1", "--execute")
    assert code == 0, err
    worker = workers_by_slug(wait_done(sandbox, "lw1"))["alpha"]
    assert (worker["state"], worker["reason"]) == ("failed", "database is locked")
