"""The real pinned ``opencode`` (opencode-ai 1.18.33) driven headless against our
Anthropic Messages API stub on 127.0.0.1 (docs/harnesses/opencode.md has the facts).

Each run: a fresh git repo as cwd, a private HOME (XDG dirs inside it), a fake key built
at run time and named only in the config (``{env:KODELYTH_STUB_KEY}``), the config file
given by ``OPENCODE_CONFIG``, the task on stdin, ``--format json`` events on stdout, and
every proxy variable pointing at a sentinel that counts connections: nothing may leave
127.0.0.1 except through it, so a stray download (models.dev, npm plugin install,
autoupdate, share) shows up as a sentinel connection and fails the test.

The parsing helpers here (``parse_events``, ``final_answer``, ``run_usage``,
``first_error``) and the fail-fast watchdog (``run_opencode(kill_on_stream_error=True)``)
are meant to move into the opencode harness adapter."""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from kodelyth_ecc.harnesses import json_lines
from tests.agents import agent_cli
from tests.providers.anthropic import AnthropicStub, Usage
from tests.providers.server import Sentinel

MODEL = "claude-stub-1"
PROVIDER = "kodelyth-stub"
KEY_ENV = "KODELYTH_STUB_KEY"
# $ per million tokens, as opencode's model "cost" config takes them.
PRICES = {"input": 3.0, "output": 15.0, "cache_read": 0.3, "cache_write": 3.75}
ANSWER = (
    "## Summary\nWrote hello.txt with the greeting.\n\n"
    "## Files Changed\n- hello.txt (new)\n\n"
    "## Validation\n- read hello.txt back: one line, as asked\n\n"
    "## Remaining Risks\n- none known"
)
HELLO = "hello from opencode\n"
# Same flags every run: the adapter's command line (argv never carries the task).
ARGS = (
    "run",
    "--format",
    "json",
    "--print-logs",
    "--log-level",
    "ERROR",
    "-m",
    f"{PROVIDER}/{MODEL}",
)


# --- parsing helpers (for the adapter) ----------------------------------------------


def parse_events(stdout: str) -> list[dict[str, Any]]:
    """``--json`` writes one JSON object a line: read by the adapter's own reader."""
    return list(json_lines(stdout))


def final_answer(events: list[dict[str, Any]]) -> str | None:
    """The text parts of the last assistant message that finished with reason "stop"
    (the final step); None when the run never got there."""
    last = None
    for event in events:
        part = event.get("part") or {}
        if event["type"] == "step_finish" and part.get("reason") == "stop":
            last = part.get("messageID")
    if last is None:
        return None
    texts = [
        str(e["part"].get("text", ""))
        for e in events
        if e["type"] == "text" and e["part"].get("messageID") == last
    ]
    return "".join(texts)


@dataclass(frozen=True)
class RunUsage:
    session_id: str | None
    turns: int
    input_tokens: int
    output_tokens: int
    reasoning_tokens: int
    cache_read_tokens: int
    cache_write_tokens: int
    cost_usd: float


def run_usage(events: list[dict[str, Any]]) -> RunUsage:
    """Sums of every ``step_finish`` (one per model turn of the main conversation; the
    title-generation request is not among them)."""
    steps = [e["part"] for e in events if e["type"] == "step_finish"]

    def total(*keys: str) -> int:
        out = 0
        for step in steps:
            value: Any = step.get("tokens") or {}
            for key in keys:
                value = value.get(key, 0) if isinstance(value, dict) else 0
            out += int(value or 0)
        return out

    session = next((str(e["sessionID"]) for e in events if e.get("sessionID")), None)
    return RunUsage(
        session_id=session,
        turns=len(steps),
        input_tokens=total("input"),
        output_tokens=total("output"),
        reasoning_tokens=total("reasoning"),
        cache_read_tokens=total("cache", "read"),
        cache_write_tokens=total("cache", "write"),
        cost_usd=sum(float(step.get("cost") or 0) for step in steps),
    )


def first_error(events: list[dict[str, Any]]) -> dict[str, Any] | None:
    """``{"name": "APIError", "data": {"message", "statusCode"?, "isRetryable", ...}}``"""
    for event in events:
        if event["type"] == "error":
            error = event.get("error")
            return error if isinstance(error, dict) else {"name": str(error)}
    return None


def is_main_stream_error(log_line: str) -> bool:
    """A ``--print-logs --log-level ERROR`` line for a failed request of the main
    conversation (``small=true`` is the title request, whose failure does not matter).
    opencode retries such a failure 5 times over ~60 s whatever its config says; the
    adapter kills the run on the first one instead."""
    return (
        "level=ERROR" in log_line
        and 'message="stream error"' in log_line
        and "small=false" in log_line
    )


# --- running ------------------------------------------------------------------------


@dataclass
class Env:
    home: Path
    repo: Path
    config: Path
    key: str = field(repr=False)  # never in a failure message
    sentinel: Sentinel = field(repr=False)
    vars: dict[str, str] = field(default_factory=dict, repr=False)


@dataclass
class Run:
    returncode: int
    stdout: str
    stderr: str
    seconds: float
    killed: bool
    events: list[dict[str, Any]]


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def write_config(path: Path, base_url: str) -> None:
    """The whole opencode config the adapter needs: one provider (the Anthropic SDK
    pointed at ``base_url``), its key from the environment, the only provider enabled,
    unattended permissions (everything in the worktree allowed, outside it denied, no
    "ask": ``opencode run`` auto-rejects those anyway), no autoupdate, no sharing."""
    config = {
        "$schema": "https://opencode.ai/config.json",
        "autoupdate": False,
        "share": "disabled",
        "enabled_providers": [PROVIDER],
        "model": f"{PROVIDER}/{MODEL}",
        "small_model": f"{PROVIDER}/{MODEL}",
        "permission": {
            "*": "allow",
            "external_directory": "deny",
            "doom_loop": "deny",
            "webfetch": "deny",
            "websearch": "deny",
        },
        "provider": {
            PROVIDER: {
                "npm": "@ai-sdk/anthropic",
                "name": "kodelyth stub",
                "options": {"baseURL": base_url, "apiKey": "{env:" + KEY_ENV + "}"},
                "models": {
                    MODEL: {
                        "name": MODEL,
                        "limit": {"context": 200000, "output": 8192},
                        "cost": PRICES,
                    }
                },
            }
        },
    }
    path.write_text(json.dumps(config, indent=2), encoding="utf-8")


@pytest.fixture
def oc(tmp_path: Path) -> Iterator[Env]:
    home = tmp_path / "home-oc"
    repo = tmp_path / "repo"
    home.mkdir()
    repo.mkdir()
    git_env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(home)}
    subprocess.run(["git", "init", "-q", str(repo)], check=True, env=git_env, timeout=30)
    sentinel = Sentinel()
    key = "sk-ant-test-" + secrets.token_hex(16)
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(home),
        "XDG_CONFIG_HOME": str(home / ".config"),
        "XDG_DATA_HOME": str(home / ".local" / "share"),
        "XDG_CACHE_HOME": str(home / ".cache"),
        "XDG_STATE_HOME": str(home / ".local" / "state"),
        "LANG": "C.UTF-8",
        "TERM": "dumb",
        "NO_COLOR": "1",
        KEY_ENV: key,
        "OPENCODE_CONFIG": str(tmp_path / "opencode.json"),
        "OPENCODE_DISABLE_AUTOUPDATE": "1",
        "OPENCODE_DISABLE_MODELS_FETCH": "1",
        "OPENCODE_DISABLE_SHARE": "1",
        "OPENCODE_DISABLE_LSP_DOWNLOAD": "1",
        # opencode npm-installs @opencode-ai/plugin into each config dir in the
        # background on every start; offline makes that fail at once, locally.
        "npm_config_offline": "true",
        "HTTP_PROXY": sentinel.url,
        "HTTPS_PROXY": sentinel.url,
        "ALL_PROXY": sentinel.url,
        "http_proxy": sentinel.url,
        "https_proxy": sentinel.url,
        "NO_PROXY": "127.0.0.1,localhost",
        "no_proxy": "127.0.0.1,localhost",
    }
    yield Env(home, repo, tmp_path / "opencode.json", key, sentinel, env)
    sentinel.close()


def run_opencode(
    env: Env, task: str, *, timeout: float = 60.0, kill_on_stream_error: bool = False
) -> Run:
    """Runs ``opencode run`` with the task on stdin, bounded by ``timeout`` (then the
    process group is killed); with ``kill_on_stream_error`` also killed at the first
    failed main-conversation request in the log on stderr (the adapter's fail-fast)."""
    binary = agent_cli("opencode")
    start = time.monotonic()
    proc = subprocess.Popen(
        [binary, *ARGS],
        cwd=env.repo,
        env=env.vars,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    out: list[bytes] = []
    err: list[str] = []
    killed = threading.Event()

    def kill() -> None:
        if proc.poll() is None:
            killed.set()
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)

    def feed() -> None:
        assert proc.stdin is not None
        try:
            proc.stdin.write(task.encode())
            proc.stdin.close()
        except BrokenPipeError:
            pass

    def read_out() -> None:
        assert proc.stdout is not None
        out.append(proc.stdout.read())

    def read_err() -> None:
        assert proc.stderr is not None
        for raw in proc.stderr:
            line = raw.decode(errors="replace")
            err.append(line)
            if kill_on_stream_error and is_main_stream_error(line):
                kill()

    threads = [threading.Thread(target=t, daemon=True) for t in (feed, read_out, read_err)]
    for thread in threads:
        thread.start()
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        kill()
        proc.wait(timeout=10)
    seconds = time.monotonic() - start
    for thread in threads:
        thread.join(timeout=10)
    stdout = b"".join(out).decode(errors="replace")
    return Run(
        proc.returncode, stdout, "".join(err), seconds, killed.is_set(), parse_events(stdout)
    )


def assert_no_secret(env: Env, run: Run) -> None:
    assert env.key not in run.stdout, "the API key leaked into stdout"
    assert env.key not in run.stderr, "the API key leaked into stderr"


def main_requests(stub: AnthropicStub) -> list[dict[str, Any]]:
    bodies = []
    for request in stub.requests:
        if request.method == "POST" and request.path.endswith("/v1/messages"):
            body = request.json()
            if isinstance(body, dict) and body.get("tools"):
                bodies.append(body)
    return bodies


# --- tests --------------------------------------------------------------------------


def test_happy_path_writes_file_and_reports_answer_and_usage(oc: Env) -> None:
    target = oc.repo / "hello.txt"
    usage = Usage(
        input_tokens=1200, output_tokens=80, cache_creation_input_tokens=300,
        cache_read_input_tokens=500,
    )  # fmt: skip
    stub = AnthropicStub(
        answer=ANSWER,
        tool_call=("write", {"filePath": str(target), "content": HELLO}),
        usage=usage,
        lifetime_s=90,
    )
    with stub:
        write_config(oc.config, stub.base_url + "/v1")
        run = run_opencode(oc, "Create hello.txt with one greeting line.")
    assert_no_secret(oc, run)
    assert run.returncode == 0 and not run.killed, run.stderr[-2000:]
    assert target.read_text(encoding="utf-8") == HELLO
    assert stub.turns == ["tool", "answer"]
    tools = [e["part"] for e in run.events if e["type"] == "tool_use"]
    assert [(t["tool"], t["state"]["status"]) for t in tools] == [("write", "completed")]
    assert final_answer(run.events) == ANSWER
    got = run_usage(run.events)
    assert got.session_id and got.session_id.startswith("ses_")
    assert got.turns == 2
    assert (got.input_tokens, got.output_tokens) == (2 * 1200, 2 * 80)
    assert (got.cache_read_tokens, got.cache_write_tokens) == (2 * 500, 2 * 300)
    assert got.reasoning_tokens == 0
    per_turn = (
        1200 * PRICES["input"] + 80 * PRICES["output"]
        + 500 * PRICES["cache_read"] + 300 * PRICES["cache_write"]
    ) / 1e6  # fmt: skip
    assert got.cost_usd == pytest.approx(2 * per_turn)
    assert first_error(run.events) is None
    # The model asked for is the model used; the main conversation offered its tools.
    bodies = main_requests(stub)
    assert bodies and all(body["model"] == MODEL and body["stream"] for body in bodies)
    assert "write" in [tool["name"] for tool in bodies[0]["tools"]]
    # Nothing but the stub was contacted; no log line at ERROR on a good run.
    assert oc.sentinel.connections == 0, "opencode tried to reach the network"
    assert "level=ERROR" not in run.stderr


def test_401_fails_fast_without_retrying(oc: Env) -> None:
    stub = AnthropicStub(answer=ANSWER, status=401, lifetime_s=60)
    with stub:
        write_config(oc.config, stub.base_url + "/v1")
        run = run_opencode(oc, "Create hello.txt.", timeout=45)
    assert_no_secret(oc, run)
    assert not run.killed
    assert run.returncode == 1
    assert run.seconds < 25, f"401 took {run.seconds:.1f}s"  # measured ~5-7 s
    error = first_error(run.events)
    assert error is not None and error["name"] == "APIError"
    assert error["data"]["statusCode"] == 401 and error["data"]["isRetryable"] is False
    assert final_answer(run.events) is None
    assert len(main_requests(stub)) == 1, "a 401 must not be retried"
    assert not (oc.repo / "hello.txt").exists()
    assert oc.sentinel.connections == 0, "opencode tried to reach the network"


def test_dead_endpoint_is_cut_short_by_the_first_stream_error(oc: Env) -> None:
    """opencode itself retries a refused connection 5 times (~65 s, no setting changes
    that); the adapter's watchdog kills it at the first main-stream error."""
    write_config(oc.config, f"http://127.0.0.1:{closed_port()}/v1")
    run = run_opencode(oc, "Create hello.txt.", timeout=45, kill_on_stream_error=True)
    assert_no_secret(oc, run)
    assert run.killed, f"not cut short (rc={run.returncode}, {run.seconds:.1f}s)"
    assert run.returncode != 0
    assert run.seconds < 20, f"dead endpoint took {run.seconds:.1f}s"  # measured ~3-5 s
    line = next(line for line in run.stderr.splitlines() if is_main_stream_error(line))
    assert "Cannot connect to API" in line
    assert final_answer(run.events) is None
    assert oc.sentinel.connections == 0, "opencode tried to reach the network"


def test_200kb_task_on_stdin(oc: Env) -> None:
    target = oc.repo / "hello.txt"
    filler = "".join(f"context line {i:06d}: lorem ipsum dolor sit amet\n" for i in range(4200))
    task = "Create hello.txt with one greeting line.\n\n" + filler + "END OF TASK"
    assert len(task.encode()) > 200_000
    stub = AnthropicStub(
        answer=ANSWER, tool_call=("write", {"filePath": str(target), "content": HELLO}),
        lifetime_s=90,
    )  # fmt: skip
    with stub:
        write_config(oc.config, stub.base_url + "/v1")
        run = run_opencode(oc, task)
    assert_no_secret(oc, run)
    assert run.returncode == 0 and not run.killed, run.stderr[-2000:]
    bodies = main_requests(stub)
    assert bodies
    first_user = bodies[0]["messages"][0]
    texts = [b["text"] for b in first_user["content"] if b.get("type") == "text"]
    assert texts == [task], "the task did not reach the model whole"
    assert target.read_text(encoding="utf-8") == HELLO
    assert final_answer(run.events) == ANSWER
