"""The real pinned ``codex`` (@openai/codex 0.171.0) driven headless against our OpenAI
Responses API stub on 127.0.0.1 (docs/harnesses/codex.md has the facts).

Each run: a fresh git repo as cwd, a private HOME and ``CODEX_HOME`` holding the
``config.toml`` that defines the stub as a custom ``model_providers`` entry (codex
ignores ``OPENAI_BASE_URL``), a fake key built at run time and named only by
``env_key``, the task on stdin (``codex exec ... -``), ``--json`` events on stdout and
``--output-last-message`` for the final answer. Every proxy variable points at a
sentinel that counts connections: codex honours them, so a stray download (curated
plugin sync from github.com / chatgpt.com, update check) shows up there and fails the
test.

The parsing helpers (``parse_events``, ``final_answer``, ``turn_usage``, ``turn_error``,
``thread_id``) and the config builder (``codex_config``) are meant to move into the
codex harness adapter."""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from kodelyth_ecc.harnesses import json_lines
from tests.agents import agent_cli
from tests.providers.openai_responses import ANSWER, OpenAIResponsesProvider, Usage
from tests.providers.server import Sentinel

MODEL = "gpt-5.5"  # a slug codex has bundled metadata for (else a warning item)
PROVIDER = "kodelyth-stub"
KEY_ENV = "KODELYTH_STUB_KEY"
# The adapter's command line: the task is never on argv ("-" reads it from stdin).
ARGS = ("exec", "--json", "--color", "never", "--sandbox", "workspace-write", "-m", MODEL)
RUN_TIMEOUT = 30.0  # wall clock for one run; the happy path takes about 1 s
FAIL_FAST_S = 5.0  # 401 / closed port with codex_config(): measured about 0.3-1 s


# --- config and parsing helpers (for the adapter) ------------------------------------


def codex_config(base_url: str, *, model: str = MODEL, fail_fast: bool = True) -> str:
    """``$CODEX_HOME/config.toml`` for one provider endpoint (Responses API).

    ``fail_fast``: no request/stream retries, no "waiting for network" loop, a short
    stream idle timeout. The plugin/app sync and analytics are off either way (they
    reach github.com and chatgpt.com at start-up)."""
    retries = (
        "request_max_retries = 0\nstream_max_retries = 0\nstream_idle_timeout_ms = 10000\n"
        if fail_fast
        else ""
    )
    return (
        f"model = {json.dumps(model)}\n"
        f"model_provider = {json.dumps(PROVIDER)}\n"
        "check_for_update_on_startup = false\n"
        "\n"
        f"[model_providers.{PROVIDER}]\n"
        'name = "kodelyth stub"\n'
        f"base_url = {json.dumps(base_url)}\n"
        f"env_key = {json.dumps(KEY_ENV)}\n"
        'wire_api = "responses"\n'
        f"{retries}"
        "\n"
        "[analytics]\n"
        "enabled = false\n"
        "\n"
        "[features]\n"
        f"unbounded_connection_retries = {'false' if fail_fast else 'true'}\n"
        "plugins = false\n"
        "remote_plugin = false\n"
        "apps = false\n"
    )


def parse_events(stdout: str) -> list[dict[str, Any]]:
    """``--json`` writes one JSON object a line: read by the adapter's own reader."""
    return list(json_lines(stdout))


def final_answer(events: list[dict[str, Any]]) -> str | None:
    """The text of the last ``item.completed`` whose item is an ``agent_message``."""
    answer = None
    for event in events:
        item = event.get("item")
        if (
            event["type"] == "item.completed"
            and isinstance(item, dict)
            and item.get("type") == "agent_message"
            and isinstance(item.get("text"), str)
        ):
            answer = item["text"]
    return answer


def turn_usage(events: list[dict[str, Any]]) -> dict[str, int]:
    """Token usage summed over the ``turn.completed`` events (one per turn; each is
    already the sum over that turn's model requests)."""
    keys = (
        "input_tokens",
        "cached_input_tokens",
        "cache_write_input_tokens",
        "output_tokens",
        "reasoning_output_tokens",
    )
    total = dict.fromkeys(keys, 0)
    for event in events:
        usage = event.get("usage")
        if event["type"] == "turn.completed" and isinstance(usage, dict):
            for key in keys:
                value = usage.get(key)
                if isinstance(value, int):
                    total[key] += value
    return total


def turn_error(events: list[dict[str, Any]]) -> str | None:
    """The message of the ``turn.failed`` event (else of the last ``error`` event)."""
    message = None
    for event in events:
        if event["type"] == "turn.failed" and isinstance(event.get("error"), dict):
            return str(event["error"].get("message"))
        if event["type"] == "error":
            message = str(event.get("message"))
    return message


def thread_id(events: list[dict[str, Any]]) -> str | None:
    """The session id: ``thread.started``'s ``thread_id``."""
    for event in events:
        if event["type"] == "thread.started":
            return str(event.get("thread_id"))
    return None


# --- running it ----------------------------------------------------------------------


@dataclass
class Env:
    home: Path
    codex_home: Path
    repo: Path
    key: str = field(repr=False)
    sentinel: Sentinel = field(repr=False)
    env: dict[str, str] = field(repr=False)

    def configure(self, base_url: str, **kwargs: Any) -> None:
        (self.codex_home / "config.toml").write_text(codex_config(base_url, **kwargs))


@dataclass
class Run:
    returncode: int
    stdout: str
    stderr: str
    elapsed: float
    events: list[dict[str, Any]]


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def arg0_links(tmp_path: Path) -> Path:
    """What the runner gives a codex worker: ``codex-linux-sandbox`` linked to the native
    binary, so codex's shell tool works where /usr/bin/bwrap exists."""
    from kodelyth_ecc.harnesses import HARNESSES, native_binary

    target = native_binary(agent_cli("codex"))
    assert target is not None, "the codex package's native binary was not found"
    directory = tmp_path / "links"
    directory.mkdir()
    for name in HARNESSES["codex"].arg0_links:
        (directory / name).symlink_to(target)
    return directory


@pytest.fixture
def cx(tmp_path: Path) -> Iterator[Env]:
    agent_cli("codex")  # skips (or fails under CI) when the pinned CLI is missing
    home = tmp_path / "codex-home"
    codex_home = home / ".codex"
    codex_home.mkdir(parents=True)
    repo = tmp_path / "repo"
    repo.mkdir()
    subprocess.run(["git", "init", "--quiet", str(repo)], check=True, timeout=30)
    key = "sk-stub-" + secrets.token_hex(16)
    sentinel = Sentinel()
    env = {
        # Not inherited: no real OPENAI_API_KEY, CODEX_* or proxy settings leak in. The
        # adapter's links (Harness.arg0_links) first on PATH, as the runner puts them.
        "PATH": f"{arg0_links(tmp_path)}:{os.environ.get('PATH', '/usr/bin:/bin')}",
        "HOME": str(home),
        "CODEX_HOME": str(codex_home),
        "LANG": "C.UTF-8",
        "TERM": "dumb",
        KEY_ENV: key,
        "HTTP_PROXY": sentinel.url,
        "HTTPS_PROXY": sentinel.url,
        "ALL_PROXY": sentinel.url,
        "http_proxy": sentinel.url,
        "https_proxy": sentinel.url,
        "NO_PROXY": "127.0.0.1,localhost",
        "no_proxy": "127.0.0.1,localhost",
    }
    yield Env(home, codex_home, repo, key, sentinel, env)
    sentinel.close()


def run_codex(cx: Env, task: str, *extra: str, timeout: float = RUN_TIMEOUT) -> Run:
    """``codex exec`` with the task on stdin, in its own process group: under Node 20
    the npm wrapper spawns the native binary as a child, so killing only the wrapper
    would orphan codex; on timeout the whole group goes."""
    argv = [agent_cli("codex"), *ARGS, *extra, "-"]
    start = time.monotonic()
    proc = subprocess.Popen(
        argv,
        cwd=cx.repo,
        env=cx.env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        stdout, stderr = proc.communicate(task, timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        pytest.fail(f"codex did not exit within {timeout:.0f} s")
    elapsed = time.monotonic() - start
    return Run(proc.returncode, stdout, stderr, elapsed, parse_events(stdout))


def assert_no_leak(cx: Env, run: Run) -> None:
    assert cx.key not in run.stdout, "the API key leaked into stdout"
    assert cx.key not in run.stderr, "the API key leaked into stderr"


def assert_offline(cx: Env) -> None:
    assert cx.sentinel.connections == 0, "codex tried to reach the network (proxy sentinel)"


# --- the tests -----------------------------------------------------------------------


def test_with_debians_bwrap_the_shell_tool_needs_the_arg0_link(cx: Env, tmp_path: Path) -> None:
    """codex 0.171.0 prefers /usr/bin/bwrap; Debian's (0.8.0, no --argv0) makes its shell
    tool exec "codex-linux-sandbox" by name. Without the adapter's link the write fails
    and codex still exits 0; with it, the file is written (the happy path below)."""
    if not os.path.exists("/usr/bin/bwrap"):
        if os.environ.get("CI"):
            pytest.fail("/usr/bin/bwrap is missing: .ci/run must install Debian's bubblewrap")
        pytest.skip("Debian's bubblewrap is not installed")
    without = dict(cx.env, PATH=cx.env["PATH"].split(":", 1)[1])
    with OpenAIResponsesProvider(model=MODEL, lifetime_s=60) as stub:
        cx.configure(f"{stub.base_url}/v1")
        run = run_codex(Env(cx.home, cx.codex_home, cx.repo, cx.key, cx.sentinel, without),
                        "Write hello.txt, then report.")  # fmt: skip
    assert run.returncode == 0
    assert not (cx.repo / "hello.txt").exists()
    failed = [e["item"] for e in run.events if e["type"] == "item.completed"
              and e["item"].get("type") == "command_execution"]  # fmt: skip
    assert not failed or "codex-linux-sandbox" in failed[0].get("aggregated_output", "")


@pytest.mark.parametrize("tool", ["command", "apply_patch"])
def test_happy_path_writes_file_answers_and_reports_usage(cx: Env, tool: str) -> None:
    last = cx.home / "last-message.md"
    with OpenAIResponsesProvider(tool=tool, model=MODEL, lifetime_s=60) as stub:
        cx.configure(f"{stub.base_url}/v1")
        run = run_codex(cx, "Write hello.txt, then report.", "--output-last-message", str(last))

    assert run.returncode == 0, f"codex exited {run.returncode}: {turn_error(run.events)}"
    assert_no_leak(cx, run)
    assert_offline(cx)
    lines = [line for line in run.stdout.splitlines() if line.strip()]
    assert len(lines) == len(run.events), "--json wrote something other than JSONL to stdout"
    # The agent's own tool wrote the file (exec_command running printf / apply_patch).
    assert (cx.repo / "hello.txt").read_text() == stub.file_line + "\n"
    kinds = [e["item"]["type"] for e in run.events if e["type"] == "item.completed"]
    assert kinds == ["command_execution" if tool == "command" else "file_change", "agent_message"]
    # The final answer, from --json and from --output-last-message, exactly.
    assert final_answer(run.events) == ANSWER
    assert last.read_text() == ANSWER
    # Usage: codex sums the two model responses of the turn.
    total = stub.total_usage
    assert len(stub.usages) == 2
    assert turn_usage(run.events) == {
        "input_tokens": total.input_tokens,
        "cached_input_tokens": total.cached_tokens,
        "cache_write_input_tokens": 0,
        "output_tokens": total.output_tokens,
        "reasoning_output_tokens": total.reasoning_tokens,
    }
    assert total == Usage(2700, 1300, 130, 24)
    # Session id; only the two model requests reached the stub, with the model asked for.
    session = thread_id(run.events)
    assert session and list(cx.codex_home.glob(f"sessions/*/*/*/rollout-*-{session}.jsonl"))
    assert [(r.method, r.path) for r in stub.requests] == [("POST", "/v1/responses")] * 2
    assert {r.json()["model"] for r in stub.requests} == {MODEL}
    assert all(r.json()["stream"] is True for r in stub.requests)


def test_401_fails_fast_without_retrying(cx: Env) -> None:
    with OpenAIResponsesProvider(status=401, lifetime_s=60) as stub:
        cx.configure(f"{stub.base_url}/v1")
        run = run_codex(cx, "Write hello.txt.")
    assert run.returncode == 1
    assert run.elapsed < FAIL_FAST_S, f"401 took {run.elapsed:.1f} s"
    assert len(stub.requests) == 1, "codex retried a 401"
    message = turn_error(run.events) or ""
    assert "401 Unauthorized" in message and "Incorrect API key" in message
    assert [e["type"] for e in run.events][-1] == "turn.failed"
    assert not (cx.repo / "hello.txt").exists()
    assert_no_leak(cx, run)
    assert_offline(cx)


def test_closed_port_fails_fast(cx: Env) -> None:
    cx.configure(f"http://127.0.0.1:{closed_port()}/v1")
    run = run_codex(cx, "Write hello.txt.")
    assert run.returncode == 1
    assert run.elapsed < FAIL_FAST_S, f"a closed port took {run.elapsed:.1f} s"
    assert "Connection failed" in (turn_error(run.events) or "")
    assert [e["type"] for e in run.events][-1] == "turn.failed"
    assert_no_leak(cx, run)
    assert_offline(cx)


def test_200kb_task_on_stdin_reaches_the_model_whole(cx: Env) -> None:
    line = "Line {:06d}: keep this exact text; the task is long on purpose.\n"
    task = "".join(line.format(n) for n in range(3200))
    assert len(task.encode()) > 200_000
    with OpenAIResponsesProvider(model=MODEL, lifetime_s=60) as stub:
        cx.configure(f"{stub.base_url}/v1")
        run = run_codex(cx, task)
    assert run.returncode == 0, f"codex exited {run.returncode}: {turn_error(run.events)}"
    assert final_answer(run.events) == ANSWER
    first = stub.requests[0].json()
    texts = [
        part.get("text")
        for item in first["input"]
        if item.get("type") == "message" and item.get("role") == "user"
        for part in item.get("content", [])
    ]
    assert texts[-1] == task, "the task did not reach the model byte for byte"
    assert_offline(cx)
