"""The real ``gemini`` CLI (@google/gemini-cli, pinned in tests/agents) driven headless
against the scripted Gemini API stub on 127.0.0.1: how the harness adapter must run it
(docs/harnesses/gemini.md). Each run gets a fresh git repo as cwd, a private HOME and
TMPDIR, and a fake API key built at run time; the CLI never talks to anything but the
stub (usage statistics off, one attempt per request)."""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from kodelyth_ecc.harnesses import json_lines
from tests.agents import agent_cli
from tests.providers.gemini import GeminiStub, Usage

MODEL = "gemini-2.5-flash"
HELLO_LINE = "hello from the gemini stub"
ANSWER = (
    "## Summary\nWrote hello.txt with the agreed line.\n\n"
    "## Files Changed\n- hello.txt (new)\n\n"
    "## Validation\n- read hello.txt back: one line, as asked\n\n"
    "## Remaining Risks\n- none known"
)
USAGE = Usage(prompt_tokens=1234, candidates_tokens=56, cached_tokens=789, thoughts_tokens=7)
RUN_TIMEOUT_S = 45.0
# Measured: 401 ~1.3 s, closed port ~1.3 s (GEMINI_CLI_NO_RELAUNCH, general.maxAttempts 1);
# the bound leaves room for a loaded CI machine. Without maxAttempts 1 a closed port
# is retried with backoff (5 s doubling to 30 s, 10 attempts): minutes.
FAIL_FAST_S = 15.0

# ~/.gemini/settings.json for an unattended run against a base URL.
SETTINGS: dict[str, Any] = {
    # With GOOGLE_GEMINI_BASE_URL set, 0.61.0 picks auth type "gateway", which headless
    # validation rejects ("Invalid auth method selected.", exit 41): name the API key.
    "security": {"auth": {"selectedType": "gemini-api-key"}},
    # Clearcut usage statistics (play.googleapis.com) off; no update checks.
    "privacy": {"usageStatisticsEnabled": False},
    "telemetry": {"enabled": False},
    "general": {
        "enableAutoUpdate": False,
        "enableAutoUpdateNotification": False,
        # One attempt per request: a dead endpoint fails in ~1 s instead of minutes.
        "maxAttempts": 1,
    },
}


# --- helpers the adapter will own ------------------------------------------------------


def gemini_command(binary: str, *, model: str, output: str = "stream-json") -> list[str]:
    """The headless command line; the task goes on stdin, never on argv."""
    return [
        binary,
        "--skip-trust",
        "--approval-mode",
        "yolo",
        "--model",
        model,
        "--output-format",
        output,
        "--prompt",
        "",
    ]


def gemini_env(home: Path, base_url: str, api_key: str) -> dict[str, str]:
    tmpdir = home / "tmp"
    tmpdir.mkdir(parents=True, exist_ok=True)
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(home),
        "TMPDIR": str(tmpdir),  # gemini-client-error-*.json reports land here
        "GEMINI_API_KEY": api_key,
        "GOOGLE_GEMINI_BASE_URL": base_url,
        "GEMINI_CLI_NO_RELAUNCH": "true",  # one process: no child to orphan
        "TERM": "xterm-256color",
        "COLORTERM": "truecolor",
        "NO_COLOR": "1",
    }


def write_settings(home: Path) -> None:
    config = home / ".gemini"
    config.mkdir(parents=True, exist_ok=True)
    (config / "settings.json").write_text(json.dumps(SETTINGS, indent=2))


@dataclass
class StreamResult:
    """What the adapter takes from ``-o stream-json``."""

    session_id: str | None = None
    model: str | None = None
    status: str | None = None
    answer: str = ""
    error: dict[str, Any] | None = None
    stats: dict[str, Any] = field(default_factory=dict)
    tool_uses: list[dict[str, Any]] = field(default_factory=list)


def parse_stream_json(stdout: str) -> StreamResult:
    """JSONL events: ``init`` (session_id, model), ``message`` (role user|assistant,
    assistant text as ``delta`` chunks), ``tool_use``, ``tool_result``, ``error``
    (warnings), ``result`` (status, error, stats). The final answer is the assistant
    text after the last tool event (earlier text belongs to earlier turns)."""
    result = StreamResult()
    pieces: list[str] = []
    for event in json_lines(stdout):  # the adapter's own reader
        kind = event.get("type")
        if kind == "init":
            result.session_id = event.get("session_id")
            result.model = event.get("model")
        elif kind == "message" and event.get("role") == "assistant":
            pieces.append(str(event.get("content") or ""))
        elif kind in ("tool_use", "tool_result"):
            if kind == "tool_use":
                result.tool_uses.append(event)
            pieces = []
        elif kind == "result":
            result.status = event.get("status")
            result.error = event.get("error")
            result.stats = event.get("stats") or {}
    result.answer = "".join(pieces)
    return result


@dataclass
class Run:
    returncode: int
    stdout: str
    stderr: str
    seconds: float


def run_gemini(
    argv: list[str], *, cwd: Path, env: dict[str, str], stdin: Path, timeout: float
) -> Run:
    """Run in its own process group; on timeout the whole group is killed."""
    start = time.monotonic()
    with stdin.open("rb") as task:
        proc = subprocess.Popen(
            argv, cwd=cwd, env=env, stdin=task, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, start_new_session=True,
        )  # fmt: skip
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            out, err = proc.communicate()
            pytest.fail(f"gemini did not finish within {timeout:.0f} s")
    return Run(proc.returncode, out.decode(errors="replace"), err.decode(errors="replace"),
               time.monotonic() - start)  # fmt: skip


# --- fixtures ---------------------------------------------------------------------------


@dataclass
class Workspace:
    binary: str
    repo: Path
    home: Path
    api_key: str
    task: Path


@pytest.fixture
def ws(tmp_path: Path) -> Workspace:
    binary = agent_cli("gemini")
    repo = tmp_path / "repo"
    repo.mkdir()
    subprocess.run(["git", "init", "-q", str(repo)], check=True, timeout=30)
    home = tmp_path / "agent-home"  # not the conftest HOME: only what gemini writes
    home.mkdir()
    write_settings(home)
    task = tmp_path / "task.md"
    task.write_text("Write hello.txt with one line, then report in the four handoff sections.\n")
    # Fake, built at run time, never printed.
    return Workspace(binary, repo, home, "fake-" + secrets.token_hex(16), task)


def hello_stub(**kwargs: Any) -> GeminiStub:
    return GeminiStub(
        answer=ANSWER,
        tool_call=("write_file", {"file_path": "hello.txt", "content": HELLO_LINE + "\n"}),
        usage=USAGE,
        lifetime_s=120.0,
        **kwargs,
    )


def assert_no_secret(ws: Workspace, run: Run) -> None:
    assert ws.api_key not in run.stdout, "API key leaked into stdout"
    assert ws.api_key not in run.stderr, "API key leaked into stderr"


def user_text(stub: GeminiStub) -> str:
    """All user text parts of the first main-conversation request."""
    for request in stub.requests:
        if ":streamGenerateContent" not in request.path:
            continue
        body = request.json()
        return "".join(
            part.get("text", "")
            for content in body.get("contents", [])
            if content.get("role") == "user"
            for part in content.get("parts", [])
        )
    return ""


# --- tests ------------------------------------------------------------------------------


def test_happy_path_stream_json(ws: Workspace) -> None:
    with hello_stub() as stub:
        env = gemini_env(ws.home, stub.base_url, ws.api_key)
        run = run_gemini(gemini_command(ws.binary, model=MODEL), cwd=ws.repo, env=env,
                         stdin=ws.task, timeout=RUN_TIMEOUT_S)  # fmt: skip
    assert_no_secret(ws, run)
    assert run.returncode == 0, run.stderr[-2000:]
    assert (ws.repo / "hello.txt").read_text() == HELLO_LINE + "\n"
    assert stub.turns == ["tool", "answer"]
    assert stub.side_requests == 0  # an explicit model skips the router
    result = parse_stream_json(run.stdout)
    assert result.status == "success"
    assert result.model == MODEL
    assert result.session_id
    assert [t["tool_name"] for t in result.tool_uses] == ["write_file"]
    assert result.answer == ANSWER
    # Usage: summed over the two turns, keyed by the modelVersion the API reported.
    turns = 2
    per_model = result.stats["models"][MODEL]
    assert per_model == {
        "input_tokens": turns * USAGE.prompt_tokens,  # promptTokenCount, cache included
        "output_tokens": turns * USAGE.candidates_tokens,
        "cached": turns * USAGE.cached_tokens,
        "input": turns * (USAGE.prompt_tokens - USAGE.cached_tokens),
        "total_tokens": turns * USAGE.total_tokens,  # totalTokenCount, thoughts included
    }
    assert result.stats["tool_calls"] == 1


def test_happy_path_json_reports_final_answer_and_thoughts(ws: Workspace) -> None:
    with hello_stub(model="gemini-stub-version-7") as stub:
        env = gemini_env(ws.home, stub.base_url, ws.api_key)
        argv = gemini_command(ws.binary, model=MODEL, output="json")
        run = run_gemini(argv, cwd=ws.repo, env=env, stdin=ws.task, timeout=RUN_TIMEOUT_S)
    assert_no_secret(ws, run)
    assert run.returncode == 0, run.stderr[-2000:]
    assert (ws.repo / "hello.txt").read_text() == HELLO_LINE + "\n"
    report = json.loads(run.stdout)
    assert report["response"] == ANSWER
    assert report["session_id"]
    tokens = report["stats"]["models"]["gemini-stub-version-7"]["tokens"]
    assert tokens["prompt"] == 2 * USAGE.prompt_tokens
    assert tokens["candidates"] == 2 * USAGE.candidates_tokens
    assert tokens["cached"] == 2 * USAGE.cached_tokens
    assert tokens["thoughts"] == 2 * USAGE.thoughts_tokens
    assert report["stats"]["tools"]["byName"]["write_file"]["success"] == 1


def test_401_fails_fast(ws: Workspace) -> None:
    with hello_stub(status=401) as stub:
        env = gemini_env(ws.home, stub.base_url, ws.api_key)
        run = run_gemini(gemini_command(ws.binary, model=MODEL), cwd=ws.repo, env=env,
                         stdin=ws.task, timeout=RUN_TIMEOUT_S)  # fmt: skip
    assert_no_secret(ws, run)
    assert run.returncode != 0
    assert run.returncode == 401 % 256  # process.exit(HTTP status): 145
    assert run.seconds < FAIL_FAST_S, f"401 took {run.seconds:.1f} s"
    assert len(stub.requests) == 1, "a 401 is not retried"
    result = parse_stream_json(run.stdout)
    assert result.status == "error"
    assert result.error is not None and "UNAUTHENTICATED" in str(result.error.get("message"))
    assert not (ws.repo / "hello.txt").exists()


def test_endpoint_down_fails_fast(ws: Workspace) -> None:
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{sock.getsockname()[1]}"
    env = gemini_env(ws.home, dead, ws.api_key)
    run = run_gemini(gemini_command(ws.binary, model=MODEL), cwd=ws.repo, env=env,
                     stdin=ws.task, timeout=RUN_TIMEOUT_S)  # fmt: skip
    assert_no_secret(ws, run)
    assert run.returncode == 1
    assert run.seconds < FAIL_FAST_S, f"a dead endpoint took {run.seconds:.1f} s"
    result = parse_stream_json(run.stdout)
    assert result.status == "error"
    assert "fetch failed" in str((result.error or {}).get("message"))


def test_large_task_on_stdin(ws: Workspace, tmp_path: Path) -> None:
    line = "Context line of a long task: keep the handoff sections exact.\n"
    body = line * (200 * 1024 // len(line) + 1)
    marker = "END-OF-TASK-" + secrets.token_hex(4)
    big = tmp_path / "big-task.md"
    big.write_text(f"Write hello.txt.\n{body}{marker}\n")
    assert big.stat().st_size > 200 * 1024
    with hello_stub() as stub:
        env = gemini_env(ws.home, stub.base_url, ws.api_key)
        argv = gemini_command(ws.binary, model=MODEL)
        assert sum(len(a) for a in argv) < 1024  # the task is not on argv
        run = run_gemini(argv, cwd=ws.repo, env=env, stdin=big, timeout=RUN_TIMEOUT_S)
    assert_no_secret(ws, run)
    assert run.returncode == 0, run.stderr[-2000:]
    sent = user_text(stub)
    assert body in sent and marker in sent, "the task did not reach the model whole"
    assert (ws.repo / "hello.txt").read_text() == HELLO_LINE + "\n"
    assert parse_stream_json(run.stdout).answer == ANSWER


def test_untrusted_folder_without_skip_trust_exits_55(ws: Workspace) -> None:
    with hello_stub() as stub:
        env = gemini_env(ws.home, stub.base_url, ws.api_key)
        argv = [a for a in gemini_command(ws.binary, model=MODEL) if a != "--skip-trust"]
        run = run_gemini(argv, cwd=ws.repo, env=env, stdin=ws.task, timeout=RUN_TIMEOUT_S)
    assert run.returncode == 55
    assert "trusted" in run.stderr
    assert stub.requests == []
    assert not (ws.repo / "hello.txt").exists()
