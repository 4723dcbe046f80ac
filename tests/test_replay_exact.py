"""Issue 11 with the real agent CLIs (pinned, from npm): a 2-worker swarm whose model
(our scripted stub on 127.0.0.1) makes the agent run a shell command that copies
version.txt into hello.txt is recorded through the session's proxy; the stub is
stopped; ``replay --offline --execute --wait --export`` reproduces it (both workers
complete, the same file with the same bytes, the same handoffs, ``compare --baseline``
finds nothing) with nothing reaching any provider and no key. Then the base changes
so that the tool's result differs: the divergence is found at the turn that carries
it, and each --on-divergence policy does what it says (``live`` against a restarted
stub). claude and gemini are pointed at the proxy by their adapters; codex and
opencode keep their endpoint in their own config files (docs/harnesses)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Sandbox
from tests.providers.server import ScriptedConversation, ScriptedProvider, Sentinel
from tests.support import git
from tests.swarm_helpers import wait_done
from tests.test_harness_e2e import ANSWER, _point_at, _use_cli

COMMAND = "cp version.txt hello.txt && cat hello.txt"
FORKED = "## Summary\nThe live model's answer, after the fork."
# How each harness's conversation carries a tool result back to its model.
RESULT_MARK = {
    "claude": '"tool_result"',
    "opencode": '"tool_result"',
    "gemini": '"functionResponse"',
    "codex": '"function_call_output"',
}
HARNESSES = ["claude", "gemini", "opencode", "codex"]


def _key_var(harness: str) -> str:
    if harness == "opencode":
        from tests.test_cli_opencode import KEY_ENV

        return KEY_ENV
    if harness == "codex":
        from tests.test_cli_codex import KEY_ENV as CODEX_KEY

        return CODEX_KEY
    return "ANTHROPIC_API_KEY" if harness == "claude" else "GEMINI_API_KEY"


def _repoint(harness: str, url: str, sandbox: Sandbox, env: pytest.MonkeyPatch, tmp: Path) -> None:
    """Point the user's configuration (not the tool's) somewhere else: the stub is gone,
    a sentinel or a restarted stub stands there."""
    if harness == "claude":
        env.setenv("ANTHROPIC_BASE_URL", url)
    elif harness == "gemini":
        env.setenv("GOOGLE_GEMINI_BASE_URL", url)
    elif harness == "opencode":
        from tests.test_cli_opencode import write_config

        write_config(tmp / "opencode.json", url + "/v1")
    else:
        from tests.test_cli_codex import codex_config

        (sandbox.home / ".codex" / "config.toml").write_text(
            codex_config(f"{url}/v1", fail_fast=False)
        )


def _stub(harness: str, answer: str = ANSWER, command: str = COMMAND) -> ScriptedProvider:
    """``harness``'s provider stub, scripted to have the agent run ``command`` once."""
    if harness in ("claude", "opencode"):
        from tests.providers.anthropic import AnthropicStub

        name = "Bash" if harness == "claude" else "bash"
        tool: tuple[str, dict[str, Any]] = (name, {"command": command, "description": "copy"})
        return AnthropicStub(answer=answer, tool_call=tool, lifetime_s=240)
    if harness == "codex":
        from tests.providers.openai_responses import OpenAIResponsesProvider
        from tests.test_cli_codex import MODEL

        return OpenAIResponsesProvider(answer=answer, shell=command, model=MODEL, lifetime_s=240)
    from tests.providers.gemini import GeminiStub

    return GeminiStub(answer=answer, tool_call=("run_shell_command", {"command": command}),
                      lifetime_s=240)  # fmt: skip


def _version(sandbox: Sandbox, text: str) -> str:
    (sandbox.repo / "version.txt").write_text(text)
    git(sandbox.repo, "add", "version.txt")
    git(sandbox.repo, "commit", "-q", "-m", text.strip())
    return git(sandbox.repo, "rev-parse", "HEAD").strip()


def _record(
    sandbox: Sandbox, env: pytest.MonkeyPatch, tmp_path: Path, harness: str
) -> tuple[Path, str, str]:
    """The origin run, recorded and exported; returns the bundle, the model and the key."""
    _use_cli(env, harness)
    _version(sandbox, "version 1\n")
    with _stub(harness) as stub:
        model = _point_at(harness, stub.base_url, sandbox, env, tmp_path)
        key = os.environ[_key_var(harness)]
        result = sandbox.cli(
            "swarm", "--task", "Copy version.txt to hello.txt.", "--agents", "alpha,beta",
            "--harness", harness, "--model", model, "--session", "origin",
            "--worker-timeout", "150", "--execute",
        )  # fmt: skip
        assert result.code == 0, result
        status = wait_done(sandbox, "origin", timeout=180)
    for worker in status["workers"]:
        transcript = sandbox.coord_root / "origin" / worker["slug"] / "transcript.log"
        assert worker["state"] == "completed", transcript.read_text(errors="replace")[-3000:]
    out = tmp_path / "origin.bundle.json"
    assert sandbox.cli("session-export", "origin", "--out", str(out)).code == 0
    return out, model, key


def _offline(
    sandbox: Sandbox, bundle: Path, name: str, *extra: str
) -> tuple[int, dict[str, Any], Path]:
    out = bundle.with_name(f"{name}.bundle.json")
    result = sandbox.cli(
        "replay", str(bundle), "--offline", "--session", name, *extra,
        "--execute", "--wait", "--timeout", "180", "--export", str(out),
    )  # fmt: skip
    assert result.code in (0, 1), result
    return result.code, json.loads(out.read_text()), out


def _worktree(sandbox: Sandbox, session: str, slug: str) -> Path:
    record = json.loads((sandbox.coord_root / session / "session.json").read_text())
    return Path(next(w["worktree"] for w in record["workers"] if w["slug"] == slug))


def _no_key_anywhere(sandbox: Sandbox, key: str, *files: Path) -> None:
    for path in [*sandbox.coord_root.rglob("*"), *files]:
        if path.is_file():
            assert key.encode() not in path.read_bytes(), path


@pytest.mark.parametrize("harness", HARNESSES)
def test_an_offline_replay_reproduces_a_real_agent_run(
    sandbox: Sandbox, stub_env: pytest.MonkeyPatch, tmp_path: Path, harness: str
) -> None:
    bundle, _model, key = _record(sandbox, stub_env, tmp_path, harness)
    origin = json.loads(bundle.read_text())
    sentinel = Sentinel()  # where the CLI would go if anything left the machine
    _repoint(harness, sentinel.url, sandbox, stub_env, tmp_path)
    if harness != "opencode":  # opencode's config names its key variable: it stays set
        stub_env.delenv(_key_var(harness))
    try:
        code, replayed, out = _offline(sandbox, bundle, "exact")
    finally:
        sentinel.close()
    assert code == 0
    assert sentinel.connections == 0
    before = {w["slug"]: w for w in origin["workers"]}
    for worker in replayed["workers"]:
        slug = worker["slug"]
        assert worker["state"] == "completed", worker["status"]
        assert (_worktree(sandbox, "exact", slug) / "hello.txt").read_bytes() == b"version 1\n"
        assert worker["handoff"] == before[slug]["handoff"]
        assert worker["diff"] == before[slug]["diff"]
        assert {e["source"] for e in worker["exchanges"]} == {"recording"}
        assert "divergence" not in worker
    gate = sandbox.cli("compare", str(bundle), str(out), "--baseline")
    assert gate.code == 0, gate
    shown = sandbox.cli("compare", str(bundle), str(out))
    assert shown.stdout.count("identical to the recording") == 2, shown.stdout
    _no_key_anywhere(sandbox, key, bundle, out)


@pytest.mark.parametrize("harness", HARNESSES)
def test_a_changed_base_diverges_where_the_tool_result_changes(
    sandbox: Sandbox, stub_env: pytest.MonkeyPatch, tmp_path: Path, harness: str
) -> None:
    bundle, _model, key = _record(sandbox, stub_env, tmp_path, harness)
    origin = {w["slug"]: w for w in json.loads(bundle.read_text())["workers"]}
    new_base = _version(sandbox, "version 2\n")
    # The recorded turns whose request carries the tool's result back to the model.
    carrying = {
        slug: [e["turn"] for e in w["exchanges"] if RESULT_MARK[harness] in e.get("request", "")]
        for slug, w in origin.items()
    }
    sentinel = Sentinel()
    _repoint(harness, sentinel.url, sandbox, stub_env, tmp_path)
    try:
        code, stopped, _ = _offline(sandbox, bundle, "stop", "--base-ref", new_base)
        assert code == 1
        code, continued, _ = _offline(
            sandbox, bundle, "cont", "--base-ref", new_base, "--on-divergence", "continue"
        )
        assert code == 0
    finally:
        sentinel.close()
    assert sentinel.connections == 0
    for worker in stopped["workers"]:
        divergence = worker["divergence"]
        assert worker["state"] == "failed"
        assert divergence["turn"] == carrying[worker["slug"]][0], (divergence, carrying)
        assert divergence["policy"] == "stop" and "tool result" in divergence["reason"]
        assert f"diverged at turn {divergence['turn']}" in worker["status"]
    for worker in continued["workers"]:
        assert worker["state"] == "completed"
        assert worker["divergence"]["turn"] in carrying[worker["slug"]]
        assert worker["handoff"] == origin[worker["slug"]]["handoff"]  # the recorded answer
        assert (_worktree(sandbox, "cont", worker["slug"]) / "hello.txt").read_text() == (
            "version 2\n"
        )
    # live: the worker is handed to the (restarted) provider from the divergent turn on.
    restarted = _stub(harness, FORKED)
    with restarted:
        _repoint(harness, restarted.base_url, sandbox, stub_env, tmp_path)
        code, forked, out = _offline(
            sandbox, bundle, "live", "--base-ref", new_base, "--on-divergence", "live"
        )
        # Only the divergent turns (the answers) went to the provider: the tool calls
        # came from the recording.
        if isinstance(restarted, ScriptedConversation):
            assert "tool" not in restarted.turns
            assert restarted.turns.count("answer") == 2
        else:
            bodies = [r.body for r in restarted.requests]
            assert len(bodies) == 2 and all(RESULT_MARK[harness].encode() in b for b in bodies)
    assert code == 0
    for worker in forked["workers"]:
        assert worker["state"] == "completed"
        assert FORKED in worker["handoff"]
        sources = [e["source"] for e in worker["exchanges"]]
        assert "recording" in sources and "upstream" in sources
        first_live = next(e["turn"] for e in worker["exchanges"] if e["source"] == "upstream")
        # The fork starts at the request that diverged: the one carrying the new result.
        assert first_live == worker["divergence"]["turn"] == carrying[worker["slug"]][0]
    compared = sandbox.cli("compare", str(bundle), str(out))
    assert "first differing turn" in compared.stdout and "diverged at turn" in compared.stdout
    _no_key_anywhere(sandbox, key, bundle, out)
