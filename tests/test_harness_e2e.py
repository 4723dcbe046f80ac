"""Issue 10, end to end: `swarm --execute` with 2 workers of a real agent CLI (pinned,
from npm) against our scripted provider stub on 127.0.0.1. Each worker's agent makes
the tool call the stub scripts (writing hello.txt in its worktree), then answers; the
worker must complete with exit 0, its handoff must hold exactly that answer (under the
template, nothing else), its usage must match what the stub reported, and the export
must carry the file's diff. No test needs the internet; a missing CLI skips only
outside CI."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
from pathlib import Path
from typing import Any

import pytest

from kodelyth_ecc.prompts import initial_handoff_md
from tests.agents import agent_cli
from tests.conftest import Sandbox
from tests.providers.server import ScriptedProvider
from tests.swarm_helpers import wait_done, workers_by_slug

ANSWER = (
    "## Summary\nWrote hello.txt with the greeting.\n\n"
    "## Files Changed\n- hello.txt (new)\n\n"
    "## Validation\n- read hello.txt back: one line, as asked\n\n"
    "## Remaining Risks\n- none known"
)
HELLO = "hello from the stub\n"
TASK = "Write hello.txt with one greeting line, then report."


def _use_cli(monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    binary = agent_cli(name)
    monkeypatch.setenv("PATH", f"{os.path.dirname(binary)}:{os.environ['PATH']}")


def _run_swarm(sandbox: Sandbox, harness: str, session: str, *extra: str) -> dict[str, Any]:
    result = sandbox.cli(
        "swarm", "--task", TASK, "--agents", "alpha,beta", "--harness", harness,
        "--session", session, "--worker-timeout", "150", *extra, "--execute",
    )  # fmt: skip
    assert result.code == 0, result
    return wait_done(sandbox, session, timeout=180)


def _check_workers(
    sandbox: Sandbox, session: str, status: dict[str, Any], usage: dict[str, Any]
) -> None:
    by_slug = workers_by_slug(status)
    for slug in ("alpha", "beta"):
        worker = by_slug[slug]
        transcript = sandbox.coord_root / session / slug / "transcript.log"
        assert (worker["state"], worker["exit_code"]) == ("completed", 0), (
            slug,
            transcript.read_text(errors="replace")[-3000:],
        )
        # The whole stream as it came, without terminal escapes or carriage returns.
        raw = transcript.read_bytes()
        assert b"\x1b" not in raw and b"\r" not in raw, slug
        assert b'"type"' in raw, slug  # the structured output is there to follow
        worktree = Path(worker["worktree"])
        assert (worktree / "hello.txt").read_text() == HELLO
        handoff = (sandbox.coord_root / session / slug / "handoff.md").read_text()
        assert handoff == initial_handoff_md(slug) + "\n" + ANSWER + "\n"
        for key, value in usage.items():
            assert worker["usage"][key] == value, (slug, key, worker["usage"])
    bundle = sandbox.cli("session-export", session, "--out", "-")
    assert bundle.code == 0, bundle
    for worker in json.loads(bundle.stdout)["workers"]:
        assert "+hello from the stub" in worker["diff"]
        assert worker["usage"]["cli"].split()[0] in ("claude", "codex", "opencode", "gemini")


def _key() -> str:
    return "test-key-" + secrets.token_hex(16)


def _point_at(
    harness: str, base_url: str, sandbox: Sandbox, env: pytest.MonkeyPatch, tmp_path: Path
) -> str:
    """Point ``harness``'s CLI at ``base_url`` the way a user behind a gateway would (its
    own env or config, in the sandbox's HOME), with a fresh fake key; returns the model
    to ask for."""
    if harness == "claude":
        env.setenv("ANTHROPIC_BASE_URL", base_url)
        env.setenv("ANTHROPIC_API_KEY", _key())
        # We run as root in CI: the disposable sandbox says so itself, never the tool.
        env.setenv("IS_SANDBOX", "1")
        return "claude-stub-1"
    if harness == "opencode":
        from tests.test_cli_opencode import KEY_ENV, MODEL, PROVIDER, write_config

        config = tmp_path / "opencode.json"
        write_config(config, base_url + "/v1")
        env.setenv("OPENCODE_CONFIG", str(config))
        env.setenv(KEY_ENV, _key())
        env.setenv("XDG_CONFIG_HOME", str(sandbox.home / ".config"))
        env.setenv("XDG_DATA_HOME", str(sandbox.home / ".local" / "share"))
        env.setenv("XDG_CACHE_HOME", str(sandbox.home / ".cache"))
        # Two first runs of opencode at once race to create its database ("database is
        # locked", "Failed query: CREATE TABLE"): a user's opencode has run before, so
        # this fresh HOME's runs once here first (README, docs/harnesses/opencode.md).
        subprocess.run(
            [agent_cli("opencode"), "run", "--format", "json", "-m", f"{PROVIDER}/{MODEL}"],
            input=b"say hi", capture_output=True, timeout=90, check=False, cwd=sandbox.repo,
        )  # fmt: skip
        return f"{PROVIDER}/{MODEL}"
    if harness == "gemini":
        from tests.test_cli_gemini import SETTINGS

        settings = sandbox.home / ".gemini" / "settings.json"
        settings.parent.mkdir(parents=True, exist_ok=True)
        settings.write_text(json.dumps(SETTINGS))
        env.setenv("GEMINI_API_KEY", _key())
        env.setenv("GOOGLE_GEMINI_BASE_URL", base_url)
        return "gemini-2.5-flash"
    from tests.test_cli_codex import KEY_ENV as CODEX_KEY
    from tests.test_cli_codex import MODEL as CODEX_MODEL
    from tests.test_cli_codex import codex_config

    home = sandbox.home / ".codex"
    home.mkdir(exist_ok=True)
    # The user's config without any fail-fast setting: the adapter's own flags bound it.
    (home / "config.toml").write_text(codex_config(f"{base_url}/v1", fail_fast=False))
    env.setenv("CODEX_HOME", str(home))
    env.setenv(CODEX_KEY, _key())
    return CODEX_MODEL


def test_gemini_swarm_end_to_end(
    sandbox: Sandbox, stub_env: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from tests.providers.gemini import GeminiStub, Usage

    _use_cli(stub_env, "gemini")
    usage = Usage(prompt_tokens=1200, candidates_tokens=80, cached_tokens=500)
    stub: ScriptedProvider = GeminiStub(
        answer=ANSWER,
        tool_call=("write_file", {"file_path": "hello.txt", "content": HELLO}),
        usage=usage,
        lifetime_s=240,
    )
    with stub:
        model = _point_at("gemini", stub.base_url, sandbox, stub_env, tmp_path)
        status = _run_swarm(sandbox, "gemini", "gem1", "--model", model)
    # Two main turns each (tool call, answer), summed by the CLI.
    _check_workers(
        sandbox,
        "gem1",
        status,
        {"input_tokens": 2 * (1200 - 500), "output_tokens": 2 * 80, "cache_read_tokens": 1000},
    )


def test_opencode_swarm_end_to_end(
    sandbox: Sandbox, stub_env: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from tests.providers.anthropic import AnthropicStub, Usage

    _use_cli(stub_env, "opencode")
    stub: ScriptedProvider = AnthropicStub(
        answer=ANSWER,
        tool_call=("write", {"filePath": "hello.txt", "content": HELLO}),
        usage=Usage(input_tokens=1200, output_tokens=80),
        lifetime_s=240,
    )
    with stub:
        model = _point_at("opencode", stub.base_url, sandbox, stub_env, tmp_path)
        status = _run_swarm(sandbox, "opencode", "oc1", "--model", model)
    _check_workers(sandbox, "oc1", status, {"output_tokens": 2 * 80, "turns": 2})


def test_claude_swarm_end_to_end(
    sandbox: Sandbox, stub_env: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from tests.providers.anthropic import AnthropicStub, Usage

    _use_cli(stub_env, "claude")
    # Relative to each worker's own worktree (Write wants an absolute path).
    command = "printf 'hello from the stub\\n' > hello.txt"
    stub: ScriptedProvider = AnthropicStub(
        answer=ANSWER,
        tool_call=("Bash", {"command": command, "description": "write hello.txt"}),
        usage=Usage(
            input_tokens=1234,
            output_tokens=56,
            cache_creation_input_tokens=300,
            cache_read_input_tokens=500,
        ),
        lifetime_s=240,
    )
    with stub:
        model = _point_at("claude", stub.base_url, sandbox, stub_env, tmp_path)
        status = _run_swarm(sandbox, "claude", "cl1", "--model", model)
    _check_workers(
        sandbox,
        "cl1",
        status,
        {
            "model": "claude-stub-1",
            "input_tokens": 2 * 1234,
            "output_tokens": 2 * 56,
            "cache_read_tokens": 2 * 500,
            "cache_write_tokens": 2 * 300,
            "turns": 2,
        },
    )


def test_codex_swarm_end_to_end(
    sandbox: Sandbox, stub_env: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from tests.providers.openai_responses import OpenAIResponsesProvider
    from tests.test_cli_codex import MODEL

    _use_cli(stub_env, "codex")
    stub = OpenAIResponsesProvider(
        file_line=HELLO.rstrip("\n"), answer=ANSWER, model=MODEL, lifetime_s=240
    )
    with stub:
        model = _point_at("codex", stub.base_url, sandbox, stub_env, tmp_path)
        status = _run_swarm(sandbox, "codex", "cx1", "--model", model)
    # The adapter's arg0 link, which its shell tool needs where /usr/bin/bwrap exists.
    link = sandbox.coord_root / "cx1" / ".kodelyth-bin" / "codex-linux-sandbox"
    assert link.is_symlink() and os.access(link, os.X_OK)
    # Both workers' two responses reached the stub; each worker reports its own two.
    assert len(stub.usages) == 4
    total = stub.total_usage
    _check_workers(
        sandbox,
        "cx1",
        status,
        {
            "model": MODEL,
            "input_tokens": (total.input_tokens - total.cached_tokens) // 2,
            "cache_read_tokens": total.cached_tokens // 2,
            "output_tokens": total.output_tokens // 2,
            "turns": 1,
        },
    )


def _check_auth_failure(sandbox: Sandbox, session: str, status: dict[str, Any]) -> None:
    for worker in status["workers"]:
        assert worker["state"] == "failed", worker
        assert worker["exit_code"] not in (0, None), worker
        assert worker["reason"], ("no reason recorded", worker)
        assert worker["duration_s"] < 45, ("not failing fast", worker["duration_s"])
        handoff = (sandbox.coord_root / session / worker["slug"] / "handoff.md").read_text()
        assert handoff == initial_handoff_md(worker["slug"])  # no error text as an answer


@pytest.mark.parametrize("harness", ["claude", "codex", "gemini", "opencode"])
def test_a_bad_key_fails_the_workers_fast_with_the_reason(
    sandbox: Sandbox, stub_env: pytest.MonkeyPatch, tmp_path: Path, harness: str
) -> None:
    from tests.providers.anthropic import AnthropicStub
    from tests.providers.gemini import GeminiStub
    from tests.providers.openai_responses import OpenAIResponsesProvider

    _use_cli(stub_env, harness)
    stub: ScriptedProvider
    if harness in ("claude", "opencode"):
        stub = AnthropicStub(answer=ANSWER, status=401, lifetime_s=120)
    elif harness == "gemini":
        stub = GeminiStub(answer=ANSWER, status=401, lifetime_s=120)
    else:
        stub = OpenAIResponsesProvider(status=401, lifetime_s=120)
    with stub:
        model = _point_at(harness, stub.base_url, sandbox, stub_env, tmp_path)
        status = _run_swarm(sandbox, harness, f"{harness}-401", "--model", model)
    _check_auth_failure(sandbox, f"{harness}-401", status)


@pytest.mark.parametrize("harness", ["claude", "codex", "gemini"])
def test_a_dead_endpoint_fails_the_workers_with_the_reason(
    sandbox: Sandbox, stub_env: pytest.MonkeyPatch, tmp_path: Path, harness: str
) -> None:
    """A closed port on loopback: the adapter's retry settings end the worker (opencode
    retries ~65 s whatever its config says: --worker-timeout is its bound)."""
    import socket

    _use_cli(stub_env, harness)
    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{sock.getsockname()[1]}"
    model = _point_at(harness, dead, sandbox, stub_env, tmp_path)
    status = _run_swarm(sandbox, harness, f"{harness}-down", "--model", model)
    _check_auth_failure(sandbox, f"{harness}-down", status)
