"""`retry --message` with the real, pinned agent CLIs against our scripted provider
stubs (no internet): the first run records the agent's session id in its usage; the
retry continues that very conversation, so the model is sent the earlier turns (the
task, the tool call's result) followed by the message, which reached the CLI through
a file on stdin and is on no command line. The resumed run's output is read into
usage again. A missing CLI skips outside CI only (tests/agents)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Sandbox
from tests.providers.server import ScriptedProvider
from tests.support import tmux
from tests.swarm_helpers import session_record, wait_done
from tests.test_harness_e2e import ANSWER, HELLO, TASK
from tests.test_harness_e2e import _point_at as point_at
from tests.test_harness_e2e import _use_cli as use_cli

MESSAGE = "Now also add a second line to hello.txt: MESSAGE-7f3a"
# What each CLI sends of the first attempt's tool call when the conversation goes on.
TOOL_RESULT = {
    "claude": '"tool_result"',
    "codex": '"function_call_output"',
    "opencode": '"tool_result"',
    "gemini": '"functionResponse"',
}


def _stub(harness: str) -> ScriptedProvider:
    from tests.providers.anthropic import AnthropicStub
    from tests.providers.gemini import GeminiStub
    from tests.providers.openai_responses import OpenAIResponsesProvider
    from tests.test_cli_codex import MODEL as CODEX_MODEL

    if harness == "claude":
        command = "printf 'hello from the stub\\n' > hello.txt"
        return AnthropicStub(
            answer=ANSWER, tool_call=("Bash", {"command": command}), lifetime_s=300
        )
    if harness == "opencode":
        return AnthropicStub(
            answer=ANSWER,
            tool_call=("write", {"filePath": "hello.txt", "content": HELLO}),
            lifetime_s=300,
        )
    if harness == "gemini":
        return GeminiStub(
            answer=ANSWER,
            tool_call=("write_file", {"file_path": "hello.txt", "content": HELLO}),
            lifetime_s=300,
        )
    return OpenAIResponsesProvider(
        file_line=HELLO.rstrip("\n"), answer=ANSWER, model=CODEX_MODEL, lifetime_s=300
    )


def _worker(sandbox: Sandbox, session: str) -> dict[str, Any]:
    status = wait_done(sandbox, session, timeout=180)
    worker: dict[str, Any] = status["workers"][0]
    transcript = sandbox.coord_root / session / "solo" / "transcript.log"
    assert worker["state"] == "completed", transcript.read_text(errors="replace")[-3000:]
    return worker


@pytest.mark.parametrize("harness", ["claude", "codex", "opencode", "gemini"])
def test_a_message_continues_the_agents_own_conversation(
    sandbox: Sandbox, stub_env: pytest.MonkeyPatch, tmp_path: Path, harness: str
) -> None:
    use_cli(stub_env, harness)
    session = f"{harness}-again"
    with _stub(harness) as stub:
        model = point_at(harness, stub.base_url, sandbox, stub_env, tmp_path)
        started = sandbox.cli(
            "swarm", "--task", TASK, "--agents", "solo", "--harness", harness,
            "--session", session, "--model", model, "--worker-timeout", "150", "--execute",
        )  # fmt: skip
        assert started.code == 0, started
        first = _worker(sandbox, session)
        agent = first["usage"]["agent_session_id"]
        assert agent, first["usage"]
        asked_before = len(stub.requests)

        result = sandbox.cli("retry", session, "solo", "--message", MESSAGE)
        assert result.code == 0, result
        assert (
            f"restarted solo in {session} (attempt 2): continuing its agent's conversation "
            f"{agent} with your message"
        ) in result.stdout
        assert "note:" not in result.stdout
        # The message is in a file the CLI reads on stdin, never on its command line.
        pane = session_record(sandbox, session)["workers"][0]["pane_id"]
        command = tmux("display-message", "-p", "-t", pane, "#{pane_start_command}").stdout
        assert "message.md" in command and "MESSAGE-7f3a" not in command
        second = _worker(sandbox, session)
        bodies = [r.body.decode("utf-8", "replace") for r in stub.requests]
    # The model got the earlier turns, then the message: the same conversation.
    assert not any("MESSAGE-7f3a" in body for body in bodies[:asked_before])
    continued = [b for b in bodies[asked_before:] if "MESSAGE-7f3a" in b]
    assert continued, "the message never reached the model"
    assert any(
        TOOL_RESULT[harness] in body and json.dumps(TASK)[1:-1] in body for body in continued
    ), "the message was not sent after the earlier conversation"
    # The resumed run's result read as usage again: the same agent session.
    assert second["usage"]["agent_session_id"] == agent
    assert second["usage"]["cli"].startswith(harness)
    wdir = sandbox.coord_root / session / "solo"
    assert (wdir / "message.md").read_text() == MESSAGE + "\n"
    assert (wdir / "attempts" / "1" / "transcript.log").is_file()
    assert session_record(sandbox, session)["workers"][0]["attempts"] == 2


def test_a_sandboxed_agent_starts_afresh_with_the_message_in_its_task(
    sandbox: Sandbox, stub_env: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Its CLI kept the conversation in the sandbox's private HOME, gone with the
    sandbox: the retry says so in one line and gives the agent its task and the
    message, as a new conversation."""
    import os
    import shutil

    if shutil.which("bwrap") is None:
        if os.environ.get("CI"):
            pytest.fail("bwrap is missing: .ci/run installs Debian's bubblewrap")
        pytest.skip("bubblewrap is not installed")
    use_cli(stub_env, "claude")
    with _stub("claude") as stub:
        model = point_at("claude", stub.base_url, sandbox, stub_env, tmp_path)
        # Inside the sandbox claude's root check is satisfied by the sandbox itself.
        stub_env.delenv("IS_SANDBOX", raising=False)
        started = sandbox.cli(
            "swarm", "--task", TASK, "--agents", "solo", "--harness", "claude", "--sandbox",
            "--session", "boxed", "--model", model, "--worker-timeout", "150", "--execute",
        )  # fmt: skip
        assert started.code == 0, started
        assert _worker(sandbox, "boxed")["usage"]["agent_session_id"]
        asked_before = len(stub.requests)
        result = sandbox.cli("retry", "boxed", "solo", "--message", MESSAGE)
        assert result.code == 0, result
        notes = [line for line in result.stdout.splitlines() if line.startswith("note:")]
        assert notes == [
            "note: solo could not continue its conversation: its CLI kept the conversation "
            "in its sandbox's private HOME, which is gone"
        ], result.stdout
        _worker(sandbox, "boxed")
        bodies = [r.body.decode("utf-8", "replace") for r in stub.requests[asked_before:]]
    first = next(b for b in bodies if "MESSAGE-7f3a" in b)
    assert '"tool_result"' not in first  # a new conversation: the task, then the message
    assert json.dumps(TASK)[1:-1] in first
