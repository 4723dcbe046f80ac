"""Issue 11, end to end with real git, tmux and HTTP, and a stand-in agent
(``tests/standin_agent.py``: a real program that talks the Anthropic Messages API and
really runs the model's Bash calls) behind a custom launcher: the session's proxy
records each worker's exchanges, export carries them, and an offline replay answers
from them with nothing reaching any provider; divergence and its three policies; the
trust rule for recordings made elsewhere; no key anywhere."""

from __future__ import annotations

import json
import os
import secrets
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Sandbox
from tests.providers.anthropic import AnthropicStub, Usage
from tests.providers.server import Sentinel
from tests.support import git, retry_until
from tests.swarm_helpers import wait_done, workers_by_slug

STANDIN = Path(__file__).resolve().parent / "standin_agent.py"
LAUNCHER = f"{sys.executable} {STANDIN} < {{task_file_sh}} >> {{handoff_file_sh}}"
ANSWER = "## Summary\nCopied the version.\n\n## Files Changed\n- hello.txt"
# The tool call the stub scripts: its result depends on the base commit's version.txt.
COMMAND = "cp version.txt hello.txt && cat hello.txt"
USAGE = Usage(input_tokens=1000, output_tokens=50, cache_creation_input_tokens=0,
              cache_read_input_tokens=200)  # fmt: skip


@pytest.fixture
def key(monkeypatch: pytest.MonkeyPatch) -> str:
    value = "test-key-" + secrets.token_hex(16)
    monkeypatch.setenv("ANTHROPIC_API_KEY", value)
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)
    return value


def _stub(**kwargs: Any) -> AnthropicStub:
    return AnthropicStub(
        answer=ANSWER,
        tool_call=("Bash", {"command": COMMAND}),
        usage=USAGE,
        lifetime_s=120,
        **kwargs,
    )


def _commit_version(sandbox: Sandbox, text: str) -> str:
    (sandbox.repo / "version.txt").write_text(text)
    git(sandbox.repo, "add", "version.txt")
    git(sandbox.repo, "commit", "-q", "--allow-empty", "-m", text.strip())
    return git(sandbox.repo, "rev-parse", "HEAD").strip()


def _record(
    sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch, session: str = "rec"
) -> tuple[dict[str, Any], Path]:
    """A 2-worker swarm recorded through the proxy, exported; the stub is stopped."""
    _commit_version(sandbox, "version 1\n")
    with _stub() as stub:
        monkeypatch.setenv("ANTHROPIC_BASE_URL", stub.base_url)
        result = sandbox.cli(
            "swarm", "--task", "copy the version", "--agents", "alpha,beta",
            "--launcher-cmd", LAUNCHER, "--session", session, "--execute",
        )  # fmt: skip
        assert result.code == 0, result
        status = wait_done(sandbox, session, timeout=60)
        assert stub.turns.count("tool") == 2 and stub.turns.count("answer") == 2
    assert all(w["state"] == "completed" for w in status["workers"]), status
    out = sandbox.repo.parent / f"{session}.bundle.json"
    exported = sandbox.cli("session-export", session, "--out", str(out))
    assert exported.code == 0, exported
    return json.loads(out.read_text()), out


@pytest.fixture
def dead_upstream(monkeypatch: pytest.MonkeyPatch) -> Iterator[Sentinel]:
    """Where an offline replay's workers would go if anything left the machine."""
    sentinel = Sentinel()
    monkeypatch.setenv("ANTHROPIC_BASE_URL", sentinel.url)
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    yield sentinel
    sentinel.close()


def _replay(sandbox: Sandbox, bundle: Path, *extra: str) -> tuple[dict[str, Any], dict[str, Any]]:
    out = bundle.with_name(bundle.stem + f"-{secrets.token_hex(3)}.json")
    result = sandbox.cli(
        "replay", str(bundle), "--launcher-cmd", LAUNCHER, "--offline", *extra,
        "--execute", "--wait", "--timeout", "60", "--export", str(out),
    )  # fmt: skip
    assert result.code in (0, 1), result
    return json.loads(out.read_text()), {"code": result.code, "out": str(out)}


def _worktree(sandbox: Sandbox, bundle: dict[str, Any], slug: str) -> Path:
    session = bundle["session"]
    record = json.loads((sandbox.coord_root / session / "session.json").read_text())
    return Path(next(w["worktree"] for w in record["workers"] if w["slug"] == slug))


def test_a_swarm_records_every_exchange_and_no_key(
    sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch, key: str
) -> None:
    bundle, path = _record(sandbox, monkeypatch)
    for worker in bundle["workers"]:
        exchanges = worker["exchanges"]
        assert [e["turn"] for e in exchanges] == [1, 2]
        first, second = exchanges
        assert first["format"] == "anthropic-messages" and first["path"] == "/v1/messages"
        assert first["status"] == 200 and first["source"] == "upstream"
        # The stream's events as they came, in order, and the usage the provider reported.
        assert first["events"][0].startswith("event: message_start")
        assert first["events"][-1].startswith("event: message_stop")
        assert first["usage"] == {"model": "claude-stub-1", "input_tokens": 1000,
                                  "output_tokens": 50, "cache_read_tokens": 200,
                                  "cache_write_tokens": 0}  # fmt: skip
        assert '"tool_result"' in second["request"] and "version 1" in second["request"]
        assert first["ttfb_ms"] >= 0 and first["duration_ms"] >= first["ttfb_ms"]
        assert set(first["request_headers"]) <= {"content-type", "anthropic-version", "user-agent"}
        # The custom launcher reports nothing: the recording's usage fills it.
        assert worker["usage"]["input_tokens"] == 2000
        assert worker["usage"]["output_tokens"] == 100
        assert worker["usage"]["recorded"]["turns"] == 2
        assert worker["recording"]["seal"].startswith("hmac-sha256:")
    # The key: in no recording, export, log, status, transcript or process command line.
    assert key not in path.read_text()
    for file in sandbox.coord_root.rglob("*"):
        if file.is_file():
            assert key.encode() not in file.read_bytes(), file
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            assert key.encode() not in cmdline.read_bytes()
        except OSError:
            continue


def test_offline_replay_reproduces_the_run_without_the_provider(
    sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch, key: str
) -> None:
    origin, path = _record(sandbox, monkeypatch)
    sentinel = Sentinel()
    monkeypatch.setenv("ANTHROPIC_BASE_URL", sentinel.url)
    monkeypatch.delenv("ANTHROPIC_API_KEY")
    try:
        replayed, info = _replay(sandbox, path)
    finally:
        sentinel.close()
    assert info["code"] == 0
    assert sentinel.connections == 0  # nothing left the machine
    by_slug = {w["slug"]: w for w in origin["workers"]}
    for worker in replayed["workers"]:
        before = by_slug[worker["slug"]]
        assert worker["state"] == "completed"
        assert worker["handoff"] == before["handoff"]
        assert worker["diff"] == before["diff"]
        assert (_worktree(sandbox, replayed, worker["slug"]) / "hello.txt").read_bytes() == (
            b"version 1\n"
        )
        assert "divergence" not in worker
        assert {e["source"] for e in worker["exchanges"]} == {"recording"}
        assert [e["events"] for e in worker["exchanges"]] == [
            e["events"] for e in before["exchanges"]
        ]
    gate = sandbox.cli("compare", str(path), info["out"], "--baseline")
    assert gate.code == 0, gate
    shown = sandbox.cli("compare", str(path), info["out"]).stdout
    assert shown.count("identical to the recording") == 2
    assert shown.count("no turn differs") == 2


def _diverging_replay(
    sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch, key: str, policy: str, *extra: str
) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    origin, path = _record(sandbox, monkeypatch)
    new_base = _commit_version(sandbox, "version 2\n")
    replayed, info = _replay(
        sandbox, path, "--base-ref", new_base, "--on-divergence", policy, *extra
    )
    return origin, replayed, info


def test_a_changed_tool_result_stops_the_worker_at_the_right_turn(
    sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch, key: str, dead_upstream: Sentinel
) -> None:
    _, replayed, info = _diverging_replay(sandbox, monkeypatch, key, "stop")
    assert info["code"] == 1
    assert dead_upstream.connections == 0
    for worker in replayed["workers"]:
        assert worker["state"] == "failed"
        # Turn 1 was answered from the recording; turn 2 carries the new tool result.
        assert worker["divergence"]["turn"] == 2
        assert worker["divergence"]["policy"] == "stop"
        assert "tool result" in worker["divergence"]["reason"]
        assert "version" not in worker["divergence"]["reason"]  # never the text itself
        assert "- Reason: diverged at turn 2" in worker["status"]
        assert "- Divergence: turn 2: a tool result" in worker["status"]
    table = sandbox.cli("status", replayed["session"])
    assert "diverged at turn 2" in table.stdout
    compared = sandbox.cli("compare", info["out"], info["out"])
    assert compared.code == 0
    assert "diverged at turn 2" in compared.stdout


def test_continue_keeps_answering_from_the_recording(
    sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch, key: str, dead_upstream: Sentinel
) -> None:
    _origin, replayed, info = _diverging_replay(sandbox, monkeypatch, key, "continue")
    assert info["code"] == 0
    assert dead_upstream.connections == 0
    for worker in replayed["workers"]:
        assert worker["state"] == "completed"
        assert worker["divergence"]["turn"] == 2
        assert worker["divergence"]["policy"] == "continue"
        assert "- Divergence: turn 2" in worker["status"]
        # The recorded answer, though the code changed under it.
        assert ANSWER in worker["handoff"]
        assert (_worktree(sandbox, replayed, worker["slug"]) / "hello.txt").read_text() == (
            "version 2\n"
        )


def test_live_hands_the_worker_to_the_provider_from_the_divergent_turn(
    sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch, key: str
) -> None:
    _origin, path = _record(sandbox, monkeypatch)
    new_base = _commit_version(sandbox, "version 2\n")
    forked = "## Summary\nForked answer for version 2."
    with AnthropicStub(answer=forked, tool_call=("Bash", {"command": COMMAND}),
                       usage=USAGE, lifetime_s=120) as restarted:  # fmt: skip
        monkeypatch.setenv("ANTHROPIC_BASE_URL", restarted.base_url)
        replayed, info = _replay(sandbox, path, "--base-ref", new_base, "--on-divergence", "live")
        # Only the divergent turn (the answer) went to the provider, once per worker.
        assert restarted.turns == ["answer", "answer"]
    assert info["code"] == 0
    for worker in replayed["workers"]:
        assert worker["state"] == "completed"
        assert worker["divergence"]["turn"] == 2
        assert [e["source"] for e in worker["exchanges"]] == ["recording", "upstream"]
        assert forked in worker["handoff"] and ANSWER not in worker["handoff"]


def test_a_recording_made_elsewhere_needs_trust_and_the_dry_run_shows_its_commands(
    sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch, key: str, dead_upstream: Sentinel
) -> None:
    _origin, path = _record(sandbox, monkeypatch)
    # Another machine: another recording key.
    monkeypatch.setenv("XDG_STATE_HOME", str(sandbox.home / "elsewhere"))
    dry = sandbox.cli("replay", str(path), "--launcher-cmd", LAUNCHER, "--offline")
    assert dry.code == 0, dry
    assert dry.stdout.count("turns, made on another machine") == 2
    assert f"runs      {COMMAND}" in dry.stdout
    # Sandboxed by default (tests/test_sandbox_e2e.py); unsandboxed, it needs trust.
    assert "Sandbox       on (its recording was made on another machine)" in dry.stdout
    before = sorted(p.name for p in sandbox.coord_root.iterdir())
    refused = sandbox.cli(
        "replay", str(path), "--launcher-cmd", LAUNCHER, "--offline", "--no-sandbox", "--execute"
    )
    assert refused.code == 1
    assert "--trust-recording" in refused.stderr and "Traceback" not in refused.stderr
    assert sorted(p.name for p in sandbox.coord_root.iterdir()) == before  # nothing made
    _replayed, info = _replay(sandbox, path, "--no-sandbox", "--trust-recording")
    assert info["code"] == 0
    # A recording tampered with after export is not "made here" either.
    monkeypatch.delenv("XDG_STATE_HOME")
    data = json.loads(path.read_text())
    data["workers"][0]["exchanges"][0]["events"][0] += " "
    path.write_text(json.dumps(data))
    dry = sandbox.cli("replay", str(path), "--launcher-cmd", LAUNCHER, "--offline")
    assert dry.stdout.count("turns, made on another machine") == 1, dry.stdout


def test_a_sealed_recording_moved_to_another_worker_or_task_is_not_made_here(
    sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch, key: str
) -> None:
    """Copying one of your own sealed workers into a stranger's bundle (another slug, or
    another task) does not get it past --trust-recording."""
    origin, path = _record(sandbox, monkeypatch)
    alpha = next(w for w in origin["workers"] if w["slug"] == "alpha")
    moved = {**origin, "workers": [{**alpha, "slug": "gamma"}], "meta": {**origin["meta"],
             "agents": ["gamma"]}}  # fmt: skip
    retasked = {**origin, "meta": {**origin["meta"], "task": "rm -rf the repo"}}
    for name, data in (("moved", moved), ("retasked", retasked)):
        target = path.with_name(f"{name}.json")
        target.write_text(json.dumps(data))
        dry = sandbox.cli("replay", str(target), "--launcher-cmd", LAUNCHER, "--offline")
        assert dry.code == 0, dry
        assert "made on this machine" not in dry.stdout, (name, dry.stdout)
        refused = sandbox.cli(
            "replay", str(target), "--launcher-cmd", LAUNCHER, "--offline", "--no-sandbox",
            "--execute",
        )  # fmt: skip
        assert refused.code == 1 and "--trust-recording" in refused.stderr, (name, refused)
    untouched = sandbox.cli("replay", str(path), "--launcher-cmd", LAUNCHER, "--offline")
    assert untouched.stdout.count("made on this machine") == 2


def test_no_record_runs_without_a_proxy_and_no_exchanges_leaves_them_out(
    sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch, key: str
) -> None:
    _commit_version(sandbox, "version 1\n")
    with _stub() as stub:
        monkeypatch.setenv("ANTHROPIC_BASE_URL", stub.base_url)
        result = sandbox.cli(
            "swarm", "--task", "copy", "--agents", "alpha", "--launcher-cmd", LAUNCHER,
            "--session", "plain", "--no-record", "--execute",
        )  # fmt: skip
        assert result.code == 0, result
        wait_done(sandbox, "plain", timeout=60)
        assert stub.turns == ["tool", "answer"]  # the agent went straight to the provider
    assert not (sandbox.coord_root / "plain" / "proxy.json").exists()
    assert not (sandbox.coord_root / "plain" / "alpha" / "exchanges.jsonl").exists()
    recorded, _ = _record(sandbox, monkeypatch, "rec2")
    bare = sandbox.cli("session-export", "rec2", "--no-exchanges", "--out", "-")
    assert bare.code == 0
    for worker in json.loads(bare.stdout)["workers"]:
        assert "exchanges" not in worker and "recording" not in worker
    assert all(w["exchanges"] for w in recorded["workers"])


def test_teardown_ends_the_proxy(
    sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch, key: str
) -> None:
    _record(sandbox, monkeypatch, "gone")
    pid = json.loads((sandbox.coord_root / "gone" / "proxy.json").read_text())["pid"]
    os.kill(pid, 0)  # alive while the session is
    result = sandbox.cli("teardown", "gone", "--force")  # the workers left hello.txt
    assert result.code == 0, result

    def ended() -> bool:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        return False

    assert retry_until(ended, timeout=10)


def test_status_shows_each_worker_through_the_proxy(
    sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch, key: str
) -> None:
    """The proxy's window is not a worker: status lists the workers only."""
    _record(sandbox, monkeypatch, "st")
    status = json.loads(sandbox.cli("status", "st", "--json").stdout)["session"]
    assert sorted(workers_by_slug(status)) == ["alpha", "beta"]


def test_the_streamed_export_of_a_recording_is_the_encoded_bundle(
    sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch, key: str
) -> None:
    """session-export streams worker by worker; with recordings its bytes are still
    exactly encode_bundle(export_bundle(...))."""
    from kodelyth_ecc.bundle import encode_bundle
    from kodelyth_ecc.export import export_bundle

    _record(sandbox, monkeypatch, "stream")
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1800000000")
    streamed = sandbox.cli("session-export", "stream", "--out", "-")
    assert streamed.code == 0, streamed
    built = encode_bundle(export_bundle("stream", str(sandbox.coord_root)))
    assert streamed.stdout.encode("utf-8") == built


def test_the_dry_run_warns_about_workers_without_a_recording(
    sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch, key: str
) -> None:
    _, path = _record(sandbox, monkeypatch)
    dry = sandbox.cli(
        "replay", str(path), "--launcher-cmd", LAUNCHER, "--offline", "--agents", "alpha,gamma"
    )
    assert dry.code == 0, dry
    assert "alpha: 2 turns, made on this machine" in dry.stdout
    assert "gamma: no recording" in dry.stdout
    assert "worker gamma has no recording" in dry.stderr


def test_compare_shows_where_the_cli_and_the_provider_disagree_on_tokens(
    sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch, key: str
) -> None:
    """usage is cross-checked against the recording: a CLI that miscounts shows."""
    origin, path = _record(sandbox, monkeypatch)
    origin["workers"][0]["usage"]["input_tokens"] = 1999  # what a CLI said
    changed = path.with_name("miscounted.json")
    changed.write_text(json.dumps(origin))
    shown = sandbox.cli("compare", str(path), str(changed)).stdout
    assert "the provider reported 2,000 in / 100 out" in shown
    assert shown.count("the provider reported") == 1  # the other worker agrees with it


def test_offline_without_the_proxy_is_a_usage_error(sandbox: Sandbox, tmp_path: Path) -> None:
    from tests.replay_helpers import bundle_dict, swarm_task_md, write_json

    path = write_json(tmp_path / "b.json", bundle_dict({"alpha": swarm_task_md("alpha", "x")}))
    result = sandbox.cli("replay", str(path), "--offline", "--no-record", "--execute")
    assert result.code == 2 and "drop --no-record" in result.stderr
