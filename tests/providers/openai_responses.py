"""A scripted OpenAI Responses API (``POST /v1/responses``, ``"stream": true``) for the
real-CLI tests of codex.

The stream is what the real API sends: server-sent events with ``event:`` names equal
to each payload's ``type`` and a ``sequence_number`` — ``response.created``,
``response.in_progress``, ``response.output_item.added``, ``response.content_part.added``,
``response.output_text.delta``/``.done``, ``response.content_part.done``,
``response.function_call_arguments.delta``/``.done``, ``response.output_item.done`` and
``response.completed`` whose ``response.usage`` holds ``input_tokens``,
``input_tokens_details.cached_tokens``, ``output_tokens``,
``output_tokens_details.reasoning_tokens`` and ``total_tokens``.

The conversation (one agent turn, two model requests):

1. the first request (no tool output in its ``input`` yet) is answered with ONE function
   call to the tool the CLI offers for running commands (codex 0.171 offers
   ``exec_command`` with ``{"cmd": ...}``; older builds ``shell`` with
   ``{"command": [...]}``; both are handled), running ``printf`` that writes
   ``file_name`` with ``file_line`` in the agent's working directory (or, with
   ``tool="apply_patch"``, one ``custom_tool_call`` to codex's freeform ``apply_patch``
   adding that file, streamed as ``response.custom_tool_call_input.delta``/``.done``);
2. a request whose ``input`` carries the call's ``function_call_output`` is answered
   with the final text ``answer`` (the four handoff sections).

Anything else is answered sensibly: ``GET .../models`` with a model list, a
non-streaming ``POST .../responses`` with a plain JSON response, ``.../responses/compact``
with a compacted history, a further request after the answer with the answer again,
an unknown path with the API's 404 error. ``status=401`` answers every request with the
API's ``invalid_api_key`` error body."""

from __future__ import annotations

import json
import shlex
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from tests.providers.server import Request, Response, ScriptedProvider

ANSWER = (
    "## Summary\n"
    "Wrote hello.txt with one greeting line.\n"
    "\n"
    "## Files Changed\n"
    "- hello.txt (new)\n"
    "\n"
    "## Validation\n"
    "- `cat hello.txt` prints the greeting.\n"
    "\n"
    "## Remaining Risks\n"
    "- None: a scripted stub answered this run."
)


@dataclass(frozen=True)
class Usage:
    """One response's ``usage`` (the Responses API's fields)."""

    input_tokens: int
    cached_tokens: int
    output_tokens: int
    reasoning_tokens: int

    def wire(self) -> dict[str, Any]:
        return {
            "input_tokens": self.input_tokens,
            "input_tokens_details": {"cached_tokens": self.cached_tokens},
            "output_tokens": self.output_tokens,
            "output_tokens_details": {"reasoning_tokens": self.reasoning_tokens},
            "total_tokens": self.input_tokens + self.output_tokens,
        }

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            self.input_tokens + other.input_tokens,
            self.cached_tokens + other.cached_tokens,
            self.output_tokens + other.output_tokens,
            self.reasoning_tokens + other.reasoning_tokens,
        )


TOOL_CALL_USAGE = Usage(input_tokens=1200, cached_tokens=200, output_tokens=40, reasoning_tokens=8)
ANSWER_USAGE = Usage(input_tokens=1500, cached_tokens=1100, output_tokens=90, reasoning_tokens=16)

_TOOL_OUTPUT_TYPES = ("function_call_output", "custom_tool_call_output")


def _chunks(text: str, size: int = 24) -> Iterator[str]:
    for start in range(0, len(text), size):
        yield text[start : start + size]


class OpenAIResponsesProvider(ScriptedProvider):
    """Scripted Responses API: a command tool call writing ``file_name``, then ``answer``."""

    def __init__(
        self,
        *,
        file_name: str = "hello.txt",
        file_line: str = "hello from the codex stub",
        answer: str = ANSWER,
        model: str = "gpt-5.5",
        tool: str = "command",
        shell: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.shell = shell  # a command of the test's own instead of the printf
        if tool not in ("command", "apply_patch"):
            raise ValueError(f"tool must be 'command' or 'apply_patch', not {tool!r}")
        self.tool = tool
        self.file_name = file_name
        self.file_line = file_line
        self.answer = answer
        self.model = model
        self.call_id = "call_stub_write_1"
        self.usages: list[Usage] = []  # one per streamed model response, in order
        self.tools_offered: list[list[str]] = []  # tool names of each /responses request
        self._ids = 0
        self._id_lock = threading.Lock()

    def __enter__(self) -> OpenAIResponsesProvider:
        self.start()
        return self

    # --- what the script did -----------------------------------------------------------

    @property
    def total_usage(self) -> Usage:
        total = Usage(0, 0, 0, 0)
        for usage in self.usages:
            total = total + usage
        return total

    @property
    def command(self) -> str:
        """The shell command of the scripted tool call."""
        if self.shell is not None:
            return self.shell
        return f"printf '%s\\n' {shlex.quote(self.file_line)} > {shlex.quote(self.file_name)}"

    # --- HTTP ----------------------------------------------------------------------------

    def failure(self, status: int) -> Response:
        if status == 401:
            error = {
                "message": "Incorrect API key provided. You can find your API key at "
                "https://platform.openai.com/account/api-keys.",
                "type": "invalid_request_error",
                "param": None,
                "code": "invalid_api_key",
            }
        elif status == 429:
            error = {
                "message": "Rate limit reached (stub).",
                "type": "requests",
                "param": None,
                "code": "rate_limit_exceeded",
            }
        else:
            error = {
                "message": f"The server had an error (stub status {status}).",
                "type": "server_error",
                "param": None,
                "code": None,
            }
        return Response.json({"error": error}, status=status)

    def respond(self, request: Request) -> Response:
        path = request.path.split("?", 1)[0].rstrip("/")
        if request.method == "GET" and path.endswith("/models"):
            return self._models()
        if request.method == "POST" and path.endswith("/responses/compact"):
            return Response.json({"output": [self._message_item(self._id("msg"), self.answer)]})
        if request.method == "POST" and path.endswith("/responses"):
            try:
                body = request.json()
            except ValueError:
                body = None
            if not isinstance(body, dict):
                return self._bad_request("Could not parse the JSON body of the request.")
            return self._responses(body)
        return Response.json(
            {
                "error": {
                    "message": f"Invalid URL ({request.method} {path})",
                    "type": "invalid_request_error",
                    "param": None,
                    "code": None,
                }
            },
            status=404,
        )

    def _models(self) -> Response:
        # The OpenAI list shape ("data"); "models" is codex's own catalogue key (an
        # empty catalogue: codex keeps its bundled model metadata).
        model = {"id": self.model, "object": "model", "created": 0, "owned_by": "stub"}
        return Response.json({"object": "list", "data": [model], "models": []})

    def _bad_request(self, message: str) -> Response:
        error = {"message": message, "type": "invalid_request_error", "param": None, "code": None}
        return Response.json({"error": error}, status=400)

    def _id(self, prefix: str) -> str:
        with self._id_lock:
            self._ids += 1
            return f"{prefix}_stub{self._ids:04d}"

    # --- the script ----------------------------------------------------------------------

    def _responses(self, body: dict[str, Any]) -> Response:
        tools = [
            str(t.get("name") or t.get("type"))
            for t in body.get("tools") or []
            if isinstance(t, dict)
        ]
        self.tools_offered.append(tools)
        items = body.get("input")
        items = items if isinstance(items, list) else []
        answered = any(
            isinstance(item, dict) and item.get("type") in _TOOL_OUTPUT_TYPES for item in items
        )
        model = str(body.get("model") or self.model)
        if answered or not tools:
            # The tool ran (or this is a side request without tools, e.g. a title or a
            # summary): the final answer.
            output = [self._message_item(self._id("msg"), self.answer)]
            usage = ANSWER_USAGE
        else:
            output = [self._tool_call_item(body)]
            usage = TOOL_CALL_USAGE
        resp_id = self._id("resp")
        if body.get("stream") is not True:
            self.usages.append(usage)
            return Response.json(self._response_object(resp_id, model, "completed", output, usage))
        return Response.sse(self._stream(resp_id, model, output, usage))

    @property
    def patch(self) -> str:
        """The scripted apply_patch input (adds ``file_name``)."""
        return (
            f"*** Begin Patch\n*** Add File: {self.file_name}\n+{self.file_line}\n*** End Patch\n"
        )

    def _tool_call_item(self, body: dict[str, Any]) -> dict[str, Any]:
        names = {t.get("name") for t in body.get("tools") or [] if isinstance(t, dict)}
        if self.tool == "apply_patch" and "apply_patch" in names:
            return {
                "type": "custom_tool_call",
                "id": self._id("ctc"),
                "call_id": self.call_id,
                "name": "apply_patch",
                "input": self.patch,
                "status": "completed",
            }
        if "exec_command" in names or "shell_command" in names:
            name = "exec_command" if "exec_command" in names else "shell_command"
            key = "cmd" if name == "exec_command" else "command"
            arguments = json.dumps({key: self.command, "yield_time_ms": 10000})
        else:  # the classic `shell` tool: an argv
            name = "shell"
            arguments = json.dumps({"command": ["bash", "-lc", self.command]})
        return {
            "type": "function_call",
            "id": self._id("fc"),
            "call_id": self.call_id,
            "name": name,
            "arguments": arguments,
            "status": "completed",
        }

    @staticmethod
    def _message_item(item_id: str, text: str) -> dict[str, Any]:
        return {
            "type": "message",
            "id": item_id,
            "role": "assistant",
            "status": "completed",
            "content": [{"type": "output_text", "text": text, "annotations": [], "logprobs": []}],
        }

    @staticmethod
    def _response_object(
        resp_id: str, model: str, status: str, output: list[dict[str, Any]], usage: Usage | None
    ) -> dict[str, Any]:
        return {
            "id": resp_id,
            "object": "response",
            "created_at": 1_700_000_000,
            "status": status,
            "model": model,
            "output": output,
            "parallel_tool_calls": True,
            "tool_choice": "auto",
            "usage": usage.wire() if usage is not None else None,
        }

    def _stream(
        self, resp_id: str, model: str, output: list[dict[str, Any]], usage: Usage
    ) -> Iterator[tuple[str | None, Any]]:
        seq = iter(range(1_000_000))

        def event(kind: str, **data: Any) -> tuple[str, dict[str, Any]]:
            return kind, {"type": kind, "sequence_number": next(seq), **data}

        started = self._response_object(resp_id, model, "in_progress", [], None)
        yield event("response.created", response=started)
        yield event("response.in_progress", response=started)
        for index, item in enumerate(output):
            if item["type"] == "message":
                text = item["content"][0]["text"]
                part_empty = {"type": "output_text", "text": "", "annotations": []}
                ids = {"item_id": item["id"], "output_index": index, "content_index": 0}
                added = {**item, "status": "in_progress", "content": []}
                yield event("response.output_item.added", output_index=index, item=added)
                yield event(
                    "response.content_part.added",
                    item_id=item["id"],
                    output_index=index,
                    content_index=0,
                    part=part_empty,
                )
                for piece in _chunks(text):
                    yield event("response.output_text.delta", **ids, delta=piece, logprobs=[])
                yield event("response.output_text.done", **ids, text=text, logprobs=[])
                yield event(
                    "response.content_part.done",
                    item_id=item["id"],
                    output_index=index,
                    content_index=0,
                    part=item["content"][0],
                )
            elif item["type"] == "custom_tool_call":
                patch = item["input"]
                added = {**item, "status": "in_progress", "input": ""}
                yield event("response.output_item.added", output_index=index, item=added)
                for piece in _chunks(patch):
                    yield event(
                        "response.custom_tool_call_input.delta",
                        item_id=item["id"],
                        output_index=index,
                        delta=piece,
                    )
                yield event(
                    "response.custom_tool_call_input.done",
                    item_id=item["id"],
                    output_index=index,
                    input=patch,
                )
            else:
                arguments = item["arguments"]
                added = {**item, "status": "in_progress", "arguments": ""}
                yield event("response.output_item.added", output_index=index, item=added)
                for piece in _chunks(arguments):
                    yield event(
                        "response.function_call_arguments.delta",
                        item_id=item["id"],
                        output_index=index,
                        delta=piece,
                    )
                yield event(
                    "response.function_call_arguments.done",
                    item_id=item["id"],
                    output_index=index,
                    arguments=arguments,
                )
            yield event("response.output_item.done", output_index=index, item=item)
        # Usage is counted when the stream reaches its end (what the CLI was told).
        self.usages.append(usage)
        done = self._response_object(resp_id, model, "completed", output, usage)
        yield event("response.completed", response=done)
