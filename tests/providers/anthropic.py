"""A scripted Anthropic Messages API on 127.0.0.1 (the wire format ``claude`` and
opencode's ``anthropic`` provider speak).

``AnthropicStub(answer=..., tool_call=..., usage=..., model=...)``:

- ``answer`` (str): the final assistant text, streamed as ``text_delta`` chunks.
- ``tool_call`` (``(tool name, input dict)`` or None): the FIRST model turn of the
  main conversation calls this tool (a ``tool_use`` block whose input is streamed as
  ``input_json_delta`` chunks); once the request carries a ``tool_result`` for it, the
  next turn is ``answer``. None: the first turn is the answer. For claude, e.g.
  ``("Write", {"file_path": "/abs/hello.txt", "content": "hello\\n"})``; a tool the
  request does not offer (``tools``) is still called (the CLI reports the error).
- ``usage`` (``Usage``): the figures EVERY main-conversation turn reports
  (``input_tokens``, ``output_tokens``, ``cache_creation_input_tokens``,
  ``cache_read_input_tokens``); a CLI that sums turns reports ``turns * figure``.
- ``model``: the model name the stub reports (default: the one the request asked for).
- plus ``ScriptedProvider``'s ``max_requests``, ``lifetime_s``, ``status`` (e.g. 401:
  every request gets the API's error body) and ``hang``.

Requests: ``POST /v1/messages`` (streaming or not), ``POST /v1/messages/count_tokens``
(a length-based count), ``GET /v1/models`` (the one model), anything else a 404 in the
API's error format. A "main conversation" request is one that offers tools; a request
without tools (title or topic generation, a quota probe) gets a short turn reporting
1 input and 1 output token: the text ``Stub``, or, when it asks for structured output
(``output_config.format`` json_schema, e.g. claude's ``{"title"}``), a JSON object with
a short string per required property; the stub counts it in ``side_requests``.
``turns`` lists the main-conversation turns answered, ``"tool"`` or ``"answer"``;
``tool_use_id`` is the id of the scripted call. Use ``with AnthropicStub(...) as stub:``
and point the CLI at ``stub.base_url`` (no ``/v1``).

Example::

    with AnthropicStub(answer="## Summary\n...", tool_call=("Write", {...}),
                       usage=Usage(input_tokens=1234, output_tokens=56)) as stub:
        env["ANTHROPIC_BASE_URL"] = stub.base_url
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from tests.providers.server import Request, Response, ScriptedConversation

DEFAULT_MODEL = "claude-stub-1"

# API error types by status, as the real API names them.
ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    529: "overloaded_error",
}


@dataclass(frozen=True)
class Usage:
    input_tokens: int = 1200
    output_tokens: int = 80
    cache_creation_input_tokens: int = 300
    cache_read_input_tokens: int = 500

    def as_dict(self) -> dict[str, int]:
        return {
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
            "cache_creation_input_tokens": self.cache_creation_input_tokens,
            "cache_read_input_tokens": self.cache_read_input_tokens,
        }


def error_body(status: int, message: str) -> dict[str, Any]:
    return {
        "type": "error",
        "error": {"type": ERROR_TYPES.get(status, "api_error"), "message": message},
    }


def _chunks(text: str, size: int) -> list[str]:
    return [text[i : i + size] for i in range(0, len(text), size)] or [""]


class AnthropicStub(ScriptedConversation):
    """See the module docstring for the constructor."""

    def __init__(self, *, usage: Usage | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.usage = usage or Usage()

    def __enter__(self) -> AnthropicStub:
        self.start()
        return self

    # --- ids -------------------------------------------------------------------------

    def _next_id(self, prefix: str) -> str:
        return f"{prefix}_stub{self._next_number():06d}"

    @property
    def tool_use_id(self) -> str:
        return "toolu_stub000001"

    # --- routing ---------------------------------------------------------------------

    def respond(self, request: Request) -> Response:
        path = request.path.split("?", 1)[0].rstrip("/")
        if request.method == "POST" and path.endswith("/v1/messages/count_tokens"):
            return Response.json({"input_tokens": max(1, len(request.body) // 4)})
        if request.method == "POST" and path.endswith("/v1/messages"):
            return self._messages(request)
        if request.method == "GET" and path.endswith("/v1/models"):
            return Response.json(
                {
                    "data": [self._model_info(self.model or DEFAULT_MODEL)],
                    "has_more": False,
                    "first_id": self.model or DEFAULT_MODEL,
                    "last_id": self.model or DEFAULT_MODEL,
                }
            )
        if request.method == "GET" and "/v1/models/" in path:
            return Response.json(self._model_info(path.rsplit("/", 1)[1]))
        return Response.json(error_body(404, f"stub: no route {request.method} {path}"), 404)

    def failure(self, status: int) -> Response:
        return Response.json(error_body(status, f"stub error {status}"), status=status)

    @staticmethod
    def _model_info(name: str) -> dict[str, Any]:
        return {
            "type": "model",
            "id": name,
            "display_name": name,
            "created_at": "2025-01-01T00:00:00Z",
        }

    # --- messages --------------------------------------------------------------------

    def _messages(self, request: Request) -> Response:
        try:
            body = request.json()
        except ValueError:
            return Response.json(error_body(400, "stub: body is not JSON"), 400)
        if not isinstance(body, dict):
            return Response.json(error_body(400, "stub: body is not an object"), 400)
        model = self.model or str(body.get("model") or DEFAULT_MODEL)
        stream = bool(body.get("stream"))
        if not body.get("tools"):
            with self._lock:
                self.side_requests += 1
            usage = Usage(input_tokens=1, output_tokens=1, cache_creation_input_tokens=0,
                          cache_read_input_tokens=0)  # fmt: skip
            text = self._side_text(body)
            return self._turn(model, [{"type": "text", "text": text}], "end_turn", usage, stream)
        if self.tool_call is not None and not self._has_tool_result(body):
            name, tool_input = self.tool_call
            block = {"type": "tool_use", "id": self.tool_use_id, "name": name, "input": tool_input}
            with self._lock:
                self.turns.append("tool")
            return self._turn(model, [block], "tool_use", self.usage, stream)
        with self._lock:
            self.turns.append("answer")
        return self._turn(
            model, [{"type": "text", "text": self.answer}], "end_turn", self.usage, stream
        )

    @staticmethod
    def _side_text(body: dict[str, Any]) -> str:
        """A side request's answer: plain text, or, when it asks for structured output
        (``output_config.format`` of type ``json_schema``, e.g. claude's session title),
        a JSON object with a short string for every required property."""
        config = body.get("output_config")
        fmt = config.get("format") if isinstance(config, dict) else None
        if not isinstance(fmt, dict) or fmt.get("type") != "json_schema":
            return "Stub"
        schema = fmt.get("schema")
        required = schema.get("required") if isinstance(schema, dict) else None
        names = [str(name) for name in required] if isinstance(required, list) else []
        return json.dumps(dict.fromkeys(names, "Stub session"))

    def _has_tool_result(self, body: dict[str, Any]) -> bool:
        for message in body.get("messages") or []:
            content = message.get("content") if isinstance(message, dict) else None
            if not isinstance(content, list):
                continue
            for block in content:
                if (
                    isinstance(block, dict)
                    and block.get("type") == "tool_result"
                    and block.get("tool_use_id") == self.tool_use_id
                ):
                    return True
        return False

    def _turn(
        self,
        model: str,
        content: list[dict[str, Any]],
        stop_reason: str,
        usage: Usage,
        stream: bool,
    ) -> Response:
        message_id = self._next_id("msg")
        if not stream:
            return Response.json(
                {
                    "id": message_id,
                    "type": "message",
                    "role": "assistant",
                    "model": model,
                    "content": content,
                    "stop_reason": stop_reason,
                    "stop_sequence": None,
                    "usage": usage.as_dict(),
                }
            )
        return Response.sse(self._events(message_id, model, content, stop_reason, usage))

    @staticmethod
    def _events(
        message_id: str,
        model: str,
        content: list[dict[str, Any]],
        stop_reason: str,
        usage: Usage,
    ) -> list[tuple[str | None, Any]]:
        """The real API's event sequence: message_start (input usage, output 1), per
        block start/deltas/stop, message_delta (stop reason, final usage), message_stop."""
        start_usage = dict(usage.as_dict(), output_tokens=1)
        events: list[tuple[str | None, Any]] = [
            (
                "message_start",
                {
                    "type": "message_start",
                    "message": {
                        "id": message_id,
                        "type": "message",
                        "role": "assistant",
                        "model": model,
                        "content": [],
                        "stop_reason": None,
                        "stop_sequence": None,
                        "usage": start_usage,
                    },
                },
            ),
            ("ping", {"type": "ping"}),
        ]
        for index, block in enumerate(content):
            if block["type"] == "text":
                start: dict[str, Any] = {"type": "text", "text": ""}
                deltas = [
                    {"type": "text_delta", "text": part} for part in _chunks(block["text"], 40)
                ]
            else:
                start = {"type": "tool_use", "id": block["id"], "name": block["name"], "input": {}}
                deltas = [
                    {"type": "input_json_delta", "partial_json": part}
                    for part in _chunks(json.dumps(block["input"]), 24)
                ]
            events.append(
                (
                    "content_block_start",
                    {"type": "content_block_start", "index": index, "content_block": start},
                )
            )
            for delta in deltas:
                events.append(
                    (
                        "content_block_delta",
                        {"type": "content_block_delta", "index": index, "delta": delta},
                    )
                )
            events.append(("content_block_stop", {"type": "content_block_stop", "index": index}))
        events.append(
            (
                "message_delta",
                {
                    "type": "message_delta",
                    "delta": {"stop_reason": stop_reason, "stop_sequence": None},
                    "usage": usage.as_dict(),
                },
            )
        )
        events.append(("message_stop", {"type": "message_stop"}))
        return events
