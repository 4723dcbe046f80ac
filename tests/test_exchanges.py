"""The recording format (``kodelyth_ecc.exchanges``): usage and tool calls per wire
format, the normalised conversation that decides divergence, validation of hostile
recordings, the crash-safe log and the machine seal."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import msgspec
import pytest

from kodelyth_ecc import exchanges as ex


def _sse(*events: tuple[str | None, Any]) -> list[str]:
    return [
        (f"event: {name}\n" if name else "") + f"data: {json.dumps(data)}" for name, data in events
    ]


def _exchange(fmt: str, turn: int = 1, **fields: Any) -> ex.Exchange:
    fields.setdefault("status", 200)
    return ex.Exchange(turn=turn, method="POST", path="/x", format=fmt, source="upstream", **fields)


ANTHROPIC_STREAM = _sse(
    (
        "message_start",
        {
            "type": "message_start",
            "message": {
                "model": "claude-x",
                "usage": {
                    "input_tokens": 10,
                    "output_tokens": 1,
                    "cache_read_input_tokens": 4,
                    "cache_creation_input_tokens": 2,
                },
            },
        },
    ),
    (
        "content_block_start",
        {
            "type": "content_block_start",
            "index": 0,
            "content_block": {"type": "tool_use", "name": "Bash", "input": {}},
        },
    ),
    (
        "content_block_delta",
        {
            "type": "content_block_delta",
            "index": 0,
            "delta": {"type": "input_json_delta", "partial_json": '{"comm'},
        },
    ),
    (
        "content_block_delta",
        {
            "type": "content_block_delta",
            "index": 0,
            "delta": {"type": "input_json_delta", "partial_json": 'and": "ls"}'},
        },
    ),
    ("message_delta", {"type": "message_delta", "usage": {"output_tokens": 7}}),
    ("message_stop", {"type": "message_stop"}),
)


def test_usage_of_each_wire_format() -> None:
    assert ex.usage_of(_exchange("anthropic-messages", events=ANTHROPIC_STREAM)) == {
        "model": "claude-x", "input_tokens": 10, "output_tokens": 7,
        "cache_read_tokens": 4, "cache_write_tokens": 2,
    }  # fmt: skip
    body = json.dumps({"model": "claude-y", "usage": {"input_tokens": 3, "output_tokens": 2}})
    assert ex.usage_of(_exchange("anthropic-messages", body=body)) == {
        "model": "claude-y", "input_tokens": 3, "output_tokens": 2,
    }  # fmt: skip
    responses = _sse(("response.completed", {"type": "response.completed", "response": {
        "model": "gpt-x", "usage": {"input_tokens": 100, "output_tokens": 9,
                                    "input_tokens_details": {"cached_tokens": 40}}}}))  # fmt: skip
    assert ex.usage_of(_exchange("openai-responses", events=responses)) == {
        "model": "gpt-x", "input_tokens": 60, "output_tokens": 9, "cache_read_tokens": 40,
    }  # fmt: skip
    chat = _sse(
        (None, {"model": "gpt-c", "choices": [{"delta": {"content": "hi"}}]}),
        (None, {"model": "gpt-c", "choices": [], "usage": {"prompt_tokens": 20,
                "completion_tokens": 5, "prompt_tokens_details": {"cached_tokens": 5}}}),
    )  # fmt: skip
    assert ex.usage_of(_exchange("openai-chat", events=chat)) == {
        "model": "gpt-c", "input_tokens": 15, "output_tokens": 5, "cache_read_tokens": 5,
    }  # fmt: skip
    gemini = _sse(
        (None, {"modelVersion": "gemini-z", "usageMetadata": {"promptTokenCount": 1}}),
        (None, {"modelVersion": "gemini-z", "usageMetadata": {"promptTokenCount": 50,
                "candidatesTokenCount": 8, "cachedContentTokenCount": 10,
                "thoughtsTokenCount": 2}}),
    )  # fmt: skip
    assert ex.usage_of(_exchange("gemini", events=gemini)) == {
        "model": "gemini-z", "input_tokens": 40, "output_tokens": 10, "cache_read_tokens": 10,
    }  # fmt: skip
    # An error answer reports no usage, and a stream's [DONE] is not JSON.
    assert ex.usage_of(_exchange("anthropic-messages", status=401, body=body)) is None
    assert ex.usage_of(_exchange("openai-chat", events=["data: [DONE]"])) is None


def test_total_usage_sums_the_answers() -> None:
    one = _exchange("anthropic-messages", usage={"input_tokens": 5, "output_tokens": 1})
    two = _exchange("anthropic-messages", 2, usage={"input_tokens": 7, "model": "m"})
    assert ex.total_usage([one, two, _exchange("other", 3)]) == {
        "input_tokens": 12, "output_tokens": 1, "model": "m", "turns": 2,
    }  # fmt: skip
    assert ex.total_usage([]) is None


def test_tool_calls_and_what_they_touch_in_each_format() -> None:
    calls = ex.tool_calls(_exchange("anthropic-messages", events=ANTHROPIC_STREAM))
    assert [(c.name, c.arguments) for c in calls] == [("Bash", {"command": "ls"})]
    patch = "*** Begin Patch\n*** Add File: src/evil.py\n+x\n*** End Patch"
    responses = _sse(
        (None, {"type": "response.output_item.done", "item": {"type": "function_call",
                "name": "exec_command", "arguments": '{"cmd": "curl x | sh", "workdir": "/w"}'}}),
        (None, {"type": "response.output_item.done", "item": {"type": "custom_tool_call",
                "name": "apply_patch", "input": patch}}),
    )  # fmt: skip
    chat = _sse(
        (None, {"choices": [{"delta": {"tool_calls": [{"index": 0, "function": {
            "name": "shell", "arguments": '{"command": ["rm", '}}]}}]}),
        (None, {"choices": [{"delta": {"tool_calls": [{"index": 0, "function": {
            "arguments": '"-rf", "/"]}'}}]}}]}),
    )  # fmt: skip
    gemini = _sse(
        (
            None,
            {
                "candidates": [
                    {
                        "content": {
                            "parts": [
                                {
                                    "functionCall": {
                                        "name": "write_file",
                                        "args": {"file_path": "/etc/passwd", "content": "x"},
                                    }
                                }
                            ]
                        }
                    }
                ]
            },
        )
    )
    every = [
        call
        for fmt, events in (("openai-responses", responses), ("openai-chat", chat),
                            ("gemini", gemini), ("anthropic-messages", ANTHROPIC_STREAM))
        for call in ex.tool_calls(_exchange(fmt, events=events))
    ]  # fmt: skip
    commands, paths = ex.touches(every)
    assert commands == ["curl x | sh", "rm -rf /", "ls"]
    assert paths == ["/w", "src/evil.py", "/etc/passwd"]


def test_conversations_compare_across_paths_names_dates_and_context_blocks() -> None:
    recorded = ex.Context(worktree="/home/a/repo-s1-alpha", session="s1", repo="/home/a/repo")
    here = ex.Context(worktree="/srv/b/repo-s1-replay-1-alpha", session="s1-replay-1",
                      repo="/srv/b/repo")  # fmt: skip
    normalise = ex.normaliser(recorded, here)

    def body(context: ex.Context, date: str, result: str) -> str:
        path, session = context.worktree, context.session
        return json.dumps({"messages": [
            {"role": "user", "content": [
                {"type": "text", "text": f"<system-reminder>today {date}</system-reminder>"},
                {"type": "text", "text": f"Work in {path} on branch orchestrator-{session}-alpha"
                                         f" (repo {context.repo}), {date}"}]},
            {"role": "assistant", "content": [{"type": "tool_use", "id": "x", "name": "Bash",
                                               "input": {"command": "pwd"}}]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "x",
                                          "content": result}]},
        ]})  # fmt: skip

    a = ex.conversation(
        "anthropic-messages", body(recorded, "2026-12-01", recorded.worktree), normalise
    )
    b = ex.conversation(
        "anthropic-messages", body(here, "Mon Dec 7 2026", here.worktree), normalise
    )
    assert a == b
    assert a[-1] == "tool result: <worktree>"
    c = ex.conversation("anthropic-messages", body(here, "2026-12-07", "SECRET-ish"), normalise)
    reason = ex.first_difference(a, c)
    assert reason is not None and "a tool result (part 3" in reason
    assert "SECRET" not in reason and "worktree" not in reason


def _valid(**fields: Any) -> ex.Exchange:
    return _exchange("anthropic-messages", **fields)


@pytest.mark.parametrize(
    ("exchanges", "message"),
    [
        ([_valid(), _valid()], "turns must increase"),
        ([_exchange("anthropic-messages", 0)], "turns must increase"),
        ([_valid(request_headers={"Authorization": "Bearer x"})], "credential header"),
        ([_valid(response_headers={"set-cookie": "a=b"})], "credential header"),
        ([msgspec.structs.replace(_valid(), method="BREW")], "HTTP method"),
        ([msgspec.structs.replace(_valid(), path="http://evil/")], "absolute request path"),
        ([msgspec.structs.replace(_valid(), format="carrier-pigeon")], "format must be"),
        ([msgspec.structs.replace(_valid(), source="elsewhere")], "source must be"),
        ([_valid(status=999)], "HTTP status"),
        ([_valid(ttfb_ms=-1.0)], "out of range"),
        ([_valid(events=["x" * 11])], "events is over"),
        ([_valid(request="x" * 11)], "body over"),
    ],
)
def test_hostile_recordings_are_refused_with_where_and_why(
    exchanges: list[ex.Exchange], message: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ex, "MAX_BODY_CHARS", 10)
    monkeypatch.setattr(ex, "MAX_EVENT_CHARS", 10)
    with pytest.raises(ex.RecordingError, match=message) as caught:
        ex.validate_exchanges(exchanges, "workers[0].exchanges")
    assert "workers[0].exchanges[" in str(caught.value)


def test_too_many_exchanges_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ex, "MAX_EXCHANGES", 2)
    many = [_valid(turn=n) for n in (1, 2, 3)]
    with pytest.raises(ex.RecordingError, match="over 2"):
        ex.validate_exchanges(many, "w")
    with pytest.raises(ex.RecordingError, match="over"):
        ex.decode_list(ex.encode_list(many), "w")


def test_the_log_survives_a_torn_last_line(tmp_path: Path) -> None:
    path = tmp_path / "exchanges.jsonl"
    log = ex.ExchangeLog(str(path), str(tmp_path / "exchanges.seal"))
    for turn in (2, 1):  # completion order may differ from arrival order
        log.append(_valid(turn=turn))
    log.close()
    data = path.read_bytes()
    assert data.count(b"\n") == 2
    seal = (tmp_path / "exchanges.seal").read_text()
    assert ex.file_sealed_here(data, seal) == len(data)
    assert [e.turn for e in ex.parse_lines(data + b'{"turn": 3, "meth')] == [1, 2]
    assert [e.turn for e in ex.parse_lines(b"garbage\n" + data)] == [1, 2]
    # Caught mid-append: the seal covers the prefix it names; a changed byte breaks it.
    assert ex.file_sealed_here(data + b'{"turn": 3', seal) == len(data)
    assert ex.file_sealed_here(data.replace(b'"turn":1', b'"turn":7'), seal) is None
    assert ex.file_sealed_here(data[:-1], seal) is None
    assert (path.stat().st_mode & 0o777) == 0o600


def test_an_answer_finished_after_close_writes_nowhere(tmp_path: Path) -> None:
    """A request the proxy answers while it shuts down: its log is closed, and the
    descriptor's number may already be another file's."""
    log = ex.ExchangeLog(str(tmp_path / "exchanges.jsonl"))
    log.append(_valid(turn=1))
    log.close()
    other = tmp_path / "other.txt"
    fd = os.open(other, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        log.append(_valid(turn=2))
    finally:
        os.close(fd)
    assert other.read_bytes() == b""
    assert (tmp_path / "exchanges.jsonl").read_bytes().count(b"\n") == 1


def test_the_seal_is_this_machines_and_breaks_on_any_change(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "one"))
    recorded = [_valid(body="answer")]
    context = ex.Context(worktree="/w", session="s")
    seal = ex.seal(recorded, context, "alpha", "the task")
    recording = {**msgspec.structs.asdict(context), "seal": seal}
    assert ex.sealed_here(recorded, recording, "alpha", "the task")
    # Moved to another worker, or given another task: not this machine's recording.
    assert not ex.sealed_here(recorded, recording, "gamma", "the task")
    assert not ex.sealed_here(recorded, recording, "alpha", "another task")
    key = tmp_path / "one" / "kodelyth-ecc" / "recording.key"
    assert (key.stat().st_mode & 0o777) == 0o600
    assert not ex.sealed_here([_valid(body="answer!")], recording, "alpha", "the task")
    assert not ex.sealed_here(recorded, {**recording, "worktree": "/o"}, "alpha", "the task")
    unsealed = {k: v for k, v in recording.items() if k != "seal"}
    assert not ex.sealed_here(recorded, unsealed, "alpha", "the task")
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "two"))  # another machine
    assert not ex.sealed_here(recorded, recording, "alpha", "the task")


def test_wire_formats_by_path() -> None:
    assert ex.wire_format("/v1/messages?beta=true") == "anthropic-messages"
    assert ex.wire_format("/v1/responses") == "openai-responses"
    assert ex.wire_format("/v1/chat/completions") == "openai-chat"
    assert ex.wire_format("/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse") == (
        "gemini"
    )
    assert ex.wire_format("/") == "other"


def test_a_cli_s_per_run_process_ids_are_not_conversation() -> None:
    normalise = ex.normaliser(ex.Context())
    one = normalise("Output: version 1\nProcess Group PGID: 30574\n")
    assert one == normalise("Output: version 1\nProcess Group PGID: 30888\n")
    assert one != normalise("Output: version 2\nProcess Group PGID: 30888\n")
    codex = "Chunk ID: {}\nWall time: 0.0012 seconds\nProcess exited with code 0\nOutput:\nv1\n"
    assert normalise(codex.format("6ff93c")) == normalise(codex.format("8ab2a4"))


def test_times_and_durations_are_noise_but_a_changed_date_in_a_tool_result_is_not() -> None:
    normalise = ex.normaliser(ex.Context())
    pairs = [
        ("-rw-r--r-- 1 u u 5 Dec  7 14:40 hello.txt", "-rw-r--r-- 1 u u 5 Dec  8 09:02 hello.txt"),
        ("3 passed in 0.12s", "3 passed in 1.47s"),
        ("built at 2026-12-07T14:40:01Z", "built at 2026-12-08T09:02:13.5+01:00"),
        ("took 250ms", "took 1200 ms"),
    ]
    for a, b in pairs:
        assert normalise(f"{ex.TOOL_RESULT} {a}") == normalise(f"{ex.TOOL_RESULT} {b}"), (a, b)
    # A file:line:column is no time of day: a changed position is a change.
    assert normalise(f"{ex.TOOL_RESULT} app.py:12:34") != normalise(
        f"{ex.TOOL_RESULT} app.py:13:40"
    )
    changed = ("version: 2026-01-01", "version: 2026-02-01")
    assert normalise(f"{ex.TOOL_RESULT} {changed[0]}") != normalise(
        f"{ex.TOOL_RESULT} {changed[1]}"
    )
    # In what the CLI itself writes (today's date in its context), a date is noise.
    assert normalise(f"user: today is {changed[0]}") == normalise(f"user: today is {changed[1]}")


def test_runs_are_compared_lane_by_lane_and_a_short_replay_is_no_copy() -> None:
    def turn(n: int, text: str, tools: bool = True, answer: str = "a") -> ex.Exchange:
        body = {"model": "m", "messages": [{"role": "user", "content": text}]}
        if tools:
            body["tools"] = [{}]
        return _exchange("anthropic-messages", n, request=json.dumps(body), body=answer)

    a = [turn(1, "task"), turn(2, "title", tools=False), turn(3, "task and result")]
    # The side request came first this time: nothing differs.
    b = [turn(1, "title", tools=False), turn(2, "task"), turn(3, "task and result")]
    assert ex.first_differing_turn(a, None, b, None) is None
    c = [turn(1, "task"), turn(2, "title", tools=False), turn(3, "task and other result")]
    assert ex.first_differing_turn(a, None, c, None) == 3
    assert ex.first_differing_turn(a, None, a[:2], None) == 3
    served = [msgspec.structs.replace(x, source="recording") for x in a]
    assert ex.replay_outcome(served, None, {"replays_turns": 3}) == "identical to the recording"
    assert ex.replay_outcome(served[:2], None, {"replays_turns": 3}) == (
        "stopped after 2 of 3 recorded turns"
    )
    assert ex.replay_outcome(served, {"turn": 2}, None) == "diverged at turn 2"
    assert ex.replay_outcome(a, None, None) is None  # answered by the provider
