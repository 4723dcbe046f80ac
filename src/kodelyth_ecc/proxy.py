"""The session's model proxy: records each worker's model traffic, or answers from it.

One process per session, in its own window of the session's tmux session (so it
outlives the command that started it, and ``teardown`` ends it with the session).
Each worker gets its own listening port on 127.0.0.1: the port says whose traffic
it is, and no worker's requests reach another's recording. The harness adapter
points the worker's CLI at it (``harnesses.Harness.proxy_env``).

- ``record``: every request is forwarded to the upstream the user had configured (or
  the provider's default), over HTTPS, and the answer is passed back as it arrives
  (a stream's events are flushed one by one, never buffered to the end); then the
  exchange is appended to the worker's ``exchanges.jsonl`` (``exchanges``).
- ``offline``: requests are answered from the worker's recorded exchanges, in order,
  and nothing leaves the machine. A request whose conversation differs from the
  recorded one is a divergence: written to ``divergence.json`` and handled by the
  policy (``stop``: refuse it, so the agent ends; ``continue``: answer from the
  recording anyway; ``live``: hand the worker to the upstream from that turn on).

Whatever the mode, a request the upstream answers "too many requests" (429, or
Anthropic's 529 "overloaded") is sent again after the wait the provider asks for, a
bounded number of times (``RateLimits``): the agent, and the recording, get the answer
that came through.

Started by ``execute`` (``main(["CONFIG"])`` under ``python -I``); the config file
(0600, in the environment dir) is read and deleted at once; the ports go to
``<coordination>/proxy.json``. Credentials pass through in the CLI's own headers and
are never written anywhere.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import math
import os
import random
import signal
import socket
import socketserver
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

import msgspec

from kodelyth_ecc import exchanges as ex
from kodelyth_ecc.coordination import utc_now as _now
from kodelyth_ecc.errors import KodelythError
from kodelyth_ecc.fsutil import atomic_write_bytes
from kodelyth_ecc.sessiondir import (
    DIVERGENCE_FILE,
    EXCHANGES_FILE,
    PROXY_FILE,
    RECORDING_FILE,
    REPLAY_SOURCE_FILE,
    SEAL_FILE,
)

# Hop-by-hop headers (RFC 9110 7.6.1) and those the proxy sets itself.
_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-connection",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "host",
        "content-length",
        "accept-encoding",
    }
)
# Response headers ``send_response`` writes itself: forwarding them would send two.
_OWN = frozenset({"date", "server"})
# Statuses that never carry a body (RFC 9110 6.4.1).
_NO_BODY = frozenset({204, 304})
MAX_REQUEST_BYTES = 64 * 1024 * 1024
CONNECT_TIMEOUT_S = 30.0
# A stream may pause while the model thinks; a dead upstream is caught by this.
READ_TIMEOUT_S = 600.0
_READ = 64 * 1024


IDLE_TIMEOUT_S = 600.0


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    # A CLI's requests may arrive many at once (the default backlog is 5).
    request_queue_size = 128


class _UnixServer(socketserver.ThreadingUnixStreamServer):
    """The same worker's listener on a unix socket: what its sandbox is given (it has
    no network), relayed to a loopback port inside."""

    daemon_threads = True
    request_queue_size = 128

    def server_bind(self) -> None:
        super().server_bind()
        os.chmod(str(self.server_address), 0o600)


class _NoLog:
    """A worker whose traffic is not recorded (``--no-record`` in a sandbox): its turns
    are counted, nothing is written."""

    def __init__(self) -> None:
        self._turns = 0
        self._lock = threading.Lock()

    def next_turn(self) -> int:
        with self._lock:
            self._turns += 1
            return self._turns

    def append(self, exchange: ex.Exchange) -> None:
        pass

    def close(self) -> None:
        pass


class Route(msgspec.Struct, frozen=True):
    """Requests whose path starts with one of ``prefixes`` (all, when empty) go to
    ``base`` (scheme://host[:port][/path]), with ``strip`` taken off their path first."""

    base: str
    prefixes: tuple[str, ...] = ()
    strip: str = ""
    formats: tuple[str, ...] = ()
    needs_header: str | None = None
    # The credential headers this upstream gets (empty: all the request has).
    credentials: tuple[str, ...] = ()

    @classmethod
    def of(cls, upstream: Any, environ: Mapping[str, str], cwd: str | None = None) -> Route:
        """A ``harnesses.Upstream`` with its base resolved from ``environ``."""
        return cls(
            upstream.base(environ, cwd), upstream.prefixes, upstream.strip, upstream.formats,
            upstream.needs_header, upstream.credentials,
        )  # fmt: skip

    def matches(self, path: str, headers: Mapping[str, str]) -> bool:
        if self.needs_header is not None and self.needs_header not in headers:
            return False
        if not self.prefixes and not self.formats:
            return True
        return any(path.startswith(p) for p in self.prefixes) or (
            ex.wire_format(path) in self.formats
        )


class WorkerConfig(msgspec.Struct, frozen=True):
    slug: str
    mode: str = "record"  # or "offline", or "forward" (not recorded)
    worktree: str = ""
    # The unix socket it also listens on (a sandboxed worker's only way out).
    socket: str | None = None


class RateLimits(msgspec.Struct, frozen=True):
    """How a rate-limited request is asked again. Experiments run the same session many
    times at once, so a provider's 429 is routine; passed on, it costs a run (claude is
    set to retry twice, and a failed turn ends the agent). 529 is Anthropic's
    "overloaded", the same "come back later". Bounded: when the limit does not lift,
    the agent gets the provider's own last answer."""

    statuses: tuple[int, ...] = (429, 529)
    retries: int = 6
    # Without a wait from the provider: doubled each retry (1, 2, 4 ... 32 s), +-25 %.
    first_wait_s: float = 1.0
    # A provider asking for longer than this is out of quota, not busy: passed on.
    max_wait_s: float = 60.0
    max_total_s: float = 120.0

    def wait(
        self, header: Callable[[str], str | None], body: bytes, retries: int, waited: float
    ) -> tuple[float | None, str]:
        """The seconds to wait before asking again, or None and why the answer goes to
        the agent instead. ``header`` looks a response header up by name; ``body`` is
        the start of the answer's body."""
        if retries >= self.retries:
            return None, f"still limited after {retries} retries ({waited:.1f}s waited)"
        error = _error_of(body)
        if "insufficient_quota" in (error.get("type"), error.get("code")):
            return None, "out of quota (insufficient_quota): no wait lifts it"
        asked = asked_wait(header, error)
        if asked is not None and asked > self.max_wait_s:
            return None, f"it asks for {asked:.0f}s, over the {self.max_wait_s:g}s cap"
        if asked is not None:
            # Never sooner than asked; a little later, so that workers told the same
            # second do not all come back in it.
            delay = asked * random.uniform(1.0, 1.1)  # noqa: S311 - jitter, not a secret
        else:
            delay = min(self.first_wait_s * 2.0**retries, self.max_wait_s)
            delay *= random.uniform(0.75, 1.25)  # noqa: S311 - jitter, not a secret
        delay = min(delay, self.max_wait_s)
        if waited + delay > self.max_total_s:
            return None, f"{delay:.1f}s more would pass the {self.max_total_s:g}s budget"
        return delay, ""


def asked_wait(header: Callable[[str], str | None], error: Mapping[str, Any]) -> float | None:
    """The provider's own wait in seconds: ``retry-after-ms`` (Anthropic's and OpenAI's,
    finer), else ``Retry-After`` (seconds or an HTTP-date, RFC 9110 10.2.3), else
    Gemini's ``RetryInfo.retryDelay`` ("37s") in the error body; None when none is
    there or makes sense."""
    millis = _seconds(header("retry-after-ms"))
    if millis is not None:
        return millis / 1000
    text = header("retry-after")
    found = _seconds(text)
    if found is not None:
        return found
    if text is not None:
        import email.utils
        from datetime import datetime, timezone

        try:
            when = email.utils.parsedate_to_datetime(text.strip())
        except (TypeError, ValueError, IndexError):
            when = None
        if when is not None:
            if when.tzinfo is None:
                when = when.replace(tzinfo=timezone.utc)  # "-0000": UTC (RFC 5322 3.3)
            return max(0.0, (when - datetime.now(timezone.utc)).total_seconds())
    details = error.get("details")
    for item in details if isinstance(details, list) else ():
        delay = item.get("retryDelay") if isinstance(item, dict) else None
        if isinstance(delay, str) and delay.endswith("s"):
            return _seconds(delay[:-1])
    return None


def _seconds(text: str | None) -> float | None:
    try:
        value = float((text or "").strip())
    except ValueError:
        return None
    return value if math.isfinite(value) and value >= 0 else None


def _error_of(body: bytes) -> Mapping[str, Any]:
    """The ``error`` object of a provider's error body (all three formats have one)."""
    try:
        found = json.loads(body)
    except (ValueError, RecursionError):  # not JSON, or nested past the parser's depth
        return {}
    error = found.get("error") if isinstance(found, dict) else None
    return error if isinstance(error, dict) else {}


class ProxyConfig(msgspec.Struct, frozen=True):
    coordination_dir: str
    session: str
    workers: tuple[WorkerConfig, ...]
    routes: tuple[Route, ...] = ()
    on_divergence: str = "stop"
    # The caller's HTTPS proxy (a CONNECT tunnel) and the hosts it does not apply to.
    https_proxy: str | None = None
    no_proxy: str = ""
    repo: str = ""
    coordination_root: str = ""
    # --sandbox-allow-host: the egress proxy's socket and what it lets through.
    egress_socket: str | None = None
    allow_hosts: tuple[str, ...] = ()
    rate_limits: RateLimits = RateLimits()

    def context(self, worker: WorkerConfig) -> ex.Context:
        return ex.Context(
            worktree=worker.worktree,
            session=self.session,
            repo=self.repo,
            coordination=self.coordination_root,
        )


def error_body(fmt: str, status: int, message: str) -> bytes:
    """An error in the provider's own format, so the CLI reports it as one."""
    if fmt == "anthropic-messages":
        body: dict[str, Any] = {
            "type": "error",
            "error": {"type": "invalid_request_error", "message": message},
        }
    elif fmt == "gemini":
        body = {"error": {"code": status, "message": message, "status": "FAILED_PRECONDITION"}}
    else:
        body = {"error": {"message": message, "type": "invalid_request_error", "code": None}}
    return json.dumps(body).encode()


# --- offline: answering from a recording -----------------------------------------------


class Replayer:
    """A worker's recorded exchanges, handed out lane by lane in order."""

    def __init__(
        self,
        recorded: Sequence[ex.Exchange],
        recorded_context: ex.Context,
        context: ex.Context,
        policy: str,
    ) -> None:
        self.policy = policy
        # Both runs' paths and names, in both conversations.
        self.normalise = ex.normaliser(recorded_context, context)
        self.last_turn = recorded[-1].turn if recorded else 0
        self.held = len(recorded)
        self._lanes: dict[str, list[ex.Exchange]] = {}
        for item in recorded:
            if item.error is not None and item.status == 0:
                continue  # nothing was answered: nothing to replay
            key = ex.lane(item.format, item.method, item.path, item.request)
            self._lanes.setdefault(key, []).append(item)
        self._conversations: dict[int, list[str]] = {}
        self._lock = threading.Lock()
        self.divergence: tuple[int, str] | None = None

    def _recorded_conversation(self, item: ex.Exchange) -> list[str]:
        found = self._conversations.get(item.turn)
        if found is None:
            found = ex.conversation(item.format, item.request, self.normalise)
            self._conversations[item.turn] = found
        return found

    def answer(self, method: str, path: str, body: str) -> tuple[str, ex.Exchange | None]:
        """("serve", exchange), ("live", None) or ("stop", None); a first divergence is
        kept in ``divergence``."""
        fmt = ex.wire_format(path)
        key = ex.lane(fmt, method, path, body)
        with self._lock:
            if self.divergence is not None and self.policy == "stop":
                return "stop", None
            if self.divergence is not None and self.policy == "live":
                return "live", None
            queue = self._lanes.get(key, [])
            now = ex.conversation(fmt, body, self.normalise)
            for index, item in enumerate(queue):
                if self._recorded_conversation(item) == now:
                    del queue[index]
                    return "serve", item
            if self.divergence is None:
                if queue:
                    turn = queue[0].turn
                    reason = ex.first_difference(self._recorded_conversation(queue[0]), now)
                    reason = reason or "the request differs from the recording"
                else:
                    turn = self.last_turn + 1
                    reason = "the agent made a request the recording does not hold"
                self.divergence = (turn, reason)
            if self.policy == "continue" and queue:
                return "serve", queue.pop(0)
            return ("live", None) if self.policy == "live" else ("stop", None)


# --- the server ------------------------------------------------------------------------


class WorkerProxy:
    """One worker's listener, its recording and (offline) its replayer."""

    def __init__(
        self, config: ProxyConfig, worker: WorkerConfig, stopping: threading.Event | None = None
    ) -> None:
        self.config = config
        self.worker = worker
        # Set when the proxy stops: a rate-limit wait ends at once (the agent gets the 429).
        self.stopping = stopping if stopping is not None else threading.Event()
        self.dir = os.path.join(config.coordination_dir, worker.slug)
        self.log: ex.ExchangeLog | _NoLog = _NoLog()
        self.replayer: Replayer | None = None
        self._recording_id: tuple[int, int] | None = None
        self._attempt_lock = threading.Lock()
        self._open_recording()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            # A client that stops sending (mid-body, or idle on keep-alive) is dropped.
            timeout = IDLE_TIMEOUT_S

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def setup(self) -> None:
                super().setup()
                # Headers and body go out as separate writes: without this, Nagle's
                # algorithm holds the second until the client's delayed ACK (40 ms).
                if self.request.family != socket.AF_UNIX:
                    self.request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

            def _any(self) -> None:
                proxy.handle(self)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = _any

        self.server = _Server(("127.0.0.1", 0), Handler)
        self.unix_server = _UnixServer(worker.socket, Handler) if worker.socket else None

    def _open_recording(self) -> None:
        """This worker's recording (appended to: a proxy started again for a retried
        worker keeps what the others recorded) and, offline, its replayer."""
        if self.worker.mode == "forward":
            return
        path = os.path.join(self.dir, EXCHANGES_FILE)
        self.log = ex.ExchangeLog(path, os.path.join(self.dir, SEAL_FILE))
        info = os.stat(path, follow_symlinks=False)
        self._recording_id = (info.st_dev, info.st_ino)
        if self.worker.mode == "offline":
            self.replayer = _load_replayer(self.dir, self.config, self.worker)
        recording_file = os.path.join(self.dir, RECORDING_FILE)
        if os.path.lexists(recording_file):
            return  # recorded before this proxy started (the worker is not the one retried)
        recording: dict[str, Any] = {
            **msgspec.structs.asdict(self.config.context(self.worker)),
            "started_at": _now(),
        }
        if self.replayer is not None:
            # How many turns the recording held: a replay that used fewer is no copy.
            recording["replays_turns"] = self.replayer.held
        atomic_write_bytes(recording_file, json.dumps(recording).encode())

    def _follow_attempt(self) -> None:
        """A new recording when ``retry`` moved this worker's away (into its attempts)
        while the proxy ran: the new attempt's exchanges are numbered and sealed on
        their own, and an offline worker is answered from its recording's start."""
        if self._recording_id is None:
            return
        try:
            info = os.stat(os.path.join(self.dir, EXCHANGES_FILE), follow_symlinks=False)
            current: tuple[int, int] | None = (info.st_dev, info.st_ino)
        except OSError:
            current = None
        if current == self._recording_id:
            return
        with self._attempt_lock:
            try:
                info = os.stat(os.path.join(self.dir, EXCHANGES_FILE), follow_symlinks=False)
                if (info.st_dev, info.st_ino) == self._recording_id:
                    return  # another request got here first
            except OSError:
                pass
            old = self.log
            self._open_recording()
            old.close()

    @property
    def port(self) -> int:
        return int(self.server.server_address[1])

    # --- one request -----------------------------------------------------------------

    def handle(self, handler: BaseHTTPRequestHandler) -> None:
        started = time.perf_counter()
        body = _read_body(handler)
        if body is None:
            handler.close_connection = True
            return
        self._follow_attempt()
        path = handler.path if handler.path.startswith("/") else urlsplit(handler.path).path
        if handler.headers.get("upgrade", "").lower() == "websocket":
            # codex's built-in provider tries a WebSocket first; 426 sends it straight to
            # plain HTTP (docs/research/proxy-endpoints.md). Nothing to record.
            _send(handler, 426, {"content-type": "text/plain"}, b"use HTTP\n")
            return
        fmt = ex.wire_format(path)
        text = body.decode("utf-8", errors="replace")
        record = ex.Exchange(
            turn=self.log.next_turn(),
            method=handler.command,
            path=ex.recorded_path(path),
            format=fmt,
            request_headers=ex.keep_headers(handler.headers.items(), ex.REQUEST_HEADERS),
            request=text,
            started_at=_now(),
            source="upstream",
        )
        if self.replayer is not None:
            action, recorded = self.replayer.answer(handler.command, path, text)
            self._note_divergence()
            if action == "serve" and recorded is not None:
                self._replay(handler, record, recorded, started)
                return
            if action == "stop":
                turn = self.replayer.divergence[0] if self.replayer.divergence else 0
                message = (
                    f"kodelyth-ecc: this worker diverged from its recording at turn {turn}; "
                    f"the replay stops it (--on-divergence {self.replayer.policy})"
                )
                payload = error_body(fmt, 400, message)
                record.status, record.error = 400, "diverged: stopped"
                record.source = "recording"
                self._finish(record, started, started)
                _send(handler, 400, {"content-type": "application/json"}, payload)
                return
        if self.replayer is not None and not _has_credential(handler.headers.items(), path):
            # Handed to the live provider without a key of the user's (none, or the
            # offline placeholder): nothing of the conversation leaves the machine.
            message = (
                "kodelyth-ecc: this worker diverged from its recording and --on-divergence "
                "live needs your API key for the provider: set it and replay again"
            )
            record.status, record.error = 401, "live without an API key: not forwarded"
            self._finish(record, started, started)
            _send(handler, 401, {"content-type": "application/json"}, error_body(fmt, 401, message))
            return
        self._forward(handler, record, path, body, started)

    def _note_divergence(self) -> None:
        assert self.replayer is not None
        found = self.replayer.divergence
        path = os.path.join(self.dir, DIVERGENCE_FILE)
        if found is None or os.path.exists(path):
            return
        turn, reason = found
        data = {"turn": turn, "reason": reason, "policy": self.replayer.policy, "at": _now()}
        atomic_write_bytes(path, json.dumps(data).encode())

    def _finish(self, record: ex.Exchange, started: float, first_byte: float) -> None:
        end = time.perf_counter()
        record.ttfb_ms = round((first_byte - started) * 1000, 3)
        record.duration_ms = round((end - started) * 1000, 3)
        record.usage = ex.usage_of(record)
        ex.fit(record)
        try:
            self.log.append(record)
        except OSError as exc:  # the disk is full: the agent goes on, the note says why
            sys.stderr.write(f"kodelyth-ecc proxy: cannot record turn {record.turn}: {exc}\n")

    def _replay(
        self,
        handler: BaseHTTPRequestHandler,
        record: ex.Exchange,
        recorded: ex.Exchange,
        started: float,
    ) -> None:
        headers = {k: v for k, v in recorded.response_headers.items() if k in ex.RESPONSE_HEADERS}
        headers.setdefault("content-type", "application/json")
        record.status = recorded.status
        record.response_headers = recorded.response_headers
        record.body, record.events, record.source = recorded.body, recorded.events, "recording"
        first = time.perf_counter()
        # Recorded before the answer goes out (see _forward).
        self._finish(record, started, first)
        try:
            if (
                recorded.events is not None
                and handler.command != "HEAD"
                and (recorded.status not in _NO_BODY)
            ):
                _start_chunked(handler, recorded.status, headers)
                for event in recorded.events:
                    _chunk(handler, (event + "\n\n").encode("utf-8"))
                _chunk(handler, b"")
            else:
                _send(handler, recorded.status, headers, (recorded.body or "").encode("utf-8"))
        except OSError:
            handler.close_connection = True

    def _route(self, path: str, headers: Mapping[str, str]) -> tuple[Route, str] | None:
        # Gemini's paths are told apart first: /v1/models/x:generateContent is no
        # OpenAI request.
        ordered = sorted(self.config.routes, key=lambda r: ex.wire_format(path) not in r.formats)
        for route in ordered:
            if route.matches(path, headers):
                rest = path[len(route.strip) :] if path.startswith(route.strip) else path
                return route, rest
        return None

    def _connection(self, url: str) -> tuple[http.client.HTTPConnection, str]:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = parts.port
        if parts.scheme == "https":
            import ssl

            tunnel = _proxy_for(host, self.config.https_proxy, self.config.no_proxy)
            context = ssl.create_default_context()
            if tunnel is not None:
                conn: http.client.HTTPConnection = http.client.HTTPSConnection(
                    tunnel[0], tunnel[1], timeout=CONNECT_TIMEOUT_S, context=context
                )
                conn.set_tunnel(host, port or 443, headers=tunnel[2])
            else:
                conn = http.client.HTTPSConnection(
                    host, port, timeout=CONNECT_TIMEOUT_S, context=context
                )
        else:
            conn = http.client.HTTPConnection(host, port, timeout=CONNECT_TIMEOUT_S)
        return conn, parts.path.rstrip("/")

    def _ask(
        self, route: Route, method: str, rest: str, headers: dict[str, str], body: bytes
    ) -> tuple[http.client.HTTPConnection, http.client.HTTPResponse]:
        """One attempt: a new connection, the request as it came, the answer's head."""
        conn, prefix = self._connection(route.base)
        try:
            conn.putrequest(method, prefix + rest, skip_host=True, skip_accept_encoding=True)
            for key, value in headers.items():
                conn.putheader(key, value)
            if body or method in ("POST", "PUT", "PATCH"):
                conn.putheader("Content-Length", str(len(body)))
            conn.connect()
            conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            conn.endheaders(body or None)
            conn.sock.settimeout(READ_TIMEOUT_S)
            return conn, conn.getresponse()
        except BaseException:
            conn.close()
            raise

    def _through_rate_limits(
        self, route: Route, method: str, rest: str, headers: dict[str, str], body: bytes
    ) -> tuple[http.client.HTTPConnection, http.client.HTTPResponse | _Held]:
        """The upstream's answer, asked again while it is a rate limit (``RateLimits``).
        A 429 is a status line, so nothing of it has reached the agent yet, and the body
        was read whole before forwarding began (``_read_body``): each attempt sends the
        same bytes. A stopping proxy ends the wait and passes the last 429 on."""
        policy = self.config.rate_limits
        host = urlsplit(route.base).hostname or "the upstream"
        retries, waited = 0, 0.0
        while True:
            conn, response = self._ask(route, method, rest, headers, body)
            if response.status not in policy.statuses:
                return conn, response
            said = f"kodelyth-ecc proxy: {self.worker.slug}: rate limited by {host}"
            said += f" ({response.status})"
            held, whole = _drain(response)
            delay, why = policy.wait(response.getheader, held, retries, waited)
            if delay is None or not whole:
                why = why or "its body is more than an error's"
                sys.stderr.write(f"{said}: passed on to the agent: {why}\n")
                return conn, _Held(response, held)
            response.close()
            conn.close()
            attempt = f"attempt {retries + 2} of {policy.retries + 1}"
            sys.stderr.write(f"{said}: retrying in {delay:.1f}s ({attempt})\n")
            sys.stderr.flush()
            if self.stopping.wait(delay):
                sys.stderr.write(f"{said}: passed on to the agent: the proxy is stopping\n")
                return conn, _Held(response, held)
            retries += 1
            waited += delay

    def _forward(
        self,
        handler: BaseHTTPRequestHandler,
        record: ex.Exchange,
        path: str,
        body: bytes,
        started: float,
    ) -> None:
        """Forward the request as it came (``path`` with its query; the record keeps
        ``recorded_path``'s), and pass the answer back as it arrives."""
        lowered = {k.lower(): v for k, v in handler.headers.items()}
        routed = self._route(path, lowered)
        if routed is None:
            message = "kodelyth-ecc proxy: no upstream for this request path"
            record.status, record.error = 502, "no upstream for this path"
            self._finish(record, started, time.perf_counter())
            _send(handler, 502, {"content-type": "application/json"},
                  error_body(record.format, 502, message))  # fmt: skip
            return
        route, rest = routed
        headers = {
            k: v
            for k, v in handler.headers.items()
            if k.lower() not in _HOP
            and not (
                route.credentials
                and k.lower() in ex.SECRET_HEADERS
                and k.lower() not in route.credentials
            )
        }
        headers["Host"] = urlsplit(route.base).netloc.rsplit("@", 1)[-1]
        headers["Accept-Encoding"] = "identity"
        try:
            conn, response = self._through_rate_limits(route, handler.command, rest, headers, body)
        except (OSError, http.client.HTTPException, ValueError) as exc:
            why = _why(exc)
            host = urlsplit(route.base).hostname
            message = f"kodelyth-ecc proxy: cannot reach the upstream {host}: {why}"
            record.status, record.error = 502, f"upstream unreachable: {why}"
            self._finish(record, started, time.perf_counter())
            _send(handler, 502, {"content-type": "application/json"},
                  error_body(record.format, 502, message))  # fmt: skip
            return
        first = time.perf_counter()
        record.status = response.status
        record.response_headers = ex.keep_headers(response.getheaders(), ex.RESPONSE_HEADERS)
        out_headers = {k: v for k, v in response.getheaders() if k.lower() not in _HOP | _OWN}
        if handler.command == "HEAD" or response.status in _NO_BODY:
            # Headers only: a length or a chunked terminator here would be read as the
            # start of the next answer on a kept-alive connection.
            length = response.getheader("content-length")
            record.body = ""
            self._finish(record, started, first)
            try:
                handler.send_response(response.status)
                for key, value in out_headers.items():
                    handler.send_header(key, value)
                if length is not None and handler.command == "HEAD":
                    handler.send_header("Content-Length", length)
                handler.end_headers()
                handler.wfile.flush()
            except OSError:
                handler.close_connection = True
            finally:
                conn.close()
            return
        stream = "text/event-stream" in (response.getheader("content-type") or "")
        # A stream (or an answer of unknown length) goes out as it arrives; a plain answer
        # of known length is read whole first. Either way the exchange is recorded before
        # the client sees its end: once an agent has its answer, the recording holds it.
        chunked = stream or response.getheader("content-length") is None
        pieces: list[bytes] = []
        kept = 0
        recorded = False

        def finish() -> None:
            nonlocal recorded
            text = b"".join(pieces).decode("utf-8", errors="replace")
            if kept >= ex.MAX_BODY_CHARS:
                record.error = "the answer was over the recording's size limit: kept its start"
            if stream:
                events, rest = ex.split_events(text)
                record.events = events + ([rest] if rest.strip() else [])
            else:
                record.body = text
            recorded = True
            self._finish(record, started, first)

        try:
            if chunked:
                _start_chunked(handler, response.status, out_headers)
            whole: list[bytes] = []
            while True:
                data = response.read1(_READ) if handler.command != "HEAD" else b""
                if not data:
                    break
                if kept < ex.MAX_BODY_CHARS:
                    pieces.append(data)
                    kept += len(data)
                if chunked:
                    _chunk(handler, data)
                else:
                    whole.append(data)
            finish()
            if chunked:
                _chunk(handler, b"")
            else:
                _send(handler, response.status, out_headers, b"".join(whole))
        except (OSError, http.client.HTTPException) as exc:
            record.error = f"the answer was cut short: {_why(exc)}"
            handler.close_connection = True
            if not recorded:
                finish()
        finally:
            conn.close()


def _has_credential(headers: Any, path: str) -> bool:
    """Whether a request carries a key of the user's: a credential header or query
    parameter with a value that is not the offline placeholder."""
    from kodelyth_ecc.harnesses import OFFLINE_KEY

    values = [v for k, v in headers if k.lower() in ex.SECRET_HEADERS and k.lower() != "cookie"]
    if "?" in path and ex.recorded_path(path) != path:
        values.append(path)
    return any(v.strip() and OFFLINE_KEY not in v and v.strip() != "Bearer" for v in values)


def _why(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror.lower()
    return type(exc).__name__


# What is read of a rate-limit answer before asking again: an error body is small.
_HELD_BYTES = 64 * 1024


def _drain(response: http.client.HTTPResponse) -> tuple[bytes, bool]:
    """A rate-limit answer's body (up to ``_HELD_BYTES``) and whether that is all of it;
    a body cut short is what came (the 429 said enough)."""
    pieces: list[bytes] = []
    size = 0
    try:
        while size <= _HELD_BYTES:
            data = response.read1(_READ)
            if not data:
                return b"".join(pieces), True
            pieces.append(data)
            size += len(data)
    except (OSError, http.client.HTTPException):
        return b"".join(pieces), True
    return b"".join(pieces), False


class _Held:
    """A rate-limit answer whose start was read already (to see what it asks for),
    handed on to the agent as it came: what was read, then the rest."""

    def __init__(self, response: http.client.HTTPResponse, start: bytes) -> None:
        self.status = response.status
        self._response = response
        self._start = start

    def getheaders(self) -> list[tuple[str, str]]:
        return self._response.getheaders()

    def getheader(self, name: str, default: str | None = None) -> str | None:
        return self._response.getheader(name, default)

    def read1(self, size: int = -1) -> bytes:
        if not self._start:
            return self._response.read1(size)
        data, self._start = self._start, b""
        return data


def _proxy_for(
    host: str, https_proxy: str | None, no_proxy: str
) -> tuple[str, int, dict[str, str]] | None:
    """The HTTPS proxy to tunnel through (host, port, and its Proxy-Authorization from
    the URL's user and password), or None."""
    if not https_proxy:
        return None
    for entry in (e.strip().lstrip(".") for e in no_proxy.split(",")):
        if entry == "*" or (entry and (host == entry or host.endswith("." + entry))):
            return None
    parts = urlsplit(https_proxy if "://" in https_proxy else "http://" + https_proxy)
    if not parts.hostname:
        return None
    headers: dict[str, str] = {}
    if parts.username is not None:
        import base64
        from urllib.parse import unquote

        pair = f"{unquote(parts.username)}:{unquote(parts.password or '')}"
        headers["Proxy-Authorization"] = "Basic " + base64.b64encode(pair.encode()).decode()
    return parts.hostname, parts.port or 80, headers


def _read_body(handler: BaseHTTPRequestHandler) -> bytes | None:
    """The request body (Content-Length or chunked), refused over the cap."""
    length = handler.headers.get("content-length")
    if handler.headers.get("transfer-encoding", "").lower() == "chunked":
        pieces: list[bytes] = []
        size = 0
        while True:
            line = handler.rfile.readline(1024)
            try:
                count = int(line.split(b";", 1)[0].strip() or b"0", 16)
            except ValueError:
                return None
            if count < 0:  # read(-1) would read to the end, uncapped
                return None
            if count == 0:
                handler.rfile.readline(1024)
                return b"".join(pieces)
            size += count
            if size > MAX_REQUEST_BYTES:
                _send(handler, 413, {"content-type": "text/plain"}, b"request too large\n")
                return None
            pieces.append(handler.rfile.read(count))
            handler.rfile.readline(1024)
    try:
        size = int(length or 0)
    except ValueError:
        return None
    if size < 0 or size > MAX_REQUEST_BYTES:
        _send(handler, 413, {"content-type": "text/plain"}, b"request too large\n")
        return None
    return handler.rfile.read(size) if size else b""


def _send(
    handler: BaseHTTPRequestHandler, status: int, headers: dict[str, str], body: bytes
) -> None:
    handler.send_response(status)
    for key, value in headers.items():
        handler.send_header(key, value)
    if status not in _NO_BODY:
        handler.send_header("Content-Length", str(len(body)))
    handler.end_headers()
    if handler.command != "HEAD" and status not in _NO_BODY:
        handler.wfile.write(body)
    handler.wfile.flush()


def _start_chunked(handler: BaseHTTPRequestHandler, status: int, headers: dict[str, str]) -> None:
    handler.send_response(status)
    for key, value in headers.items():
        handler.send_header(key, value)
    handler.send_header("Transfer-Encoding", "chunked")
    handler.end_headers()


def _chunk(handler: BaseHTTPRequestHandler, data: bytes) -> None:
    handler.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
    handler.wfile.flush()


def _load_replayer(directory: str, config: ProxyConfig, worker: WorkerConfig) -> Replayer:
    """The recording this worker replays (written by ``replay`` from the bundle, and
    validated there and again here: the file is in a directory others may write)."""
    from kodelyth_ecc.sessiondir import read_file

    path = os.path.join(directory, REPLAY_SOURCE_FILE)
    data = read_file(path, ex.MAX_RECORDING_BYTES)
    source: dict[str, Any] = {}
    recorded: list[ex.Exchange] = []
    if data is not None:
        source = msgspec.json.decode(data, type=dict[str, Any])
        recorded = ex.decode_list(msgspec.json.encode(source.get("exchanges") or []), path)
    recorded_context = ex.Context.of(source.get("recording"))
    return Replayer(recorded, recorded_context, config.context(worker), config.on_divergence)


def build_config(
    plan: Any, environ: Mapping[str, str], socket_dir: str | None = None
) -> ProxyConfig:
    """The proxy's config for an ``OrchestrationPlan``: its workers, and the upstreams
    resolved from the caller's environment (the endpoint the user configured, else the
    provider's default). Sandboxed workers also get a unix socket in ``socket_dir``."""
    upstreams = plan.proxy_point.upstreams if plan.proxy_point is not None else ()
    routes = tuple(Route.of(u, environ, plan.repo_root) for u in upstreams)
    empty = next((u for u, r in zip(upstreams, routes, strict=True) if not r.base), None)
    if empty is not None:
        raise KodelythError(
            f"no endpoint is configured for {empty.discover or empty.variable or 'the CLI'}: "
            "set the provider's baseURL in its config, or pass --no-record"
        )
    https_proxy = environ.get("HTTPS_PROXY") or environ.get("https_proxy") or None
    no_proxy = environ.get("NO_PROXY") or environ.get("no_proxy") or ""
    mode = "offline" if plan.offline else "record" if plan.record else "forward"
    sandboxed = getattr(plan, "sandbox", None) is not None and socket_dir is not None
    return ProxyConfig(
        coordination_dir=plan.coordination_dir,
        session=plan.session_name,
        workers=tuple(
            WorkerConfig(
                w.worker_slug,
                mode,
                w.worktree_path,
                os.path.join(socket_dir, f"w{i}.sock") if sandboxed and socket_dir else None,
            )
            for i, w in enumerate(plan.workers)
        ),
        egress_socket=(
            os.path.join(socket_dir, "egress.sock")
            if sandboxed and socket_dir and plan.sandbox.allow_hosts
            else None
        ),
        allow_hosts=tuple(plan.sandbox.allow_hosts) if sandboxed else (),
        routes=routes,
        on_divergence=plan.on_divergence,
        https_proxy=https_proxy,
        no_proxy=no_proxy,
        repo=plan.repo_root,
        coordination_root=plan.coordination_root,
    )


def encode_config(config: ProxyConfig) -> bytes:
    return msgspec.json.encode(config)


def read_config(path: str) -> ProxyConfig:
    """The config ``execute`` wrote, deleted as soon as it is read."""
    from kodelyth_ecc.runner import read_environment_bytes

    return msgspec.json.decode(read_environment_bytes(path), type=ProxyConfig)


closed = threading.Event()


def serve(config: ProxyConfig, stop: threading.Event) -> dict[str, int]:
    """Start every worker's listener; returns their ports (serving goes on in threads
    until ``stop`` is set)."""
    proxies = [WorkerProxy(config, worker, stop) for worker in config.workers]
    servers: list[socketserver.BaseServer] = []
    for proxy in proxies:
        servers += [proxy.server, *([proxy.unix_server] if proxy.unix_server else [])]
    egress = None
    if config.egress_socket is not None:
        from kodelyth_ecc.egress import EgressProxy

        egress = EgressProxy(config.egress_socket, config.allow_hosts)
        egress.start()
    for server in servers:
        threading.Thread(target=server.serve_forever, daemon=True).start()

    def shut() -> None:
        stop.wait()
        # Together: each shutdown waits out its server's poll interval (0.5 s).
        stopping = [threading.Thread(target=server.shutdown) for server in servers]
        for thread in stopping:
            thread.start()
        for thread in stopping:
            thread.join()
        for server in servers:
            server.server_close()
        for proxy in proxies:
            if proxy.worker.socket:
                with contextlib.suppress(OSError):
                    os.unlink(proxy.worker.socket)
            proxy.log.close()
        if egress is not None:
            egress.close()
        for directory in {os.path.dirname(w.socket) for w in config.workers if w.socket}:
            with contextlib.suppress(OSError):
                os.rmdir(directory)  # execute made it for the sockets alone
        closed.set()

    threading.Thread(target=shut, daemon=True).start()
    return {p.worker.slug: p.port for p in proxies}


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 1:
        sys.stderr.write("usage: python -m kodelyth_ecc.proxy CONFIG\n")
        return 2
    try:
        config = read_config(args[0])
    except (OSError, msgspec.DecodeError, msgspec.ValidationError) as exc:
        sys.stderr.write(f"kodelyth-ecc proxy: cannot read its config: {exc}\n")
        return 1
    stop = threading.Event()

    def finish(signum: int, frame: object) -> None:
        stop.set()

    for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
        signal.signal(sig, finish)
    try:
        ports = serve(config, stop)
    except (
        OSError,
        ex.RecordingError,
        KodelythError,
        msgspec.DecodeError,
        msgspec.ValidationError,
    ) as exc:
        sys.stderr.write(f"kodelyth-ecc proxy: cannot start: {exc}\n")
        return 1
    sockets = {w.slug: w.socket for w in config.workers if w.socket}
    state: dict[str, Any] = {"pid": os.getpid(), "ports": ports, "started_at": _now()}
    if sockets:
        state["sockets"] = sockets
    if config.egress_socket is not None:
        state["egress"] = config.egress_socket
    atomic_write_bytes(
        os.path.join(config.coordination_dir, PROXY_FILE), json.dumps(state).encode()
    )
    sys.stdout.write(f"kodelyth-ecc proxy for {config.session}: {json.dumps(ports)}\n")
    sys.stdout.flush()
    while not stop.wait(3600):
        pass
    closed.wait(10)  # the recordings flushed and closed
    return 0


if __name__ == "__main__":  # pragma: no cover - also runnable as python -m
    sys.exit(main())
