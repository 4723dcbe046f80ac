"""A scripted Gemini API (generativelanguage ``v1beta``) on 127.0.0.1: the wire format
``gemini`` (@google/gemini-cli, through @google/genai) speaks with an API key.

``GeminiStub(answer=..., tool_call=..., usage=..., model=...)``:

- ``answer`` (str): the final model text, streamed as several ``text`` parts.
- ``tool_call`` (``(function name, args dict)`` or None): the FIRST model turn of the
  main conversation is this ``functionCall``; once a request carries a
  ``functionResponse`` for that name, the next turn is ``answer``. None: the first turn
  is the answer. For gemini, e.g. ``("write_file", {"file_path": "hello.txt",
  "content": "hello\\n"})``.
- ``usage`` (``Usage``): the ``usageMetadata`` EVERY main-conversation turn reports
  (``promptTokenCount``, ``candidatesTokenCount``, ``cachedContentTokenCount``,
  ``thoughtsTokenCount``; ``totalTokenCount`` is derived); a CLI that sums turns
  reports ``turns * figure``.
- ``model``: the ``modelVersion`` the stub reports (default: the model in the URL).
- plus ``ScriptedProvider``'s ``max_requests``, ``lifetime_s``, ``status`` (e.g. 401:
  every request gets Google's error body, ``{"error": {"code", "message", "status",
  "details"}}``) and ``hang``.

Routes (any prefix before ``/v1beta`` or ``/v1`` is accepted):
``POST .../models/<m>:streamGenerateContent?alt=sse`` (SSE ``data:`` chunks of
``GenerateContentResponse``, each ended by CRLF CRLF as the real API does; the last
carries ``finishReason`` and ``usageMetadata``), ``POST .../models/<m>:generateContent``
(one ``GenerateContentResponse``), ``POST .../models/<m>:countTokens`` (a length-based
``totalTokens``), ``GET .../models`` and ``GET .../models/<m>`` (model metadata);
anything else a 404 in Google's error format.

A "main conversation" request is one that declares ``write_file`` or another function
(``tools[].functionDeclarations``); a request without tools (the CLI's model router,
next-speaker check, loop detection, a summary) is a side request: it gets a small
answer that reports 1 output token, a JSON object when the request asks for
``responseMimeType: application/json`` (shaped for the CLI's known schemas), and the
stub counts it in ``side_requests``. ``turns`` lists the main turns answered,
``"tool"`` or ``"answer"``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from tests.providers.server import Request, Response, ScriptedConversation

DEFAULT_MODEL = "gemini-2.5-flash"

# google.rpc status names by HTTP status, as the real API reports them.
STATUS_NAMES = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    429: "RESOURCE_EXHAUSTED",
    500: "INTERNAL",
    503: "UNAVAILABLE",
}

ERROR_MESSAGES = {
    401: (
        "Request had invalid authentication credentials. Expected OAuth 2 access token, "
        "login cookie or other valid authentication credential."
    ),
    403: "Method doesn't allow unregistered callers (callers without established identity).",
}


@dataclass(frozen=True)
class Usage:
    prompt_tokens: int = 1200
    candidates_tokens: int = 80
    cached_tokens: int = 500
    thoughts_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.candidates_tokens + self.thoughts_tokens

    def as_dict(self) -> dict[str, Any]:
        meta: dict[str, Any] = {
            "promptTokenCount": self.prompt_tokens,
            "candidatesTokenCount": self.candidates_tokens,
            "totalTokenCount": self.total_tokens,
            "promptTokensDetails": [{"modality": "TEXT", "tokenCount": self.prompt_tokens}],
        }
        if self.cached_tokens:
            meta["cachedContentTokenCount"] = self.cached_tokens
            meta["cacheTokensDetails"] = [{"modality": "TEXT", "tokenCount": self.cached_tokens}]
        if self.thoughts_tokens:
            meta["thoughtsTokenCount"] = self.thoughts_tokens
        return meta


SIDE_USAGE = Usage(prompt_tokens=1, candidates_tokens=1, cached_tokens=0)


def error_body(status: int, message: str | None = None) -> dict[str, Any]:
    """Google's error body (google.rpc.Status in JSON)."""
    name = STATUS_NAMES.get(status, "UNKNOWN")
    text = message or ERROR_MESSAGES.get(status) or f"stub error {status}"
    error: dict[str, Any] = {"code": status, "message": text, "status": name}
    if status in (401, 403):
        error["details"] = [
            {
                "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                "reason": "CREDENTIALS_MISSING" if status == 401 else "API_KEY_SERVICE_BLOCKED",
                "domain": "googleapis.com",
                "metadata": {"service": "generativelanguage.googleapis.com"},
            }
        ]
    return {"error": error}


_TYPE_DEFAULTS: dict[str, Any] = {
    "integer": 0,
    "number": 0,
    "boolean": False,
    "array": [],
    "object": {},
    "string": "",
}


def _chunks(text: str, size: int) -> list[str]:
    return [text[i : i + size] for i in range(0, len(text), size)] or [""]


def _sse(payloads: list[dict[str, Any]]) -> Response:
    """``data: <json>`` events separated by CRLF CRLF, as generativelanguage sends them."""

    def chunks() -> Iterator[bytes]:
        for payload in payloads:
            yield b"data: " + json.dumps(payload, separators=(",", ":")).encode() + b"\r\n\r\n"

    return Response(
        200, {"content-type": "text/event-stream", "x-content-type-options": "nosniff"},
        chunks=chunks(),
    )  # fmt: skip


class GeminiStub(ScriptedConversation):
    """See the module docstring for the constructor."""

    def __init__(self, *, usage: Usage | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.usage = usage or Usage()

    def __enter__(self) -> GeminiStub:
        self.start()
        return self

    def _next_id(self) -> str:
        return f"stub-response-{self._next_number():06d}"

    # --- routing ---------------------------------------------------------------------

    def respond(self, request: Request) -> Response:
        path = request.path.split("?", 1)[0].rstrip("/")
        _, sep, resource = path.partition("/models")
        if not sep:
            return self._not_found(request, path)
        if request.method == "GET" and resource == "":
            return Response.json({"models": [self._model_info(self.model or DEFAULT_MODEL)]})
        if not resource.startswith("/"):
            return self._not_found(request, path)
        model, _, method = resource[1:].partition(":")
        if request.method == "GET" and not method:
            return Response.json(self._model_info(model))
        if request.method != "POST":
            return self._not_found(request, path)
        if method == "countTokens":
            return Response.json({"totalTokens": max(1, len(request.body) // 4)})
        if method in ("generateContent", "streamGenerateContent"):
            return self._generate(request, model, stream=method == "streamGenerateContent")
        return self._not_found(request, path)

    def failure(self, status: int) -> Response:
        return Response.json(error_body(status), status=status)

    @staticmethod
    def _not_found(request: Request, path: str) -> Response:
        return Response.json(error_body(404, f"stub: no route {request.method} {path}"), 404)

    @staticmethod
    def _model_info(name: str) -> dict[str, Any]:
        return {
            "name": f"models/{name}",
            "version": "001",
            "displayName": name,
            "description": "scripted stub model",
            "inputTokenLimit": 1048576,
            "outputTokenLimit": 65536,
            "supportedGenerationMethods": ["generateContent", "countTokens"],
            "temperature": 1,
            "topP": 0.95,
            "topK": 64,
        }

    # --- generation ------------------------------------------------------------------

    def _generate(self, request: Request, model: str, *, stream: bool) -> Response:
        try:
            body = request.json()
        except ValueError:
            return Response.json(error_body(400, "stub: body is not JSON"), 400)
        if not isinstance(body, dict):
            return Response.json(error_body(400, "stub: body is not an object"), 400)
        version = self.model or model or DEFAULT_MODEL
        if not self._declares_functions(body):
            with self._lock:
                self.side_requests += 1
            return self._turn(version, [{"text": self._side_text(body)}], SIDE_USAGE, stream)
        if self.tool_call is not None and not self._has_function_response(body):
            name, args = self.tool_call
            with self._lock:
                self.turns.append("tool")
            part = {"functionCall": {"name": name, "args": args}}
            return self._turn(version, [part], self.usage, stream)
        with self._lock:
            self.turns.append("answer")
        return self._turn(version, [{"text": self.answer}], self.usage, stream)

    @staticmethod
    def _declares_functions(body: dict[str, Any]) -> bool:
        for tool in body.get("tools") or []:
            if isinstance(tool, dict) and tool.get("functionDeclarations"):
                return True
        return False

    def _has_function_response(self, body: dict[str, Any]) -> bool:
        name = self.tool_call[0] if self.tool_call else None
        for content in body.get("contents") or []:
            parts = content.get("parts") if isinstance(content, dict) else None
            for part in parts or []:
                response = part.get("functionResponse") if isinstance(part, dict) else None
                if isinstance(response, dict) and response.get("name") == name:
                    return True
        return False

    @staticmethod
    def _side_text(body: dict[str, Any]) -> str:
        config = body.get("generationConfig") or {}
        if config.get("responseMimeType") != "application/json":
            return "Stub"
        schema = config.get("responseJsonSchema") or config.get("responseSchema") or {}
        props = set((schema.get("properties") or {}).keys())
        answer: dict[str, Any] = {}
        if "next_speaker" in props:  # next-speaker check: the user speaks, the turn ends
            answer = {"reasoning": "The model finished its answer.", "next_speaker": "user"}
        elif "complexity_score" in props:  # the numerical model router: a simple task
            answer = {"complexity_reasoning": "A simple task.", "complexity_score": 10}
        elif "model_choice" in props:  # the classifier model router
            answer = {"reasoning": "A simple task.", "model_choice": "flash"}
        else:  # anything else: a value of each declared type
            for key, prop in (schema.get("properties") or {}).items():
                kind = str((prop or {}).get("type", "string")).lower()
                answer[key] = _TYPE_DEFAULTS.get(kind, "")
        return json.dumps(answer)

    def _turn(
        self, version: str, parts: list[dict[str, Any]], usage: Usage, stream: bool
    ) -> Response:
        response_id = self._next_id()
        if not stream:
            return Response.json(
                {
                    "candidates": [
                        {
                            "content": {"role": "model", "parts": parts},
                            "finishReason": "STOP",
                            "index": 0,
                        }
                    ],
                    "usageMetadata": usage.as_dict(),
                    "modelVersion": version,
                    "responseId": response_id,
                }
            )
        # Text is streamed in pieces; a function call comes whole, as the API sends it.
        pieces: list[dict[str, Any]] = []
        for part in parts:
            if "text" in part:
                pieces.extend({"text": piece} for piece in _chunks(part["text"], 40))
            else:
                pieces.append(part)
        payloads: list[dict[str, Any]] = []
        partial = Usage(usage.prompt_tokens, 0, usage.cached_tokens, 0).as_dict()
        for index, piece in enumerate(pieces):
            last = index == len(pieces) - 1
            candidate: dict[str, Any] = {"content": {"role": "model", "parts": [piece]}, "index": 0}
            if last:
                candidate["finishReason"] = "STOP"
            payloads.append(
                {
                    "candidates": [candidate],
                    "usageMetadata": usage.as_dict() if last else partial,
                    "modelVersion": version,
                    "responseId": response_id,
                }
            )
        return _sse(payloads)
