"""The HTTP side every provider stub shares: a threaded server on 127.0.0.1 with a
random free port, bounded in requests and in lifetime, that records what it was asked
(never an Authorization header or API key) and answers from a script.

A stub subclasses ``ScriptedProvider`` and implements ``respond``; a response is a
status, headers and either a body or an iterator of chunks, each flushed as it comes
(server-sent events are not buffered). Fault modes for failure tests: ``status``
(answer every request with, e.g., 401) and ``hang`` (accept and never answer until
the stub stops)."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

# Headers never recorded: they carry credentials.
SECRET_HEADERS = frozenset(
    {"authorization", "x-api-key", "api-key", "x-goog-api-key", "cookie", "proxy-authorization"}
)


@dataclass
class Request:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body or b"null")


@dataclass
class Response:
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes | None = None
    chunks: Iterable[bytes] | None = None

    @classmethod
    def json(cls, data: Any, status: int = 200) -> Response:
        return cls(status, {"content-type": "application/json"}, json.dumps(data).encode())

    @classmethod
    def sse(cls, events: Iterable[tuple[str | None, Any]]) -> Response:
        """Server-sent events: ``(event name or None, JSON data)`` each."""

        def chunks() -> Iterator[bytes]:
            for name, data in events:
                head = f"event: {name}\n" if name else ""
                yield f"{head}data: {json.dumps(data)}\n\n".encode()

        return cls(200, {"content-type": "text/event-stream", "cache-control": "no-cache"},
                   chunks=chunks())  # fmt: skip


class ScriptedProvider:
    """Subclass and implement ``respond(request)``. Use as a context manager."""

    def __init__(
        self,
        *,
        max_requests: int = 64,
        lifetime_s: float = 300.0,
        status: int | None = None,
        hang: bool = False,
    ) -> None:
        self.max_requests = max_requests
        self.lifetime_s = lifetime_s
        self.fail_status = status
        self.hang = hang
        self.requests: list[Request] = []
        self.credential_names: list[set[str]] = []
        self._lock = threading.Lock()
        self._stopped = threading.Event()
        self._server: ThreadingHTTPServer | None = None
        self._threads: list[threading.Thread] = []

    # --- to implement ----------------------------------------------------------------

    def respond(self, request: Request) -> Response:
        raise NotImplementedError

    # --- lifecycle -------------------------------------------------------------------

    @property
    def port(self) -> int:
        assert self._server is not None, "not started"
        return int(self._server.server_address[1])

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> ScriptedProvider:
        provider = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass  # quiet: a test's output is its own

            def _handle(self) -> None:
                provider._serve(self)

            do_GET = do_POST = do_PUT = do_DELETE = _handle

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        serve = threading.Thread(target=self._server.serve_forever, daemon=True)
        serve.start()
        # Stops by itself: no test may leave a server behind, whatever happens.
        timer = threading.Timer(self.lifetime_s, self.stop)
        timer.daemon = True
        timer.start()
        self._threads = [serve]
        self._timer = timer
        return self

    def stop(self) -> None:
        if self._stopped.is_set():
            return
        self._stopped.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        self._timer.cancel()

    def __enter__(self) -> ScriptedProvider:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- serving ---------------------------------------------------------------------

    def _serve(self, handler: BaseHTTPRequestHandler) -> None:
        length = int(handler.headers.get("content-length") or 0)
        body = handler.rfile.read(length) if length else b""
        headers = {
            k.lower(): v for k, v in handler.headers.items() if k.lower() not in SECRET_HEADERS
        }
        request = Request(handler.command, handler.path, headers, body)
        # Which credential headers came (names only: a value is never kept).
        names = {k.lower() for k in handler.headers if k.lower() in SECRET_HEADERS}
        with self._lock:
            self.requests.append(request)
            self.credential_names.append(names)
            over = len(self.requests) > self.max_requests
        if over:
            response = Response.json({"error": "stub request budget exhausted"}, status=503)
        elif self.hang:
            self._stopped.wait(self.lifetime_s)
            return
        elif self.fail_status is not None:
            response = self.failure(self.fail_status)
        else:
            response = self.respond(request)
        self._write(handler, response)

    def failure(self, status: int) -> Response:
        """What the provider answers for an error status (subclasses use its format)."""
        return Response.json({"error": {"message": f"stub error {status}"}}, status=status)

    def _write(self, handler: BaseHTTPRequestHandler, response: Response) -> None:
        handler.send_response(response.status)
        for key, value in response.headers.items():
            handler.send_header(key, value)
        if response.chunks is None:
            body = response.body or b""
            handler.send_header("content-length", str(len(body)))
            handler.end_headers()
            handler.wfile.write(body)
            return
        handler.send_header("transfer-encoding", "chunked")
        handler.end_headers()
        for chunk in response.chunks:
            if self._stopped.is_set():
                break
            handler.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            handler.wfile.flush()
        handler.wfile.write(b"0\r\n\r\n")
        handler.wfile.flush()


class ScriptedConversation(ScriptedProvider):
    """A stub that plays one agent conversation: a scripted tool call first (``tool_call``:
    name and input, or None), then ``answer``; ``model`` is what it reports (None: the
    one asked for). It counts the main turns it answered (``turns``: "tool" or
    "answer") and the side requests (titles, routers) apart. Subclasses add the
    provider's wire format and its ``usage`` figures."""

    def __init__(
        self,
        *,
        answer: str,
        tool_call: tuple[str, dict[str, Any]] | None = None,
        model: str | None = None,
        max_requests: int = 64,
        lifetime_s: float = 300.0,
        status: int | None = None,
        hang: bool = False,
    ) -> None:
        super().__init__(max_requests=max_requests, lifetime_s=lifetime_s, status=status, hang=hang)
        self.answer = answer
        self.tool_call = tool_call
        self.model = model
        self.turns: list[str] = []
        self.side_requests = 0
        self._ids = 0
        self._id_lock = threading.Lock()

    def _next_number(self) -> int:
        """A fresh id number: workers' requests arrive on several threads at once."""
        with self._id_lock:
            self._ids += 1
            return self._ids


def wait_for_requests(provider: ScriptedProvider, count: int, timeout: float = 30.0) -> bool:
    """Poll (bounded) until the stub has seen ``count`` requests."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if len(provider.requests) >= count:
            return True
        time.sleep(0.02)
    return False


class Sentinel:
    """Where every proxy variable points: counts connections, answers none."""

    def __init__(self) -> None:
        self.connections = 0
        self._sock = socket.socket()
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(16)
        self._sock.settimeout(0.2)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    @property
    def port(self) -> int:
        return int(self._sock.getsockname()[1])

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except OSError:
                continue
            self.connections += 1
            conn.close()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2)
        self._sock.close()
