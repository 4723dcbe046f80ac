"""The real, pinned ``claude`` CLI (tests/agents) driven headless against our scripted
Anthropic stub on 127.0.0.1: the facts docs/harnesses/claude.md records, checked.

Every run gets a private HOME (the ``sandbox`` fixture), a fresh git repo as cwd, a fake
API key made at run time and an environment built from nothing (never the caller's, so
no real key or endpoint can leak in). The parsing helpers below are the adapter's to
take over."""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from kodelyth_ecc.harnesses import json_lines
from tests.agents import PINNED, agent_cli
from tests.providers.anthropic import AnthropicStub, Usage

ANSWER = (
    "## Summary\n"
    "Wrote hello.txt with the requested greeting.\n\n"
    "## Files Changed\n"
    "- hello.txt (new)\n\n"
    "## Validation\n"
    "- Read the file back: one line, as asked.\n\n"
    "## Remaining Risks\n"
    "- None known.\n"
)
HELLO_LINE = "hello from the claude harness test\n"
MODEL = "claude-stub-1"
USAGE = Usage(
    input_tokens=1234,
    output_tokens=56,
    cache_creation_input_tokens=300,
    cache_read_input_tokens=700,
)
RUN_TIMEOUT_S = 60.0
# Measured (docs/harnesses/claude.md): ~1 s with CLAUDE_CODE_MAX_RETRIES=0; the default
# (10 retries, backoff 0.5 s doubling to 32 s) takes minutes on 401 or a closed port.
FAIL_FAST_S = 15.0
ROOT_REFUSAL = "--dangerously-skip-permissions cannot be used with root/sudo privileges"

# --- what the adapter will own -------------------------------------------------------

# Headless: task on stdin (no prompt argument), JSON lines out, no permission prompts.
HEADLESS_ARGS = (
    "-p",
    "--output-format",
    "stream-json",
    "--verbose",
    "--dangerously-skip-permissions",
)
# Never the internet, no retries (fail fast), and root allowed to skip permissions.
QUIET_ENV = {
    "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
    "DISABLE_AUTOUPDATER": "1",
    "DISABLE_TELEMETRY": "1",
    "DISABLE_ERROR_REPORTING": "1",
    "CLAUDE_CODE_MAX_RETRIES": "0",
    "IS_SANDBOX": "1",
}


def claude_command(binary: str, model: str | None = MODEL) -> list[str]:
    return [binary, *HEADLESS_ARGS, *(["--model", model] if model else [])]


def claude_env(home: Path, base_url: str, api_key: str, **extra: str) -> dict[str, str]:
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(home),
        "LANG": "C.UTF-8",
        "TERM": "dumb",
        "ANTHROPIC_BASE_URL": base_url,
        "ANTHROPIC_API_KEY": api_key,
        **QUIET_ENV,
    }
    env.update(extra)
    return {k: v for k, v in env.items() if v != ""}


@dataclass(frozen=True)
class ClaudeResult:
    """The last ``{"type": "result"}`` event of ``--output-format stream-json``."""

    text: str
    is_error: bool
    api_error_status: int | None
    input_tokens: int
    output_tokens: int
    cache_creation_input_tokens: int
    cache_read_input_tokens: int
    cost_usd: float
    turns: int
    session_id: str
    models: tuple[str, ...]


def parse_stream_json(stdout: str) -> list[dict[str, Any]]:
    """One JSON object a line (the adapter's own reader); anything else is skipped."""
    return list(json_lines(stdout))


def init_event(events: list[dict[str, Any]]) -> dict[str, Any]:
    found = [e for e in events if e.get("type") == "system" and e.get("subtype") == "init"]
    assert found, "no system/init event in claude's output"
    return found[0]


def final_result(events: list[dict[str, Any]]) -> ClaudeResult:
    found = [e for e in events if e.get("type") == "result"]
    assert found, "no result event in claude's output"
    result = found[-1]
    usage = result.get("usage") or {}
    status = result.get("api_error_status")
    return ClaudeResult(
        text=str(result.get("result") or ""),
        is_error=bool(result.get("is_error")),
        api_error_status=int(status) if isinstance(status, int) else None,
        input_tokens=int(usage.get("input_tokens") or 0),
        output_tokens=int(usage.get("output_tokens") or 0),
        cache_creation_input_tokens=int(usage.get("cache_creation_input_tokens") or 0),
        cache_read_input_tokens=int(usage.get("cache_read_input_tokens") or 0),
        cost_usd=float(result.get("total_cost_usd") or 0.0),
        turns=int(result.get("num_turns") or 0),
        session_id=str(result.get("session_id") or ""),
        models=tuple(result.get("modelUsage") or {}),
    )


# --- running it ----------------------------------------------------------------------


@dataclass(frozen=True)
class Run:
    returncode: int
    stdout: str
    stderr: str
    seconds: float


def run_claude(
    cmd: list[str], env: dict[str, str], cwd: Path, task: str, timeout: float = RUN_TIMEOUT_S
) -> Run:
    start = time.monotonic()
    proc: subprocess.CompletedProcess[str] | None = None
    # On timeout, fail below, outside any handler: no chained traceback of subprocess frames.
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc = subprocess.run(
            cmd,
            input=task,
            capture_output=True,
            text=True,
            cwd=cwd,
            env=env,
            timeout=timeout,
            check=False,
        )
    if proc is None:
        pytest.fail(f"claude did not finish within {timeout:.0f} s")
    return Run(proc.returncode, proc.stdout, proc.stderr, time.monotonic() - start)


def fake_key() -> str:
    return "sk-ant-test-" + secrets.token_hex(16)


def assert_no_leak(run: Run, key: str) -> None:
    # Booleans first: pytest's introspection of `key not in out` would print the key.
    in_stdout, in_stderr = key in run.stdout, key in run.stderr
    assert not in_stdout, "API key leaked into stdout"
    assert not in_stderr, "API key leaked into stderr"


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def user_texts(body: dict[str, Any]) -> list[str]:
    """The text blocks of a Messages request's user turns."""
    texts = []
    for message in body.get("messages") or []:
        content = message.get("content")
        if message.get("role") != "user":
            continue
        if isinstance(content, str):
            texts.append(content)
            continue
        texts.extend(b["text"] for b in content if b.get("type") == "text")
    return texts


def scripted(repo: Path, **kwargs: Any) -> AnthropicStub:
    """The conversation: Write hello.txt (claude's Write tool wants an absolute path),
    then the handoff answer."""
    tool_input = {"file_path": str(repo / "hello.txt"), "content": HELLO_LINE}
    return AnthropicStub(
        answer=ANSWER, tool_call=("Write", tool_input), usage=USAGE, lifetime_s=90, **kwargs
    )


TASK = "Create hello.txt in the working directory holding one greeting line."


# --- tests ---------------------------------------------------------------------------


def test_version_probe_and_bad_flag(sandbox: Any) -> None:
    claude = agent_cli("claude")
    env = claude_env(sandbox.home, "http://127.0.0.1:9", fake_key())
    version = run_claude([claude, "--version"], env, sandbox.repo, "", timeout=20)
    assert version.returncode == 0
    assert version.stdout.strip() == f"{PINNED['claude']} (Claude Code)"
    bad = run_claude([claude, "-p", "--no-such-flag"], env, sandbox.repo, TASK, timeout=20)
    assert bad.returncode == 1
    assert "error: unknown option '--no-such-flag'" in bad.stderr


def test_happy_path_tool_call_writes_file_and_answer_and_usage_parse(sandbox: Any) -> None:
    claude = agent_cli("claude")
    key = fake_key()
    with scripted(sandbox.repo) as stub:
        env = claude_env(sandbox.home, stub.base_url, key)
        run = run_claude(claude_command(claude), env, sandbox.repo, TASK)
    assert_no_leak(run, key)
    assert run.returncode == 0, run.stderr[-2000:]
    assert run.stderr == ""
    assert (sandbox.repo / "hello.txt").read_text() == HELLO_LINE
    assert stub.turns == ["tool", "answer"]
    assert stub.side_requests == 0  # no title request with non-essential traffic off
    events = parse_stream_json(run.stdout)
    init = init_event(events)
    result = final_result(events)
    assert result.text == ANSWER
    for section in ("## Summary", "## Files Changed", "## Validation", "## Remaining Risks"):
        assert section in result.text
    assert not result.is_error
    # result.usage sums the main loop's turns: both turns reported USAGE.
    turns = len(stub.turns)
    assert result.turns == turns
    assert result.input_tokens == turns * USAGE.input_tokens
    assert result.output_tokens == turns * USAGE.output_tokens
    assert result.cache_creation_input_tokens == turns * USAGE.cache_creation_input_tokens
    assert result.cache_read_input_tokens == turns * USAGE.cache_read_input_tokens
    assert result.cost_usd > 0
    assert result.models == (MODEL,)
    assert init["model"] == MODEL
    assert init["permissionMode"] == "bypassPermissions"
    assert init["apiKeySource"] == "ANTHROPIC_API_KEY"
    assert result.session_id and result.session_id == init["session_id"]
    # The prompt reached the model; the tool's result went back to it.
    first = stub.requests[0]
    assert first.path.startswith("/v1/messages")
    assert TASK in user_texts(first.json())
    assert first.json()["model"] == MODEL
    assert first.json()["stream"] is True
    assert f'"tool_use_id": "{stub.tool_use_id}"' in json.dumps(stub.requests[-1].json())


def test_200kb_task_on_stdin(sandbox: Any) -> None:
    claude = agent_cli("claude")
    key = fake_key()
    lines = [f"Task detail {i:06d}: keep this line verbatim." for i in range(5000)]
    task = TASK + "\n" + "\n".join(lines) + "\nEND-OF-TASK-MARKER\n"
    assert len(task.encode()) > 200_000
    with scripted(sandbox.repo) as stub:
        env = claude_env(sandbox.home, stub.base_url, key)
        run = run_claude(claude_command(claude), env, sandbox.repo, task)
    assert_no_leak(run, key)
    assert run.returncode == 0, run.stderr[-2000:]
    assert final_result(parse_stream_json(run.stdout)).text == ANSWER
    # The task arrives whole and byte for byte as one text block of the first user turn.
    assert user_texts(stub.requests[0].json()).count(task) == 1
    assert (sandbox.repo / "hello.txt").read_text() == HELLO_LINE


def test_401_fails_fast(sandbox: Any) -> None:
    claude = agent_cli("claude")
    key = fake_key()
    with scripted(sandbox.repo, status=401) as stub:
        env = claude_env(sandbox.home, stub.base_url, key)
        run = run_claude(claude_command(claude), env, sandbox.repo, TASK)
    assert_no_leak(run, key)
    assert run.returncode == 1
    assert run.seconds < FAIL_FAST_S, f"401 took {run.seconds:.1f} s"
    assert len(stub.requests) == 1  # CLAUDE_CODE_MAX_RETRIES=0: no retry
    result = final_result(parse_stream_json(run.stdout))
    assert result.is_error
    assert result.api_error_status == 401
    assert result.text.startswith("Failed to authenticate. API Error: 401")
    assert not (sandbox.repo / "hello.txt").exists()


def test_endpoint_down_fails_fast(sandbox: Any) -> None:
    claude = agent_cli("claude")
    key = fake_key()
    env = claude_env(sandbox.home, f"http://127.0.0.1:{closed_port()}", key)
    run = run_claude(claude_command(claude), env, sandbox.repo, TASK)
    assert_no_leak(run, key)
    assert run.returncode == 1
    assert run.seconds < FAIL_FAST_S, f"closed port took {run.seconds:.1f} s"
    result = final_result(parse_stream_json(run.stdout))
    assert result.is_error
    assert result.api_error_status is None
    assert result.text == "API Error: Unable to connect to API (ConnectionRefused)"


def test_hanging_endpoint_times_out(sandbox: Any) -> None:
    claude = agent_cli("claude")
    key = fake_key()
    with scripted(sandbox.repo, hang=True) as stub:
        env = claude_env(sandbox.home, stub.base_url, key, API_TIMEOUT_MS="3000")
        run = run_claude(claude_command(claude), env, sandbox.repo, TASK)
    assert_no_leak(run, key)
    assert run.returncode == 1
    assert 3.0 <= run.seconds < FAIL_FAST_S, f"hang took {run.seconds:.1f} s"
    result = final_result(parse_stream_json(run.stdout))
    assert result.is_error
    assert result.text == "Request timed out"


@pytest.mark.parametrize("is_sandbox", ["", "true"], ids=["unset", "true-is-not-1"])
def test_root_refuses_to_skip_permissions_without_is_sandbox_1(
    sandbox: Any, is_sandbox: str
) -> None:
    if os.geteuid() != 0:
        pytest.skip("the refusal is for root only")
    claude = agent_cli("claude")
    key = fake_key()
    with scripted(sandbox.repo) as stub:
        env = claude_env(sandbox.home, stub.base_url, key, IS_SANDBOX=is_sandbox)
        has_is_sandbox = "IS_SANDBOX" in env  # a bool: never show env in a failure
        assert has_is_sandbox is bool(is_sandbox)
        run = run_claude(claude_command(claude), env, sandbox.repo, TASK)
    assert_no_leak(run, key)
    assert run.returncode == 1
    assert run.stdout == ""
    assert run.stderr == ROOT_REFUSAL + " for security reasons\n"
    assert stub.requests == []
